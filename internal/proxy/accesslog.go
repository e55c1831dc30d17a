package proxy

import (
	"bufio"
	"io"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/levee-dev/levee/internal/accesslog"
	"github.com/levee-dev/levee/internal/coarsetime"
)

// AccessLog writes one JSON object per request, formatted by
// internal/accesslog.AppendJSON: the format `levee analyze` reads. Lines
// are formatted without reflection into a pooled buffer and written
// through a buffer flushed every second, so logging costs the request path
// one short critical section. It is safe for concurrent use.
//
// Lines of requests the shield refused (blocked, limited, challenged,
// invalid, shed) can be capped per second (NewAccessLogCapped), so that a
// flood the shield turns away does not become a flood of log lines.
type AccessLog struct {
	mu        sync.Mutex
	w         *bufio.Writer
	c         io.Closer
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	maxRejected  int64         // refused-request lines per second; <= 0: all
	window       atomic.Int64  // Unix second the count below is for
	inWindow     atomic.Int64  // rejected-request lines in window
	suppressed   atomic.Int64  // lines not written since the last report
	onSuppressed func(n int64) // reports suppressed lines, once a second
}

// admitRejected counts a rejected request's line against the cap of the
// second sec (when the line is written); false means the line is left out.
// The window only moves forward, so a line stamped with an older second
// counts in the current one.
func (l *AccessLog) admitRejected(sec int64) bool {
	if w := l.window.Load(); sec > w && l.window.CompareAndSwap(w, sec) {
		l.inWindow.Store(0)
	}
	if l.inWindow.Add(1) <= l.maxRejected {
		return true
	}
	l.suppressed.Add(1)
	return false
}

// refusedVerdict reports whether v is one of the shield's refusals, whose
// lines the cap applies to: blocked, limited, dropped, tarpitted,
// challenged, invalid, shed. Passed requests and origin failures (502,
// 504) are always written.
func refusedVerdict(v verdictIdx) bool { return v != vPass && v != vError }

// report passes the lines left out since the last call to onSuppressed.
func (l *AccessLog) report() {
	if l.onSuppressed == nil {
		return
	}
	if n := l.suppressed.Swap(0); n > 0 {
		l.onSuppressed(n)
	}
}

// NewAccessLog returns an access log writing to w (closed by Close if it is
// an io.Closer other than os.Stdout/os.Stderr, as decided by the caller via
// closer, which may be nil).
func NewAccessLog(w io.Writer, closer io.Closer) *AccessLog {
	return NewAccessLogCapped(w, closer, 0, nil)
}

// NewAccessLogCapped is NewAccessLog with at most perSecond lines a second
// of refused requests (<= 0: no cap). Once a second, report (if not nil)
// receives the number of lines left out since its previous call.
func NewAccessLogCapped(w io.Writer, closer io.Closer, perSecond int64, report func(n int64)) *AccessLog {
	l := &AccessLog{w: bufio.NewWriterSize(w, 64<<10), c: closer, stop: make(chan struct{}), done: make(chan struct{}),
		maxRejected: perSecond, onSuppressed: report}
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
			l.report()
		}
	}
}

// Close flushes and closes the log; later calls do nothing and return
// nil.
func (l *AccessLog) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.stop)
		<-l.done
		l.report()
		l.mu.Lock()
		defer l.mu.Unlock()
		err = l.w.Flush()
		if l.c != nil {
			if cerr := l.c.Close(); err == nil {
				err = cerr
			}
		}
	})
	return err
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Write formats and writes one entry, in internal/accesslog's JSON format.
// refused marks a request the shield turned away (counted against the cap
// of NewAccessLogCapped); see refusedVerdict.
func (l *AccessLog) Write(e *accesslog.Entry, refused bool) {
	if l.maxRejected > 0 && refused && !l.admitRejected(coarsetime.UnixNano()/int64(time.Second)) {
		return
	}
	bp := bufPool.Get().(*[]byte)
	b := accesslog.AppendJSON((*bp)[:0], e)
	l.mu.Lock()
	_, _ = l.w.Write(b)
	l.mu.Unlock()
	*bp = b
	bufPool.Put(bp)
}

// readOnlyBytes views s as bytes without copying, for Entry fields that
// AppendJSON only reads.
func readOnlyBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// h2Log wraps the response writer of an HTTP/2 request while an access log
// is configured, and collects what its line records. The verdict is
// pass unless a reject path counts another (countH2).
type h2Log struct {
	http.ResponseWriter
	status     int
	headerAt   int64 // when the status was written (coarse Unix ns; duration_ms)
	bytes      int64
	site       *Site
	client     netip.Addr
	v          verdictIdx
	by, logged string
}

func (l *h2Log) WriteHeader(code int) {
	if l.status == 0 && code >= 200 {
		l.status, l.headerAt = code, coarsetime.UnixNano()
	}
	l.ResponseWriter.WriteHeader(code)
}

func (l *h2Log) Write(b []byte) (int, error) {
	if l.status == 0 {
		l.status, l.headerAt = http.StatusOK, coarsetime.UnixNano()
	}
	n, err := l.ResponseWriter.Write(b)
	l.bytes += int64(n)
	return n, err
}

// Flush passes on to the wrapped writer: streamed responses stay streamed.
func (l *h2Log) Flush() {
	if f, ok := l.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the wrapped writer (deadlines).
func (l *h2Log) Unwrap() http.ResponseWriter { return l.ResponseWriter }

// countH2 counts an HTTP/2 request's verdict in the site's metrics and,
// when w is an h2Log (access log on), records it for the request's line.
func countH2(w http.ResponseWriter, sm *siteMetrics, v verdictIdx, status int) {
	sm.count(v, status)
	if lw, ok := w.(*h2Log); ok {
		lw.v = v
	}
}

// logH2 writes the access log line of an HTTP/2 request, the same fields
// as logH1's: duration_ms runs to the response head, as on HTTP/1.1 (not
// to the end of the body); bytes counts the body bytes written (HTTP/1.1
// logs the Content-Length, 0 for a chunked body).
func (p *Proxy) logH2(l *AccessLog, lw *h2Log, r *http.Request, start time.Time) {
	end := lw.headerAt
	if end == 0 {
		end = coarsetime.UnixNano()
	}
	e := accesslog.Entry{
		Format: accesslog.FormatJSON, Time: start, Client: lw.client, Method: readOnlyBytes(r.Method),
		Host: readOnlyBytes(r.Host), Path: readOnlyBytes(r.URL.Path), Query: readOnlyBytes(r.URL.RawQuery),
		Status: uint16(lw.status), Bytes: lw.bytes, Duration: max(time.Duration(end-start.UnixNano()), 0),
		UserAgent: readOnlyBytes(r.UserAgent()), Verdict: telemetryVerdict[lw.v], HasVerdict: true,
		By: readOnlyBytes(lw.by), LogRule: readOnlyBytes(lw.logged),
	}
	if !e.Client.IsValid() {
		e.Client = peerFrom(r)
	}
	if lw.site != nil {
		e.Site = lw.site.name
	}
	if lw.v == vDrop || lw.v == vTarpit {
		e.Status = 0
	}
	l.Write(&e, refusedVerdict(lw.v))
}
