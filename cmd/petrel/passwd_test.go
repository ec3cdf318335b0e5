package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petrelmq/petrel/auth"
)

// runPasswd runs "petrel passwd args..." in-process through run.
func runPasswd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"passwd"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// mustPasswd runs petrel passwd and fails the test unless it exits 0.
func mustPasswd(t *testing.T, args ...string) {
	t.Helper()
	if code, _, stderr := runPasswd(t, args...); code != 0 {
		t.Fatalf("petrel passwd %q: exit %d: %s", args, code, stderr)
	}
}

// checkLogins loads file with the auth package and checks each user's
// password verifies, and a wrong one does not.
func checkLogins(t *testing.T, file string, users map[string]string) {
	t.Helper()
	pf, err := auth.LoadPasswordFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if pf.Len() != len(users) {
		t.Errorf("%d users in the file, want %d", pf.Len(), len(users))
	}
	for user, password := range users {
		c := &auth.Client{ClientID: "t", Username: user, HasUsername: true}
		if err := pf.Authenticate(context.Background(), c, []byte(password)); err != nil {
			t.Errorf("user %q, password %q: %v", user, password, err)
		}
		if err := pf.Authenticate(context.Background(), c, []byte(password+"?")); err == nil {
			t.Errorf("user %q: a wrong password is accepted", user)
		}
	}
}

func TestPasswdCreateAddUpdateDelete(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	mustPasswd(t, "-c", "-b", file, "ann", "s3cret:with:colons")
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	checkLogins(t, file, map[string]string{"ann": "s3cret:with:colons"})
	if b, _ := os.ReadFile(file); !strings.HasPrefix(string(b), fmt.Sprintf("ann:$7$%d$", auth.DefaultIterations)) {
		t.Errorf("file %q: want a $7$ entry with %d iterations", b, auth.DefaultIterations)
	}

	// Comments and lines of others survive edits.
	b, _ := os.ReadFile(file)
	os.WriteFile(file, append([]byte("# Petrel users\n\n"), b...), 0o600)
	mustPasswd(t, "-b", "-I", "101", file, "bob", "b")
	mustPasswd(t, "-b", file, "émile", "pâté €")
	mustPasswd(t, "-b", file, "ann", "new")
	checkLogins(t, file, map[string]string{"ann": "new", "bob": "b", "émile": "pâté €"})
	mustPasswd(t, "-D", file, "bob")
	checkLogins(t, file, map[string]string{"ann": "new", "émile": "pâté €"})
	got, _ := os.ReadFile(file)
	lines := strings.Split(string(got), "\n")
	if len(lines) != 5 || lines[0] != "# Petrel users" || lines[1] != "" ||
		!strings.HasPrefix(lines[2], "ann:$7$10000$") || !strings.HasPrefix(lines[3], "émile:") {
		t.Errorf("file after edits:\n%s", got)
	}

	// -c starts again.
	mustPasswd(t, "-c", "-b", file, "carl", "c")
	checkLogins(t, file, map[string]string{"carl": "c"})
}

func TestPasswdUpgrade(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	os.WriteFile(file, []byte("# plain\nann:one\nbob:two:with:colons\n\n"), 0o644)
	code, stdout, stderr := runPasswd(t, "-U", "-I", "500", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "2 passwords hashed, 0 already hashed") {
		t.Errorf("stdout %q", stdout)
	}
	checkLogins(t, file, map[string]string{"ann": "one", "bob": "two:with:colons"})
	// A second run leaves the hashes alone.
	before, _ := os.ReadFile(file)
	code, stdout, _ = runPasswd(t, "-U", file)
	after, _ := os.ReadFile(file)
	if code != 0 || !strings.Contains(stdout, "0 passwords hashed, 2 already hashed") || !bytes.Equal(before, after) {
		t.Errorf("second -U: exit %d, %q, file changed: %v", code, stdout, !bytes.Equal(before, after))
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v after -U, want 0600", fi.Mode().Perm())
	}
}

func TestPasswdPasswordFromStdin(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	tests := []struct {
		name, stdin string
		ok          bool
	}{
		{"twice", "pw one\npw one\n", true},
		{"once", "pw two\n", true},
		{"no newline", "pw three", true},
		{"crlf", "pw four\r\npw four\r\n", true},
		{"differ", "pw\npW\n", false},
		{"empty", "\n\n", false},
		{"nothing", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := passwd([]string{"-c", file, "ann"}, strings.NewReader(tt.stdin), &out, &errb)
			if (code == 0) != tt.ok {
				t.Fatalf("exit %d (%s), want success %v", code, errb.String(), tt.ok)
			}
			if tt.ok {
				pw, _, _ := strings.Cut(strings.TrimRight(tt.stdin, "\r\n"), "\n")
				checkLogins(t, file, map[string]string{"ann": strings.TrimRight(pw, "\r")})
			}
		})
	}
}

