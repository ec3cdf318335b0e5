package main

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petrelmq/petrel/auth"
)

// authzWatcher counts the broker's AuthorizationChanged calls.
type authzWatcher struct{ calls int }

func (w *authzWatcher) AuthorizationChanged() { w.calls++ }

// reloadFixture is what petrel serve loads from a configuration with a TLS
// listener, a password file and an ACL file.
type reloadFixture struct {
	dir, cert, key, passwd, acl string
	files                       *reloadable
	log                         bytes.Buffer
	logger                      *slog.Logger
}

func newReloadFixture(t *testing.T) *reloadFixture {
	dir := t.TempDir()
	f := &reloadFixture{dir: dir, cert: filepath.Join(dir, "server.crt"), key: filepath.Join(dir, "server.key"),
		passwd: filepath.Join(dir, "passwd"), acl: filepath.Join(dir, "acl")}
	f.logger = slog.New(slog.NewTextHandler(&f.log, nil))
	writeSelfSignedCert(t, f.cert, f.key, "first")
	writePasswordFile(t, f.passwd, "alice", "one")
	writeTestFile(t, f.acl, "user alice\ntopic read a/#\n")
	cfg := parseTestConfig(t, "listeners:\n  - name: secure\n    kind: tls\n    address: 127.0.0.1:0\n"+
		"    tls: {cert_file: "+f.cert+", key_file: "+f.key+"}\n"+
		"auth:\n  password_file: "+f.passwd+"\n  acl_file: "+f.acl+"\n")
	_, files, err := brokerOptions(cfg, f.logger)
	if err != nil {
		t.Fatal(err)
	}
	f.files = files
	return f
}

func (f *reloadFixture) loginWorks(password string) bool {
	c := &auth.Client{ClientID: "c", Username: "alice", HasUsername: true}
	return f.files.passwords.Authenticate(context.Background(), c, []byte(password)) == nil
}

func (f *reloadFixture) canRead(topic string) bool {
	return f.files.acl.Allow(&auth.Client{ClientID: "c", Username: "alice", HasUsername: true}, auth.Read, topic)
}

func TestReloadLoadsEveryFile(t *testing.T) {
	f := newReloadFixture(t)
	writeSelfSignedCert(t, f.cert, f.key, "second")
	writePasswordFile(t, f.passwd, "alice", "two")
	writeTestFile(t, f.acl, "user alice\ntopic read a/#\ntopic read b/#\n")
	var w authzWatcher
	f.files.reload(&w, f.logger)

	if cn := f.files.certs[0].tls.Certificate().Subject.CommonName; cn != "second" {
		t.Errorf("certificate after reload: %q, want second", cn)
	}
	if f.loginWorks("one") || !f.loginWorks("two") {
		t.Error("after reload the old password still works, or the new one does not")
	}
	if !f.canRead("b/1") {
		t.Error("after reload the new ACL rule does not apply")
	}
	if w.calls != 1 {
		t.Errorf("AuthorizationChanged called %d times, want once", w.calls)
	}
	for _, want := range []string{`msg="password file reloaded" file=` + f.passwd + " users=1",
		`msg="ACL file reloaded" file=` + f.acl + " rules=2", `subject="CN=second"`} {
		if !strings.Contains(f.log.String(), want) {
			t.Errorf("log does not say %q:\n%s", want, f.log.String())
		}
	}
	if strings.Contains(f.log.String(), "level=ERROR") {
		t.Errorf("log has errors:\n%s", f.log.String())
	}
}

// A file that fails to load is logged, keeps what it had, and does not
// stop the others from loading.
func TestReloadKeepsWhatFailsToLoad(t *testing.T) {
	f := newReloadFixture(t)
	writeTestFile(t, f.cert, "not a certificate\n")
	writeTestFile(t, f.passwd, "alice:plain-text\n")
	writeTestFile(t, f.acl, "user alice\ntopic read a/#\ntopic read b/#\n")
	var w authzWatcher
	f.files.reload(&w, f.logger)

	if cn := f.files.certs[0].tls.Certificate().Subject.CommonName; cn != "first" {
		t.Errorf("certificate after a failed reload: %q, want first", cn)
	}
	if !f.loginWorks("one") {
		t.Error("after a failed reload the previous password no longer works")
	}
	if !f.canRead("b/1") || w.calls != 1 {
		t.Errorf("the ACL file did not reload beside the broken files (AuthorizationChanged called %d times)", w.calls)
	}
	for _, want := range []string{
		`level=ERROR msg="reload failed; the listener keeps its previous certificate" listener=secure`,
		`level=ERROR msg="reload failed; the previous password file stays in force" file=` + f.passwd,
	} {
		if !strings.Contains(f.log.String(), want) {
			t.Errorf("log does not say %q:\n%s", want, f.log.String())
		}
	}

	// A broken ACL file keeps its rules, and the broker is not told of a
	// change.
	writeTestFile(t, f.acl, "user alice\ntopic sometimes c/#\n")
	f.files.reload(&w, f.logger)
	if !f.canRead("b/1") || f.canRead("c/1") || w.calls != 1 {
		t.Errorf("a broken ACL file changed the rules (AuthorizationChanged called %d times)", w.calls)
	}
	if want := `msg="reload failed; the previous ACL file stays in force" file=` + f.acl; !strings.Contains(f.log.String(), want) {
		t.Errorf("log does not say %q:\n%s", want, f.log.String())
	}
}

func TestReloadWithoutFiles(t *testing.T) {
	_, files, err := brokerOptions(parseTestConfig(t, ""), discardLog)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	var w authzWatcher
	files.reload(&w, slog.New(slog.NewTextHandler(&log, nil)))
	if !strings.Contains(log.String(), "no certificate, password, ACL or token file to reload") || w.calls != 0 {
		t.Errorf("reload without files: %d AuthorizationChanged calls, log:\n%s", w.calls, log.String())
	}
}
