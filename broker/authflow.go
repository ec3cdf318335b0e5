package broker

import (
	"errors"
	"strings"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/packet"
)

// MQTT 5 enhanced authentication [MQTT-4.12]: CONNECT names a method and
// carries its first data; the broker and the client trade AUTH 0x18 packets
// until the method is satisfied, then CONNACK ends the exchange. After that
// the client may re-authenticate at any time with AUTH 0x19, ended by the
// broker's AUTH 0x00. The method itself lives in package auth.

// startAuth begins the exchange for a CONNECT that names a method.
func (c *conn) startAuth(cp *connectParams, method string, data []byte) error {
	m, ok := c.ln.srv.opts.AuthMethods.Lookup(method)
	if !ok {
		c.ln.srv.countAuthn(authnFailure)
		c.refuse(packet.BadAuthenticationMethod, "authentication method not supported") // [MQTT-4.12.0-1]
		return nil
	}
	cp.authMethod = strings.Clone(method)
	x, err := m.Start(cp.clientID)
	if err != nil {
		c.authFailed(err, false)
		return nil
	}
	c.inRareMake().ea = &enhancedAuth{pending: cp, x: x}
	c.state = stateAuthenticating
	return c.authStep(data, false)
}

// handleAuth takes the client's AUTH: the next step of a running exchange,
// or the start of a re-authentication.
func (c *conn) handleAuth(p *packet.Auth) error {
	ea := c.eaState()
	if ea == nil {
		// Only a client that authenticated with a method may send AUTH. [MQTT-4.12.0-7]
		return violation(packet.ProtocolError, "AUTH without an authentication method in CONNECT")
	}
	method := ea.methodName()
	if p.Props.AuthMethod != method {
		return violation(packet.ProtocolError, "AUTH names method %q, not %q", p.Props.AuthMethod, method) // [MQTT-4.12.0-5]
	}
	switch {
	case p.Code == packet.ContinueAuthentication && ea.x != nil:
		return c.authStep(p.Props.AuthData, c.state == stateConnected)
	case p.Code == packet.ReAuthenticate && c.state == stateConnected && ea.x == nil:
		m, _ := c.ln.srv.opts.AuthMethods.Lookup(method)
		x, err := m.Start(c.clientID())
		if err != nil {
			c.authFailed(err, true)
			return nil
		}
		ea.x = x
		return c.authStep(p.Props.AuthData, true)
	}
	return violation(packet.ProtocolError, "AUTH with reason 0x%02x out of turn", byte(p.Code))
}

// authStep gives the client's data to the exchange and sends its answer.
func (c *conn) authStep(data []byte, reauth bool) error {
	ea := c.eaState()
	serverData, done, err := ea.x.Step(data)
	if err != nil {
		c.authFailed(err, reauth)
		return nil
	}
	method := ea.methodName()
	if !done {
		c.writePacket(&packet.Auth{Code: packet.ContinueAuthentication, Props: authProps(method, serverData)})
		return nil
	}
	user := ea.x.Username()
	ea.x = nil
	if reauth {
		if user != ea.username {
			// Re-authentication may not change who the client is.
			c.disconnectAs(closeAuthFailed, packet.NotAuthorized, "re-authenticated as another user")
			c.ln.srv.countAuthn(authnFailure)
			return nil
		}
		c.ln.srv.countAuthn(authnSuccess)
		c.writePacket(&packet.Auth{Code: packet.Success, Props: authProps(method, serverData)})
		return nil
	}
	c.ln.srv.countAuthn(authnSuccess)
	cp := ea.pending
	ea.pending = nil
	ea.method, ea.username = cp.authMethod, user
	cp.username = user
	if c.client != nil {
		c.client.Username, c.client.HasUsername = user, user != ""
	}
	c.admit(cp, serverData)
	return nil
}

// authFailed ends the exchange: CONNACK with the reason during connection,
// DISCONNECT during re-authentication. [MQTT-4.12.0-2] [MQTT-4.12.1-2]
func (c *conn) authFailed(err error, reauth bool) {
	code := packet.ReasonCode(auth.ReasonCode(err))
	if errors.Is(err, auth.ErrBadCredentials) || errors.Is(err, auth.ErrNotAuthorized) || errors.Is(err, auth.ErrMalformed) {
		c.ln.srv.log.Debug("authentication failed", "remote", c.nc.RemoteAddr().String(), "reauth", reauth, "err", err)
		c.ln.srv.countAuthn(authnFailure)
	} else {
		// Not the client's fault: a broken credential store, for example.
		c.ln.srv.log.Error("authentication error", "remote", c.nc.RemoteAddr().String(), "reauth", reauth, "err", err)
		c.ln.srv.countAuthn(authnError)
	}
	if ea := c.eaState(); ea != nil {
		ea.x = nil
	}
	if reauth {
		if code == packet.BadUserNameOrPassword {
			code = packet.NotAuthorized // 0x86 is not a DISCONNECT reason [MQTT-3.14.2-1]
		}
		c.disconnectAs(closeAuthFailed, code, "re-authentication failed")
		return
	}
	c.refuse(code, "authentication failed")
}

func authProps(method string, data []byte) packet.Properties {
	p := packet.Properties{AuthMethod: method}
	p.Mark(packet.PropAuthMethod)
	if len(data) > 0 {
		p.AuthData = data
		p.Mark(packet.PropAuthData)
	}
	return p
}

// methodName is the authentication method in use or being negotiated.
func (ea *enhancedAuth) methodName() string {
	if ea.pending != nil {
		return ea.pending.authMethod
	}
	return ea.method
}
