package proxy

import (
	"bufio"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// AccessLog writes one JSON object per request, in the format that
// `levee analyze` reads (internal/accesslog):
//
//	{"ts":"2026-11-29T05:00:00.123456789Z","site":"shop","client":"203.0.113.7",
//	 "method":"GET","host":"shop.example.com","path":"/cart","query":"id=1",
//	 "status":200,"bytes":512,"duration_ms":1.234,"ua":"Mozilla/5.0 ...","verdict":"pass"}
//
// Lines are formatted without reflection into a pooled buffer and written
// through a buffer flushed every second, so logging costs the request path
// one short critical section. It is safe for concurrent use.
type AccessLog struct {
	mu   sync.Mutex
	w    *bufio.Writer
	c    io.Closer
	stop chan struct{}
	done chan struct{}
}

// NewAccessLog returns an access log writing to w (closed by Close if it is
// an io.Closer other than os.Stdout/os.Stderr, as decided by the caller via
// closer, which may be nil).
func NewAccessLog(w io.Writer, closer io.Closer) *AccessLog {
	l := &AccessLog{w: bufio.NewWriterSize(w, 64<<10), c: closer, stop: make(chan struct{}), done: make(chan struct{})}
	go l.flusher()
	return l
}

func (l *AccessLog) flusher() {
	defer close(l.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			_ = l.w.Flush()
			l.mu.Unlock()
		}
	}
}

// Close flushes and closes the log.
func (l *AccessLog) Close() error {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.w.Flush()
	if l.c != nil {
		if cerr := l.c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Entry is one access log line.
type Entry struct {
	Time     time.Time
	Site     string
	Client   []byte // textual address
	Method   []byte
	Host     []byte
	Path     []byte
	Query    []byte
	Status   int
	Bytes    int64
	Duration time.Duration
	UA       []byte
	Verdict  string
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Write formats and writes one entry.
func (l *AccessLog) Write(e *Entry) {
	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, `{"ts":"`...)
	b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","site":`...)
	b = appendJSONString(b, []byte(e.Site))
	b = append(b, `,"client":`...)
	b = appendJSONString(b, e.Client)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, e.Method)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, e.Host)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, e.Path)
	b = append(b, `,"query":`...)
	b = appendJSONString(b, e.Query)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(e.Duration.Microseconds())/1000, 'f', 3, 64)
	b = append(b, `,"ua":`...)
	b = appendJSONString(b, e.UA)
	b = append(b, `,"verdict":`...)
	b = appendJSONString(b, []byte(e.Verdict))
	b = append(b, "}\n"...)
	l.mu.Lock()
	_, _ = l.w.Write(b)
	l.mu.Unlock()
	*bp = b
	bufPool.Put(bp)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaping control characters,
// quotes, backslashes and invalid UTF-8 (as U+FFFD). Client-controlled bytes
// can therefore never break the line format.
func appendJSONString(b, s []byte) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
