package auth

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestSCRAMServerRFC7677(t *testing.T) {
	s := newRFCServer(t)
	if s.Name() != "SCRAM-SHA-256" {
		t.Fatalf("Name() = %q", s.Name())
	}
	x := start(t, s)
	if got := stepContinue(t, x, rfcClientFirst); got != rfcServerFirst {
		t.Fatalf("server-first-message\n got %s\nwant %s", got, rfcServerFirst)
	}
	if x.Username() != "" {
		t.Errorf("Username() = %q before the proof; want \"\"", x.Username())
	}
	out, done, err := x.Step([]byte(rfcClientFinal))
	if err != nil || !done {
		t.Fatalf("Step(client-final) done %v, err %v; want success", done, err)
	}
	if string(out) != rfcServerFinal {
		t.Errorf("server-final-message\n got %s\nwant %s", out, rfcServerFinal)
	}
	if x.Username() != rfcUser {
		t.Errorf("Username() = %q; want %q", x.Username(), rfcUser)
	}
}

func TestSCRAMClientRFC7677(t *testing.T) {
	c, err := newSCRAMClient(rfcUser, rfcPassword, rfcClientNonce)
	if err != nil {
		t.Fatal(err)
	}
	if c.Method() != SCRAMSHA256 {
		t.Errorf("Method() = %q", c.Method())
	}
	if got := string(c.First()); got != rfcClientFirst {
		t.Fatalf("First()\n got %s\nwant %s", got, rfcClientFirst)
	}
	final, err := c.Final([]byte(rfcServerFirst))
	if err != nil {
		t.Fatalf("Final: %v", err)
	}
	if string(final) != rfcClientFinal {
		t.Fatalf("Final()\n got %s\nwant %s", final, rfcClientFinal)
	}
	if err := c.Verify([]byte(rfcServerFinal)); err != nil {
		t.Fatalf("Verify(RFC server-final): %v", err)
	}
}

// TestSCRAMClientAgainstServer runs whole exchanges with random nonces and
// salts, including user names that need escaping.
func TestSCRAMClientAgainstServer(t *testing.T) {
	var store MemoryStore
	s := NewSCRAM(&store)
	for _, user := range []string{"alice", "a,b=c", "=2C", "ünïcode", "x=3D,"} {
		creds, err := NewSCRAMCredentials("secret "+user, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Add(user, creds); err != nil {
			t.Fatal(err)
		}
		c, err := NewSCRAMClient(user, "secret "+user)
		if err != nil {
			t.Fatal(err)
		}
		x := start(t, s)
		serverFirst := stepContinue(t, x, string(c.First()))
		final, err := c.Final([]byte(serverFirst))
		if err != nil {
			t.Fatalf("%q: Final: %v", user, err)
		}
		serverFinal, done, err := x.Step(final)
		if err != nil || !done {
			t.Fatalf("%q: server Step(client-final): done %v, err %v", user, done, err)
		}
		if err := c.Verify(serverFinal); err != nil {
			t.Fatalf("%q: Verify: %v", user, err)
		}
		if x.Username() != user {
			t.Errorf("Username() = %q; want %q", x.Username(), user)
		}
	}
}

func TestSCRAMWrongPassword(t *testing.T) {
	s := newRFCServer(t)
	x := start(t, s)
	first := "n,,n=user,r=abcdefgh"
	serverFirst := stepContinue(t, x, first)
	err := stepFail(t, x, clientFinal(t, first, serverFirst, "pencil2"))
	if !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong password: err %v; want ErrBadCredentials", err)
	}
}

