package accesslog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/telemetry"
)

// genLog writes n lines of the given format.
func genLog(n int, f Format) []byte {
	var buf bytes.Buffer
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var line []byte
	for i := range n {
		e := Entry{Time: t0.Add(time.Duration(i) * time.Millisecond), Site: []byte("www"),
			Client: netip.AddrFrom4([4]byte{192, 0, byte(i >> 8), byte(i)}), Method: []byte("GET"), Host: []byte("example.com"),
			Path: fmt.Appendf(nil, "/static/%d/app.js", i%300), Query: []byte("v=3&lang=en"), Status: 200,
			UserAgent: []byte("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"),
			Bytes:     5120, Duration: 12 * time.Millisecond, Verdict: telemetry.VerdictPass}
		if f == FormatJSON {
			line = AppendJSON(line[:0], &e)
		} else {
			line = fmt.Appendf(line[:0], "%s - - [%s] \"GET %s?%s HTTP/1.1\" 200 5120 \"https://example.com/\" \"%s\"\n",
				e.Client, e.Time.Format("02/Jan/2006:15:04:05 -0700"), e.Path, e.Query, e.UserAgent)
		}
		buf.Write(line)
	}
	return buf.Bytes()
}

// BenchmarkReader is parsing throughput (b.SetBytes: MB/s) of the two
// formats through the streaming Reader.
func BenchmarkReader(b *testing.B) {
	for _, f := range []Format{FormatCombined, FormatJSON} {
		data := genLog(20000, f)
		b.Run(f.String(), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for range b.N {
				rd, err := NewReader(bytes.NewReader(data))
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for {
					_, err := rd.Next()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					n++
				}
				if n != 20000 {
					b.Fatalf("%d entries", n)
				}
			}
		})
	}
}