// TestPasswdSubprocess runs the real command with a pipe on stdin.
func TestPasswdSubprocess(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	cmd := petrel("passwd", "-c", file, "ann")
	cmd.Stdin = strings.NewReader("piped\npiped\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	checkLogins(t, file, map[string]string{"ann": "piped"})
}

func TestPasswdErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "passwd")
	mustPasswd(t, "-c", "-b", file, "ann", "a")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no arguments", nil, 2, "want 2 arguments, got 0"},
		{"-b without password", []string{"-b", file, "ann"}, 2, "want 3 arguments"},
		{"too many", []string{file, "ann", "extra"}, 2, "want 2 arguments"},
		{"-c with -D", []string{"-c", "-D", file, "ann"}, 2, "do not go together"},
		{"-U with -b", []string{"-U", "-b", file}, 2, "do not go together"},
		{"bad iterations", []string{"-I", "0", "-b", file, "ann", "x"}, 2, "-I must be at least 1"},
		{"unknown flag", []string{"-x", file, "ann"}, 2, "flag provided but not defined"},
		{"missing file", []string{"-b", filepath.Join(dir, "nope"), "ann", "x"}, 1, "does not exist (use -c to create it)"},
		{"delete unknown user", []string{"-D", file, "zed"}, 1, `no user "zed"`},
		{"colon in user", []string{"-b", file, "a:b", "x"}, 1, `user "a:b": user name contains ":"`},
		{"comment user", []string{"-b", file, "#a", "x"}, 1, `starts with "#"`},
		{"missing directory", []string{"-c", "-b", filepath.Join(dir, "no", "f"), "ann", "x"}, 1, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runPasswd(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr, tt.code, tt.want)
			}
		})
	}
	checkLogins(t, file, map[string]string{"ann": "a"})
	if code, _, _ := runPasswd(t, "-h"); code != 0 {
		t.Errorf("-h exits %d", code)
	}
}

// TestPasswdFollowsSymlink: editing through a link changes the file it
// points to and keeps the link.
func TestPasswdFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	link := filepath.Join(dir, "link")
	mustPasswd(t, "-c", "-b", real, "ann", "a")
	if err := os.Symlink(real, link); err != nil {
		t.Skip("no symbolic links:", err)
	}
	mustPasswd(t, "-b", link, "bob", "b")
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("the link was replaced by a file")
	}
	checkLogins(t, real, map[string]string{"ann": "a", "bob": "b"})
}

// TestPasswdFileWorksWithMosquitto checks the files petrel passwd writes
// against Debian's mosquitto 2: the broker accepts our users' passwords
// and refuses wrong ones, and petrel passwd edits a file mosquitto_passwd
// made without breaking it.
func TestPasswdFileWorksWithMosquitto(t *testing.T) {
	mosquitto := lookTool(t, "mosquitto")
	pub := lookTool(t, "mosquitto_pub")
	dir := t.TempDir()
	file := filepath.Join(dir, "passwd")
	mustPasswd(t, "-c", "-b", file, "ann", "s3cret:with:colons")
	mustPasswd(t, "-b", "-I", "101", file, "bob", "mosquitto's count")
	mustPasswd(t, "-b", "-I", "50000", file, "émile", "pâté €")
	users := map[string]string{"ann": "s3cret:with:colons", "bob": "mosquitto's count", "émile": "pâté €"}

	// Users mosquitto_passwd adds to our file must work for both.
	if mp, err := exec.LookPath("mosquitto_passwd"); err == nil {
		if out, err := exec.Command(mp, "-b", file, "dora", "from mosquitto_passwd").CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v: %s", err, out)
		}
		users["dora"] = "from mosquitto_passwd"
		mustPasswd(t, "-b", file, "bob", "changed by petrel")
		users["bob"] = "changed by petrel"
	}
	checkLogins(t, file, users)

	port := freePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	var c strings.Builder
	if os.Getuid() == 0 {
		c.WriteString("user root\n") // else mosquitto drops to a user who cannot read t.TempDir()
	}
	fmt.Fprintf(&c, "listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\n", port, file)
	os.WriteFile(conf, []byte(c.String()), 0o600)
	var log bytes.Buffer
	broker := exec.Command(mosquitto, "-c", conf)
	broker.Stdout, broker.Stderr = &log, &log
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		broker.Process.Kill()
		broker.Wait()
		if t.Failed() {
			t.Logf("mosquitto's log:\n%s", log.String())
		}
	})
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", port))

	publish := func(user, password string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, pub, "-h", "127.0.0.1", "-p", fmt.Sprint(port),
			"-u", user, "-P", password, "-t", "petrel/test", "-m", "hello").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	for user, password := range users {
		if err := publish(user, password); err != nil {
			t.Errorf("mosquitto refused %q with the right password: %v", user, err)
		}
		if err := publish(user, password+"x"); err == nil {
			t.Errorf("mosquitto accepted %q with a wrong password", user)
		}
	}
	if err := publish("nobody", "x"); err == nil {
		t.Error("mosquitto accepted an unknown user")
	}
}

// lookTool finds a Mosquitto program or skips the test.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("%s is not installed (apt-get install mosquitto mosquitto-clients): skipping the check against real Mosquitto", name)
	return ""
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, errors.Unwrap(err))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
