package accesslog

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
)

// MaxLine is the longest line the reader parses; longer lines are skipped
// and counted as malformed.
const MaxLine = 64 << 10

// Reader streams entries from a log. Not safe for concurrent use. The zero
// value is not usable; call NewReader.
type Reader struct {
	br        *bufio.Reader
	gz        *gzip.Reader
	e         Entry
	scratch   []byte
	lines     int64
	malformed int64
	bytes     int64
}

// NewReader reads r, decompressing it when it starts with the gzip magic
// bytes (concatenated gzip members, as logrotate writes, are read through).
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, MaxLine)
	rd := &Reader{scratch: make([]byte, MaxLine)}
	magic, err := br.Peek(2)
	if err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("accesslog: gzip header: %w", err)
		}
		rd.gz = gz
		br = bufio.NewReaderSize(gz, MaxLine)
	}
	rd.br = br
	return rd, nil
}

// Next returns the next well-formed entry, skipping empty and malformed
// lines. It returns io.EOF at the end, or the read (or decompression) error.
// The entry and its byte slices are valid until the next call.
func (r *Reader) Next() (*Entry, error) {
	for {
		line, err := r.br.ReadSlice('\n')
		r.bytes += int64(len(line))
		if errors.Is(err, bufio.ErrBufferFull) {
			// Too long: skip the rest of the line.
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = r.br.ReadSlice('\n')
				r.bytes += int64(len(line))
			}
			r.lines++
			r.malformed++
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("accesslog: line %d: %w", r.lines, err)
			}
			if err != nil {
				return nil, io.EOF
			}
			continue
		}
		if len(line) > 0 {
			r.lines++
			if line[len(line)-1] == '\n' {
				line = line[:len(line)-1]
			}
			if len(trimSpace(line)) == 0 {
				// blank line: neither an entry nor malformed
			} else if perr := ParseLine(line, &r.e, r.scratch); perr == nil {
				return &r.e, nil
			} else {
				r.malformed++
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("accesslog: line %d: %w", r.lines+1, err)
		}
	}
}

// Bytes is the number of (decompressed) bytes read so far.
func (r *Reader) Bytes() int64 { return r.bytes }

// Lines is the number of lines read so far; Malformed how many of them were
// skipped as unparseable.
func (r *Reader) Lines() int64     { return r.lines }
func (r *Reader) Malformed() int64 { return r.malformed }
