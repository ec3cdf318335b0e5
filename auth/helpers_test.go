package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

// RFC 7677 §3's example exchange, user "user", password "pencil".
const (
	rfcUser          = "user"
	rfcPassword      = "pencil"
	rfcClientNonce   = "rOprNGfwEbeRWgbNEkqO"
	rfcServerNonce   = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0" // the server's part of the nonce
	rfcSalt          = "W22ZaJ0SNY7soEsUEjb6gQ=="
	rfcClientFirst   = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
	rfcServerFirst   = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	rfcClientFinal   = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	rfcServerFinal   = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
	rfcCombinedNonce = rfcClientNonce + rfcServerNonce

	// rfcCredentials is the example's credentials in text form, computed
	// independently of this package (Python's hashlib.pbkdf2_hmac and hmac).
	rfcCredentials = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
)

// rfcCreds returns the example's credentials.
func rfcCreds(t testing.TB) SCRAMCredentials {
	t.Helper()
	c, err := ParseSCRAMCredentials(rfcCredentials)
	if err != nil {
		t.Fatalf("ParseSCRAMCredentials(RFC 7677 example): %v", err)
	}
	return c
}

// newRFCServer returns a SCRAM method knowing the example's user, answering
// with the example's server nonce.
func newRFCServer(t testing.TB) *SCRAM {
	t.Helper()
	var store MemoryStore
	if err := store.Add(rfcUser, rfcCreds(t)); err != nil {
		t.Fatalf("MemoryStore.Add: %v", err)
	}
	s := NewSCRAM(&store)
	s.serverNonce = func() string { return rfcServerNonce }
	return s
}

// start begins an exchange, failing the test if it cannot.
func start(t *testing.T, m Method) Exchange {
	t.Helper()
	x, err := m.Start("client-1")
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return x
}

// stepContinue runs a Step that must ask for more data.
func stepContinue(t *testing.T, x Exchange, data string) string {
	t.Helper()
	out, done, err := x.Step([]byte(data))
	if err != nil || done {
		t.Fatalf("Step(%q) = %q, done %v, err %v; want a continuation", data, out, done, err)
	}
	return string(out)
}

// stepFail runs a Step that must fail, and returns its error.
func stepFail(t *testing.T, x Exchange, data string) error {
	t.Helper()
	out, done, err := x.Step([]byte(data))
	if err == nil || !done || out != nil {
		t.Fatalf("Step(%q) = %q, done %v, err %v; want a failure with no data", data, out, done, err)
	}
	if x.Username() != "" {
		t.Errorf("Username() = %q after a failure; want \"\"", x.Username())
	}
	return err
}

// clientFinal computes client-final-message the long way, from RFC 5802 §3,
// for a client-first-message with any GS2 header: the package's SCRAMClient
// only sends "n,,".
func clientFinal(t testing.TB, clientFirst, serverFirst, password string) string {
	t.Helper()
	gs2 := clientFirst[:strings.Index(clientFirst, ",n=")+1]
	bare := clientFirst[len(gs2):]
	var nonce, salt64, iter string
	for _, a := range strings.Split(serverFirst, ",") {
		switch a[:2] {
		case "r=":
			nonce = a[2:]
		case "s=":
			salt64 = a[2:]
		case "i=":
			iter = a[2:]
		}
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil {
		t.Fatalf("server-first salt: %v", err)
	}
	n, err := parseIterations(iter)
	if err != nil {
		t.Fatalf("server-first iterations: %v", err)
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, n, 32)
	if err != nil {
		t.Fatal(err)
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	withoutProof := "c=" + base64.StdEncoding.EncodeToString([]byte(gs2)) + ",r=" + nonce
	clientKey := mac(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	sig := mac(storedKey[:], bare+","+serverFirst+","+withoutProof)
	for i := range sig {
		sig[i] ^= clientKey[i]
	}
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(sig)
}
