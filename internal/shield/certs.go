package shield

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/levee-dev/levee/internal/config"
)

// certStore selects a certificate by SNI: exact name, then wildcard, then
// the first certificate.
type certStore struct {
	all    []*tls.Certificate
	byName map[string]*tls.Certificate
}

func loadCerts(pairs []config.Certificate) (*certStore, error) {
	cs := &certStore{byName: map[string]*tls.Certificate{}}
	for _, p := range pairs {
		c, err := tls.LoadX509KeyPair(p.Cert, p.Key)
		if err != nil {
			return nil, fmt.Errorf("tls: load certificate %s / key %s: %w", p.Cert, p.Key, err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("tls: parse certificate %s: %w", p.Cert, err)
		}
		c.Leaf = leaf
		cs.all = append(cs.all, &c)
		names := leaf.DNSNames
		if len(names) == 0 && leaf.Subject.CommonName != "" {
			names = []string{leaf.Subject.CommonName}
		}
		for _, n := range names {
			n = strings.ToLower(n)
			if _, dup := cs.byName[n]; !dup {
				cs.byName[n] = &c
			}
		}
	}
	return cs, nil
}

func (cs *certStore) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if c, ok := cs.byName[name]; ok {
		return c, nil
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c, ok := cs.byName["*"+name[i:]]; ok {
			return c, nil
		}
	}
	return cs.all[0], nil
}