// TestSCRAMUnknownUser checks that an unknown user gets a server-first
// message like a real user's, the same one each time, and fails only at the
// proof, with the same error as a wrong password.
func TestSCRAMUnknownUser(t *testing.T) {
	s := newRFCServer(t)
	first := "n,,n=mallory,r=abcdefgh"

	x := start(t, s)
	serverFirst := stepContinue(t, x, first)
	want := "r=abcdefgh" + rfcServerNonce + ",s="
	if !strings.HasPrefix(serverFirst, want) || !strings.HasSuffix(serverFirst, ",i=4096") {
		t.Fatalf("server-first for an unknown user = %q; want %s<salt>,i=4096", serverFirst, want)
	}
	salt64 := strings.TrimSuffix(strings.TrimPrefix(serverFirst, want), ",i=4096")
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil || len(salt) != 16 {
		t.Fatalf("fake salt %q: %d bytes, err %v; want 16 bytes of base64", salt64, len(salt), err)
	}
	errUnknown := stepFail(t, x, clientFinal(t, first, serverFirst, "anything"))
	if errUnknown != ErrBadCredentials {
		t.Fatalf("unknown user: err %v; want ErrBadCredentials itself", errUnknown)
	}

	// Same user again: same salt, so repeated attempts do not give it away.
	if again := stepContinue(t, start(t, s), first); again != serverFirst {
		t.Errorf("second attempt's server-first = %q; want %q again", again, serverFirst)
	}
	// Another unknown user: another salt.
	other := stepContinue(t, start(t, s), "n,,n=eve,r=abcdefgh")
	if strings.Contains(other, salt64) {
		t.Errorf("two unknown users share the fake salt %s", salt64)
	}

	// A wrong password for a real user fails the same way.
	x = start(t, s)
	realFirst := "n,,n=user,r=abcdefgh"
	errWrong := stepFail(t, x, clientFinal(t, realFirst, stepContinue(t, x, realFirst), "wrong"))
	if errWrong.Error() != errUnknown.Error() {
		t.Errorf("wrong password error %q differs from unknown user error %q", errWrong, errUnknown)
	}
}

func TestSCRAMAuthzid(t *testing.T) {
	s := newRFCServer(t)
	first := "n,a=user,n=user,r=abcdefgh"
	x := start(t, s)
	final := clientFinal(t, first, stepContinue(t, x, first), rfcPassword)
	if _, done, err := x.Step([]byte(final)); err != nil || !done {
		t.Fatalf("authzid equal to the user: done %v, err %v; want success", done, err)
	}

	err := stepFail(t, start(t, s), "n,a=admin,n=user,r=abcdefgh")
	if !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("authzid of another user: err %v; want ErrNotAuthorized", err)
	}
}

// TestSCRAMChannelBindingFlag covers RFC 5802 §6 for a server that offers no
// channel binding.
func TestSCRAMChannelBindingFlag(t *testing.T) {
	s := newRFCServer(t)

	// "y": the client supports binding but thinks we do not. Right; accept,
	// and c= must carry "y,,".
	first := "y,,n=user,r=abcdefgh"
	x := start(t, s)
	final := clientFinal(t, first, stepContinue(t, x, first), rfcPassword)
	if !strings.HasPrefix(final, "c=eSws,") {
		t.Fatalf("test helper's client-final %q does not bind \"y,,\"", final)
	}
	if _, done, err := x.Step([]byte(final)); err != nil || !done {
		t.Fatalf("flag y: done %v, err %v; want success", done, err)
	}

	// A man in the middle turning "y" into "n" is caught by c=.
	x = start(t, s)
	serverFirst := stepContinue(t, x, "n,,n=user,r=abcdefgh")
	err := stepFail(t, x, clientFinal(t, first, serverFirst, rfcPassword))
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("c= of \"y,,\" after a \"n,,\" header: err %v; want ErrMalformed", err)
	}

	// "p=": the client requires binding, which we do not offer.
	err = stepFail(t, start(t, s), "p=tls-unique,,n=user,r=abcdefgh")
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "channel binding") {
		t.Fatalf("flag p=: err %v; want ErrMalformed about channel binding", err)
	}
}

