package auth

import (
	"errors"
	"strings"
	"testing"
)

func TestSCRAMClientEscapesName(t *testing.T) {
	c, err := newSCRAMClient("a,b=c", rfcPassword, rfcClientNonce)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(c.First()), "n,,n=a=2Cb=3Dc,r="+rfcClientNonce; got != want {
		t.Fatalf("First() = %q; want %q", got, want)
	}
}

func TestNewSCRAMClientRefuses(t *testing.T) {
	cases := []struct{ name, user, password string }{
		{"empty user", "", "pw"},
		{"user with NUL", "a\x00b", "pw"},
		{"user not UTF-8", "a\xffb", "pw"},
		{"long user", strings.Repeat("u", maxSCRAMName+1), "pw"},
		{"empty password", "user", ""},
		{"control character", "user", "pass\tword"},
	}
	for _, tc := range cases {
		if _, err := NewSCRAMClient(tc.user, tc.password); err == nil {
			t.Errorf("%s: NewSCRAMClient(%q, %q) succeeded; want an error", tc.name, tc.user, tc.password)
		}
	}
}

func TestSCRAMClientBadServerFirst(t *testing.T) {
	const salt, iter = ",s=" + rfcSalt, ",i=4096"
	cases := []struct{ name, msg string }{
		{"empty", ""},
		{"mandatory extension", "m=x,r=" + rfcCombinedNonce + salt + iter},
		{"too few attributes", "r=" + rfcCombinedNonce + salt},
		{"no nonce", "s=" + rfcSalt + ",r=" + rfcCombinedNonce + iter},
		{"nonce not extended", "r=" + rfcClientNonce + salt + iter},
		{"nonce of another client", "r=someoneelse" + rfcServerNonce + salt + iter},
		{"nonce not printable", "r=" + rfcClientNonce + "x y" + salt + iter},
		{"no salt", "r=" + rfcCombinedNonce + ",x=1" + iter},
		{"salt not base64", "r=" + rfcCombinedNonce + ",s=***" + iter},
		{"no count", "r=" + rfcCombinedNonce + salt + ",j=4096"},
		{"count too low", "r=" + rfcCombinedNonce + salt + ",i=4095"},
		{"count too high", "r=" + rfcCombinedNonce + salt + ",i=10000001"},
		{"count signed", "r=" + rfcCombinedNonce + salt + ",i=+4096"},
		{"count not a number", "r=" + rfcCombinedNonce + salt + ",i=4k"},
		{"bad extension", "r=" + rfcCombinedNonce + salt + iter + ",xy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := newSCRAMClient(rfcUser, rfcPassword, rfcClientNonce)
			if err != nil {
				t.Fatal(err)
			}
			if out, err := c.Final([]byte(tc.msg)); !errors.Is(err, ErrMalformed) || out != nil {
				t.Fatalf("Final(%q) = %q, %v; want ErrMalformed", tc.msg, out, err)
			}
			if err := c.Verify([]byte(rfcServerFinal)); err == nil {
				t.Fatal("Verify succeeded after a failed Final")
			}
		})
	}
}

func TestSCRAMClientVerify(t *testing.T) {
	cases := []struct {
		name, msg string
		want      string // in the error; "" for success
	}{
		{"right", rfcServerFinal, ""},
		{"right with extension", rfcServerFinal + ",x=y", ""},
		{"wrong signature", "v=AAAAZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "signature is wrong"},
		{"short signature", "v=AAAA", "signature is wrong"},
		{"server error", "e=invalid-proof", "invalid-proof"},
		{"not base64", "v=***", "not base64"},
		{"neither v nor e", "x=1", "neither"},
		{"empty", "", "empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := newSCRAMClient(rfcUser, rfcPassword, rfcClientNonce)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Final([]byte(rfcServerFirst)); err != nil {
				t.Fatal(err)
			}
			err = c.Verify([]byte(tc.msg))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Verify(%q): %v", tc.msg, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Verify(%q) = %v; want an error about %q", tc.msg, err, tc.want)
			}
		})
	}
}

func TestSCRAMClientOutOfOrder(t *testing.T) {
	c, err := newSCRAMClient(rfcUser, rfcPassword, rfcClientNonce)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Verify([]byte(rfcServerFinal)); err == nil {
		t.Error("Verify before Final succeeded")
	}

	c, _ = newSCRAMClient(rfcUser, rfcPassword, rfcClientNonce)
	if _, err := c.Final([]byte(rfcServerFirst)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Final([]byte(rfcServerFirst)); err == nil {
		t.Error("second Final succeeded")
	}
	if err := c.Verify([]byte(rfcServerFinal)); err == nil {
		t.Error("Verify after a refused second Final succeeded")
	}

	c, _ = newSCRAMClient(rfcUser, rfcPassword, rfcClientNonce)
	if _, err := c.Final([]byte(rfcServerFirst)); err != nil {
		t.Fatal(err)
	}
	if err := c.Verify([]byte(rfcServerFinal)); err != nil {
		t.Fatal(err)
	}
	if err := c.Verify([]byte(rfcServerFinal)); err == nil {
		t.Error("second Verify succeeded")
	}
}

// TestSCRAMClientDetectsFakeServer: a server without the user's credentials
// (here, one that answers for an unknown user) cannot produce a signature
// the client accepts.
func TestSCRAMClientDetectsFakeServer(t *testing.T) {
	c, err := newSCRAMClient(rfcUser, rfcPassword, rfcClientNonce)
	if err != nil {
		t.Fatal(err)
	}
	impostor := NewSCRAM(nil)
	impostor.serverNonce = func() string { return rfcServerNonce }
	// Give the impostor the right salt so the client gets as far as Verify.
	creds := rfcCreds(t)
	creds.ServerKey = make([]byte, 32)
	var store MemoryStore
	if err := store.Add(rfcUser, creds); err != nil {
		t.Fatal(err)
	}
	impostor.store = &store
	x := start(t, impostor)
	final, err := c.Final([]byte(stepContinue(t, x, string(c.First()))))
	if err != nil {
		t.Fatal(err)
	}
	serverFinal, done, err := x.Step(final)
	if err != nil || !done {
		t.Fatalf("impostor Step: done %v, err %v (it has the right StoredKey)", done, err)
	}
	if err := c.Verify(serverFinal); err == nil {
		t.Fatal("client accepted a server with the wrong ServerKey")
	}
}
