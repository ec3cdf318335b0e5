package clienttls

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petrelmq/petrel/internal/testpki"
)

// TestRootsFromFileAndDirectory: --cafile and the *.crt and *.pem files of
// --capath are trusted, and nothing else.
func TestRootsFromFileAndDirectory(t *testing.T) {
	dir, sub := t.TempDir(), t.TempDir()
	caA, caB, caC := testpki.NewCA(t, "A"), testpki.NewCA(t, "B"), testpki.NewCA(t, "C")
	testpki.WriteFile(t, filepath.Join(dir, "a.pem"), caA.PEM)
	testpki.WriteFile(t, filepath.Join(sub, "b.crt"), caB.PEM)
	testpki.WriteFile(t, filepath.Join(sub, "c.txt"), caC.PEM) // not a certificate's name
	cfg, err := Config(Options{CAFile: filepath.Join(dir, "a.pem"), CAPath: sub})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ca      *testpki.CA
		trusted bool
	}{{caA, true}, {caB, true}, {caC, false}} {
		leaf := tc.ca.Server(t, 2)
		_, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: cfg.RootCAs, DNSName: "localhost"})
		if (err == nil) != tc.trusted {
			t.Errorf("certificate of CA %s: verify error %v, want trusted %v", tc.ca.Cert.Subject.CommonName, err, tc.trusted)
		}
	}
}

func TestVersionALPNAndClientCertificate(t *testing.T) {
	dir := t.TempDir()
	leaf := testpki.NewCA(t, "CA").Client(t, &x509.Certificate{})
	cert, key := filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	testpki.WriteFile(t, cert, leaf.CertPEM)
	testpki.WriteFile(t, key, leaf.KeyPEM)
	cfg, err := Config(Options{CertFile: cert, KeyFile: key, Version: "TLSv1.2", ALPN: "mqtt"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || cfg.MaxVersion != tls.VersionTLS12 {
		t.Errorf("--tls-version tlsv1.2: versions %x to %x", cfg.MinVersion, cfg.MaxVersion)
	}
	if len(cfg.NextProtos) != 1 || cfg.NextProtos[0] != "mqtt" {
		t.Errorf("--tls-alpn mqtt: %q", cfg.NextProtos)
	}
	if len(cfg.Certificates) != 1 || cfg.RootCAs != nil || cfg.InsecureSkipVerify {
		t.Errorf("client certificate only: %d certificates, roots %v, insecure %v",
			len(cfg.Certificates), cfg.RootCAs, cfg.InsecureSkipVerify)
	}
}

// TestInsecureStillVerifiesTheChain: --insecure accepts a certificate for
// another host name, not one from an authority it does not trust.
func TestInsecureStillVerifiesTheChain(t *testing.T) {
	dir := t.TempDir()
	ca, other := testpki.NewCA(t, "CA"), testpki.NewCA(t, "other")
	testpki.WriteFile(t, filepath.Join(dir, "ca.crt"), ca.PEM)
	cfg, err := Config(Options{CAFile: filepath.Join(dir, "ca.crt"), Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.InsecureSkipVerify || cfg.VerifyConnection == nil {
		t.Fatal("--insecure: no chain check in place of crypto/tls's")
	}
	named := func(ca *testpki.CA) tls.ConnectionState {
		leaf := ca.Issue(t, &x509.Certificate{DNSNames: []string{"elsewhere.example"},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		return tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf.Cert}}
	}
	if err := cfg.VerifyConnection(named(ca)); err != nil {
		t.Errorf("trusted chain, other host name: %v", err)
	}
	if err := cfg.VerifyConnection(named(other)); err == nil {
		t.Error("untrusted chain accepted")
	}
	if err := cfg.VerifyConnection(tls.ConnectionState{}); err == nil {
		t.Error("no certificate accepted")
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.crt")
	testpki.WriteFile(t, notPEM, []byte("not a certificate"))
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{CertFile: "c.pem"}, "Both --cert and --key must be given."},
		{Options{KeyFile: "k.pem"}, "Both --cert and --key must be given."},
		{Options{Version: "tlsv1.0"}, "Unsupported TLS version tlsv1.0 (tlsv1.3, tlsv1.2 or tlsv1.1)."},
		{Options{CAFile: notPEM}, "Unable to load CA certificates: no certificate in " + notPEM},
		{Options{CAFile: filepath.Join(dir, "missing.crt")}, "Unable to load CA certificates: open "},
		{Options{CertFile: notPEM, KeyFile: notPEM}, "Unable to load client certificate and key: "},
	} {
		_, err := Config(tc.o)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
}
