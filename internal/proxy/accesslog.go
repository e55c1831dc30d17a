package proxy

import (
	"bufio"
	"io"
	"sync"
	"time"

	"github.com/levee-dev/levee/internal/accesslog"
)

// AccessLog writes one JSON object per request, formatted by
// internal/accesslog.AppendJSON: the format `levee analyze` reads. Lines
// are formatted without reflection into a pooled buffer and written
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

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Write formats and writes one entry, in internal/accesslog's JSON format.
func (l *AccessLog) Write(e *accesslog.Entry) {
	bp := bufPool.Get().(*[]byte)
	b := accesslog.AppendJSON((*bp)[:0], e)
	l.mu.Lock()
	_, _ = l.w.Write(b)
	l.mu.Unlock()
	*bp = b
	bufPool.Put(bp)
}
