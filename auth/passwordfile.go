package auth

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// DefaultIterations is the PBKDF2 iteration count HashPassword uses when
// asked for none.
//
// Mosquitto's mosquitto_passwd uses 101. We use 10,000: about 100 times the
// work for someone who steals the file and guesses offline, while a login
// stays cheap enough for a broker. Measured on this project's 2-core machine
// (go test -bench PBKDF2 style, PBKDF2-HMAC-SHA512, 64-byte key):
//
//	   101 iterations   0.05 ms per verify
//	 1,000              0.47 ms
//	10,000              4.7  ms   ← the default
//	20,000              9.9  ms
//	50,000             23    ms
//
// At 10,000 a core verifies about 200 logins a second, so 10,000 devices
// reconnecting after a restart are through in under a minute on one core;
// at OWASP's 210,000 that would take a quarter of an hour. A PasswordFile
// also never lets verifications use more than half the cores (see
// Authenticate), so a flood of logins queues instead of starving the
// message path. Operators who want more can pass -I to petrel passwd.
const DefaultIterations = 10000

// saltLen is the salt size mosquitto_passwd uses (12 bytes, 16 in base64).
const saltLen = 12

// maxIterations refuses absurd counts read from a file, which would let one
// login burn minutes of CPU.
const maxIterations = 10_000_000

// PasswordFile is a password file in Mosquitto's format, loaded in memory.
// It implements Authenticator. The zero value is not usable; use
// LoadPasswordFile or ParsePasswordFile. It is safe for concurrent use.
//
// The file holds one user a line, "username:hash", where hash is
//
//	$7$<iterations>$<base64 salt>$<base64 key>   PBKDF2-HMAC-SHA512, 64-byte key
//	                                              (mosquitto 2.0 and later)
//	$6$<base64 salt>$<base64 hash>               SHA-512(password ‖ salt)
//	                                              (mosquitto 1.6 and earlier)
//
// The salt is the decoded bytes of the base64 text; base64 is the standard
// alphabet with padding. Blank lines and lines whose first non-blank
// character is '#' are ignored. The user name is everything before the first
// ':' less leading blanks, so it cannot contain a ':'; trailing blanks of a
// line are ignored.
//
// Where Mosquitto 2.0 is lenient we follow it or refuse, never guess: a line
// with a user name and no hash ("name" or "name:") is a user who can never
// log in, as with mosquitto; an entry that is not a "$7$" or "$6$" hash (a
// plain-text password) is an error naming the file and line, where
// mosquitto logs it and drops the user; a user named twice is an error.
type PasswordFile struct {
	path  string
	users atomic.Pointer[passwordTable]
	// reload serialises Reload calls; readers never take it.
	reload sync.Mutex
	// verifying bounds concurrent hash computations.
	verifying chan struct{}
}

type passwordTable struct {
	users map[string]passwordHash
	// dummy is verified against for unknown users, so that an unknown user
	// costs as much as a known one and the time to answer does not tell
	// which user names exist: a "$7$" hash with the iteration count most
	// entries of the file have.
	dummy passwordHash
}

// passwordHash is one parsed entry. The zero value is "no password", which
// nothing matches.
type passwordHash struct {
	pbkdf2     bool // $7$; false means $6$
	iterations int
	salt       []byte
	key        []byte
}

// LoadPasswordFile reads and parses the password file at path. Its errors
// name the file and line.
func LoadPasswordFile(path string) (*PasswordFile, error) {
	t, err := readPasswordTable(path)
	if err != nil {
		return nil, err
	}
	return newPasswordFile(path, t), nil
}

// ParsePasswordFile parses a password file read from r; name is used in
// error messages. A PasswordFile made this way has no path: Reload fails.
func ParsePasswordFile(name string, r io.Reader) (*PasswordFile, error) {
	t, err := parsePasswordTable(name, r)
	if err != nil {
		return nil, err
	}
	return newPasswordFile("", t), nil
}

func newPasswordFile(path string, t *passwordTable) *PasswordFile {
	n := runtime.GOMAXPROCS(0) / 2
	if n < 1 {
		n = 1
	}
	f := &PasswordFile{path: path, verifying: make(chan struct{}, n)}
	f.users.Store(t)
	return f
}

