package h2guard

import (
	"bytes"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

func defaultConfig(t testing.TB, mod func(*Config)) *Config {
	var c Config
	if mod != nil {
		mod(&c)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return &c
}

// fixed returns a clock stopped at ns.
func fixed(ns int64) *clock { return &clock{ns: ns, ok: true} }

type ev struct {
	at time.Duration
	fh frameHeader
}

func hdrs(stream uint32, flags uint8, n int) frameHeader {
	return frameHeader{Type: frameHeaders, Flags: flags, StreamID: stream, Length: uint32(n)}
}
func rst(stream uint32) frameHeader {
	return frameHeader{Type: frameRSTStream, StreamID: stream, Length: 4, ErrCode: uint32(http2.ErrCodeCancel)}
}
func cont(stream uint32, flags uint8, n int) frameHeader {
	return frameHeader{Type: frameContinuation, Flags: flags, StreamID: stream, Length: uint32(n)}
}

// rapidReset returns n HEADERS+RST_STREAM pairs spaced by gap.
func rapidReset(n int, gap time.Duration) []ev {
	var out []ev
	for i := range n {
		id := uint32(2*i + 1)
		at := time.Duration(i) * gap
		out = append(out, ev{at, hdrs(id, flagEndHeaders|flagEndStream, 20)}, ev{at, rst(id)})
	}
	return out
}

func repeat(n int, gap time.Duration, fh frameHeader) []ev {
	var out []ev
	for i := range n {
		out = append(out, ev{time.Duration(i) * gap, fh})
	}
	return out
}

func TestClientAccounting(t *testing.T) {
	cases := []struct {
		name   string
		mod    func(*Config)
		events []ev
		want   Reason
		wantAt int // index of the event that trips; -1 for none
	}{
		{"100 resets in window pass", nil, rapidReset(100, time.Millisecond), "", -1},
		{"101st reset trips", nil, rapidReset(101, time.Millisecond), ReasonRapidReset, 201},
		{"slow resets pass", nil, rapidReset(1000, 200*time.Millisecond), "", -1},
		{"resets disabled", func(c *Config) { c.MaxClientResets = -1 }, rapidReset(500, 0), "", -1},
		{"reset of unopened stream not counted", nil, repeat(500, 0, rst(101)), "", -1},
		{"reset of even stream not counted", nil, append(rapidReset(1, 0), repeat(500, 0, rst(2))...), "", -1},
		{"reset ratio", func(c *Config) { c.MaxResetRatio = 0.5; c.MinResetsForRatio = 10 }, rapidReset(10, time.Millisecond), ReasonResetRatio, 19},
		{"reset ratio below minimum", func(c *Config) { c.MaxResetRatio = 0.5; c.MinResetsForRatio = 20 }, rapidReset(10, time.Millisecond), "", -1},
		{"32 continuations pass", nil, append([]ev{{0, hdrs(1, 0, 10)}}, append(repeat(31, 0, cont(1, 0, 10)), ev{0, cont(1, flagEndHeaders, 10)})...), "", -1},
		{"33rd continuation trips", nil, append([]ev{{0, hdrs(1, 0, 10)}}, repeat(40, 0, cont(1, 0, 10))...), ReasonContinuationFlood, 33},
		{"continuation count is per block", nil, func() []ev {
			var out []ev
			for i := range 10 {
				out = append(out, ev{0, hdrs(uint32(2*i+1), 0, 10)})
				out = append(out, repeat(20, 0, cont(uint32(2*i+1), 0, 10))...)
				out = append(out, ev{0, cont(uint32(2*i+1), flagEndHeaders, 10)})
			}
			return out
		}(), "", -1},
		{"header block bytes", nil, append([]ev{{0, hdrs(1, 0, 16384)}}, repeat(5, 0, cont(1, 0, 16384))...), ReasonHeaderBlockSize, 4},
		{"oversized single headers frame", func(c *Config) { c.MaxHeaderBlockBytes = 1000 }, []ev{{0, hdrs(1, flagEndHeaders, 1001)}}, ReasonHeaderBlockSize, 0},
		{"stray continuation ignored", nil, repeat(100, 0, cont(1, 0, 10)), "", -1},
		{"ping flood", nil, repeat(200, time.Millisecond, frameHeader{Type: framePing, Length: 8}), ReasonPingFlood, 100},
		{"ping acks not counted", nil, repeat(200, 0, frameHeader{Type: framePing, Flags: flagACK, Length: 8}), "", -1},
		{"settings flood", nil, repeat(200, 0, frameHeader{Type: frameSettings, Length: 6}), ReasonSettingsFlood, 100},
		{"settings acks not counted", nil, repeat(200, 0, frameHeader{Type: frameSettings, Flags: flagACK}), "", -1},
		{"empty data flood", nil, repeat(200, 0, frameHeader{Type: frameData, StreamID: 1}), ReasonEmptyDataFlood, 100},
		{"empty data with END_STREAM not counted", nil, repeat(200, 0, frameHeader{Type: frameData, StreamID: 1, Flags: flagEndStream}), "", -1},
		{"data with payload not counted", nil, repeat(200, 0, frameHeader{Type: frameData, StreamID: 1, Length: 1}), "", -1},
		{"ping budget configurable", func(c *Config) { c.MaxPings = 5 }, repeat(10, 0, frameHeader{Type: framePing, Length: 8}), ReasonPingFlood, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaultConfig(t, tc.mod)
			var a clientAcct
			got, at := Reason(""), -1
			for i, e := range tc.events {
				if r := a.frame(cfg, fixed(int64(e.at)), e.fh); r != "" {
					got, at = r, i
					break
				}
			}
			if got != tc.want || at != tc.wantAt {
				t.Fatalf("tripped %q at event %d, want %q at %d", got, at, tc.want, tc.wantAt)
			}
		})
	}
}

func TestServerAccounting(t *testing.T) {
	cfg := defaultConfig(t, nil)
	var a serverAcct
	for i := range 100 {
		if r := a.frame(cfg, fixed(int64(i)*int64(time.Millisecond)), rst(uint32(2*i+1))); r != "" {
			t.Fatalf("tripped at %d", i)
		}
		if r := a.frame(cfg, fixed(0), frameHeader{Type: frameData, StreamID: 1}); r != "" {
			t.Fatal("non-RST frame counted")
		}
	}
	if r := a.frame(cfg, fixed(int64(time.Second)), rst(999)); r != ReasonServerResets {
		t.Fatalf("101st server reset: %q", r)
	}
	var noErr serverAcct
	for i := range 1000 {
		fh := rst(uint32(2*i + 1))
		fh.ErrCode = 0
		if r := noErr.frame(cfg, fixed(0), fh); r != "" {
			t.Fatalf("RST_STREAM(NO_ERROR) counted, tripped at %d", i)
		}
	}
	var slow serverAcct
	for i := range 1000 {
		if r := slow.frame(cfg, fixed(int64(i)*int64(200*time.Millisecond)), rst(1)); r != "" {
			t.Fatalf("5 resets/s tripped at %d", i)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []func(*Config){
		func(c *Config) { c.Window = time.Millisecond },
		func(c *Config) { c.MaxResetRatio = 1.5 },
		func(c *Config) { c.CloseGrace = -time.Second },
		func(c *Config) { c.MinResetsForRatio = -1 },
		func(c *Config) { c.Server.MaxReadFrameSize = 1000 },
		func(c *Config) { c.Server.MaxHeaderBytes = 100 },
		func(c *Config) { c.Server.MaxUploadBufferPerConnection = 100 },
		func(c *Config) { c.Server.IdleTimeout = -1 },
	}
	for i, mod := range bad {
		var c Config
		mod(&c)
		if _, err := New(c, Deps{}); err == nil {
			t.Errorf("case %d: New accepted %+v", i, c)
		}
	}
	g, err := New(Config{}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	c := g.Config()
	if c.Window != 10*time.Second || c.MaxClientResets != 100 || c.MaxContinuationFrames != 32 ||
		c.MaxHeaderBlockBytes != 65536 || c.MaxServerResets != 100 || c.Server.MaxConcurrentStreams != 100 {
		t.Fatalf("defaults: %+v", c)
	}
	s := ServerConfig(Config{})
	if s.MaxConcurrentStreams != 100 || s.MaxDecoderHeaderTableSize != 4096 || s.MaxEncoderHeaderTableSize != 4096 ||
		s.MaxReadFrameSize != 16384 || s.MaxUploadBufferPerConnection != 1<<20 || s.IdleTimeout != 120*time.Second {
		t.Fatalf("ServerConfig: %+v", s)
	}
	if b := BaseConfig(Config{}); b.MaxHeaderBytes != 65536 {
		t.Fatalf("BaseConfig: %+v", b)
	}
}

// FuzzParse feeds arbitrary bytes, split into chunks chosen by the fuzzer,
// through the client scanner and accounting. Chunking must never change
// which frames are seen or which budget trips.
func FuzzParse(f *testing.F) {
	stream, _ := testStream(f)
	f.Add(stream, []byte{1, 9, 3})
	f.Add([]byte(clientPreface), []byte{24})
	var buf bytes.Buffer
	buf.WriteString(clientPreface)
	fr := http2.NewFramer(&buf, nil)
	for i := range 120 {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: []byte{0x82}, EndHeaders: true})
		fr.WriteRSTStream(uint32(2*i+1), http2.ErrCodeCancel)
	}
	f.Add(buf.Bytes(), []byte{7, 200, 1})
	cfg := defaultConfig(f, nil)
	f.Fuzz(func(t *testing.T, data []byte, cuts []byte) {
		type result struct {
			frames []frameHeader
			reason Reason
			at     int
		}
		run := func(chunked bool) result {
			s := newClientScanner()
			var a clientAcct
			res := result{at: -1}
			p, ci := data, 0
			for len(p) > 0 {
				n := len(p)
				if chunked && len(cuts) > 0 {
					n = min(n, int(cuts[ci%len(cuts)])+1)
					ci++
				}
				chunk := p[:n]
				p = p[n:]
				for len(chunk) > 0 {
					k, fh, ok := s.next(chunk)
					if k <= 0 || k > len(chunk) {
						t.Fatalf("next consumed %d of %d", k, len(chunk))
					}
					chunk = chunk[k:]
					if !ok {
						continue
					}
					res.frames = append(res.frames, fh)
					// A deterministic clock: one millisecond per frame.
					if r := a.frame(cfg, fixed(int64(len(res.frames))*int64(time.Millisecond)), fh); r != "" && res.reason == "" {
						res.reason, res.at = r, len(res.frames)
					}
				}
			}
			if s.consumed != uint64(len(data)) {
				t.Fatalf("consumed %d of %d bytes", s.consumed, len(data))
			}
			return res
		}
		whole, chunked := run(false), run(true)
		if !equalHeaders(whole.frames, chunked.frames) || whole.reason != chunked.reason || whole.at != chunked.at {
			t.Fatalf("chunking changed the result: whole %d frames %q@%d, chunked %d frames %q@%d",
				len(whole.frames), whole.reason, whole.at, len(chunked.frames), chunked.reason, chunked.at)
		}
	})
}
