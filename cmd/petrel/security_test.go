package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/internal/testpki"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// These tests run petrel serve with a configuration that uses the security
// features: a TLS listener, a password file and an ACL file, reloaded on
// SIGHUP.

// TestSecureBroker is the whole story of a secured broker: clients connect
// over TLS with their passwords, a wrong password is refused, the ACL keeps
// a topic from a client; then the files change and SIGHUP brings them in
// while connections stay up.
func TestSecureBroker(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	pool := x509.NewCertPool()
	pool.AddCert(writeSelfSignedCert(t, certFile, keyFile, "petrel-1"))
	passwdFile, aclFile := filepath.Join(dir, "passwd"), filepath.Join(dir, "acl")
	writePasswordFile(t, passwdFile, "alice", "old-secret", "bob", "bob-secret")
	writeTestFile(t, aclFile, "user alice\ntopic read public/#\n\nuser bob\ntopic write #\n")
	b := startConfigured(t, dir, fmt.Sprintf(`listeners:
  - kind: tls
    address: 127.0.0.1:0
    tls:
      cert_file: %s
      key_file: %s
auth:
  password_file: %s
  acl_file: %s
`, certFile, keyFile, passwdFile, aclFile))
	b.log.waitFor(t, `msg="password file loaded" .*users=2`)
	b.log.waitFor(t, `msg="ACL file loaded" .*rules=2`)
	b.log.waitFor(t, `msg="tls: certificate loaded" listener=tls:127.0.0.1:0 .*subject="CN=petrel-1"`)

	alice := dialMQTTOverTLS(t, b.addr, pool)
	if code := alice.connect("alice", "alice", "old-secret"); code != 0 {
		t.Fatalf("alice with her password: CONNACK 0x%02x, want 0", code)
	}
	alice.Subscribe("#", 0) // allowed: it can bring her public/...
	if code := dialMQTTOverTLS(t, b.addr, pool).connect("mallory", "alice", "guess"); code != packet.ConnRefusedBadUsernamePassword {
		t.Fatalf("alice with a wrong password: CONNACK 0x%02x, want 0x04", code)
	}
	bob := dialMQTTOverTLS(t, b.addr, pool)
	if code := bob.connect("bob", "bob", "bob-secret"); code != 0 {
		t.Fatalf("bob: CONNACK 0x%02x, want 0", code)
	}
	bob.publish("secret/plans", "hidden", 1)
	bob.publish("public/news", "visible", 2)
	alice.expectPublish("public/news", "visible") // and not secret/plans, published first
	alice.Ping()

	// New passwords, a new rule and a new certificate; then SIGHUP.
	writePasswordFile(t, passwdFile, "alice", "new-secret", "bob", "bob-secret")
	writeTestFile(t, aclFile, "user alice\ntopic read public/#\ntopic read secret/#\n\nuser bob\ntopic write #\n")
	pool.AddCert(writeSelfSignedCert(t, certFile, keyFile, "petrel-2"))
	loaded := b.log.count(`tls: certificate loaded`)
	if err := b.process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	b.log.waitFor(t, `msg="password file reloaded" .*users=2`)
	b.log.waitFor(t, `msg="ACL file reloaded" .*rules=3`)
	b.log.waitFor(t, `msg="authorization rules changed`)
	b.log.waitFor(t, `tls: certificate loaded.*subject="CN=petrel-2"`)
	if n := b.log.count(`tls: certificate loaded`); n != loaded+1 {
		t.Errorf("%d certificate loads after SIGHUP, want 1", n-loaded)
	}

	// The connections made before are still up, and see the new rules.
	alice.Ping()
	bob.publish("secret/plans", "shared now", 3)
	alice.expectPublish("secret/plans", "shared now")

	// New logins use the new passwords and the new certificate.
	again := dialMQTTOverTLS(t, b.addr, pool)
	if cn := again.Conn.(*tls.Conn).ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "petrel-2" {
		t.Errorf("the broker presents %q after SIGHUP, want petrel-2", cn)
	}
	if code := again.connect("alice-2", "alice", "new-secret"); code != 0 {
		t.Fatalf("alice with her new password after SIGHUP: CONNACK 0x%02x, want 0", code)
	}
	if code := dialMQTTOverTLS(t, b.addr, pool).connect("alice-3", "alice", "old-secret"); code != packet.ConnRefusedBadUsernamePassword {
		t.Fatalf("alice with her old password after SIGHUP: CONNACK 0x%02x, want 0x04", code)
	}
	b.log.mustNotHave(t, `reload failed`)
}

