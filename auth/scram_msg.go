package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// SCRAM's syntax (RFC 5802 §7) and arithmetic (§3), shared by the server and
// the client.

// Bounds on what a peer may send. Real messages are a few hundred bytes.
const (
	maxSCRAMMessage = 4096 // bytes of one SCRAM message
	maxSCRAMName    = 1024 // bytes of a user name, after unescaping
	maxSCRAMNonce   = 1024 // bytes of a nonce
	maxSCRAMSalt    = 1024 // bytes of a salt, decoded
)

// scramKeySize is the size of SHA-256's output and so of every SCRAM key.
const scramKeySize = sha256.Size

// malformed wraps ErrMalformed with what was wrong.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: SCRAM: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// checkMessage applies the checks every SCRAM message gets before parsing:
// bounded, UTF-8 (RFC 5802 §7), and free of NUL, which no attribute value may
// hold.
func checkMessage(what string, msg []byte) error {
	switch {
	case len(msg) == 0:
		return malformed("empty %s", what)
	case len(msg) > maxSCRAMMessage:
		return malformed("%s is %d bytes, more than %d", what, len(msg), maxSCRAMMessage)
	case !utf8.Valid(msg):
		return malformed("%s is not UTF-8", what)
	case strings.IndexByte(string(msg), 0) >= 0:
		return malformed("%s holds a NUL byte", what)
	}
	return nil
}

// attribute returns the value of attr, which must be "<name>=<value>" with a
// non-empty value.
func attribute(attr string, name byte) (string, bool) {
	if len(attr) < 3 || attr[0] != name || attr[1] != '=' {
		return "", false
	}
	return attr[2:], true
}

// checkExtensions accepts optional extension attributes (RFC 5802 §7:
// extensions = attr-val *("," attr-val), attr-val = ALPHA "=" value). Their
// meaning is ignored; they are covered by the proof since they are part of
// AuthMessage.
func checkExtensions(attrs []string) error {
	for _, a := range attrs {
		if len(a) < 3 || !isAlpha(a[0]) || a[1] != '=' {
			return malformed("bad extension attribute %q", a)
		}
	}
	return nil
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// checkNonce accepts a nonce: printable ASCII except ',' (RFC 5802 §7).
func checkNonce(nonce string) error {
	if nonce == "" {
		return malformed("empty nonce")
	}
	if len(nonce) > maxSCRAMNonce {
		return malformed("nonce is %d bytes, more than %d", len(nonce), maxSCRAMNonce)
	}
	for i := 0; i < len(nonce); i++ {
		if c := nonce[i]; c < 0x21 || c > 0x7e || c == ',' {
			return malformed("nonce holds byte 0x%02x, which is not printable", c)
		}
	}
	return nil
}

// escapeName encodes a user name as a saslname: ',' becomes "=2C" and '='
// becomes "=3D" (RFC 5802 §5.1).
func escapeName(name string) string {
	if !strings.ContainsAny(name, ",=") {
		return name
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case ',':
			b.WriteString("=2C")
		case '=':
			b.WriteString("=3D")
		default:
			b.WriteByte(name[i])
		}
	}
	return b.String()
}

// unescapeName decodes a saslname. Any '=' not starting "=2C" or "=3D" fails
// the authentication (RFC 5802 §5.1). The message has been checked for NUL
// and ',' cannot occur in an attribute.
func unescapeName(s string) (string, error) {
	if strings.IndexByte(s, '=') < 0 {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		// ABNF strings are case-insensitive (RFC 5234 §2.3), so "=2c" is valid too.
		switch {
		case len(s)-i >= 3 && strings.EqualFold(s[i:i+3], "=2C"):
			b.WriteByte(',')
		case len(s)-i >= 3 && strings.EqualFold(s[i:i+3], "=3D"):
			b.WriteByte('=')
		default:
			return "", malformed("user name holds '=' not followed by 2C or 3D")
		}
		i += 2
	}
	return b.String(), nil
}

// checkName accepts an unescaped user name.
func checkName(name string) error {
	switch {
	case name == "":
		return malformed("empty user name")
	case len(name) > maxSCRAMName:
		return malformed("user name is %d bytes, more than %d", len(name), maxSCRAMName)
	}
	return nil
}

// preparePassword applies SASLprep (RFC 4013) the way most SCRAM
// implementations do without Unicode tables. For an ASCII password SASLprep
// is the identity, except that control characters are prohibited, so this
// is exact. A password holding any non-ASCII byte is used as its raw bytes,
// without the NFKC normalisation and mappings full SASLprep would apply
// (PostgreSQL does the same for passwords SASLprep refuses); a client that
// applies full SASLprep to such a password will not be accepted.
func preparePassword(password string) (string, error) {
	if password == "" {
		return "", errors.New("auth: empty password")
	}
	for i := 0; i < len(password); i++ {
		if password[i] >= 0x80 {
			return password, nil
		}
	}
	for i := 0; i < len(password); i++ {
		if c := password[i]; c < 0x20 || c == 0x7f {
			return "", fmt.Errorf("auth: password holds control character 0x%02x, which SASLprep prohibits", c)
		}
	}
	return password, nil
}

// newNonce returns a fresh random nonce: 24 bytes in base64, 32 printable
// characters without ',' or padding.
func newNonce() string {
	var b [24]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails; it crashes the program instead.
	return base64.StdEncoding.EncodeToString(b[:])
}

// b64 is the base64 of RFC 5802: standard alphabet, padded, strict.
var b64 = base64.StdEncoding.Strict()

func hmacSHA256(key []byte, parts ...string) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// authMessage is what both proofs sign (RFC 5802 §3).
func authMessage(clientFirstBare, serverFirst, clientFinalWithoutProof string) string {
	return clientFirstBare + "," + serverFirst + "," + clientFinalWithoutProof
}

// parseIterations reads an iteration count: decimal digits only, within
// [MinSCRAMIterations, MaxSCRAMIterations].
func parseIterations(s string) (int, error) {
	if s == "" || len(s) > 10 {
		return 0, fmt.Errorf("iteration count %q is not a number in range", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("iteration count %q is not a decimal number", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("iteration count %q: %v", s, err)
	}
	if err := checkIterations(n); err != nil {
		return 0, err
	}
	return n, nil
}

func checkIterations(n int) error {
	if n < MinSCRAMIterations || n > MaxSCRAMIterations {
		return fmt.Errorf("iteration count %d is outside [%d, %d]", n, MinSCRAMIterations, MaxSCRAMIterations)
	}
	return nil
}
