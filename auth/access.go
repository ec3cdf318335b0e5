package auth

import (
	"context"
	"crypto/x509"
	"net"
)

// Client is who asks: the facts a broker knows about a connection, given to
// authenticators and authorizers.
type Client struct {
	ClientID string
	// Username is the CONNECT user name, or the identity taken from the
	// client certificate when the listener is configured so.
	Username string
	// HasUsername tells an empty user name from none.
	HasUsername bool
	// Listener is the name of the listener the client connected to.
	Listener   string
	RemoteAddr net.Addr
	// Certificates is the verified client certificate chain on TLS
	// listeners that ask for one (leaf first), nil otherwise.
	Certificates []*x509.Certificate
}

// An Authenticator decides who may connect. Implementations must be safe
// for concurrent use. Authenticate may block (an HTTP call, a slow hash):
// the broker calls it off the connection's I/O path.
type Authenticator interface {
	// Authenticate checks a CONNECT's credentials. It returns nil to
	// accept; an error wrapping ErrBadCredentials refuses with "bad user
	// name or password" (0x86, 3.1.1: 0x04), ErrNotAuthorized with "not
	// authorized" (0x87, 3.1.1: 0x05); any other error is the server's
	// fault and refuses with "server unavailable" (0x88, 3.1.1: 0x03).
	// ctx carries a deadline.
	Authenticate(ctx context.Context, c *Client, password []byte) error
}

// Access is what a client wants to do with a topic.
type Access uint8

const (
	// Read: receive messages published to a topic name (checked per
	// message delivered, retained messages and wills included).
	Read Access = 1 << iota
	// Write: publish to a topic name (wills included).
	Write
	// Subscribe: subscribe to a topic filter. An authorizer should allow it
	// when the filter could match a topic the client may read: what it may
	// not read is withheld message by message anyway.
	Subscribe
)

func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case Subscribe:
		return "subscribe"
	}
	return "access"
}

// An Authorizer decides what an authenticated client may do. Allow is
// called on the message path, so it must be fast and must not block;
// implementations that ask a remote service cache the answers.
// Implementations must be safe for concurrent use.
type Authorizer interface {
	// Allow reports whether c may do a on topic: a topic name for Read and
	// Write, a topic filter (shared subscription prefix removed) for
	// Subscribe.
	Allow(c *Client, a Access, topic string) bool
}

// Covering is an optional Authorizer extension that lets the broker skip the
// check per message: Covers reports whether c may read every topic that
// filter matches, now and for as long as the rules stay as they are.
type Covering interface {
	Covers(c *Client, filter string) bool
}
