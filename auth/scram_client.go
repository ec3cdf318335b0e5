package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
)

// SCRAMClient is the client side of one SCRAM-SHA-256 exchange, without
// channel binding. Use it once, in order:
//
//	c, err := auth.NewSCRAMClient(user, password)
//	CONNECT with Authentication Method c.Method() and Data c.First()
//	AUTH 0x18 arrives with server-first: final, err := c.Final(data); send AUTH 0x18 with final
//	CONNACK 0x00 arrives with server-final: err := c.Verify(data)
//
// Verify matters: until it succeeds, the client does not know it is talking
// to a server that holds its credentials.
//
// A SCRAMClient is not safe for concurrent use.
type SCRAMClient struct {
	password    string // prepared
	firstBare   string // client-first-message-bare
	nonce       string
	state       int
	serverProof []byte // ServerSignature expected in server-final-message
}

// The states of a SCRAMClient.
const (
	scramClientFirst = iota // Final not called yet
	scramClientFinal        // client-final sent, Verify not called yet
	scramClientDone         // Verify called or an error happened
)

// NewSCRAMClient prepares an exchange for username and password. The user
// name is sent as given, with ',' and '=' escaped as RFC 5802 requires; the
// password is prepared as NewSCRAMCredentials prepares it.
func NewSCRAMClient(username, password string) (*SCRAMClient, error) {
	return newSCRAMClient(username, password, newNonce())
}

// newSCRAMClient is NewSCRAMClient with a chosen nonce, for tests.
func newSCRAMClient(username, password, nonce string) (*SCRAMClient, error) {
	if err := checkName(username); err != nil {
		return nil, err
	}
	if err := checkMessage("user name", []byte(username)); err != nil {
		return nil, err
	}
	prepared, err := preparePassword(password)
	if err != nil {
		return nil, err
	}
	return &SCRAMClient{
		password:  prepared,
		firstBare: "n=" + escapeName(username) + ",r=" + nonce,
		nonce:     nonce,
	}, nil
}

// Method returns "SCRAM-SHA-256", the Authentication Method to send.
func (c *SCRAMClient) Method() string { return SCRAMSHA256 }

// First returns client-first-message, the Authentication Data of CONNECT
// (or of AUTH 0x19 when re-authenticating).
func (c *SCRAMClient) First() []byte {
	return []byte(scramClientGS2Header + c.firstBare)
}

// scramClientGS2Header says the client does not support channel binding.
const scramClientGS2Header = "n,,"

// Final reads the server's server-first-message and returns
// client-final-message, carrying the client's proof. It runs PBKDF2 with the
// server's salt and iteration count, which must be within
// [MinSCRAMIterations, MaxSCRAMIterations].
func (c *SCRAMClient) Final(serverFirst []byte) ([]byte, error) {
	if c.state != scramClientFirst {
		c.state = scramClientDone
		return nil, errors.New("auth: SCRAMClient.Final called twice")
	}
	c.state = scramClientDone // until it succeeds
	nonce, salt, iterations, err := c.parseServerFirst(serverFirst)
	if err != nil {
		return nil, err
	}
	salted, err := saltedPassword(c.password, salt, iterations)
	if err != nil {
		return nil, err
	}
	withoutProof := "c=" + b64.EncodeToString([]byte(scramClientGS2Header)) + ",r=" + nonce
	auth := authMessage(c.firstBare, string(serverFirst), withoutProof)

	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	proof := hmacSHA256(storedKey[:], auth)
	subtle.XORBytes(proof, proof, clientKey)
	c.serverProof = hmacSHA256(hmacSHA256(salted, "Server Key"), auth)
	c.state = scramClientFinal
	return []byte(withoutProof + ",p=" + b64.EncodeToString(proof)), nil
}

// parseServerFirst reads server-first-message (RFC 5802 §7):
//
//	server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count ["," extensions]
func (c *SCRAMClient) parseServerFirst(msg []byte) (nonce string, salt []byte, iterations int, err error) {
	if err := checkMessage("server-first-message", msg); err != nil {
		return "", nil, 0, err
	}
	attrs := strings.Split(string(msg), ",")
	if strings.HasPrefix(attrs[0], "m=") {
		return "", nil, 0, malformed("server-first-message asks for a mandatory extension, and none is supported")
	}
	if len(attrs) < 3 {
		return "", nil, 0, malformed("server-first-message needs r=<nonce>,s=<salt>,i=<count>")
	}
	nonce, ok := attribute(attrs[0], 'r')
	if !ok {
		return "", nil, 0, malformed("server-first-message does not start with r=<nonce>")
	}
	if err := checkNonce(nonce); err != nil {
		return "", nil, 0, err
	}
	// The server must extend our nonce with its own (RFC 5802 §5.1).
	if len(nonce) <= len(c.nonce) || !strings.HasPrefix(nonce, c.nonce) {
		return "", nil, 0, malformed("server's nonce does not extend the client's")
	}
	salt64, ok := attribute(attrs[1], 's')
	if !ok {
		return "", nil, 0, malformed("server-first-message has no s=<salt> after the nonce")
	}
	if salt, err = b64.DecodeString(salt64); err != nil {
		return "", nil, 0, malformed("salt is not base64: %v", err)
	}
	if len(salt) == 0 || len(salt) > maxSCRAMSalt {
		return "", nil, 0, malformed("salt is %d bytes; want 1 to %d", len(salt), maxSCRAMSalt)
	}
	count, ok := attribute(attrs[2], 'i')
	if !ok {
		return "", nil, 0, malformed("server-first-message has no i=<count> after the salt")
	}
	if iterations, err = parseIterations(count); err != nil {
		return "", nil, 0, malformed("%v", err)
	}
	if err := checkExtensions(attrs[3:]); err != nil {
		return "", nil, 0, err
	}
	return nonce, salt, iterations, nil
}

// Verify reads server-final-message, the Authentication Data of the
// CONNACK (or AUTH 0x00) that ends the exchange, and checks the server's
// signature. A server-error ("e=...") is returned as an error.
func (c *SCRAMClient) Verify(serverFinal []byte) error {
	if c.state != scramClientFinal {
		c.state = scramClientDone
		return errors.New("auth: SCRAMClient.Verify called before Final, or twice")
	}
	c.state = scramClientDone
	if err := checkMessage("server-final-message", serverFinal); err != nil {
		return err
	}
	first, _, _ := strings.Cut(string(serverFinal), ",")
	if e, ok := attribute(first, 'e'); ok {
		return fmt.Errorf("auth: SCRAM server refused: %q", e)
	}
	v64, ok := attribute(first, 'v')
	if !ok {
		return malformed("server-final-message starts with neither v= nor e=")
	}
	v, err := b64.DecodeString(v64)
	if err != nil {
		return malformed("server signature is not base64: %v", err)
	}
	if subtle.ConstantTimeCompare(v, c.serverProof) != 1 {
		return errors.New("auth: SCRAM server signature is wrong: the server does not hold this user's credentials")
	}
	return nil
}