func TestSCRAMMalformedFirst(t *testing.T) {
	cases := []struct{ name, msg string }{
		{"empty", ""},
		{"no gs2 header", "n=user,r=abcdefgh"},
		{"bad cbind flag", "x,,n=user,r=abcdefgh"},
		{"uppercase flag", "N,,n=user,r=abcdefgh"},
		{"channel binding p=", "p=tls-server-end-point,,n=user,r=abcdefgh"},
		{"one comma only", "n,n=user"},
		{"authzid without a=", "n,b=x,n=user,r=abcdefgh"},
		{"authzid empty", "n,a=,n=user,r=abcdefgh"},
		{"authzid bad escape", "n,a=us=er,n=user,r=abcdefgh"},
		{"mandatory extension", "n,,m=ext,n=user,r=abcdefgh"},
		{"no user", "n,,r=abcdefgh"},
		{"user not first", "n,,r=abcdefgh,n=user"},
		{"empty user", "n,,n=,r=abcdefgh"},
		{"bad escape", "n,,n=a=2Xb,r=abcdefgh"},
		{"truncated escape", "n,,n=ab=2,r=abcdefgh"},
		{"no nonce", "n,,n=user"},
		{"empty nonce", "n,,n=user,r="},
		{"nonce with space", "n,,n=user,r=abc def"},
		{"nonce with DEL", "n,,n=user,r=abc\x7f"},
		{"nonce not ASCII", "n,,n=user,r=abcé"},
		{"bad extension", "n,,n=user,r=abcdefgh,1=x"},
		{"empty extension", "n,,n=user,r=abcdefgh,"},
		{"NUL", "n,,n=us\x00er,r=abcdefgh"},
		{"not UTF-8", "n,,n=us\xffer,r=abcdefgh"},
		{"oversized", "n,,n=user,r=abcdefgh,x=" + strings.Repeat("a", maxSCRAMMessage)},
		{"long user", "n,,n=" + strings.Repeat("u", maxSCRAMName+1) + ",r=abcdefgh"},
		{"long nonce", "n,,n=user,r=" + strings.Repeat("r", maxSCRAMNonce+1)},
	}
	s := newRFCServer(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := stepFail(t, start(t, s), tc.msg)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("client-first %q: err %v; want ErrMalformed", tc.msg, err)
			}
		})
	}
}

func TestSCRAMMalformedFinal(t *testing.T) {
	const proof = ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	const nonce = ",r=" + rfcCombinedNonce
	cases := []struct{ name, msg string }{
		{"empty", ""},
		{"no proof", "c=biws" + nonce},
		{"proof not last", "c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=" + nonce},
		{"proof not base64", "c=biws" + nonce + ",p=!!!!"},
		{"proof unpadded", "c=biws" + nonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ"},
		{"proof short", "c=biws" + nonce + ",p=AAAA"},
		{"proof empty", "c=biws" + nonce + ",p="},
		{"no channel binding", nonce[1:] + proof},
		{"channel binding not base64", "c=bi*s" + nonce + proof},
		{"channel binding of another header", "c=eSws" + nonce + proof},
		{"channel binding with data", "c=" + base64.StdEncoding.EncodeToString([]byte("n,,data")) + nonce + proof},
		{"no nonce", "c=biws" + proof},
		{"nonce mismatch", "c=biws,r=" + rfcClientNonce + "other" + proof},
		{"client nonce only", "c=biws,r=" + rfcClientNonce + proof},
		{"nonce before binding", nonce[1:] + ",c=biws" + proof},
		{"bad extension", "c=biws" + nonce + ",==" + proof},
		{"NUL", "c=biws\x00" + nonce + proof},
		{"oversized", "c=biws" + nonce + ",x=" + strings.Repeat("a", maxSCRAMMessage) + proof},
	}
	s := newRFCServer(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := start(t, s)
			stepContinue(t, x, rfcClientFirst)
			err := stepFail(t, x, tc.msg)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("client-final %q: err %v; want ErrMalformed", tc.msg, err)
			}
		})
	}

	// Well formed, right nonce and binding, wrong proof.
	x := start(t, s)
	stepContinue(t, x, rfcClientFirst)
	bad := "c=biws" + nonce + ",p=" + base64.StdEncoding.EncodeToString(make([]byte, 32))
	if err := stepFail(t, x, bad); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("zero proof: err %v; want ErrBadCredentials", err)
	}
}

