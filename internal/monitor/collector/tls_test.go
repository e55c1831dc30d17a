package collector

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/levee-dev/levee/internal/monitor/agent"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "levee-monitor-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// TestTLSCollectorAndAgent serves the collector over HTTPS and connects an
// agent that trusts the collector's private CA.
func TestTLSCollectorAndAgent(t *testing.T) {
	o := startOrigin(t, "")
	dir := t.TempDir()
	certFile, _ := selfSigned(t, dir)
	cfg := config(dir+"/data", "", "tcp", o.addr, 100*time.Millisecond, 80*time.Millisecond, "a1") +
		"tls: {cert_file: cert.pem, key_file: key.pem}\n"
	h := startCollector(t, dir, "", cfg, "a1")
	base := "https://" + h.addr

	// A client that does not trust the certificate cannot talk to it.
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatalf("https collector accepted a client without its CA")
	}
	a, err := agent.New(agent.Config{Collector: base, Token: agentTokenPrefix + "a1", Name: "a1",
		DataDir: filepath.Join(dir, "agent"), CAFile: certFile, SendEvery: 50 * time.Millisecond},
		agent.Deps{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done; a.Close() }()
	waitFor(t, 10*time.Second, "agent results over https", func() bool {
		rs, _ := h.c.Store().Results(context.Background(), "site", time.Now().Add(-time.Hour), time.Now().Add(time.Minute), 100)
		return countVantage(rs, "a1") >= 3
	})
	if _, err := agent.New(agent.Config{Collector: base, Token: "x", Name: "a1", DataDir: t.TempDir(), CAFile: filepath.Join(dir, "a1.token")}, agent.Deps{}); err == nil {
		t.Errorf("agent accepted a CA file without certificates")
	}
}
