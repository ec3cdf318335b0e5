package auth

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// Iteration counts for SCRAM-SHA-256 credentials. RFC 7677 §4 asks for at
// least 4096; the upper bound keeps a stored or received count from costing
// more than a few seconds of CPU.
const (
	DefaultSCRAMIterations = 4096
	MinSCRAMIterations     = 4096
	MaxSCRAMIterations     = 10_000_000
)

// scramSaltSize is the size of the salt NewSCRAMCredentials draws.
const scramSaltSize = 16

// SCRAMCredentials is what a server stores for one SCRAM-SHA-256 user, in
// RFC 5802's terms: it verifies a password without holding it. StoredKey and
// ServerKey are SHA-256 sized (32 bytes). Keep them secret: anyone holding
// them can pose as the server to that user, and with a recorded exchange can
// pose as the user.
type SCRAMCredentials struct {
	Salt       []byte
	Iterations int
	StoredKey  []byte // H(ClientKey)
	ServerKey  []byte // HMAC(SaltedPassword, "Server Key")
}

// NewSCRAMCredentials derives credentials for password with a fresh random
// 16-byte salt. Iterations 0 means DefaultSCRAMIterations; otherwise it must be
// within [MinSCRAMIterations, MaxSCRAMIterations].
//
// The password must not be empty. An ASCII password is prepared exactly as
// SASLprep (RFC 4013) prescribes: printable characters are kept and control
// characters refused. A password holding any non-ASCII byte is used as its
// raw UTF-8 bytes, without SASLprep's NFKC normalisation and mappings, as
// many implementations do; a client must then send the same bytes.
func NewSCRAMCredentials(password string, iterations int) (SCRAMCredentials, error) {
	if iterations == 0 {
		iterations = DefaultSCRAMIterations
	}
	if err := checkIterations(iterations); err != nil {
		return SCRAMCredentials{}, fmt.Errorf("auth: %w", err)
	}
	salt := make([]byte, scramSaltSize)
	_, _ = rand.Read(salt) // crypto/rand.Read never fails; it crashes the program instead.
	return deriveSCRAMCredentials(password, salt, iterations)
}