// Reload re-reads the file the PasswordFile was loaded from. The new
// contents replace the old in one step: a concurrent Authenticate sees
// either the old users or the new ones, never a mixture. If the file cannot
// be read or parsed, the old contents stay in force and the error is
// returned. Connected clients are not affected; only later logins see the
// change.
func (f *PasswordFile) Reload() error {
	if f.path == "" {
		return errors.New("auth: password file: Reload of a file that was not loaded from a path")
	}
	f.reload.Lock()
	defer f.reload.Unlock()
	t, err := readPasswordTable(f.path)
	if err != nil {
		return err
	}
	f.users.Store(t)
	return nil
}

// Len returns the number of users.
func (f *PasswordFile) Len() int { return len(f.users.Load().users) }

// Authenticate checks c's user name and password against the file.
// password is nil when the CONNECT had no password flag; such a client is
// refused, as is one with no user name: whether anonymous clients may
// connect is the broker's decision, not the password file's. An unknown
// user and a wrong password both return an error wrapping
// ErrBadCredentials, and cost the same time.
//
// At most half the cores (at least one) compute hashes at once; others wait
// their turn, giving up with ctx's error when ctx ends.
func (f *PasswordFile) Authenticate(ctx context.Context, c *Client, password []byte) error {
	if !c.HasUsername {
		return fmt.Errorf("%w: no user name", ErrBadCredentials)
	}
	if password == nil {
		return fmt.Errorf("%w: no password", ErrBadCredentials)
	}
	t := f.users.Load()
	h, known := t.users[c.Username]
	usable := known && len(h.key) > 0
	if !usable {
		h = t.dummy
	}
	select {
	case f.verifying <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("auth: password file: waiting to verify a password: %w", ctx.Err())
	}
	ok := h.verify(password)
	<-f.verifying
	switch {
	case !known:
		return fmt.Errorf("%w: unknown user", ErrBadCredentials)
	case !usable:
		return fmt.Errorf("%w: the user has no password in the file", ErrBadCredentials)
	}
	if !ok {
		return fmt.Errorf("%w: wrong password", ErrBadCredentials)
	}
	return nil
}

// verify reports whether password hashes to h, comparing in constant time.
func (h passwordHash) verify(password []byte) bool {
	if len(h.key) == 0 {
		return false
	}
	var got []byte
	if h.pbkdf2 {
		k, err := pbkdf2.Key(sha512.New, string(password), h.salt, h.iterations, len(h.key))
		if err != nil {
			return false
		}
		got = k
	} else {
		d := sha512.New()
		d.Write(password)
		d.Write(h.salt)
		got = d.Sum(nil)
	}
	return subtle.ConstantTimeCompare(got, h.key) == 1
}

// HashPassword returns a "$7$" password file entry (the part after
// "username:") for password: PBKDF2-HMAC-SHA512 over a random 12-byte salt,
// as mosquitto_passwd makes them. iterations ≤ 0 means DefaultIterations.
func HashPassword(password string, iterations int) (string, error) {
	if iterations <= 0 {
		iterations = DefaultIterations
	}
	if iterations > maxIterations {
		return "", fmt.Errorf("auth: %d iterations is more than the %d allowed", iterations, maxIterations)
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := pbkdf2.Key(sha512.New, password, salt, iterations, sha512.Size)
	if err != nil {
		return "", err
	}
	return "$7$" + strconv.Itoa(iterations) + "$" +
		base64.StdEncoding.EncodeToString(salt) + "$" +
		base64.StdEncoding.EncodeToString(key), nil
}

func readPasswordTable(path string) (*passwordTable, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: password file: %w", err)
	}
	defer file.Close()
	return parsePasswordTable(path, file)
}

func parsePasswordTable(name string, r io.Reader) (*passwordTable, error) {
	t := &passwordTable{users: make(map[string]passwordHash)}
	firstLine := make(map[string]int)
	err := scanLines(name, r, func(n int, line string) error {
		user, entry, ok := splitPasswordLine(line)
		if !ok {
			return nil // blank or comment
		}
		if user == "" {
			return fmt.Errorf("%s:%d: empty user name", name, n)
		}
		var h passwordHash // no password: the user can never log in
		if entry != "" {
			var err error
			if h, err = parsePasswordHash(entry); err != nil {
				// The entry may be a plain-text password: never quote it.
				return fmt.Errorf("%s:%d: user %q: %w", name, n, user, err)
			}
		}
		if first, dup := firstLine[user]; dup {
			return fmt.Errorf("%s:%d: user %q is already defined on line %d", name, n, user, first)
		}
		firstLine[user] = n
		t.users[user] = h
		return nil
	})
	if err != nil {
		return nil, err
	}
	t.dummy = dummyHash(t.users)
	return t, nil
}

