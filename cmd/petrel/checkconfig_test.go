package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petrelmq/petrel/internal/testpki"
)

// checkConfigOf runs petrel check-config on file and returns its exit code
// and output.
func checkConfigOf(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(append([]string{"check-config"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestCheckConfig: check-config reads the file and the files it names as
// serve does before it starts, and reports what serve would refuse, in
// serve's words (FILE:LINE: KEY: MESSAGE, or the file it names and why).
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		writeTestFile(t, path, content)
		return path
	}
	passwd := filepath.Join(dir, "passwd")
	writePasswordFile(t, passwd, "alice", "secret")
	acl := write("acl", "user alice\ntopic read a/#\n")
	leaf := testpki.SelfSigned(t, "petrel")
	cert, key := write("server.crt", string(leaf.CertPEM)), write("server.key", string(leaf.KeyPEM))
	tlsListener := func(cert, key string) string {
		return "listeners:\n  - kind: tls\n    address: 127.0.0.1:8883\n    tls:\n      cert_file: " + cert + "\n      key_file: " + key + "\n"
	}

	for _, tc := range []struct {
		name, yaml string
		want       []string // in stderr, each; none for a valid file
	}{
		{"defaults", "", nil},
		{"every file", tlsListener(cert, key) + "auth:\n  password_file: " + passwd + "\n  acl_file: " + acl + "\n", nil},
		{"bad value", "log:\n  level: info\nmqtt:\n  max_inflight: lots\n",
			[]string{"petrel.yaml:4: mqtt.max_inflight: \"lots\" is not an integer"}},
		{"every problem", "log:\n  level: loud\nmqtt:\n  max_inflight: 0\n",
			[]string{"petrel.yaml:2: log.level: \"loud\" is not one of", "petrel.yaml:4: mqtt.max_inflight: 0 is out of range"}},
		{"unknown key", "listeners:\n  - adress: 127.0.0.1:1883\n",
			[]string{"petrel.yaml:2: listeners[0].adress: unknown key (did you mean \"address\"?)"}},
		{"missing password file", "auth:\n  password_file: " + filepath.Join(dir, "nopasswd") + "\n",
			[]string{filepath.Join(dir, "nopasswd") + ": no such file or directory"}},
		{"malformed password file", "auth:\n  password_file: " + write("badpasswd", "alice:plain\n") + "\n",
			[]string{filepath.Join(dir, "badpasswd") + ":1:"}},
		{"missing ACL file", "auth:\n  acl_file: " + filepath.Join(dir, "noacl") + "\n",
			[]string{filepath.Join(dir, "noacl") + ": no such file or directory"}},
		{"missing certificate", tlsListener(filepath.Join(dir, "nocert"), key),
			[]string{filepath.Join(dir, "nocert") + ": no such file or directory"}},
		{"key of another certificate", tlsListener(cert, write("other.key", string(testpki.SelfSigned(t, "other").KeyPEM))),
			[]string{cert + " and " + filepath.Join(dir, "other.key") + ": "}},
		{"https and a token file", "http:\n  listen: 127.0.0.1:8080\n  token_file: " + write("token", "0123456789abcdef0123\n") +
			"\n  tls:\n    cert_file: " + cert + "\n    key_file: " + key + "\n", nil},
		{"http token to be created", "http:\n  listen: 127.0.0.1:8080\nstore:\n  dir: " + filepath.Join(dir, "nodata") + "\n", nil},
		{"missing token file", "http:\n  listen: 127.0.0.1:8080\n  token_file: " + filepath.Join(dir, "notoken") + "\n",
			[]string{filepath.Join(dir, "notoken") + ": no such file or directory"}},
		{"short token", "http:\n  listen: 127.0.0.1:8080\n  token_file: " + write("shorttoken", "abc\n") + "\n",
			[]string{filepath.Join(dir, "shorttoken") + ": the token is shorter than 16 characters"}},
		{"missing https certificate", "http:\n  listen: 127.0.0.1:8080\n  tls:\n    cert_file: " + filepath.Join(dir, "nocert") +
			"\n    key_file: " + key + "\n", []string{filepath.Join(dir, "nocert") + ": no such file or directory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := write("petrel.yaml", tc.yaml)
			code, stdout, stderr := checkConfigOf(file)
			if tc.want == nil {
				if code != 0 || stdout != "ok\n" || stderr != "" {
					t.Fatalf("exit %d, stdout %q, stderr %q; want 0, \"ok\", nothing", code, stdout, stderr)
				}
				return
			}
			if code != 1 || stdout != "" {
				t.Errorf("exit %d, stdout %q; want 1 and nothing", code, stdout)
			}
			for _, w := range tc.want {
				if w = strings.ReplaceAll(w, "petrel.yaml:", file+":"); !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not say %q", stderr, w)
				}
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		missing := filepath.Join(dir, "absent.yaml")
		if code, _, stderr := checkConfigOf(missing); code != 1 || !strings.Contains(stderr, missing+": no such file or directory") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{nil, {"a.yaml", "b.yaml"}, {"--frobnicate", "a.yaml"}} {
			if code, _, stderr := checkConfigOf(args...); code != 2 || !strings.Contains(stderr, "check-config") {
				t.Errorf("check-config %q: exit %d, stderr %q; want 2 and the usage", args, code, stderr)
			}
		}
	})
}

// TestCheckConfigStartsNothing: check-config on a file whose listener's
// port is taken still says ok (it opens no listener), and it does not
// open the store (it leaves the data directory alone).
func TestCheckConfigStartsNothing(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	file := filepath.Join(dir, "petrel.yaml")
	writeTestFile(t, file, "listeners:\n  - address: "+taken.Addr().String()+"\nstore:\n  dir: "+data+"\n")
	if code, stdout, stderr := checkConfigOf(file); code != 0 || stdout != "ok\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("check-config touched the data directory: %v", err)
	}
}
