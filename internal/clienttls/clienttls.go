// Package clienttls builds the TLS configuration of a command-line client
// from options named as mosquitto_pub's and mosquitto_sub's are: --cafile,
// --capath, --cert, --key, --tls-version, --tls-alpn, --insecure and
// --tls-use-os-certs.
package clienttls

//lint:file-ignore ST1005 these errors reach a person after "Error: " as whole sentences, in the voice of petrel pub, sub and bench (mosquitto_pub's wording), and tests check them.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Options are the TLS options. The zero value trusts the system's roots and
// offers no client certificate.
type Options struct {
	CAFile string // PEM certificates to trust instead of the system's
	CAPath string // a directory whose *.crt and *.pem files are trusted, as CAFile
	// OSCerts trusts the system's roots as well as CAFile's and CAPath's.
	OSCerts bool

	CertFile, KeyFile string // the client's certificate and key, both or neither

	Version string // "tlsv1.3", "tlsv1.2" or "tlsv1.1": that version only; "" any
	ALPN    string // the protocol to offer, if any

	// Insecure skips only the check of the server's host name, as
	// mosquitto's --insecure does: the chain is still verified.
	Insecure bool
}

// Config returns the TLS configuration o describes. Its errors are the
// messages to show the user.
func Config(o Options) (*tls.Config, error) {
	cfg := &tls.Config{}
	if o.CAFile != "" || o.CAPath != "" {
		roots, err := o.roots()
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = roots
	}
	switch {
	case o.CertFile != "" && o.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("Unable to load client certificate and key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case o.CertFile != "" || o.KeyFile != "":
		return nil, errors.New("Both --cert and --key must be given.")
	}
	switch strings.ToLower(o.Version) {
	case "":
	case "tlsv1.3":
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS13, tls.VersionTLS13
	case "tlsv1.2":
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	case "tlsv1.1":
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
	default:
		return nil, errors.New("Unsupported TLS version " + o.Version + " (tlsv1.3, tlsv1.2 or tlsv1.1).")
	}
	if o.ALPN != "" {
		cfg.NextProtos = []string{o.ALPN}
	}
	if o.Insecure {
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = verifyChain(cfg.RootCAs)
	}
	return cfg, nil
}

// roots are the certificates of CAFile and CAPath, and the system's with
// OSCerts.
func (o Options) roots() (*x509.CertPool, error) {
	roots := x509.NewCertPool()
	if o.OSCerts {
		if sys, err := x509.SystemCertPool(); err == nil {
			roots = sys
		}
	}
	files := []string{}
	if o.CAFile != "" {
		files = append(files, o.CAFile)
	}
	if o.CAPath != "" {
		matches, err := filepath.Glob(filepath.Join(o.CAPath, "*"))
		if err != nil {
			return nil, err
		}
		for _, m := range matches {
			if strings.HasSuffix(m, ".crt") || strings.HasSuffix(m, ".pem") {
				files = append(files, m)
			}
		}
	}
	for _, file := range files {
		pem, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("Unable to load CA certificates: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("Unable to load CA certificates: no certificate in %s", file)
		}
	}
	return roots, nil
}

// verifyChain checks the server's chain against roots (the system's if
// nil) but not its host name: what crypto/tls leaves undone when
// InsecureSkipVerify is set.
func verifyChain(roots *x509.CertPool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the server sent no certificate")
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(opts)
		return err
	}
}