// A file that fails to load on SIGHUP is logged, and what was loaded
// before stays in force.
func TestSecureBrokerKeepsFilesThatFailToReload(t *testing.T) {
	dir := t.TempDir()
	passwdFile := filepath.Join(dir, "passwd")
	writePasswordFile(t, passwdFile, "alice", "secret")
	b := startConfigured(t, dir, fmt.Sprintf("listeners:\n  - address: 127.0.0.1:0\nauth:\n  password_file: %s\n", passwdFile))

	writeTestFile(t, passwdFile, "alice:plain-text\n")
	b.process.Signal(syscall.SIGHUP)
	b.log.waitFor(t, `level=ERROR msg="reload failed; the previous password file stays in force" file=`+regexp.QuoteMeta(passwdFile))

	c := dialMQTT(t, b.addr)
	if code := c.connect("alice", "alice", "secret"); code != 0 {
		t.Fatalf("alice after a failed reload: CONNACK 0x%02x, want 0 (the previous file)", code)
	}
}

// A file the configuration names that cannot be loaded stops the broker
// before it listens, with exit code 2 and the file's name.
func TestServeRefusesBadSecurityFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	writeSelfSignedCert(t, certFile, keyFile, "petrel")
	otherKey := filepath.Join(dir, "other.key")
	writeSelfSignedCert(t, filepath.Join(dir, "other.crt"), otherKey, "other")
	goodPasswd := filepath.Join(dir, "passwd")
	writePasswordFile(t, goodPasswd, "alice", "secret")
	badPasswd := filepath.Join(dir, "passwd.bad")
	writeTestFile(t, badPasswd, "# users\nalice:plain-text\n")
	badACL := filepath.Join(dir, "acl.bad")
	writeTestFile(t, badACL, "user alice\ntopic sometimes a/b\n")
	missing := filepath.Join(dir, "missing")
	tlsListener := func(cert, key string) string {
		return fmt.Sprintf("listeners:\n  - kind: tls\n    address: 127.0.0.1:0\n    tls: {cert_file: %s, key_file: %s}\n", cert, key)
	}
	for _, tc := range []struct {
		name, config, want string
	}{
		{"password file that does not parse",
			"auth:\n  password_file: " + badPasswd + "\n",
			"petrel: " + badPasswd + `:2: user "alice": `},
		{"missing password file",
			"auth:\n  password_file: " + missing + "\n",
			"petrel: " + missing + ": no such file or directory"},
		{"ACL file that does not parse",
			"auth:\n  password_file: " + goodPasswd + "\n  acl_file: " + badACL + "\n",
			"petrel: " + badACL + ":2: "},
		{"missing certificate",
			tlsListener(missing, keyFile),
			"petrel: " + missing + ": no such file or directory"},
		{"key of another certificate",
			tlsListener(certFile, otherKey),
			"petrel: " + certFile + " and " + otherKey + ": tls: private key does not match public key"},
		{"key file that is not PEM",
			tlsListener(certFile, goodPasswd),
			"petrel: " + certFile + " and " + goodPasswd + ": tls: failed to find any PEM data in key input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			config := filepath.Join(t.TempDir(), "petrel.yaml")
			writeTestFile(t, config, tc.config)
			code, stderr := refusedServe(t, petrel("--config", config, "--data-dir", t.TempDir(), "--log-level", "info"))
			if code != 2 {
				t.Errorf("exit code %d, want 2; stderr:\n%s", code, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr does not say %q:\n%s", tc.want, stderr)
			}
			if strings.Contains(stderr, "msg=listening") {
				t.Errorf("the broker listened before refusing:\n%s", stderr)
			}
		})
	}
}

// configuredBroker is petrel serve started with a configuration file.
type configuredBroker struct {
	process *os.Process
	addr    string // the first listener's
	log     *processLog
}

// startConfigured starts petrel serve with config (written to dir), and
// any further flags, and waits until it listens. The process is killed at
// the end of the test.
func startConfigured(t *testing.T, dir, config string, flags ...string) *configuredBroker {
	t.Helper()
	file := filepath.Join(dir, "petrel.yaml")
	writeTestFile(t, file, config)
	cmd := petrel(append([]string{"--config", file, "--data-dir", filepath.Join(dir, "data"), "--log-level", "info"}, flags...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	log := &processLog{}
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.add(sc.Text())
		}
		log.close()
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("broker log:\n%s", log)
		}
	})
	m := log.waitFor(t, `msg=listening .*addr=(\S+)`)
	return &configuredBroker{process: cmd.Process, addr: m[1], log: log}
}