func TestSCRAMExtensionsIgnoredButSigned(t *testing.T) {
	s := newRFCServer(t)
	first := "n,,n=user,r=abcdefgh,x=first"
	x := start(t, s)
	final := clientFinal(t, first, stepContinue(t, x, first), rfcPassword)
	if _, done, err := x.Step([]byte(final)); err != nil || !done {
		t.Fatalf("with an extension: done %v, err %v; want success", done, err)
	}
}

func TestSCRAMStepsAfterEnd(t *testing.T) {
	s := newRFCServer(t)

	x := start(t, s)
	stepContinue(t, x, rfcClientFirst)
	if _, done, err := x.Step([]byte(rfcClientFinal)); err != nil || !done {
		t.Fatalf("RFC exchange: done %v, err %v", done, err)
	}
	if _, done, err := x.Step([]byte(rfcClientFinal)); !errors.Is(err, ErrMalformed) || !done {
		t.Errorf("third Step after success: done %v, err %v; want ErrMalformed", done, err)
	}
	if x.Username() != rfcUser {
		t.Errorf("Username() = %q after a stray Step; want %q kept", x.Username(), rfcUser)
	}

	x = start(t, s)
	stepFail(t, x, "garbage")
	if err := stepFail(t, x, rfcClientFinal); !errors.Is(err, ErrMalformed) {
		t.Errorf("Step after a failed first step: err %v; want ErrMalformed", err)
	}
}

// brokenStore hands out credentials that do not validate.
type brokenStore struct{}

func (brokenStore) SCRAMCredentials(string) (SCRAMCredentials, bool) {
	return SCRAMCredentials{Salt: []byte("salt"), Iterations: 4096, StoredKey: []byte("short")}, true
}

func TestSCRAMBrokenStoreIsOurFault(t *testing.T) {
	err := stepFail(t, start(t, NewSCRAM(brokenStore{})), rfcClientFirst)
	if errors.Is(err, ErrMalformed) || errors.Is(err, ErrBadCredentials) || errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("broken store: err %v; want an error that is not the client's fault", err)
	}
	if ReasonCode(err) != 0x87 {
		t.Errorf("ReasonCode(%v) = %#x; want 0x87", err, ReasonCode(err))
	}
}

func TestSCRAMNilStoreKnowsNobody(t *testing.T) {
	x := start(t, NewSCRAM(nil))
	serverFirst := stepContinue(t, x, rfcClientFirst)
	if err := stepFail(t, x, clientFinal(t, rfcClientFirst, serverFirst, rfcPassword)); err != ErrBadCredentials {
		t.Fatalf("nil store: err %v; want ErrBadCredentials", err)
	}
}

// TestSCRAMServerNonce checks the real nonce source: fresh, long, printable.
func TestSCRAMServerNonce(t *testing.T) {
	s := NewSCRAM(nil)
	a := stepContinue(t, start(t, s), rfcClientFirst)
	b := stepContinue(t, start(t, s), rfcClientFirst)
	na, _, _ := strings.Cut(strings.TrimPrefix(a, "r="+rfcClientNonce), ",")
	nb, _, _ := strings.Cut(strings.TrimPrefix(b, "r="+rfcClientNonce), ",")
	if len(na) < 24 || na == nb {
		t.Fatalf("server nonces %q and %q; want fresh ones of 18 random bytes or more", na, nb)
	}
	if err := checkNonce(na); err != nil {
		t.Fatalf("server nonce %q: %v", na, err)
	}
}
