package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The files in testdata were made once by Debian's mosquitto_passwd 2.0.11
// and committed as they came out:
//
//	mosquitto_passwd -c -b mosquitto_passwd.txt alice 'wonderland'
//	mosquitto_passwd -b mosquitto_passwd.txt bob 'b0b:with:colons'
//	mosquitto_passwd -b mosquitto_passwd.txt 'carol smith' 'spaces in it '
//	mosquitto_passwd -b mosquitto_passwd.txt dave ''
//	mosquitto_passwd -b mosquitto_passwd.txt 'émile' 'pâté€'
//	mosquitto_passwd -H sha512 -c -b mosquitto_passwd_sha512.txt alice 'wonderland'
//	mosquitto_passwd -H sha512 -b mosquitto_passwd_sha512.txt bob 'b0b:with:colons'
//	mosquitto_passwd -H sha512 -b mosquitto_passwd_sha512.txt 'émile' 'pâté€'
//
// The first holds "$7$" (PBKDF2-SHA512, 101 iterations) entries, the second
// "$6$" (salted SHA-512, mosquitto 1.6's format) entries.
var mosquittoPasswords = map[string]string{
	"alice":       "wonderland",
	"bob":         "b0b:with:colons",
	"carol smith": "spaces in it ",
	"dave":        "",
	"émile":       "pâté€",
}

func client(user string) *Client {
	return &Client{ClientID: "c-" + user, Username: user, HasUsername: true}
}

func TestMosquittoPasswdFilesVerify(t *testing.T) {
	for _, file := range []string{"testdata/mosquitto_passwd.txt", "testdata/mosquitto_passwd_sha512.txt"} {
		t.Run(filepath.Base(file), func(t *testing.T) {
			pf, err := LoadPasswordFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if pf.Len() == 0 {
				t.Fatal("no users loaded")
			}
			ctx := context.Background()
			checked := 0
			for user, password := range mosquittoPasswords {
				if _, ok := pf.users.Load().users[user]; !ok {
					continue // not in this file
				}
				checked++
				if err := pf.Authenticate(ctx, client(user), []byte(password)); err != nil {
					t.Errorf("user %q with the password mosquitto_passwd hashed: %v", user, err)
				}
				for _, wrong := range []string{password + "x", strings.ToUpper(password) + "!", "wonderland2", ""} {
					if wrong == password {
						continue
					}
					if err := pf.Authenticate(ctx, client(user), []byte(wrong)); !errors.Is(err, ErrBadCredentials) {
						t.Errorf("user %q with wrong password %q: got %v, want ErrBadCredentials", user, wrong, err)
					}
				}
			}
			if checked != pf.Len() {
				t.Errorf("checked %d users, file has %d", checked, pf.Len())
			}
		})
	}
}

