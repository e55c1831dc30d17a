//go:build !linux || 386

package rawaccept

import (
	"errors"
	"net"
	"net/netip"
	"time"
)

const supported = false

type sys struct{}

func (l *Listener) init(*net.TCPListener) error { return errors.ErrUnsupported }

// Close does nothing on this platform.
func (l *Listener) Close() error { return nil }

// Accept is not supported on this platform (New reports false).
func (l *Listener) Accept(Admit, time.Duration) (net.Conn, netip.Addr, error) {
	return nil, netip.Addr{}, errors.ErrUnsupported
}

// Refused returns 0 on this platform.
func (l *Listener) Refused() int { return 0 }
