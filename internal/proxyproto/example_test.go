package proxyproto_test

import (
	"bufio"
	"fmt"
	"log"
	"net"
	"strings"
	"time"

	"github.com/levee-dev/levee/internal/proxyproto"
)

func ExampleReadHeader() {
	r := bufio.NewReader(strings.NewReader("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\nGET / HTTP/1.1\r\n"))
	h, err := proxyproto.ReadHeader(r)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(h.Version, h.Protocol, h.Source, h.Dest, h.Proxied())
	// Output: 1 TCP4 192.0.2.1:56324 198.51.100.7:443 true
}

// serve shows where Accept sits in an accept loop: after the listener, before
// TLS. Malformed or missing headers close the connection.
func serve(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			pc, _, err := proxyproto.Accept(c, 5*time.Second)
			if err != nil {
				c.Close()
				return
			}
			handle(pc) // pc.RemoteAddr() is the real client
		}()
	}
}

func ExampleAccept() {
	_ = serve
}
