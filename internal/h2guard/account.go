package h2guard

import (
	"sync/atomic"
	"time"
)

// window is a sliding-window event counter approximated with two fixed
// buckets: the estimate is the current bucket's count plus the previous
// bucket's count weighted by how much of it still overlaps the window.
// Times are nanoseconds on the connection's monotonic clock.
//
// The zero value is an empty window. A window is not safe for concurrent
// use.
type window struct {
	start     int64 // start of the current bucket
	cur, prev uint32
	everAdded bool
}

// add records one event at now and returns the estimated number of events
// in the last size nanoseconds, including this one.
func (w *window) add(now, size int64) uint64 {
	w.advance(now, size)
	w.cur++
	return w.estimate(now, size)
}

// count returns the estimate at now without recording an event.
func (w *window) count(now, size int64) uint64 {
	w.advance(now, size)
	return w.estimate(now, size)
}

func (w *window) advance(now, size int64) {
	if !w.everAdded {
		w.everAdded = true
		w.start = now
		return
	}
	if now < w.start { // clock went backwards (not with monotonic time); stay put
		return
	}
	if d := now - w.start; d >= size {
		if d >= 2*size {
			w.prev = 0
		} else {
			w.prev = w.cur
		}
		w.cur = 0
		w.start = now - d%size
	}
}

func (w *window) estimate(now, size int64) uint64 {
	elapsed := max(now-w.start, 0)
	if elapsed > size {
		elapsed = size
	}
	return uint64(w.cur) + uint64(w.prev)*uint64(size-elapsed)/uint64(size)
}

// clientAcct accounts frames sent by the client. It is used only from the
// Read side of one connection.
type clientAcct struct {
	maxStream uint32 // highest client stream opened with HEADERS
	opened    window // streams opened
	resets    window // client RST_STREAM for streams it opened
	pings     window
	settings  window
	emptyData window

	inBlock    bool   // a header block without END_HEADERS is open
	contFrames int    // CONTINUATION frames in the open block
	blockBytes uint64 // bytes of the open block

	// Totals for the connection, read by Conn.Stats from any goroutine.
	streams, clientResets, continuations atomic.Uint64
}

// frame accounts one client frame and returns the reason the connection
// must be cut off, or "". The clock is read only for frames that are
// counted in a window.
func (a *clientAcct) frame(cfg *Config, clk *clock, fh frameHeader) Reason {
	size := int64(cfg.Window)
	switch fh.Type {
	case frameHeaders:
		if fh.StreamID&1 == 1 && fh.StreamID > a.maxStream {
			a.maxStream = fh.StreamID
			a.streams.Add(1)
			if cfg.MaxResetRatio > 0 {
				a.opened.add(clk.now(), size)
			}
		}
		a.inBlock = fh.Flags&flagEndHeaders == 0
		a.contFrames = 0
		a.blockBytes = uint64(fh.Length)
		if cfg.MaxHeaderBlockBytes > 0 && a.blockBytes > uint64(cfg.MaxHeaderBlockBytes) {
			return ReasonHeaderBlockSize
		}
	case frameContinuation:
		if !a.inBlock {
			return "" // the server rejects it as a protocol error
		}
		a.continuations.Add(1)
		a.contFrames++
		a.blockBytes += uint64(fh.Length)
		if fh.Flags&flagEndHeaders != 0 {
			a.inBlock = false
		}
		if cfg.MaxContinuationFrames > 0 && a.contFrames > cfg.MaxContinuationFrames {
			return ReasonContinuationFlood
		}
		if cfg.MaxHeaderBlockBytes > 0 && a.blockBytes > uint64(cfg.MaxHeaderBlockBytes) {
			return ReasonHeaderBlockSize
		}
	case frameRSTStream:
		// Only resets of streams the client opened: a reset of an idle
		// stream is a protocol error the server handles itself.
		if fh.StreamID == 0 || fh.StreamID&1 == 0 || fh.StreamID > a.maxStream {
			return ""
		}
		a.clientResets.Add(1)
		now := clk.now()
		n := a.resets.add(now, size)
		if cfg.MaxClientResets > 0 && n > uint64(cfg.MaxClientResets) {
			return ReasonRapidReset
		}
		if cfg.MaxResetRatio > 0 && n >= uint64(cfg.MinResetsForRatio) {
			if opened := a.opened.count(now, size); opened > 0 && float64(n) > cfg.MaxResetRatio*float64(opened) {
				return ReasonResetRatio
			}
		}
	case framePing:
		if fh.Flags&flagACK == 0 && cfg.MaxPings > 0 && a.pings.add(clk.now(), size) > uint64(cfg.MaxPings) {
			return ReasonPingFlood
		}
	case frameSettings:
		if fh.Flags&flagACK == 0 && cfg.MaxSettings > 0 && a.settings.add(clk.now(), size) > uint64(cfg.MaxSettings) {
			return ReasonSettingsFlood
		}
	case frameData:
		if fh.Length == 0 && fh.Flags&flagEndStream == 0 && cfg.MaxEmptyData > 0 &&
			a.emptyData.add(clk.now(), size) > uint64(cfg.MaxEmptyData) {
			return ReasonEmptyDataFlood
		}
	}
	return ""
}

// serverAcct accounts frames sent by the server. It is used only from the
// Write side of one connection.
type serverAcct struct {
	resets      window
	totalResets atomic.Uint64 // read by Conn.Stats from any goroutine
}

// frame accounts one server frame. RST_STREAM(NO_ERROR) is not counted:
// the server sends it when a handler finished before reading the whole
// request body (an early 403 or 413), which a client cannot use to make the
// server do work. Every other code (PROTOCOL_ERROR, FLOW_CONTROL_ERROR,
// STREAM_CLOSED, REFUSED_STREAM, ...) answers something the client did.
func (a *serverAcct) frame(cfg *Config, clk *clock, fh frameHeader) Reason {
	if fh.Type != frameRSTStream || fh.ErrCode == 0 {
		return ""
	}
	a.totalResets.Add(1)
	if cfg.MaxServerResets > 0 && a.resets.add(clk.now(), int64(cfg.Window)) > uint64(cfg.MaxServerResets) {
		return ReasonServerResets
	}
	return ""
}

// clock reads the time at most once per Read or Write, and only when a
// frame is counted in a window. Times are nanoseconds since start on the
// monotonic clock. A clock with ok set returns ns without reading the time
// (tests).
type clock struct {
	start time.Time
	ns    int64
	ok    bool
}

func (c *clock) now() int64 {
	if !c.ok {
		c.ns, c.ok = int64(time.Since(c.start)), true
	}
	return c.ns
}
