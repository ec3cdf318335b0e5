package auth

import (
	"errors"
	"fmt"
	"testing"
)

func TestReasonCode(t *testing.T) {
	cases := []struct {
		err  error
		want byte
	}{
		{nil, 0x00},
		{ErrBadCredentials, 0x86},
		{fmt.Errorf("wrapped: %w", ErrBadCredentials), 0x86},
		{ErrNotAuthorized, 0x87},
		{ErrMalformed, 0x82},
		{malformed("bad %s", "thing"), 0x82},
		{errors.New("store is down"), 0x87},
	}
	for _, tc := range cases {
		if got := ReasonCode(tc.err); got != tc.want {
			t.Errorf("ReasonCode(%v) = %#02x; want %#02x", tc.err, got, tc.want)
		}
	}
}

// namedMethod is a Method with a name and nothing else.
type namedMethod string

func (m namedMethod) Name() string                   { return string(m) }
func (m namedMethod) Start(string) (Exchange, error) { return nil, errors.New("not implemented") }

func TestNewMethods(t *testing.T) {
	scram := NewSCRAM(nil)
	ms := NewMethods(scram, namedMethod("OTHER"))
	if m, ok := ms.Lookup("SCRAM-SHA-256"); !ok || m != scram {
		t.Errorf("Lookup(SCRAM-SHA-256) = %v, %v", m, ok)
	}
	if _, ok := ms.Lookup("scram-sha-256"); ok {
		t.Error("Lookup matched a name in another case")
	}
	if _, ok := ms.Lookup("PLAIN"); ok {
		t.Error("Lookup found an unregistered method")
	}
	var none Methods
	if _, ok := none.Lookup("SCRAM-SHA-256"); ok {
		t.Error("nil Methods found a method")
	}
}

func TestNewMethodsPanics(t *testing.T) {
	for name, ms := range map[string][]Method{
		"duplicate":  {namedMethod("X"), namedMethod("X")},
		"empty name": {namedMethod("")},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewMethods with a %s did not panic", name)
				}
			}()
			NewMethods(ms...)
		}()
	}
}
