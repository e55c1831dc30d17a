package accesslog_test

import (
	"fmt"

	"github.com/levee-dev/levee/internal/accesslog"
)

func ExampleParseLine() {
	var e accesslog.Entry
	scratch := make([]byte, 4096)
	for _, line := range []string{
		`192.0.2.1 - - [01/Mar/2026:13:00:00 +0100] "GET /search?q=x HTTP/1.1" 200 512 "-" "curl/8.5"`,
		`{"ts":"2026-03-01T12:00:01Z","client":"2001:db8::1","path":"/login","status":0,"ua":"EvilBot","verdict":"blocked"}`,
	} {
		if err := accesslog.ParseLine([]byte(line), &e, scratch); err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(e.Format, e.Time.UTC().Format("15:04:05"), e.Client, string(e.Path), string(e.Query), e.Status, string(e.UserAgent), e.Verdict)
	}
	// Output:
	// combined 12:00:00 192.0.2.1 /search q=x 200 curl/8.5 pass
	// json 12:00:01 2001:db8::1 /login  0 EvilBot blocked
}
