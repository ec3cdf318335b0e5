package auth

import (
	"errors"
	"fmt"
)

// A Method implements one MQTT 5 authentication method, such as
// "SCRAM-SHA-256". A Method is shared by every connection that uses it, so
// it must be safe for concurrent use; each conversation's state lives in the
// Exchange that Start returns.
//
// To add a method, implement Method and Exchange and register the Method
// with NewMethods. The broker never interprets authentication data: whatever
// the client sends reaches Step, and whatever Step returns reaches the client.
type Method interface {
	// Name is the Authentication Method string a client sends in CONNECT or
	// AUTH to choose this method. Names are matched exactly (case matters).
	Name() string

	// Start begins one conversation for the client with this identifier. It
	// is called when a CONNECT names this method, and again for each
	// re-authentication (AUTH 0x19). Start does no authentication itself:
	// the client's first Authentication Data, from that CONNECT or AUTH, is
	// given to the Exchange's first Step, like every later message.
	//
	// An error refuses the client before any data is read; it is reported
	// like an error from Step.
	Start(clientID string) (Exchange, error)
}

// An Exchange is one authentication conversation between the server and a
// client. It is used by one connection at a time: calls to Step are made one
// after another, never concurrently.
type Exchange interface {
	// Step takes the Authentication Data the client sent (empty if it sent
	// none) and returns the server's answer:
	//
	//   - done == false, err == nil: send AUTH 0x18 (Continue authentication)
	//     carrying serverData and wait for the client's next AUTH 0x18, whose
	//     data goes to the next Step.
	//   - done == true, err == nil: the client is authenticated as Username().
	//     Send CONNACK 0x00 (or, when re-authenticating, AUTH 0x00) carrying
	//     serverData as Authentication Data if it is not empty.
	//   - err != nil: authentication failed and done is true. serverData is
	//     nil. Answer with ReasonCode(err).
	//
	// After done is reported, further calls fail with ErrMalformed.
	//
	// Errors wrapping ErrBadCredentials, ErrNotAuthorized or ErrMalformed are
	// the client's fault; any other error is the server's (a broken store,
	// for example) and deserves to be logged as such. Error messages are for
	// the server's logs: they may name the user and are not meant to be sent
	// to the client as a Reason String.
	Step(clientData []byte) (serverData []byte, done bool, err error)

	// Username is the authenticated identity once Step has reported success,
	// and "" before then or after a failure. It is the name ACLs apply to.
	// On re-authentication the broker should require it to equal the
	// identity the connection already has.
	Username() string
}

// Errors a Step reports for a client's fault. Test for them with errors.Is:
// the errors returned wrap them with detail.
var (
	// ErrBadCredentials means the client could not prove who it claims to
	// be: a wrong password or an unknown user (the two are not told apart).
	ErrBadCredentials = errors.New("auth: bad user name or password")
	// ErrNotAuthorized means the client proved who it is but may not connect
	// as the identity it asked for.
	ErrNotAuthorized = errors.New("auth: not authorized")
	// ErrMalformed means the client's authentication data breaks the
	// method's protocol: bad syntax, a message out of turn, or one that does
	// not continue this conversation.
	ErrMalformed = errors.New("auth: malformed authentication data")
)

// ReasonCode returns the MQTT 5 reason code that answers a Step or Start
// result, for CONNACK during connection and for DISCONNECT after a failed
// re-authentication:
//
//	nil                → 0x00 Success
//	ErrBadCredentials  → 0x86 Bad User Name or Password
//	ErrMalformed       → 0x82 Protocol Error (the packet was well formed; what
//	                     it carried broke the authentication method's protocol)
//	ErrNotAuthorized   → 0x87 Not Authorized
//	anything else      → 0x87 Not Authorized (the server's fault, not disclosed)
//
// An unknown method name (Methods.Lookup fails) is answered with 0x8C Bad
// Authentication Method by the broker itself.
func ReasonCode(err error) byte {
	switch {
	case err == nil:
		return 0x00
	case errors.Is(err, ErrBadCredentials):
		return 0x86
	case errors.Is(err, ErrMalformed):
		return 0x82
	default:
		return 0x87
	}
}

// Methods is the set of methods a server offers, by name. The broker looks up
// the Authentication Method of each CONNECT and AUTH 0x19 here. A nil Methods
// offers none. Build it once, before serving; it is then read concurrently
// and must not be changed.
type Methods map[string]Method

// NewMethods returns a registry holding ms under their names. It panics if a
// name is empty or used twice, which is a programming error.
func NewMethods(ms ...Method) Methods {
	r := make(Methods, len(ms))
	for _, m := range ms {
		name := m.Name()
		if name == "" {
			panic("auth: NewMethods: a method has an empty name")
		}
		if _, dup := r[name]; dup {
			panic(fmt.Sprintf("auth: NewMethods: method %q registered twice", name))
		}
		r[name] = m
	}
	return r
}

// Lookup returns the method called name, and whether there is one.
func (ms Methods) Lookup(name string) (Method, bool) {
	m, ok := ms[name]
	return m, ok
}