// dummyHash returns a hash that costs what most of users' hashes cost.
func dummyHash(users map[string]passwordHash) passwordHash {
	counts := make(map[int]int)
	iterations := DefaultIterations
	for _, h := range users {
		if !h.pbkdf2 {
			continue
		}
		counts[h.iterations]++
		if c := counts[h.iterations]; c > counts[iterations] || c == counts[iterations] && h.iterations > iterations {
			iterations = h.iterations
		}
	}
	return passwordHash{
		pbkdf2:     true,
		iterations: iterations,
		salt:       make([]byte, saltLen),
		key:        make([]byte, sha512.Size),
	}
}

// splitPasswordLine splits "user:entry"; ok is false for a blank line or a
// comment. Blanks before the user name are dropped, as mosquitto does. A
// line without ':' is a user with an empty entry.
func splitPasswordLine(line string) (user, entry string, ok bool) {
	line = strings.TrimLeft(line, " \t")
	if line == "" || line[0] == '#' {
		return "", "", false
	}
	user, entry, _ = strings.Cut(line, ":")
	return user, entry, true
}

var (
	errNotHashed = errors.New(`password is not hashed (it should start with "$7$" or "$6$"; a plain-text file can be converted with petrel passwd -U)`)
)

// parsePasswordHash parses "$7$iter$salt$key" or "$6$salt$hash".
func parsePasswordHash(entry string) (passwordHash, error) {
	switch {
	case strings.HasPrefix(entry, "$7$"):
		f := strings.Split(entry[3:], "$")
		if len(f) != 3 {
			return passwordHash{}, errors.New(`malformed "$7$" hash: want $7$<iterations>$<salt>$<key>`)
		}
		iter, err := strconv.Atoi(f[0])
		if err != nil || iter < 1 || iter > maxIterations {
			return passwordHash{}, fmt.Errorf(`malformed "$7$" hash: iteration count must be 1 to %d`, maxIterations)
		}
		salt, key, err := decodeSaltAndKey(f[1], f[2])
		if err != nil {
			return passwordHash{}, fmt.Errorf(`malformed "$7$" hash: %w`, err)
		}
		return passwordHash{pbkdf2: true, iterations: iter, salt: salt, key: key}, nil
	case strings.HasPrefix(entry, "$6$"):
		f := strings.Split(entry[3:], "$")
		if len(f) != 2 {
			return passwordHash{}, errors.New(`malformed "$6$" hash: want $6$<salt>$<hash>`)
		}
		salt, key, err := decodeSaltAndKey(f[0], f[1])
		if err != nil {
			return passwordHash{}, fmt.Errorf(`malformed "$6$" hash: %w`, err)
		}
		if len(key) != sha512.Size {
			return passwordHash{}, fmt.Errorf(`malformed "$6$" hash: hash is %d bytes, want %d`, len(key), sha512.Size)
		}
		return passwordHash{salt: salt, key: key}, nil
	}
	return passwordHash{}, errNotHashed
}

func decodeSaltAndKey(salt64, key64 string) (salt, key []byte, err error) {
	salt, err = base64.StdEncoding.DecodeString(salt64)
	if err != nil || len(salt) == 0 {
		return nil, nil, errors.New("salt is not base64")
	}
	key, err = base64.StdEncoding.DecodeString(key64)
	if err != nil || len(key) == 0 {
		return nil, nil, errors.New("hash is not base64")
	}
	return salt, key, nil
}

// isPasswordHash reports whether entry parses as a hash this package knows.
func isPasswordHash(entry string) bool {
	_, err := parsePasswordHash(entry)
	return err == nil
}

// PasswordEditor holds a password file's lines for a tool that changes
// some users and must keep everything else (comments, blank lines, other
// users, even lines it does not understand) as it was. Build one with
// ReadPasswordEditor or NewPasswordEditor, change it, and save it with
// WritePasswordFile.
type PasswordEditor struct {
	lines []string
}

