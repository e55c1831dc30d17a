package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/levee-dev/levee/internal/monitor/probe"
)

// ErrSpoolFull is returned by Append when the spool reached its size limit.
var ErrSpoolFull = errors.New("agent: spool full")

// Spool is an append-only JSON-lines buffer of results on disk with a
// persisted read offset. Results are appended as they are produced, read in
// order, and released only when the collector acknowledged them; when
// everything is acknowledged the file is truncated. A crash at any point
// loses nothing that was appended and may at worst resend a batch (the
// collector deduplicates by result id).
//
// Spool is safe for concurrent use. The zero Spool is not usable; use OpenSpool.
type Spool struct {
	mu      sync.Mutex
	f       *os.File
	path    string
	offPath string
	off     int64 // first unacknowledged byte
	size    int64
	max     int64
	// Corrupt counts lines that could not be decoded and were skipped.
	corrupt int
}

// OpenSpool opens or creates the spool in dir, holding at most max bytes
// (<= 0 means 64 MiB).
func OpenSpool(dir string, max int64) (*Spool, error) {
	if max <= 0 {
		max = 64 << 20
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("agent: create spool directory %s: %w", dir, err)
	}
	s := &Spool{path: filepath.Join(dir, "spool.jsonl"), offPath: filepath.Join(dir, "spool.offset"), max: max}
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent: open spool: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("agent: stat spool: %w", err)
	}
	s.f, s.size = f, fi.Size()
	if b, err := os.ReadFile(s.offPath); err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && v >= 0 && v <= s.size {
			s.off = v
		}
	}
	// A crash in the middle of an append can leave a partial last line:
	// cut it so the next append starts on a fresh line.
	if err := s.trimPartial(); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

func (s *Spool) trimPartial() error {
	if s.size == 0 {
		return nil
	}
	buf := make([]byte, 1)
	if _, err := s.f.ReadAt(buf, s.size-1); err != nil {
		return fmt.Errorf("agent: read spool: %w", err)
	}
	if buf[0] == '\n' {
		return nil
	}
	// Find the last newline.
	end := s.size
	chunk := make([]byte, 4096)
	for end > 0 {
		start := max(0, end-int64(len(chunk)))
		n, err := s.f.ReadAt(chunk[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("agent: read spool: %w", err)
		}
		if i := bytes.LastIndexByte(chunk[:n], '\n'); i >= 0 {
			end = start + int64(i) + 1
			break
		}
		end = start
	}
	if err := s.f.Truncate(end); err != nil {
		return fmt.Errorf("agent: trim spool: %w", err)
	}
	s.size = end
	s.off = min(s.off, end)
	return nil
}

// Append writes r at the end of the spool and syncs it to disk.
func (s *Spool) Append(r probe.Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("agent: encode result: %w", err)
	}
	b = append(b, '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.size-s.off+int64(len(b)) > s.max {
		return ErrSpoolFull
	}
	if _, err := s.f.WriteAt(b, s.size); err != nil {
		return fmt.Errorf("agent: append to spool: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("agent: sync spool: %w", err)
	}
	s.size += int64(len(b))
	return nil
}

// Peek returns up to n unacknowledged results, oldest first, and the offset
// to pass to Ack once the collector confirmed them.
func (s *Spool) Peek(n int) ([]probe.Result, int64, error) {
	s.mu.Lock()
	off, size := s.off, s.size
	s.mu.Unlock()
	if off >= size {
		return nil, off, nil
	}
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, off, size-off), 64<<10)
	var out []probe.Result
	end := off
	for len(out) < n {
		line, err := r.ReadBytes('\n')
		if len(line) == 0 || line[len(line)-1] != '\n' {
			break // end of data (appends are whole lines)
		}
		end += int64(len(line))
		var res probe.Result
		if jerr := json.Unmarshal(line, &res); jerr != nil {
			s.mu.Lock()
			s.corrupt++
			s.mu.Unlock()
			continue
		}
		out = append(out, res)
		if err != nil {
			break
		}
	}
	return out, end, nil
}

// Ack releases everything before end. When the whole spool is released the
// file is truncated to zero.
func (s *Spool) Ack(end int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if end <= s.off || end > s.size {
		return nil
	}
	s.off = end
	if s.off == s.size {
		if err := s.f.Truncate(0); err != nil {
			return fmt.Errorf("agent: truncate spool: %w", err)
		}
		s.off, s.size = 0, 0
	}
	return s.writeOffset()
}

func (s *Spool) writeOffset() error {
	tmp := s.offPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(s.off, 10)), 0o600); err != nil {
		return fmt.Errorf("agent: write spool offset: %w", err)
	}
	if err := os.Rename(tmp, s.offPath); err != nil {
		return fmt.Errorf("agent: write spool offset: %w", err)
	}
	return nil
}

// Pending is the number of unacknowledged bytes.
func (s *Spool) Pending() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size - s.off
}

// Corrupt is the number of undecodable lines skipped so far.
func (s *Spool) Corrupt() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.corrupt
}

// Close closes the spool file.
func (s *Spool) Close() error { return s.f.Close() }
