package h2guard

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// testStream builds a client byte stream (preface and frames) and the frame
// headers a scanner must report for it.
func testStream(t testing.TB) ([]byte, []frameHeader) {
	var buf bytes.Buffer
	buf.WriteString(clientPreface)
	fr := http2.NewFramer(&buf, nil)
	fr.AllowIllegalWrites = true
	var want []frameHeader
	add := func(typ, flags uint8, stream uint32, length int) {
		want = append(want, frameHeader{Length: uint32(length), Type: typ, Flags: flags, StreamID: stream})
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}))
	add(frameSettings, 0, 0, 6)
	must(fr.WriteSettingsAck())
	add(frameSettings, flagACK, 0, 0)
	must(fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte("abc"), EndHeaders: true, EndStream: true}))
	add(frameHeaders, flagEndHeaders|flagEndStream, 1, 3)
	must(fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: []byte("hdr")}))
	add(frameHeaders, 0, 3, 3)
	must(fr.WriteContinuation(3, false, []byte("more")))
	add(frameContinuation, 0, 3, 4)
	must(fr.WriteContinuation(3, true, []byte("end")))
	add(frameContinuation, flagEndHeaders, 3, 3)
	must(fr.WriteData(3, false, bytes.Repeat([]byte("d"), 300)))
	add(frameData, 0, 3, 300)
	must(fr.WriteData(3, false, nil))
	add(frameData, 0, 3, 0)
	must(fr.WriteRSTStream(3, http2.ErrCodeCancel))
	add(frameRSTStream, 0, 3, 4)
	want[len(want)-1].ErrCode = uint32(http2.ErrCodeCancel)
	must(fr.WriteRawFrame(frameRSTStream, 0, 5, []byte{0, 0, 0, 1, 2}))
	add(frameRSTStream, 0, 5, 5) // invalid length: reported at once, no code
	must(fr.WriteRSTStream(7, http2.ErrCode(0x01020304)))
	add(frameRSTStream, 0, 7, 4)
	want[len(want)-1].ErrCode = 0x01020304
	must(fr.WritePing(false, [8]byte{1}))
	add(framePing, 0, 0, 8)
	must(fr.WriteWindowUpdate(5, 0))
	add(0x8, 0, 5, 4)
	must(fr.WriteRawFrame(0xFA, 0xFF, 0x7FFFFFFF, []byte("unknown frame type")))
	add(0xFA, 0xFF, 0x7FFFFFFF, 18)
	must(fr.WriteGoAway(3, http2.ErrCodeNo, []byte("bye")))
	add(0x7, 0, 0, 11)
	return buf.Bytes(), want
}

func scanAll(s *scanner, chunks ...[]byte) []frameHeader {
	var got []frameHeader
	for _, p := range chunks {
		for len(p) > 0 {
			n, fh, ok := s.next(p)
			if n <= 0 {
				panic("scanner made no progress")
			}
			p = p[n:]
			if ok {
				got = append(got, fh)
			}
		}
	}
	return got
}

func equalHeaders(a, b []frameHeader) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestScannerWhole(t *testing.T) {
	stream, want := testStream(t)
	s := newClientScanner()
	if got := scanAll(&s, stream); !equalHeaders(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if s.consumed != uint64(len(stream)) || s.broken {
		t.Fatalf("consumed %d of %d, broken %v", s.consumed, len(stream), s.broken)
	}
}

// TestScannerSplitEverywhere feeds the stream in two pieces split at every
// byte offset, then one byte at a time.
func TestScannerSplitEverywhere(t *testing.T) {
	stream, want := testStream(t)
	for i := 0; i <= len(stream); i++ {
		s := newClientScanner()
		if got := scanAll(&s, stream[:i], stream[i:]); !equalHeaders(got, want) {
			t.Fatalf("split at %d: got %+v\nwant %+v", i, got, want)
		}
	}
	s := newClientScanner()
	var chunks [][]byte
	for i := range stream {
		chunks = append(chunks, stream[i:i+1])
	}
	if got := scanAll(&s, chunks...); !equalHeaders(got, want) {
		t.Fatalf("byte at a time: got %+v", got)
	}
	// Random splits into many pieces.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		s := newClientScanner()
		var chunks [][]byte
		for p := stream; len(p) > 0; {
			n := min(len(p), 1+rng.IntN(40))
			chunks, p = append(chunks, p[:n]), p[n:]
		}
		if got := scanAll(&s, chunks...); !equalHeaders(got, want) {
			t.Fatalf("random split: got %+v", got)
		}
	}
}

func TestScannerBadPreface(t *testing.T) {
	for _, in := range []string{"GET / HTTP/1.1\r\n\r\n", "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", strings.Repeat("\x00", 40)} {
		s := newClientScanner()
		if got := scanAll(&s, []byte(in[:5]), []byte(in[5:])); len(got) != 0 || !s.broken {
			t.Fatalf("%q: frames %v, broken %v", in, got, s.broken)
		}
	}
	// The server direction has no preface.
	var s scanner
	if got := scanAll(&s, []byte{0, 0, 0, frameSettings, 0, 0, 0, 0, 0}); len(got) != 1 || got[0].Type != frameSettings {
		t.Fatalf("server direction: %+v", got)
	}
}

func TestWindow(t *testing.T) {
	const sec = int64(time.Second)
	size := 10 * sec
	var w window
	for i := range 100 {
		if n := w.add(int64(i)*sec/10, size); n != uint64(i+1) {
			t.Fatalf("event %d: count %d", i, n)
		}
	}
	// At 15s, half of the first bucket (100 events) still overlaps.
	if n := w.count(15*sec, size); n != 50 {
		t.Fatalf("count at 15s = %d, want 50", n)
	}
	if n := w.add(15*sec, size); n != 51 {
		t.Fatalf("add at 15s = %d, want 51", n)
	}
	// Two windows later everything is forgotten.
	if n := w.count(40*sec, size); n != 0 {
		t.Fatalf("count at 40s = %d, want 0", n)
	}
	// A steady 5/s stays around 50 per 10s and never explodes.
	var s window
	var peak uint64
	for i := range 1000 {
		peak = max(peak, s.add(int64(i)*sec/5, size))
	}
	if peak < 50 || peak > 60 {
		t.Fatalf("steady 5/s peak estimate %d, want 50..60", peak)
	}
}