// NewPasswordEditor returns an editor for an empty file.
func NewPasswordEditor() *PasswordEditor { return &PasswordEditor{} }

// ReadPasswordEditor reads a password file into an editor. It does not
// check the hashes: a tool must be able to fix a file the broker refuses.
func ReadPasswordEditor(r io.Reader) (*PasswordEditor, error) {
	e := &PasswordEditor{}
	err := scanLines("password file", r, func(_ int, line string) error {
		e.lines = append(e.lines, line)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// ValidateUsername reports why name cannot be a user in a password file,
// or nil if it can.
func ValidateUsername(name string) error {
	switch {
	case name == "":
		return errors.New("user name is empty")
	case strings.Contains(name, ":"):
		return errors.New(`user name contains ":"`)
	case strings.TrimSpace(name) != name:
		return errors.New("user name has blanks around it")
	case name[0] == '#':
		return errors.New(`user name starts with "#" (the line would be a comment)`)
	case strings.ContainsAny(name, "\x00\r\n"):
		return errors.New("user name contains a control character")
	case !utf8.ValidString(name):
		return errors.New("user name is not UTF-8")
	}
	return nil
}

// setEntry sets user's entry: the user's first line is replaced in place
// and any later lines for the same user are removed; a new user is added at
// the end.
func (e *PasswordEditor) setEntry(user, entry string) error {
	if err := ValidateUsername(user); err != nil {
		return err
	}
	if strings.ContainsAny(entry, "\r\n") {
		return errors.New("password entry contains a line break")
	}
	line := user + ":" + entry
	out := e.lines[:0:0]
	done := false
	for _, l := range e.lines {
		if u, _, ok := splitPasswordLine(l); ok && u == user {
			if !done {
				out = append(out, line)
				done = true
			}
			continue
		}
		out = append(out, l)
	}
	if !done {
		out = append(out, line)
	}
	e.lines = out
	return nil
}

// SetPassword hashes password with HashPassword and sets it as user's entry.
func (e *PasswordEditor) SetPassword(user, password string, iterations int) error {
	if err := ValidateUsername(user); err != nil {
		return err
	}
	h, err := HashPassword(password, iterations)
	if err != nil {
		return err
	}
	return e.setEntry(user, h)
}

// Delete removes every line for user and reports whether there was one.
func (e *PasswordEditor) Delete(user string) bool {
	out := e.lines[:0:0]
	found := false
	for _, l := range e.lines {
		if u, _, ok := splitPasswordLine(l); ok && u == user {
			found = true
			continue
		}
		out = append(out, l)
	}
	e.lines = out
	return found
}

// UpgradePlaintext replaces every plain-text "user:password" line with a
// hashed one, as mosquitto_passwd -U does, and returns how many it hashed
// and how many it left because they already hold a hash. Unlike
// mosquitto_passwd -U, an entry that is already a valid "$7$" or "$6$" hash
// is left alone, so running it twice does no harm; the price is that a
// plain-text password that happens to look exactly like such a hash is
// kept as it is. The password is everything after the first ':', colons
// included.
func (e *PasswordEditor) UpgradePlaintext(iterations int) (hashed, skipped int, err error) {
	for i, l := range e.lines {
		u, entry, ok := splitPasswordLine(l)
		if !ok {
			continue
		}
		if isPasswordHash(entry) {
			skipped++
			continue
		}
		h, err := HashPassword(entry, iterations)
		if err != nil {
			return hashed, skipped, err
		}
		e.lines[i] = u + ":" + h
		hashed++
	}
	return hashed, skipped, nil
}

// writeTo writes the file's text to w.
func (e *PasswordEditor) writeTo(w io.Writer) (int64, error) {
	var b bytes.Buffer
	for _, l := range e.lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.WriteTo(w)
}

// WritePasswordFile saves e at path atomically: it writes a temporary file
// in the same directory with mode 0600, syncs it, and renames it over path,
// so a reader (the broker reloading) sees the old file or the new one,
// never half of one. When path already exists and the caller may, the new
// file keeps its owner and group, so a file edited by root stays readable
// by the broker's user.
func WritePasswordFile(path string, e *PasswordEditor) error {
	return writeFileAtomic(path, 0o600, func(w io.Writer) error {
		_, err := e.writeTo(w)
		return err
	})
}