func TestAuthenticateRefuses(t *testing.T) {
	entry, err := HashPassword("secret", 100)
	if err != nil {
		t.Fatal(err)
	}
	file := "# users\n\nann:" + entry + "\nnopass\nempty:\n"
	pf, err := ParsePasswordFile("pw", strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		name     string
		client   *Client
		password []byte
		want     error
	}{
		{"right password", client("ann"), []byte("secret"), nil},
		{"wrong password", client("ann"), []byte("Secret"), ErrBadCredentials},
		{"no password flag", client("ann"), nil, ErrBadCredentials},
		{"empty password", client("ann"), []byte{}, ErrBadCredentials},
		{"unknown user", client("bob"), []byte("secret"), ErrBadCredentials},
		{"no user name", &Client{ClientID: "x"}, []byte("secret"), ErrBadCredentials},
		{"user without a hash", client("nopass"), []byte(""), ErrBadCredentials},
		{"user with an empty hash", client("empty"), []byte(""), ErrBadCredentials},
		{"user name differs in case", client("Ann"), []byte("secret"), ErrBadCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := pf.Authenticate(ctx, tt.client, tt.password)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Authenticate = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParsePasswordFileLayout(t *testing.T) {
	a, _ := HashPassword("pa", 10)
	b, _ := HashPassword("pb", 10)
	file := "# comment\r\n" +
		"   # indented comment\n" +
		"\n" +
		"  \t \n" +
		"  anna:" + a + "   \r\n" +
		"bert:" + b + "\t\n" +
		"no newline at the end:" + a
	pf, err := ParsePasswordFile("pw", strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for user, pass := range map[string]string{"anna": "pa", "bert": "pb", "no newline at the end": "pa"} {
		if err := pf.Authenticate(ctx, client(user), []byte(pass)); err != nil {
			t.Errorf("%s: %v", user, err)
		}
	}
	if pf.Len() != 3 {
		t.Errorf("Len = %d, want 3", pf.Len())
	}
}

func TestParsePasswordFileErrors(t *testing.T) {
	good, _ := HashPassword("x", 10)
	tests := []struct {
		name, file, want string
	}{
		{"plain text", "# c\nann:hunter2\n", `pw:2: user "ann": password is not hashed`},
		{"duplicate", "ann:" + good + "\n\nann:" + good + "\n", `pw:3: user "ann" is already defined on line 1`},
		{"empty user", ":" + good + "\n", "pw:1: empty user name"},
		{"$7$ fields", "ann:$7$101$abc\n", `pw:1: user "ann": malformed "$7$" hash`},
		{"$7$ iterations", "ann:$7$x$AAAA$AAAA\n", "iteration count"},
		{"$7$ zero iterations", "ann:$7$0$AAAA$AAAA\n", "iteration count"},
		{"$7$ huge iterations", "ann:$7$999999999$AAAA$AAAA\n", "iteration count"},
		{"$7$ salt", "ann:$7$101$!!!$AAAA\n", "salt is not base64"},
		{"$7$ key", "ann:$7$101$AAAA$***\n", "hash is not base64"},
		{"$6$ fields", "ann:$6$AAAA\n", `malformed "$6$" hash`},
		{"$6$ short", "ann:$6$AAAA$AAAA\n", "hash is 3 bytes, want 64"},
		{"unknown scheme", "ann:$1$abc$def\n", "not hashed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePasswordFile("pw", strings.NewReader(tt.file))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error %q quotes the plain-text password", err)
			}
		})
	}
}

func TestLoadPasswordFileNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	os.WriteFile(path, []byte("ann:nope\n"), 0o600)
	_, err := LoadPasswordFile(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":1: ") {
		t.Fatalf("error %v, want it to start with %q", err, path+":1: ")
	}
	if _, err := LoadPasswordFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("no error for a missing file")
	}
}

func TestHashPassword(t *testing.T) {
	re := regexp.MustCompile(`^\$7\$(\d+)\$([A-Za-z0-9+/]{16})\$([A-Za-z0-9+/]{86}==)$`)
	h1, err := HashPassword("pw", 0)
	if err != nil {
		t.Fatal(err)
	}
	m := re.FindStringSubmatch(h1)
	if m == nil {
		t.Fatalf("HashPassword = %q, not a $7$ entry with a 12-byte salt and 64-byte key", h1)
	}
	if m[1] != "10000" {
		t.Errorf("default iterations %s, want %d", m[1], DefaultIterations)
	}
	h2, _ := HashPassword("pw", 0)
	if h1 == h2 {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	h3, _ := HashPassword("pw", 202)
	if !strings.HasPrefix(h3, "$7$202$") {
		t.Errorf("HashPassword(202) = %q", h3)
	}
	for _, h := range []string{h1, h2, h3} {
		if ok, err := verifyPasswordHash(h, "pw"); !ok || err != nil {
			t.Errorf("verifyPasswordHash(%q, right) = %v, %v", h, ok, err)
		}
		if ok, _ := verifyPasswordHash(h, "pW"); ok {
			t.Errorf("verifyPasswordHash(%q, wrong) = true", h)
		}
	}
	if _, err := HashPassword("pw", maxIterations+1); err == nil {
		t.Error("no error for too many iterations")
	}
}

func TestPasswordFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	write := func(user, pass string) {
		t.Helper()
		e := NewPasswordEditor()
		if err := e.SetPassword(user, pass, 10); err != nil {
			t.Fatal(err)
		}
		if err := WritePasswordFile(path, e); err != nil {
			t.Fatal(err)
		}
	}
	write("ann", "one")
	pf, err := LoadPasswordFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Logins go on while the file is rewritten and reloaded.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				pf.Authenticate(ctx, client("ann"), []byte("one"))
			}
		}()
	}
	write("ann", "two")
	if err := pf.Authenticate(ctx, client("ann"), []byte("two")); err == nil {
		t.Error("the new password works before Reload")
	}
	if err := pf.Reload(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if err := pf.Authenticate(ctx, client("ann"), []byte("two")); err != nil {
		t.Errorf("new password after Reload: %v", err)
	}
	if err := pf.Authenticate(ctx, client("ann"), []byte("one")); err == nil {
		t.Error("old password still works after Reload")
	}

	// A broken file leaves the loaded users in force.
	os.WriteFile(path, []byte("ann:plain\n"), 0o600)
	if err := pf.Reload(); err == nil || !strings.Contains(err.Error(), path+":1:") {
		t.Fatalf("Reload of a broken file: %v", err)
	}
	if err := pf.Authenticate(ctx, client("ann"), []byte("two")); err != nil {
		t.Errorf("after a failed Reload: %v", err)
	}

	parsed, _ := ParsePasswordFile("x", strings.NewReader(""))
	if err := parsed.Reload(); err == nil {
		t.Error("Reload of a parsed file did not fail")
	}
}

