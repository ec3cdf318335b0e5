package auth

import (
	"errors"
	"testing"
)

// FuzzSCRAMServer feeds arbitrary client-first and client-final messages to
// the server. It must never panic, must report a failure only with done set
// and no data, and must blame any failure on the client: with a working
// store, every error is ErrMalformed, ErrBadCredentials or ErrNotAuthorized.
// The server nonce is fixed so the fuzzer can reach the proof check.
func FuzzSCRAMServer(f *testing.F) {
	f.Add([]byte(rfcClientFirst), []byte(rfcClientFinal))
	f.Add([]byte("y,a=user,n=user,r=x,e=1"), []byte("c=eSxhPXVzZXIs,r=x"+rfcServerNonce+",p=AAAA"))
	f.Add([]byte("n,,n=ghost=2C,r=abc"), []byte("c=biws,r=abc"+rfcServerNonce+",x=1,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
	f.Add([]byte("p=tls-unique,,n=user,r=abc"), []byte(""))
	f.Add([]byte("n,,m=1,n=user,r=abc"), []byte("c=biws"))

	s := newRFCServer(f)
	f.Fuzz(func(t *testing.T, first, final []byte) {
		x, err := s.Start("fuzz")
		if err != nil {
			t.Fatal(err)
		}
		for i, msg := range [][]byte{first, final, final} {
			out, done, err := x.Step(msg)
			if err != nil {
				if !done || out != nil {
					t.Fatalf("step %d failed (%v) with done %v and data %q", i, err, done, out)
				}
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadCredentials) && !errors.Is(err, ErrNotAuthorized) {
					t.Fatalf("step %d: error %v is not the client's fault", i, err)
				}
				if x.Username() != "" {
					t.Fatalf("Username() = %q after a failure", x.Username())
				}
				return
			}
			if len(out) == 0 {
				t.Fatalf("step %d succeeded without data", i)
			}
			if done {
				if i != 1 || x.Username() == "" {
					t.Fatalf("success at step %d as %q", i, x.Username())
				}
				// The only password that can succeed is the RFC user's.
				if x.Username() != rfcUser {
					t.Fatalf("authenticated as %q", x.Username())
				}
				return
			}
		}
		t.Fatal("exchange went on past two steps")
	})
}
