package admin

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// minTokenLength keeps a token file from holding something guessable.
const minTokenLength = 16

// loadToken reads the token file, or with create makes it when it does not
// exist, and puts the token in force.
func (s *Server) loadToken(create bool) error {
	path := s.cfg.TokenFile
	token, err := readToken(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		token, err = createToken(path)
		if err == nil {
			s.log.Info("http: created a token for the admin API; requests send it as Authorization: Bearer TOKEN", "file", path)
		}
	}
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(token))
	s.token.Store(&sum)
	return nil
}

// CheckTokenFile reads a token file as the server would, and says what is
// wrong with it, for petrel check-config.
func CheckTokenFile(path string) error {
	_, err := readToken(path)
	return err
}

// readToken returns the token in path: its content without the white
// space around it. A file others may read is used, with a warning: the
// token is as good as a password.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("http: token file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	switch {
	case len(token) < minTokenLength:
		return "", fmt.Errorf("http: token file %s: the token is shorter than %d characters", path, minTokenLength)
	case strings.ContainsAny(token, " \t\r\n"):
		return "", fmt.Errorf("http: token file %s: the token is more than one word", path)
	}
	return token, nil
}

// createToken writes a new random token (32 bytes, in hex) to path, mode
// 0600, in a directory made 0700 if missing. A file someone else made
// meanwhile wins, and is read.
func createToken(path string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("http: token file: %w", err)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	token := hex.EncodeToString(b[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return readToken(path)
	}
	if err != nil {
		return "", fmt.Errorf("http: token file: %w", err)
	}
	_, err = f.WriteString(token + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("http: token file: %w", err)
	}
	return token, nil
}

// authorized reports whether r carries the token, as
// "Authorization: Bearer TOKEN". The hashes are compared in constant time,
// and every way of being wrong (no header, another scheme, another token)
// takes the same path.
func (s *Server) authorized(r *http.Request) bool {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	want := s.token.Load()
	match := subtle.ConstantTimeCompare(sum[:], want[:]) == 1
	return match && strings.EqualFold(scheme, "Bearer")
}

// refuse answers a request without the token: 401, after the delay its
// address has earned by its recent failures (as failed MQTT logins are),
// with nothing that says what was wrong.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request) {
	s.logins.Failed(r.RemoteAddr)
	delay := s.logins.Delay(r.RemoteAddr)
	s.log.Info("http: request without a valid token", "remote", r.RemoteAddr, "path", r.URL.Path,
		"delay", delay)
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return // gone: nobody to answer
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="petrel"`)
	writeError(w, http.StatusUnauthorized, "unauthorized")
}