// deriveSCRAMCredentials computes RFC 5802 §3's keys from a password.
func deriveSCRAMCredentials(password string, salt []byte, iterations int) (SCRAMCredentials, error) {
	salted, err := saltedPassword(password, salt, iterations)
	if err != nil {
		return SCRAMCredentials{}, err
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	return SCRAMCredentials{
		Salt:       bytes.Clone(salt),
		Iterations: iterations,
		StoredKey:  storedKey[:],
		ServerKey:  hmacSHA256(salted, "Server Key"),
	}, nil
}

// saltedPassword is Hi(Normalize(password), salt, i): PBKDF2 with
// HMAC-SHA-256 and one block of output (RFC 5802 §2.2, RFC 7677).
func saltedPassword(password string, salt []byte, iterations int) ([]byte, error) {
	prepared, err := preparePassword(password)
	if err != nil {
		return nil, err
	}
	return pbkdf2.Key(sha256.New, prepared, salt, iterations, scramKeySize)
}

// Validate reports whether c can be used: a salt, an iteration count within
// bounds and keys of SHA-256's size.
func (c SCRAMCredentials) Validate() error {
	switch {
	case len(c.Salt) == 0:
		return errors.New("auth: SCRAM credentials have no salt")
	case len(c.Salt) > maxSCRAMSalt:
		return fmt.Errorf("auth: SCRAM credentials' salt is %d bytes, more than %d", len(c.Salt), maxSCRAMSalt)
	case len(c.StoredKey) != scramKeySize:
		return fmt.Errorf("auth: SCRAM StoredKey is %d bytes, not %d", len(c.StoredKey), scramKeySize)
	case len(c.ServerKey) != scramKeySize:
		return fmt.Errorf("auth: SCRAM ServerKey is %d bytes, not %d", len(c.ServerKey), scramKeySize)
	}
	if err := checkIterations(c.Iterations); err != nil {
		return fmt.Errorf("auth: SCRAM credentials: %w", err)
	}
	return nil
}

// scramTextPrefix starts the text form of credentials.
const scramTextPrefix = "SCRAM-SHA-256$"

// String returns c in PostgreSQL's text form,
//
//	SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>
//
// the form ParseSCRAMCredentials reads, and what a password file holds.
func (c SCRAMCredentials) String() string {
	return scramTextPrefix + strconv.Itoa(c.Iterations) + ":" + b64.EncodeToString(c.Salt) +
		"$" + b64.EncodeToString(c.StoredKey) + ":" + b64.EncodeToString(c.ServerKey)
}

// ParseSCRAMCredentials reads credentials in the form String writes. The
// result has passed Validate.
func ParseSCRAMCredentials(s string) (SCRAMCredentials, error) {
	c, err := parseSCRAMCredentials(s)
	if err != nil {
		return SCRAMCredentials{}, fmt.Errorf("auth: SCRAM credentials: %w", err)
	}
	return c, nil
}

func parseSCRAMCredentials(s string) (SCRAMCredentials, error) {
	rest, ok := strings.CutPrefix(s, scramTextPrefix)
	if !ok {
		return SCRAMCredentials{}, fmt.Errorf("do not start with %q", scramTextPrefix)
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return SCRAMCredentials{}, errors.New("want <iterations>:<salt>$<StoredKey>:<ServerKey>, found no '$' before the keys")
	}
	iter, salt, ok := strings.Cut(params, ":")
	if !ok {
		return SCRAMCredentials{}, errors.New("want <iterations>:<salt>, found no ':'")
	}
	stored, server, ok := strings.Cut(keys, ":")
	if !ok {
		return SCRAMCredentials{}, errors.New("want <StoredKey>:<ServerKey>, found no ':'")
	}
	var c SCRAMCredentials
	var err error
	if c.Iterations, err = parseIterations(iter); err != nil {
		return SCRAMCredentials{}, err
	}
	if c.Salt, err = decodeField("salt", salt); err != nil {
		return SCRAMCredentials{}, err
	}
	if c.StoredKey, err = decodeField("StoredKey", stored); err != nil {
		return SCRAMCredentials{}, err
	}
	if c.ServerKey, err = decodeField("ServerKey", server); err != nil {
		return SCRAMCredentials{}, err
	}
	if err := c.Validate(); err != nil {
		return SCRAMCredentials{}, err
	}
	return c, nil
}

func decodeField(name, s string) ([]byte, error) {
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s is not base64: %v", name, err)
	}
	return b, nil
}

// A CredentialStore finds the SCRAM-SHA-256 credentials of a user. It is
// called concurrently by every connection authenticating, so it must be safe
// for concurrent use, and it should answer quickly: it is called while a
// client waits, on the goroutine handling that client's packets.
type CredentialStore interface {
	// SCRAMCredentials returns the user's credentials and true, or false if
	// there is no such user. The caller does not modify the slices.
	SCRAMCredentials(username string) (SCRAMCredentials, bool)
}

// MemoryStore is a CredentialStore in memory. Its zero value is an empty
// store ready to use; it is safe for concurrent use.
type MemoryStore struct {
	mu    sync.RWMutex // a leaf: nothing else is locked under it
	users map[string]SCRAMCredentials
}

// Add sets the credentials of username, replacing any it had. It refuses
// credentials that fail Validate. The store keeps its own copy.
func (s *MemoryStore) Add(username string, creds SCRAMCredentials) error {
	if err := creds.Validate(); err != nil {
		return fmt.Errorf("auth: user %q: %w", username, err)
	}
	creds.Salt = bytes.Clone(creds.Salt)
	creds.StoredKey = bytes.Clone(creds.StoredKey)
	creds.ServerKey = bytes.Clone(creds.ServerKey)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users == nil {
		s.users = make(map[string]SCRAMCredentials)
	}
	s.users[username] = creds
	return nil
}

// Remove deletes username, if present.
func (s *MemoryStore) Remove(username string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.users, username)
}

// SCRAMCredentials implements CredentialStore.
func (s *MemoryStore) SCRAMCredentials(username string) (SCRAMCredentials, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.users[username]
	return c, ok
}
