package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"strconv"
	"strings"
)

// SCRAMSHA256 is the name of the SCRAM-SHA-256 authentication method.
const SCRAMSHA256 = "SCRAM-SHA-256"

// SCRAM is the SCRAM-SHA-256 authentication method (RFC 5802 with RFC 7677's
// hash), server side, without channel binding: it is not SCRAM-SHA-256-PLUS.
// The client proves it knows the password, and the server proves it knows the
// user's credentials, without either sending the password.
//
// The conversation has two steps:
//
//	client-first "n,,n=user,r=<client nonce>" → server-first "r=<nonce>,s=<salt>,i=<count>" in AUTH 0x18
//	client-final "c=biws,r=<nonce>,p=<proof>" → server-final "v=<signature>" in CONNACK 0x00 or AUTH 0x00
//
// where <nonce> is the client's nonce followed by the server's.
//
// The identity (Exchange.Username) is the SCRAM user name, "user" above, not
// the CONNECT's User Name field. An authorization identity ("n,a=<name>,") is
// accepted only if it names the same user.
//
// An unknown user is not revealed: the server answers with credentials
// derived from the user name and a secret drawn by NewSCRAM, so the salt is
// stable for as long as this SCRAM lives, and the exchange fails at the proof,
// exactly as a wrong password does. Fake credentials use
// DefaultSCRAMIterations: store real ones with that count too, or unknown
// users stand out by their count. The secret changes with each process, so a
// client watching across restarts can still tell an unknown user's salt
// changed.
//
// The server never runs PBKDF2: a step costs a few HMACs.
type SCRAM struct {
	store  CredentialStore
	secret [32]byte // keys the fake credentials of unknown users

	// serverNonce makes the server's part of the nonce; tests replace it
	// to reproduce RFC 7677's exchange.
	serverNonce func() string
}

var _ Method = (*SCRAM)(nil)

// NewSCRAM returns the SCRAM-SHA-256 method verifying users against store.
// A nil store knows no users.
func NewSCRAM(store CredentialStore) *SCRAM {
	s := &SCRAM{store: store, serverNonce: newNonce}
	_, _ = rand.Read(s.secret[:]) // crypto/rand.Read never fails; it crashes the program instead.
	return s
}

// Name returns "SCRAM-SHA-256".
func (s *SCRAM) Name() string { return SCRAMSHA256 }

// Start begins an exchange. It never fails; the client ID plays no part.
func (s *SCRAM) Start(clientID string) (Exchange, error) {
	return &scramExchange{m: s}, nil
}

// lookup returns the user's credentials, or fake ones and false.
func (s *SCRAM) lookup(username string) (SCRAMCredentials, bool, error) {
	if s.store != nil {
		if c, ok := s.store.SCRAMCredentials(username); ok {
			if err := c.Validate(); err != nil {
				return SCRAMCredentials{}, false, fmt.Errorf("credentials stored for user %q: %w", username, err)
			}
			return c, true, nil
		}
	}
	return s.fakeCredentials(username), false, nil
}

// fakeCredentials derives credentials for an unknown user that look like
// real ones and stay the same from one attempt to the next.
func (s *SCRAM) fakeCredentials(username string) SCRAMCredentials {
	return SCRAMCredentials{
		Salt:       hmacSHA256(s.secret[:], "salt\x00", username)[:scramSaltSize],
		Iterations: DefaultSCRAMIterations,
		StoredKey:  hmacSHA256(s.secret[:], "stored\x00", username),
		ServerKey:  hmacSHA256(s.secret[:], "server\x00", username),
	}
}

// The states of a scramExchange.
const (
	scramAwaitFirst = iota // waiting for client-first-message
	scramAwaitFinal        // server-first sent, waiting for client-final-message
	scramDone              // succeeded or failed
)

// scramExchange is one SCRAM conversation, server side.
type scramExchange struct {
	m     *SCRAM
	state int

	gs2Header       string // "n,," or "y,," with an optional authzid
	clientFirstBare string
	serverFirst     string
	nonce           string // client nonce + server nonce
	username        string
	creds           SCRAMCredentials
	known           bool   // false: creds are fake and the proof must fail
	authenticated   string // username, once the proof is verified
}

func (x *scramExchange) Username() string { return x.authenticated }

func (x *scramExchange) Step(clientData []byte) ([]byte, bool, error) {
	switch x.state {
	case scramAwaitFirst:
		x.state = scramAwaitFinal
		serverFirst, err := x.first(clientData)
		if err != nil {
			x.state = scramDone
			return nil, true, err
		}
		return serverFirst, false, nil
	case scramAwaitFinal:
		x.state = scramDone
		serverFinal, err := x.final(clientData)
		if err != nil {
			return nil, true, err
		}
		x.authenticated = x.username
		return serverFinal, true, nil
	default:
		return nil, true, malformed("authentication data after the exchange ended")
	}
}

