package monitor_test

import (
	"fmt"

	"github.com/levee-dev/levee/internal/monitor"
)

func ExampleParse() {
	cfg, err := monitor.Parse([]byte(`
targets:
  - name: www
    kind: http
    url: https://www.example.com/
    expect_status: [200]
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	t := cfg.Targets[0]
	fmt.Println(cfg.Listen, t.Name, t.Kind, t.Method, t.Interval, t.Timeout, cfg.Detection.QuorumMin)

	_, err = monitor.Parse([]byte("targets:\n  - name: www\n    kind: http\n    ulr: https://www.example.com/\n"))
	fmt.Println(err)
	// Output:
	// 127.0.0.1:9180 www http GET 10s 5s 2
	// monitor: parse config: yaml: unmarshal errors:
	//   line 4: field ulr not found in type monitor.Target
}