func TestUnknownUserCostsAsMuchAsAKnownOne(t *testing.T) {
	tests := []struct {
		iterations []int
		want       int
	}{
		{nil, DefaultIterations},
		{[]int{101, 101, 5000}, 101},
		{[]int{101, 5000, 5000}, 5000},
		{[]int{101, 5000}, 5000},
	}
	for _, tt := range tests {
		var file strings.Builder
		for i, n := range tt.iterations {
			e, _ := HashPassword("x", n)
			fmt.Fprintf(&file, "u%d:%s\n", i, e)
		}
		file.WriteString("old:$6$AAAA$" + strings.Repeat("A", 86) + "==\n")
		pf, err := ParsePasswordFile("pw", strings.NewReader(file.String()))
		if err != nil {
			t.Fatal(err)
		}
		if d := pf.users.Load().dummy; !d.pbkdf2 || d.iterations != tt.want {
			t.Errorf("iterations %v: unknown users are checked with %+v, want %d iterations", tt.iterations, d, tt.want)
		}
	}
}

func TestAuthenticateWaitsForItsTurn(t *testing.T) {
	e, _ := HashPassword("pw", 10)
	pf, _ := ParsePasswordFile("pw", strings.NewReader("ann:"+e))
	// Take every verification slot: the next login must wait, and give up
	// when its context ends.
	for range cap(pf.verifying) {
		pf.verifying <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := pf.Authenticate(ctx, client("ann"), []byte("pw"))
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrBadCredentials) {
		t.Fatalf("Authenticate with no free slot = %v, want a deadline error (server unavailable)", err)
	}
	<-pf.verifying
	if err := pf.Authenticate(context.Background(), client("ann"), []byte("pw")); err != nil {
		t.Fatalf("with a free slot: %v", err)
	}
}

