// Package tlsconf builds the server-side TLS configuration of Petrel's
// listeners (mqtts and wss) from certificate files, and reloads those files
// without a restart when they change on disk.
//
// Reload policy: on a handshake, at most once per CheckInterval (one second
// by default), the reloader stats the certificate, key and client CA files;
// when any changed (modification time, size, or the file itself, as when a
// symlink is swapped) it loads them all again. A reload that fails keeps
// serving what was loaded before and logs the error once per change of the
// files. Reload forces a load, for the broker's SIGHUP and admin reload.
//
// Secure defaults: TLS 1.2 or later, Go's default cipher suites and curves.
//
// A program that embeds the broker gives a "tls" or "wss" listener the
// configuration of a Reloader:
//
//	r, err := tlsconf.New(tlsconf.Config{CertFile: "server.pem", KeyFile: "server.key"})
//	if err != nil {
//		return err
//	}
//	lc := broker.ListenerConfig{Kind: "tls", Address: ":8883", TLS: r.TLSConfig()}
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ClientAuth says whether a listener asks clients for a certificate.
type ClientAuth string

const (
	// ClientAuthNone asks for no client certificate (the zero value).
	ClientAuthNone ClientAuth = "none"
	// ClientAuthRequest asks for a certificate and verifies it when one is
	// given; a client without one may still connect (and log in otherwise).
	ClientAuthRequest ClientAuth = "request"
	// ClientAuthRequire refuses the handshake without a certificate that
	// verifies against the client CA.
	ClientAuthRequire ClientAuth = "require"
)

// Config names the files of a TLS listener. The zero value of each optional
// field is a useful default.
type Config struct {
	// CertFile and KeyFile hold the server's PEM certificate chain (leaf
	// first) and its private key. Both are required.
	CertFile string
	KeyFile  string

	// ClientCAFile holds the PEM certificates of the authorities that sign
	// client certificates. Required when ClientAuth is request or require,
	// refused otherwise (a CA that checks nothing would only mislead).
	ClientCAFile string

	// ClientAuth is none (the default, also for ""), request or require.
	ClientAuth ClientAuth

	// MinVersion is the oldest TLS version accepted, such as
	// tls.VersionTLS13. Zero means tls.VersionTLS12. Versions before 1.2 are
	// allowed only when set here explicitly; see ParseVersion.
	MinVersion uint16

	// CheckInterval is how often, at most, a handshake looks at the files
	// for changes. Zero means one second; a negative value turns automatic
	// reloads off (Reload still works).
	CheckInterval time.Duration

	// Logger receives reloads (info) and failed automatic reloads (error).
	// Nil means slog.Default(), so a broken certificate is never silent.
	Logger *slog.Logger
}

// Validate checks the configuration without reading the files.
func (c Config) Validate() error {
	if c.CertFile == "" || c.KeyFile == "" {
		return errors.New("tls: a certificate file and a key file are required")
	}
	if _, err := c.clientAuthType(); err != nil {
		return err
	}
	if c.MinVersion != 0 && (c.MinVersion < tls.VersionTLS10 || c.MinVersion > tls.VersionTLS13) {
		return fmt.Errorf("tls: unknown minimum version 0x%04x", c.MinVersion)
	}
	return nil
}

func (c Config) clientAuthType() (tls.ClientAuthType, error) {
	var t tls.ClientAuthType
	switch c.ClientAuth {
	case "", ClientAuthNone:
		if c.ClientCAFile != "" {
			return 0, errors.New("tls: a client CA file is set but client_auth is none; set it to request or require")
		}
		return tls.NoClientCert, nil
	case ClientAuthRequest:
		t = tls.VerifyClientCertIfGiven
	case ClientAuthRequire:
		t = tls.RequireAndVerifyClientCert
	default:
		return 0, fmt.Errorf("tls: client_auth %q is not none, request or require", c.ClientAuth)
	}
	if c.ClientCAFile == "" {
		return 0, fmt.Errorf("tls: client_auth %s needs a client CA file", c.ClientAuth)
	}
	return t, nil
}

