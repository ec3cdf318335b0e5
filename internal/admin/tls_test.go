package admin

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petrelmq/petrel/internal/testlog"
	"github.com/petrelmq/petrel/internal/testpki"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/tlsconf"
)

// With a certificate the server speaks HTTPS only, the certificate from
// files as the MQTT listeners take theirs (tlsconf), client certificates
// required when asked; the token is required all the same.
func TestHTTPS(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "admins")
	server := ca.Server(t, 2)
	certFile, keyFile, caFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.crt")
	testpki.WriteFile(t, certFile, server.CertPEM)
	testpki.WriteFile(t, keyFile, server.KeyPEM)
	testpki.WriteFile(t, caFile, ca.PEM)
	r, err := tlsconf.New(tlsconf.Config{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile,
		ClientAuth: tlsconf.ClientAuthRequire, MinVersion: tls.VersionTLS13, Logger: testlog.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	f := start(t, func(c *Config) { c.TLS = r.TLSConfig() })
	f.base = strings.Replace(f.base, "http://", "https://", 1)

	admin := ca.Client(t, &x509.Certificate{})
	f.http = &http.Client{Timeout: wiretest.Timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: ca.Pool(), Certificates: []tls.Certificate{admin.TLS}}}}
	f.expect(http.StatusOK, "GET", "/api/v1/clients", nil, nil)
	if r := f.requestAuth("GET", "/api/v1/clients", nil, ""); r.status != http.StatusUnauthorized {
		t.Errorf("HTTPS without the token: %d, want 401", r.status)
	}

	// No client certificate: no handshake.
	anon := &http.Client{Timeout: wiretest.Timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	if resp, err := anon.Get(f.base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("HTTPS without a client certificate: %d, want a failed handshake", resp.StatusCode)
	}
	// Plain HTTP: refused.
	plain := &http.Client{Timeout: wiretest.Timeout}
	resp, err := plain.Get(strings.Replace(f.base, "https://", "http://", 1) + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP to the HTTPS server: %d", resp.StatusCode)
		}
	}
}
