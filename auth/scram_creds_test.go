package auth

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestSCRAMCredentialsRFC7677(t *testing.T) {
	salt, err := b64.DecodeString(rfcSalt)
	if err != nil {
		t.Fatal(err)
	}
	c, err := deriveSCRAMCredentials(rfcPassword, salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.String(); got != rfcCredentials {
		t.Fatalf("credentials of the RFC 7677 example\n got %s\nwant %s", got, rfcCredentials)
	}
}

func TestNewSCRAMCredentials(t *testing.T) {
	a, err := NewSCRAMCredentials("pencil", 0)
	if err != nil {
		t.Fatal(err)
	}
	if a.Iterations != DefaultSCRAMIterations || len(a.Salt) != 16 {
		t.Errorf("NewSCRAMCredentials(_, 0): %d iterations, %d-byte salt; want %d and 16",
			a.Iterations, len(a.Salt), DefaultSCRAMIterations)
	}
	if err := a.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	b, err := NewSCRAMCredentials("pencil", 5000)
	if err != nil {
		t.Fatal(err)
	}
	if b.Iterations != 5000 {
		t.Errorf("Iterations = %d; want 5000", b.Iterations)
	}
	if bytes.Equal(a.Salt, b.Salt) || bytes.Equal(a.StoredKey, b.StoredKey) {
		t.Error("two credentials for one password share a salt or a key")
	}

	for _, tc := range []struct {
		password   string
		iterations int
	}{
		{"pencil", 4095},
		{"pencil", -1},
		{"pencil", MaxSCRAMIterations + 1},
		{"", 0},
		{"pen\ncil", 0},
		{"pen\x7fcil", 0},
	} {
		if _, err := NewSCRAMCredentials(tc.password, tc.iterations); err == nil {
			t.Errorf("NewSCRAMCredentials(%q, %d) succeeded; want an error", tc.password, tc.iterations)
		}
	}
}

func TestPreparePassword(t *testing.T) {
	for _, p := range []string{"pencil", "p e n c i l ~!", "ünïcode", "\u00a0nbsp", "a\xffb", "é\x01"} {
		got, err := preparePassword(p)
		if err != nil || got != p {
			t.Errorf("preparePassword(%q) = %q, %v; want it unchanged", p, got, err)
		}
	}
	for _, p := range []string{"", "a\x00b", "tab\t", "\x7f"} {
		if _, err := preparePassword(p); err == nil {
			t.Errorf("preparePassword(%q) succeeded; want an error", p)
		}
	}
}

func TestSCRAMCredentialsTextRoundTrip(t *testing.T) {
	for _, iter := range []int{4096, 4097, 600000} {
		c, err := NewSCRAMCredentials("pencil", iter)
		if err != nil {
			t.Fatal(err)
		}
		text := c.String()
		if !strings.HasPrefix(text, fmt.Sprintf("SCRAM-SHA-256$%d:", iter)) {
			t.Errorf("String() = %q", text)
		}
		back, err := ParseSCRAMCredentials(text)
		if err != nil {
			t.Fatalf("ParseSCRAMCredentials(%q): %v", text, err)
		}
		if back.Iterations != c.Iterations || !bytes.Equal(back.Salt, c.Salt) ||
			!bytes.Equal(back.StoredKey, c.StoredKey) || !bytes.Equal(back.ServerKey, c.ServerKey) {
			t.Errorf("round trip of %q gave %q", text, back)
		}
	}
}

func TestParseSCRAMCredentialsErrors(t *testing.T) {
	const key = "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	cases := []struct{ name, text, want string }{
		{"empty", "", "do not start"},
		{"md5", "md5a3556571e93b0d20722ba62be61e8c2d", "do not start"},
		{"other hash", "SCRAM-SHA-1$4096:c2FsdA==$" + key + ":" + key, "do not start"},
		{"no keys", "SCRAM-SHA-256$4096:c2FsdA==", "no '$'"},
		{"no salt", "SCRAM-SHA-256$4096$" + key + ":" + key, "no ':'"},
		{"one key", "SCRAM-SHA-256$4096:c2FsdA==$" + key, "no ':'"},
		{"count low", "SCRAM-SHA-256$4095:c2FsdA==$" + key + ":" + key, "outside"},
		{"count high", "SCRAM-SHA-256$10000001:c2FsdA==$" + key + ":" + key, "outside"},
		{"count huge", "SCRAM-SHA-256$99999999999999999999:c2FsdA==$" + key + ":" + key, "not a number"},
		{"count signed", "SCRAM-SHA-256$+4096:c2FsdA==$" + key + ":" + key, "not a decimal"},
		{"count empty", "SCRAM-SHA-256$:c2FsdA==$" + key + ":" + key, "not a number"},
		{"salt empty", "SCRAM-SHA-256$4096:$" + key + ":" + key, "no salt"},
		{"salt not base64", "SCRAM-SHA-256$4096:c2Fs*A==$" + key + ":" + key, "salt is not base64"},
		{"salt unpadded", "SCRAM-SHA-256$4096:c2FsdA$" + key + ":" + key, "salt is not base64"},
		{"stored key short", "SCRAM-SHA-256$4096:c2FsdA==$c2FsdA==:" + key, "StoredKey is 4 bytes"},
		{"server key not base64", "SCRAM-SHA-256$4096:c2FsdA==$" + key + ":" + key + "$", "ServerKey is not base64"},
		{"server key missing", "SCRAM-SHA-256$4096:c2FsdA==$" + key + ":", "ServerKey is 0 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseSCRAMCredentials(tc.text)
			if err == nil {
				t.Fatalf("ParseSCRAMCredentials(%q) = %v; want an error", tc.text, c)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "auth: SCRAM credentials: ") {
				t.Fatalf("ParseSCRAMCredentials(%q) error %q; want one saying %q", tc.text, err, tc.want)
			}
		})
	}
}

func TestMemoryStore(t *testing.T) {
	var s MemoryStore
	if _, ok := s.SCRAMCredentials("user"); ok {
		t.Fatal("empty store found a user")
	}
	c := rfcCreds(t)
	if err := s.Add("user", c); err != nil {
		t.Fatal(err)
	}
	c.StoredKey[0] ^= 0xff // the store keeps its own copy
	got, ok := s.SCRAMCredentials("user")
	if !ok || got.String() != rfcCredentials {
		t.Fatalf("SCRAMCredentials(user) = %v, %v; want the credentials added", got, ok)
	}
	if err := s.Add("bad", SCRAMCredentials{}); err == nil {
		t.Error("Add accepted empty credentials")
	}
	s.Remove("user")
	if _, ok := s.SCRAMCredentials("user"); ok {
		t.Error("user still there after Remove")
	}
}

// TestMemoryStoreConcurrent changes the store while exchanges read it; run
// it with -race.
func TestMemoryStoreConcurrent(t *testing.T) {
	var store MemoryStore
	creds := rfcCreds(t)
	s := NewSCRAM(&store)
	s.serverNonce = func() string { return rfcServerNonce }
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 200 {
				user := fmt.Sprintf("u%d-%d", w, i%10)
				if err := store.Add(user, creds); err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					store.Remove(user)
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := range 200 {
				x, _ := s.Start("c")
				first := fmt.Sprintf("n,,n=u%d-%d,r=%s", (w+1)%4, i%10, rfcClientNonce)
				if _, done, err := x.Step([]byte(first)); err != nil || done {
					t.Errorf("Step(%q): done %v, err %v", first, done, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