// ParseVersion turns "1.0", "1.1", "1.2" or "1.3" into a crypto/tls version.
func ParseVersion(s string) (uint16, error) {
	switch s {
	case "1.0":
		return tls.VersionTLS10, nil
	case "1.1":
		return tls.VersionTLS11, nil
	case "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("tls: unknown version %q (want 1.0, 1.1, 1.2 or 1.3)", s)
}

// Reloader serves a TLS configuration whose certificate and client CAs
// follow the files on disk. It is safe for concurrent use.
type Reloader struct {
	cfg        Config
	clientAuth tls.ClientAuthType
	interval   time.Duration
	log        *slog.Logger

	current   atomic.Pointer[loaded]
	lastCheck atomic.Int64 // unix nanoseconds of the last look at the files

	// mu serialises loads, and guards failed and failedErr.
	mu sync.Mutex
	// failed are the stamps of files whose automatic load failed, and
	// failedErr its error: the same broken files are not loaded (and
	// logged) again every second.
	failed    []stamp
	failedErr string
}

// loaded is one successful load: what handshakes use until the next one.
type loaded struct {
	conf   *tls.Config
	stamps []stamp
}

// New loads the files named by cfg and returns their reloader.
func New(cfg Config) (*Reloader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	clientAuth, _ := cfg.clientAuthType()
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	r := &Reloader{
		cfg:        cfg,
		clientAuth: clientAuth,
		interval:   cfg.CheckInterval,
		log:        cfg.Logger,
	}
	if r.interval == 0 {
		r.interval = time.Second
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	l, err := r.load()
	if err != nil {
		return nil, err
	}
	r.current.Store(l)
	r.lastCheck.Store(time.Now().UnixNano())
	return r, nil
}

// TLSConfig returns the configuration to give tls.NewListener. Each
// handshake gets the certificate and client CAs loaded most recently
// (through GetConfigForClient), after checking the files if CheckInterval
// has passed. Call it once per listener: session tickets are encrypted with
// keys of the returned configuration, and stay valid across reloads
// (crypto/tls verifies a resumed session's client certificate again
// against the client CAs loaded now).
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         r.cfg.MinVersion,
		GetConfigForClient: r.configForClient,
	}
}

// Reload loads the files now, whether or not they changed. On failure it
// returns the error (without logging it) and keeps serving what it had.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, err := r.load()
	if err != nil {
		return err
	}
	r.swap(l)
	return nil
}

// Certificate returns the leaf certificate handshakes present now.
func (r *Reloader) Certificate() *x509.Certificate {
	return r.current.Load().conf.Certificates[0].Leaf
}

func (r *Reloader) configForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	r.maybeReload()
	return r.current.Load().conf, nil
}

// maybeReload looks at the files if CheckInterval passed since the last
// look; one handshake looks while the others go on with what is loaded.
func (r *Reloader) maybeReload() {
	if r.interval < 0 {
		return
	}
	now := time.Now().UnixNano()
	last := r.lastCheck.Load()
	if now-last < int64(r.interval) || !r.lastCheck.CompareAndSwap(last, now) {
		return
	}
	if !r.mu.TryLock() {
		return // a Reload is under way
	}
	defer r.mu.Unlock()
	stamps, err := r.statFiles()
	if err != nil {
		r.reloadFailed(stamps, err)
		return
	}
	if sameStamps(stamps, r.current.Load().stamps) || sameStamps(stamps, r.failed) {
		return
	}
	l, err := r.load()
	if err != nil {
		r.reloadFailed(stamps, err)
		return
	}
	r.swap(l)
}

// reloadFailed logs err unless it is the same failure as last time (the
// same files, or the same missing file).
func (r *Reloader) reloadFailed(stamps []stamp, err error) {
	if err.Error() == r.failedErr && (stamps == nil || sameStamps(stamps, r.failed)) {
		return
	}
	r.failed, r.failedErr = stamps, err.Error()
	r.log.Error("tls: reloading the certificate failed; still serving the previous one",
		"cert", r.cfg.CertFile, "err", err)
}

