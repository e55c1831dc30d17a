package shield

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// series is one metric of a gathered family, reduced to what the tests
// look at.
type series struct {
	labels map[string]string
	value  float64 // counter or gauge value; histogram sample sum
	count  uint64  // histogram sample count
}

// gatherFamily gathers the shield's registry and returns the series of the
// family name, and whether the family is there.
func gatherFamily(t *testing.T, s *Shield, name string) ([]series, bool) {
	t.Helper()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var out []series
		for _, m := range mf.GetMetric() {
			se := series{labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				se.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				se.value = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				se.value = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				se.value = m.GetHistogram().GetSampleSum()
				se.count = m.GetHistogram().GetSampleCount()
			}
			out = append(out, se)
		}
		return out, true
	}
	return nil, false
}

// matches reports whether se carries every label of want.
func (se series) matches(want map[string]string) bool {
	for k, v := range want {
		if got, ok := se.labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// metricValue is the value of the counter or gauge name summed over the
// series whose labels include want, and whether any matched.
func metricValue(t *testing.T, s *Shield, name string, want map[string]string) (float64, bool) {
	t.Helper()
	ss, _ := gatherFamily(t, s, name)
	var v float64
	found := false
	for _, se := range ss {
		if se.matches(want) {
			v += se.value
			found = true
		}
	}
	return v, found
}

// abuseCount is levee_h2guard_abuse_total{reason}.
func abuseCount(t *testing.T, s *Shield, reason string) float64 {
	t.Helper()
	v, _ := metricValue(t, s, "levee_h2guard_abuse_total", map[string]string{"reason": reason})
	return v
}

// seriesOf lists the label sets and values of a family, for failure
// messages.
func seriesOf(t *testing.T, s *Shield, name string) string {
	t.Helper()
	ss, ok := gatherFamily(t, s, name)
	if !ok {
		return name + " (absent)"
	}
	var out []string
	for _, se := range ss {
		var ls []string
		for k, v := range se.labels {
			ls = append(ls, k+"="+v)
		}
		sort.Strings(ls)
		out = append(out, fmt.Sprintf("{%s} %v", strings.Join(ls, ","), se.value))
	}
	sort.Strings(out)
	return name + " " + strings.Join(out, " ")
}

// rawH2 is a hand-driven HTTP/2 client (TLS, ALPN h2) that can write
// frames no well-behaved client would, and records what the server sends.
type rawH2 struct {
	conn    *tls.Conn
	fr      *http2.Framer
	wmu     sync.Mutex
	enc     *hpack.Encoder
	encBuf  strings.Builder
	settled chan struct{}
	done    chan struct{} // closed when the read loop ends

	// Set by the read loop; read after done is closed.
	goAway    *http2.GoAwayFrame
	readErr   error
	serverRST int
}

// dialRawH2 connects from src to addr, sends the preface and SETTINGS and
// waits for the server's SETTINGS (acknowledged), so that no ACK can land
// between a HEADERS frame and its CONTINUATION frames later.
func dialRawH2(t *testing.T, src, addr, sni string) *rawH2 {
	t.Helper()
	d := &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q, want h2", p)
	}
	c := &rawH2{conn: conn, fr: http2.NewFramer(conn, conn), settled: make(chan struct{}), done: make(chan struct{})}
	c.fr.AllowIllegalWrites = true
	c.enc = hpack.NewEncoder(&c.encBuf)
	conn.SetDeadline(time.Now().Add(15 * time.Second)) // hard bound on the whole attack
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go c.readLoop()
	select {
	case <-c.settled:
	case <-time.After(5 * time.Second):
		t.Fatal("no SETTINGS from the shield")
	}
	return c
}

func (c *rawH2) readLoop() {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.readErr = err
			return
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			if c.goAway == nil {
				c.goAway = &http2.GoAwayFrame{FrameHeader: f.FrameHeader, LastStreamID: f.LastStreamID, ErrCode: f.ErrCode}
			}
		case *http2.RSTStreamFrame:
			c.serverRST++
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.write(c.fr.WriteSettingsAck)
				select {
				case <-c.settled:
				default:
					close(c.settled)
				}
			}
		}
	}
}

// headerBlock HPACK-encodes a GET of path for authority, with extra
// name/value pairs.
func (c *rawH2) headerBlock(authority, path string, extra ...string) []byte {
	c.encBuf.Reset()
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", authority}, {":path", path}} {
		c.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	for i := 0; i+1 < len(extra); i += 2 {
		c.enc.WriteField(hpack.HeaderField{Name: extra[i], Value: extra[i+1], Sensitive: true})
	}
	return []byte(c.encBuf.String())
}

// write runs fn under the write lock and reports whether it succeeded.
func (c *rawH2) write(fn func() error) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return fn() == nil
}

// closed reports whether the read loop has ended (the server closed).
func (c *rawH2) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// waitCutOff waits for the server to end the connection and fails unless
// it sent GOAWAY(ENHANCE_YOUR_CALM) first.
func (c *rawH2) waitCutOff(t *testing.T, what string) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(8 * time.Second):
		t.Fatalf("%s: connection not closed by the shield within 8s", what)
	}
	if c.goAway == nil {
		t.Fatalf("%s: connection closed without GOAWAY (read error %v)", what, c.readErr)
	}
	if c.goAway.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("%s: GOAWAY %v, want ENHANCE_YOUR_CALM", what, c.goAway.ErrCode)
	}
	var ne net.Error
	if errors.As(c.readErr, &ne) && ne.Timeout() {
		t.Fatalf("%s: GOAWAY received but the connection was not closed", what)
	}
}