// first reads client-first-message and answers server-first-message
// (RFC 5802 §5.1, §7):
//
//	client-first-message = gs2-header client-first-message-bare
//	gs2-header = gs2-cbind-flag "," [ authzid ] ","
//	client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
//	server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count ["," extensions]
func (x *scramExchange) first(msg []byte) ([]byte, error) {
	if err := checkMessage("client-first-message", msg); err != nil {
		return nil, err
	}
	gs2, bare, authzid, err := parseGS2Header(string(msg))
	if err != nil {
		return nil, err
	}
	attrs := strings.Split(bare, ",")
	if strings.HasPrefix(attrs[0], "m=") {
		return nil, malformed("client-first-message asks for a mandatory extension, and none is supported")
	}
	if len(attrs) < 2 {
		return nil, malformed("client-first-message needs n=<user>,r=<nonce>")
	}
	escaped, ok := attribute(attrs[0], 'n')
	if !ok {
		return nil, malformed("client-first-message does not start with n=<user>")
	}
	username, err := unescapeName(escaped)
	if err != nil {
		return nil, err
	}
	if err := checkName(username); err != nil {
		return nil, err
	}
	clientNonce, ok := attribute(attrs[1], 'r')
	if !ok {
		return nil, malformed("client-first-message has no r=<nonce> after the user name")
	}
	if err := checkNonce(clientNonce); err != nil {
		return nil, err
	}
	if err := checkExtensions(attrs[2:]); err != nil {
		return nil, err
	}
	if authzid != "" && authzid != username {
		// We let no user act as another. The check involves no secret and
		// says nothing of whether either user exists.
		return nil, fmt.Errorf("%w: SCRAM user %q asked to act as %q", ErrNotAuthorized, username, authzid)
	}

	creds, known, err := x.m.lookup(username)
	if err != nil {
		return nil, err
	}
	x.gs2Header, x.clientFirstBare, x.username = gs2, bare, username
	x.creds, x.known = creds, known
	x.nonce = clientNonce + x.m.serverNonce()
	x.serverFirst = "r=" + x.nonce + ",s=" + b64.EncodeToString(creds.Salt) + ",i=" + strconv.Itoa(creds.Iterations)
	return []byte(x.serverFirst), nil
}

// parseGS2Header splits client-first-message into its GS2 header and the
// bare message, and returns the unescaped authzid, if any.
//
// Channel binding (RFC 5802 §6): this method is not -PLUS, so the server
// does not support channel binding. "n" (client does not support it) and
// "y" (client supports it but thinks the server does not, which is right)
// are accepted; "p=" (client requires it) is refused.
func parseGS2Header(msg string) (header, bare, authzid string, err error) {
	flag, rest, ok := strings.Cut(msg, ",")
	if !ok {
		return "", "", "", malformed("client-first-message has no GS2 header")
	}
	switch {
	case flag == "n", flag == "y":
	case strings.HasPrefix(flag, "p="):
		return "", "", "", malformed("client requires channel binding (%q), which SCRAM-SHA-256 without -PLUS does not offer", flag)
	default:
		return "", "", "", malformed("GS2 channel binding flag %q is not n, y or p=", flag)
	}
	az, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return "", "", "", malformed("GS2 header has no second ','")
	}
	if az != "" {
		escaped, ok := attribute(az, 'a')
		if !ok {
			return "", "", "", malformed("GS2 header's authzid %q is not a=<name>", az)
		}
		if authzid, err = unescapeName(escaped); err != nil {
			return "", "", "", err
		}
		if err := checkName(authzid); err != nil {
			return "", "", "", err
		}
	}
	header = msg[:len(msg)-len(bare)]
	return header, bare, authzid, nil
}

// final reads client-final-message, verifies the proof and answers
// server-final-message (RFC 5802 §3, §5.1, §7):
//
//	client-final-message-without-proof = channel-binding "," nonce ["," extensions]
//	client-final-message = client-final-message-without-proof "," proof
//	server-final-message = (server-error / verifier) ["," extensions]
func (x *scramExchange) final(msg []byte) ([]byte, error) {
	if err := checkMessage("client-final-message", msg); err != nil {
		return nil, err
	}
	s := string(msg)
	i := strings.LastIndex(s, ",p=")
	if i < 0 {
		return nil, malformed("client-final-message has no p=<proof> at its end")
	}
	withoutProof, proof64 := s[:i], s[i+len(",p="):]
	proof, err := b64.DecodeString(proof64)
	if err != nil {
		return nil, malformed("proof is not base64: %v", err)
	}
	if len(proof) != scramKeySize {
		return nil, malformed("proof is %d bytes, not %d", len(proof), scramKeySize)
	}
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 {
		return nil, malformed("client-final-message needs c=<binding>,r=<nonce>,p=<proof>")
	}
	binding64, ok := attribute(attrs[0], 'c')
	if !ok {
		return nil, malformed("client-final-message does not start with c=<channel binding>")
	}
	binding, err := b64.DecodeString(binding64)
	if err != nil {
		return nil, malformed("channel binding is not base64: %v", err)
	}
	// Without channel binding, c= carries the GS2 header alone, and it must
	// be the one sent in client-first-message: this is what stops a
	// man in the middle from rewriting "y" into "n" (RFC 5802 §6).
	if string(binding) != x.gs2Header {
		return nil, malformed("channel binding %q does not match the GS2 header %q", binding, x.gs2Header)
	}
	nonce, ok := attribute(attrs[1], 'r')
	if !ok {
		return nil, malformed("client-final-message has no r=<nonce> after the channel binding")
	}
	if nonce != x.nonce {
		return nil, malformed("nonce does not continue this exchange")
	}
	if err := checkExtensions(attrs[2:]); err != nil {
		return nil, err
	}

	auth := authMessage(x.clientFirstBare, x.serverFirst, withoutProof)
	// ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); the proof is
	// right if H(ClientKey) is StoredKey.
	clientKey := hmacSHA256(x.creds.StoredKey, auth)
	subtle.XORBytes(clientKey, clientKey, proof)
	storedKey := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(storedKey[:], x.creds.StoredKey)&boolInt(x.known) != 1 {
		return nil, ErrBadCredentials
	}
	return []byte("v=" + b64.EncodeToString(hmacSHA256(x.creds.ServerKey, auth))), nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
