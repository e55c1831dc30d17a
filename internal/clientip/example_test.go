package clientip_test

import (
	"fmt"
	"log"
	"net/netip"

	"github.com/levee-dev/levee/internal/clientip"
)

func ExampleResolver_Resolve() {
	r, err := clientip.NewFromConfig(clientip.Config{Trusted: []string{"10.0.0.0/8"}})
	if err != nil {
		log.Fatal(err)
	}
	lb := netip.MustParseAddr("10.0.0.1")
	// The client sent "X-Forwarded-For: 6.6.6.6"; our load balancer appended
	// the address it saw.
	xff := []byte("6.6.6.6, 203.0.113.7")
	fmt.Println(r.Resolve(lb, xff, nil))
	// A client connecting directly cannot choose its address.
	fmt.Println(r.Resolve(netip.MustParseAddr("203.0.113.9"), xff, nil))
	// Output:
	// 203.0.113.7
	// 203.0.113.9
}