// processLog collects a child process's log lines as they come.
type processLog struct {
	mu     sync.Mutex
	lines  []string
	closed bool // the process closed its stderr
}

func (l *processLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
}

func (l *processLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
}

func (l *processLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// matches returns the submatches of pattern in every line that has it,
// and whether more lines may come.
func (l *processLog) matches(pattern string) ([][]string, bool) {
	re := regexp.MustCompile(pattern)
	l.mu.Lock()
	defer l.mu.Unlock()
	var all [][]string
	for _, line := range l.lines {
		if m := re.FindStringSubmatch(line); m != nil {
			all = append(all, m)
		}
	}
	return all, !l.closed
}

// count returns how many lines so far match pattern.
func (l *processLog) count(pattern string) int {
	all, _ := l.matches(pattern)
	return len(all)
}

// waitFor waits for a line that matches pattern and returns its
// submatches.
func (l *processLog) waitFor(t *testing.T, pattern string) []string {
	t.Helper()
	all := l.waitForCount(t, pattern, 1)
	return all[0]
}

// waitForCount waits until n lines match pattern.
func (l *processLog) waitForCount(t *testing.T, pattern string, n int) [][]string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		all, open := l.matches(pattern)
		switch {
		case len(all) >= n:
			return all
		case !open:
			t.Fatalf("the broker exited without logging %d lines matching %q", n, pattern)
		case time.Now().After(deadline):
			t.Fatalf("the broker did not log %d lines matching %q within 20s", n, pattern)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *processLog) mustNotHave(t *testing.T, pattern string) {
	t.Helper()
	if all, _ := l.matches(pattern); len(all) > 0 {
		t.Errorf("the broker logged %q", all[0][0])
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writePasswordFile writes a password file of user, password pairs, as
// petrel passwd does (with fewer iterations, for speed).
func writePasswordFile(t *testing.T, path string, userPasswords ...string) {
	t.Helper()
	e := auth.NewPasswordEditor()
	for i := 0; i+1 < len(userPasswords); i += 2 {
		if err := e.SetPassword(userPasswords[i], userPasswords[i+1], 1000); err != nil {
			t.Fatal(err)
		}
	}
	if err := auth.WritePasswordFile(path, e); err != nil {
		t.Fatal(err)
	}
}

// writeSelfSignedCert writes a fresh self-signed certificate for 127.0.0.1 and
// localhost, and its key, and returns the certificate for clients to
// trust.
func writeSelfSignedCert(t *testing.T, certFile, keyFile, name string) *x509.Certificate {
	t.Helper()
	cert := testpki.SelfSigned(t, name)
	writeTestFile(t, keyFile, string(cert.KeyPEM))
	writeTestFile(t, certFile, string(cert.CertPEM))
	return cert.Cert
}

// rawMQTT is a wiretest.Client that speaks MQTT 3.1.1 and logs in.
type rawMQTT struct {
	*wiretest.Client
	t *testing.T
}

func dialMQTTOverTLS(t *testing.T, addr string, roots *x509.CertPool) *rawMQTT {
	t.Helper()
	c, err := wiretest.DialTLS(t, addr, "", packet.V311, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	return &rawMQTT{c, t}
}

func dialMQTT(t *testing.T, addr string) *rawMQTT {
	t.Helper()
	return &rawMQTT{wiretest.Dial(t, "tcp", addr, "", packet.V311), t}
}

// connect logs in and returns the CONNACK's return code.
func (c *rawMQTT) connect(clientID, username, password string) packet.ReasonCode {
	c.t.Helper()
	c.Name = clientID
	return c.SendConnect(&packet.Connect{Version: packet.V311, CleanStart: true, KeepAlive: 60, ClientID: clientID,
		UsernameFlag: true, Username: username, PasswordFlag: true, Password: []byte(password)}).Code
}

// publish sends a QoS 1 PUBLISH and waits for its PUBACK.
func (c *rawMQTT) publish(topic, payload string, id uint16) {
	c.t.Helper()
	c.SendPublish(&packet.Publish{Topic: topic, Payload: []byte(payload), QoS: 1, PacketID: id})
}

func (c *rawMQTT) expectPublish(topic, payload string) {
	c.t.Helper()
	if m := c.NextPublish(); m.Topic != topic || string(m.Payload) != payload {
		c.t.Fatalf("got PUBLISH %s %q, want %s %q", m.Topic, m.Payload, topic, payload)
	}
}