func TestPasswordEditor(t *testing.T) {
	hashed, _ := HashPassword("kept", 10)
	in := "# Petrel users\n" +
		"ann:plain:with:colons\n" +
		"\n" +
		"# the old hands\n" +
		"bob:" + hashed + "\n" +
		"  carl:secret\n" +
		"this line has no colon\n" +
		"ann:a second ann\n"
	e, err := ReadPasswordEditor(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(e.users(), ","), "ann,bob,carl,this line has no colon,ann"; got != want {
		t.Errorf("Users = %s, want %s", got, want)
	}
	n, skipped, err := e.UpgradePlaintext(10)
	if err != nil || n != 4 || skipped != 1 {
		t.Fatalf("UpgradePlaintext = %d, %d, %v; want 4 hashed, 1 skipped", n, skipped, err)
	}
	// Again: nothing left to hash.
	if n, skipped, _ := e.UpgradePlaintext(10); n != 0 || skipped != 5 {
		t.Fatalf("second UpgradePlaintext = %d hashed, %d skipped; want 0, 5", n, skipped)
	}
	check := func(user, pass string) {
		t.Helper()
		entry, ok := e.entry(user)
		if !ok {
			t.Fatalf("no entry for %q", user)
		}
		if ok, err := verifyPasswordHash(entry, pass); !ok || err != nil {
			t.Errorf("%s: password %q does not verify (%v)", user, pass, err)
		}
	}
	check("ann", "plain:with:colons")
	check("bob", "kept")
	check("carl", "secret")
	check("this line has no colon", "")

	if err := e.SetPassword("bob", "new", 10); err != nil {
		t.Fatal(err)
	}
	check("bob", "new")
	if err := e.SetPassword("ann", "one ann", 10); err != nil {
		t.Fatal(err)
	}
	if err := e.SetPassword("dora", "d", 10); err != nil {
		t.Fatal(err)
	}
	if !e.Delete("carl") || e.Delete("carl") {
		t.Error("Delete reported wrongly")
	}
	var out bytes.Buffer
	e.writeTo(&out)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	var shape []string
	for _, l := range lines {
		user, _, _ := strings.Cut(l, ":")
		shape = append(shape, user)
	}
	want := []string{"# Petrel users", "ann", "", "# the old hands", "bob", "this line has no colon", "dora"}
	if strings.Join(shape, "|") != strings.Join(want, "|") {
		t.Errorf("file after edits:\n%s\nwant lines %q", out.String(), want)
	}
	check("ann", "one ann")
	check("dora", "d")
}

func TestValidateUsername(t *testing.T) {
	for _, bad := range []string{"", "a:b", " a", "a ", "#a", "a\nb", "a\x00", "\xff"} {
		if ValidateUsername(bad) == nil {
			t.Errorf("ValidateUsername(%q) = nil", bad)
		}
		if NewPasswordEditor().SetPassword(bad, "x", 10) == nil {
			t.Errorf("SetPassword(%q) = nil", bad)
		}
	}
	for _, good := range []string{"a", "carol smith", "émile", "a#b", "dept/ann"} {
		if err := ValidateUsername(good); err != nil {
			t.Errorf("ValidateUsername(%q) = %v", good, err)
		}
	}
}

func TestWritePasswordFileMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")
	os.WriteFile(path, []byte("old\n"), 0o644)
	e := NewPasswordEditor()
	e.setEntry("ann", "$7$1$AAAA$AAAA")
	if err := WritePasswordFile(path, e); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	got, _ := os.ReadFile(path)
	if string(got) != "ann:$7$1$AAAA$AAAA\n" {
		t.Errorf("file %q", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	if err := WritePasswordFile(filepath.Join(dir, "no", "such", "dir"), e); err == nil {
		t.Error("no error writing into a missing directory")
	}
}

func BenchmarkPasswordFileAuthenticate(b *testing.B) {
	for _, iter := range []int{101, DefaultIterations, 20000} {
		entry, _ := HashPassword("secret", iter)
		pf, _ := ParsePasswordFile("pw", strings.NewReader("ann:"+entry))
		c, pw := client("ann"), []byte("secret")
		ctx := context.Background()
		b.Run(strconv.Itoa(iter), func(b *testing.B) {
			for b.Loop() {
				if err := pf.Authenticate(ctx, c, pw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// verifyPasswordHash reports whether password matches a password file entry
// (the part after "username:"). It returns an error if the entry is not a
// hash this package knows.
func verifyPasswordHash(entry, password string) (bool, error) {
	h, err := parsePasswordHash(entry)
	if err != nil {
		return false, err
	}
	return h.verify([]byte(password)), nil
}

// users returns the editor's user names in file order.
func (e *PasswordEditor) users() []string {
	var us []string
	for _, l := range e.lines {
		if u, _, ok := splitPasswordLine(l); ok {
			us = append(us, u)
		}
	}
	return us
}

// entry returns user's entry (the part after ':'), and whether there is one.
func (e *PasswordEditor) entry(user string) (string, bool) {
	for _, l := range e.lines {
		if u, entry, ok := splitPasswordLine(l); ok && u == user {
			return entry, true
		}
	}
	return "", false
}