// swap makes l current. Called with mu held.
func (r *Reloader) swap(l *loaded) {
	r.current.Store(l)
	r.failed, r.failedErr = nil, ""
	leaf := l.conf.Certificates[0].Leaf
	r.log.Info("tls: certificate loaded", "cert", r.cfg.CertFile,
		"subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
	if time.Now().After(leaf.NotAfter) {
		r.log.Warn("tls: the loaded certificate has expired", "cert", r.cfg.CertFile, "not_after", leaf.NotAfter)
	}
}

// load reads every file and builds the configuration handshakes get. The
// files are stat'ed before they are read, so a change during the read shows
// as a change at the next check.
func (r *Reloader) load() (*loaded, error) {
	stamps, err := r.statFiles()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(r.cfg.CertFile, r.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: loading %s and %s: %w", r.cfg.CertFile, r.cfg.KeyFile, err)
	}
	if cert.Leaf == nil { // Go fills it in unless GODEBUG x509keypairleaf=0
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls: parsing %s: %w", r.cfg.CertFile, err)
		}
	}
	conf := &tls.Config{
		MinVersion:   r.cfg.MinVersion,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   r.clientAuth,
	}
	if r.cfg.ClientCAFile != "" {
		pool, err := loadPool(r.cfg.ClientCAFile)
		if err != nil {
			return nil, err
		}
		conf.ClientCAs = pool
	}
	return &loaded{conf: conf, stamps: stamps}, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: reading the client CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: no PEM certificate in the client CA file %s", file)
	}
	return pool, nil
}

// stamp identifies one version of a file.
type stamp struct {
	info os.FileInfo
}

func (s stamp) same(o stamp) bool {
	return s.info.ModTime().Equal(o.info.ModTime()) && s.info.Size() == o.info.Size() &&
		os.SameFile(s.info, o.info)
}

func (r *Reloader) statFiles() ([]stamp, error) {
	files := []string{r.cfg.CertFile, r.cfg.KeyFile}
	if r.cfg.ClientCAFile != "" {
		files = append(files, r.cfg.ClientCAFile)
	}
	stamps := make([]stamp, 0, len(files))
	var errs []error
	for _, f := range files {
		fi, err := os.Stat(f) // follows symlinks, as Kubernetes secret volumes need
		if err != nil {
			errs = append(errs, fmt.Errorf("tls: %w", err))
			continue
		}
		stamps = append(stamps, stamp{fi})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return stamps, nil
}

func sameStamps(a, b []stamp) bool {
	if len(a) != len(b) || len(a) == 0 {
		return false
	}
	for i := range a {
		if !a[i].same(b[i]) {
			return false
		}
	}
	return true
}

// IdentityFrom returns a user name taken from the verified client
// certificate of a connection, and false when there is none (no
// certificate, an unverified one, or an empty field). from says where:
//
//   - "cn": the Subject Common Name;
//   - "dn": the whole Subject, as in "CN=alice,O=Example" (RFC 2253 order);
//   - "san": the first Subject Alternative Name, looking at DNS names, then
//     e-mail addresses, then URIs (the first kind present wins);
//   - "san:dns", "san:email", "san:uri": the first SAN of that kind only.
//
// Any other value gives false; CheckIdentitySource validates it earlier.
func IdentityFrom(state tls.ConnectionState, from string) (string, bool) {
	if len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return "", false
	}
	leaf := state.VerifiedChains[0][0]
	var id string
	switch from {
	case "cn":
		id = leaf.Subject.CommonName
	case "dn":
		id = leaf.Subject.String()
	case "san":
		id = firstOf(leaf.DNSNames)
		if id == "" {
			id = firstOf(leaf.EmailAddresses)
		}
		if id == "" && len(leaf.URIs) > 0 {
			id = leaf.URIs[0].String()
		}
	case "san:dns":
		id = firstOf(leaf.DNSNames)
	case "san:email":
		id = firstOf(leaf.EmailAddresses)
	case "san:uri":
		if len(leaf.URIs) > 0 {
			id = leaf.URIs[0].String()
		}
	}
	return id, id != ""
}

// CheckIdentitySource reports whether IdentityFrom knows from.
func CheckIdentitySource(from string) error {
	switch from {
	case "cn", "dn", "san", "san:dns", "san:email", "san:uri":
		return nil
	}
	return fmt.Errorf("tls: identity source %q is not cn, dn, san, san:dns, san:email or san:uri", from)
}

func firstOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
