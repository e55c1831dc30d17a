package h2guard

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	"golang.org/x/net/http2"
)

// ServerSettings are the HTTP/2 server limits recommended for the shield.
// Zero fields take the defaults listed, so the zero value is the
// recommendation. It is a plain value.
type ServerSettings struct {
	// MaxConcurrentStreams per connection. Default 100.
	MaxConcurrentStreams uint32 `yaml:"max_concurrent_streams"`
	// MaxDecoderHeaderTableSize is the HPACK table size the server
	// advertises for decoding client headers, in bytes. Default 4096.
	MaxDecoderHeaderTableSize uint32 `yaml:"max_decoder_header_table_size"`
	// MaxEncoderHeaderTableSize caps the HPACK table the server uses to
	// encode responses, in bytes. Default 4096.
	MaxEncoderHeaderTableSize uint32 `yaml:"max_encoder_header_table_size"`
	// MaxReadFrameSize is the largest frame payload the server accepts, in
	// bytes (16384..16777215). Default 16384.
	MaxReadFrameSize uint32 `yaml:"max_read_frame_size"`
	// MaxUploadBufferPerConnection is the connection flow-control window
	// for request bodies, in bytes. Default 1048576 (1 MiB).
	MaxUploadBufferPerConnection int32 `yaml:"max_upload_buffer_per_connection"`
	// MaxUploadBufferPerStream is the per-stream flow-control window for
	// request bodies, in bytes. Default 262144 (256 KiB).
	MaxUploadBufferPerStream int32 `yaml:"max_upload_buffer_per_stream"`
	// IdleTimeout closes a connection with no open streams after this
	// long. Default 120s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// ReadIdleTimeout sends a PING after this long without frames from
	// the client; PingTimeout closes the connection if the PING is not
	// answered. Defaults 30s and 15s.
	ReadIdleTimeout time.Duration `yaml:"read_idle_timeout"`
	PingTimeout     time.Duration `yaml:"ping_timeout"`
	// WriteByteTimeout closes a connection whose client reads nothing for
	// this long while the server has data to write. Default 30s.
	WriteByteTimeout time.Duration `yaml:"write_byte_timeout"`
	// MaxHeaderBytes is http.Server.MaxHeaderBytes, from which the HTTP/2
	// server derives SETTINGS_MAX_HEADER_LIST_SIZE and its own decoded
	// header limit, in bytes. Default 65536.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
}

func (s *ServerSettings) setDefaults() {
	if s.MaxConcurrentStreams == 0 {
		s.MaxConcurrentStreams = 100
	}
	if s.MaxDecoderHeaderTableSize == 0 {
		s.MaxDecoderHeaderTableSize = 4096
	}
	if s.MaxEncoderHeaderTableSize == 0 {
		s.MaxEncoderHeaderTableSize = 4096
	}
	if s.MaxReadFrameSize == 0 {
		s.MaxReadFrameSize = 16 << 10
	}
	if s.MaxUploadBufferPerConnection == 0 {
		s.MaxUploadBufferPerConnection = 1 << 20
	}
	if s.MaxUploadBufferPerStream == 0 {
		s.MaxUploadBufferPerStream = 256 << 10
	}
	if s.IdleTimeout == 0 {
		s.IdleTimeout = 120 * time.Second
	}
	if s.ReadIdleTimeout == 0 {
		s.ReadIdleTimeout = 30 * time.Second
	}
	if s.PingTimeout == 0 {
		s.PingTimeout = 15 * time.Second
	}
	if s.WriteByteTimeout == 0 {
		s.WriteByteTimeout = 30 * time.Second
	}
	if s.MaxHeaderBytes == 0 {
		s.MaxHeaderBytes = 64 << 10
	}
}

func (s *ServerSettings) validate() error {
	if s.MaxReadFrameSize < 16<<10 || s.MaxReadFrameSize > 1<<24-1 {
		return fmt.Errorf("h2guard: server.max_read_frame_size %d: must be between 16384 and 16777215", s.MaxReadFrameSize)
	}
	if s.MaxUploadBufferPerConnection < 65535 || s.MaxUploadBufferPerStream < 1 {
		return fmt.Errorf("h2guard: server.max_upload_buffer_per_connection %d must be at least 65535 and max_upload_buffer_per_stream %d positive",
			s.MaxUploadBufferPerConnection, s.MaxUploadBufferPerStream)
	}
	if s.MaxHeaderBytes < 4096 {
		return fmt.Errorf("h2guard: server.max_header_bytes %d: must be at least 4096", s.MaxHeaderBytes)
	}
	if s.IdleTimeout < 0 || s.ReadIdleTimeout < 0 || s.PingTimeout < 0 || s.WriteByteTimeout < 0 {
		return fmt.Errorf("h2guard: server timeouts must not be negative")
	}
	return nil
}

// ServerConfig returns an http2.Server with the recommended limits of
// c.Server (defaults filled). The caller sets Handler-related fields as
// needed and passes BaseConfig(c) as ServeConnOpts.BaseConfig:
//
//	srv := h2guard.ServerConfig(cfg)
//	srv.ServeConn(g.Wrap(tlsConn), &http2.ServeConnOpts{Handler: h, BaseConfig: h2guard.BaseConfig(cfg)})
func ServerConfig(c Config) *http2.Server {
	c.Server.setDefaults()
	s := c.Server
	return &http2.Server{
		MaxConcurrentStreams:         s.MaxConcurrentStreams,
		MaxDecoderHeaderTableSize:    s.MaxDecoderHeaderTableSize,
		MaxEncoderHeaderTableSize:    s.MaxEncoderHeaderTableSize,
		MaxReadFrameSize:             s.MaxReadFrameSize,
		MaxUploadBufferPerConnection: s.MaxUploadBufferPerConnection,
		MaxUploadBufferPerStream:     s.MaxUploadBufferPerStream,
		IdleTimeout:                  s.IdleTimeout,
		ReadIdleTimeout:              s.ReadIdleTimeout,
		PingTimeout:                  s.PingTimeout,
		WriteByteTimeout:             s.WriteByteTimeout,
	}
}

// BaseConfig returns the http.Server whose MaxHeaderBytes the HTTP/2
// server uses for its header list limit. Pass it as
// http2.ServeConnOpts.BaseConfig.
//
// Its ErrorLog discards: x/net/http2 logs one line per connection it ends
// with a connection error, which under attack is one line per attacking
// connection. The Guard logs its cut-offs rate-limited and counts them in
// metrics; set ErrorLog on the result to see the server's own messages.
func BaseConfig(c Config) *http.Server {
	c.Server.setDefaults()
	return &http.Server{
		MaxHeaderBytes: c.Server.MaxHeaderBytes,
		IdleTimeout:    c.Server.IdleTimeout,
		ErrorLog:       log.New(io.Discard, "", 0),
	}
}
