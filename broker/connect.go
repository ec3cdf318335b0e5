package broker

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/internal/listener"
	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/tlsconf"
)

// connectParams is what an accepted CONNECT asks for, copied out of the
// packet (which aliases the read buffer) so that an MQTT 5 authentication
// exchange can run before the session opens.
type connectParams struct {
	clientID     string
	assigned     bool // the broker chose clientID [MQTT-3.2.2-16]
	cleanStart   bool
	expiry       uint32 // granted Session Expiry Interval
	expiryCapped bool   // the broker lowered what the client asked for
	keepAlive    uint16
	will         *message
	willDelay    uint32
	username     string
	hasUsername  bool
	certified    bool // username comes from a verified client certificate
	authMethod   string
	responseInfo bool // the client asked for Response Information
}

// handleConnect checks CONNECT and either accepts it, starts an MQTT 5
// authentication exchange, or refuses it with CONNACK and closes.
// [MQTT-3.1.4-1] [MQTT-3.2.2-4] [MQTT-3.2.2-5]
func (c *conn) handleConnect(p *packet.Connect) error {
	c.version = p.Version
	if p.Bridge {
		c.flags.Or(flagBridge)
	}
	if p.Version == packet.V5 && p.Props.Has(packet.PropMaximumPacketSize) {
		// Known before anything is sent, a refusing CONNACK included. [MQTT-3.2.2-19] (v5)
		c.maxOut = p.Props.MaximumPacketSize
	}
	if c.refusal != 0 {
		c.refuse(c.refusal, "connection limit reached")
		return nil
	}
	if code := c.checkClientID(p); code != packet.Success {
		c.refuse(code, "client identifier not valid")
		return nil
	}
	if max := c.ln.srv.opts.ServerKeepAlive; max > 0 && p.Version != packet.V5 && time.Duration(p.KeepAlive)*time.Second > max {
		// MQTT 3 has no way to tell a client to ping sooner, and one that
		// pings less often than the broker waits would be cut off again
		// and again: refused, as Mosquitto's max_keepalive does (0x02).
		c.refuse(packet.ClientIdentifierNotValid, fmt.Sprintf("keep alive %ds above the maximum %v", p.KeepAlive, max))
		return nil
	}
	cp := &connectParams{
		clientID:   strings.Clone(p.ClientID),
		cleanStart: p.CleanStart,
		keepAlive:  p.KeepAlive,
		username:   strings.Clone(p.Username),
	}
	if cp.clientID == "" {
		cp.clientID, cp.assigned = c.ln.srv.assignClientID(), true // [MQTT-3.1.3-6]
	}
	if p.WillFlag {
		if code, reason := c.checkWill(p); code != packet.Success {
			c.refuse(code, reason)
			return nil
		}
		cp.will = newMessage(&packet.Publish{Topic: p.WillTopic, Payload: p.WillPayload, QoS: p.WillQoS,
			Retain: p.WillRetain, Props: p.WillProps}, 0)
		cp.willDelay = p.WillProps.WillDelay
		cp.will.Expiry = time.Time{}
		if p.WillProps.Has(packet.PropMessageExpiry) {
			setWillExpiry(cp.will, p.WillProps.MessageExpiry)
		}
	}
	c.negotiate(p, cp)
	cp.hasUsername = p.UsernameFlag
	if id, ok := c.certIdentity(); ok {
		// The listener takes the identity from the verified certificate,
		// which proves it: no password is asked. MQTT leaves how a client
		// proves who it is to the server (§5.4.1 in 3.1.1 and 5.0 names TLS
		// client certificates); no numbered statement.
		cp.username, cp.hasUsername, cp.certified = id, true, true
	}
	if c.ln.srv.needsIdentity() || cp.hasUsername {
		// Kept only when something will ask who the client is, or the
		// client said who it is (shown by the admin API): an anonymous
		// idle connection of an open broker spares the memory.
		c.client = &auth.Client{ClientID: cp.clientID, Username: cp.username, HasUsername: cp.hasUsername,
			Listener: c.ln.name, RemoteAddr: c.nc.RemoteAddr(), Certificates: c.peerCertificates()}
	}
	enhanced := p.Version == packet.V5 && p.Props.Has(packet.PropAuthMethod)
	if c.ln.srv.opts.Hooks.OnConnectAuthenticate != nil {
		// The hook goes first; when it decides, nothing else is asked (but
		// a client that asked for an authentication exchange gets it).
		code, decided := c.authenticateHook(c.connectRequest(p))
		switch {
		case decided && code != packet.Success:
			c.ln.srv.stats.failedLogins.Add(1)
			c.ln.srv.countAuthn(authnFailure)
			c.refuse(code, "connection refused")
			return nil
		case decided && !enhanced:
			c.ln.srv.countAuthn(authnSuccess)
			c.admit(cp, nil)
			return nil
		}
	}
	if enhanced {
		return c.startAuth(cp, p.Props.AuthMethod, p.Props.AuthData)
	}
	c.login(cp, p.Password)
	return nil
}

// login decides whether the client may connect with what CONNECT says: an
// identity from its certificate; no user name, where the listener allows
// anonymous clients; or credentials the Authenticator accepts. The
// Authenticator runs on its own goroutine (it may hash or call out) while
// the connection holds its input; a failure is answered after a delay that
// grows with the failures from the same address.
func (c *conn) login(cp *connectParams, password []byte) {
	s, authn := c.ln.srv, c.ln.srv.opts.Authenticator
	switch {
	case cp.certified:
		s.countAuthn(authnSuccess)
		c.admit(cp, nil)
		return
	case !cp.hasUsername:
		if !c.ln.allowAnonymous {
			s.countAuthn(authnFailure)
			c.refuse(packet.NotAuthorized, "anonymous clients are not allowed on this listener")
			return
		}
		s.countAuthn(authnAnonymous)
		c.admit(cp, nil)
		return
	case authn == nil:
		if c.ln.allowAnonymous {
			s.countAuthn(authnAnonymous)
			c.admit(cp, nil) // no password database: a user name is only a name
			return
		}
		s.countAuthn(authnFailure)
		c.refuse(packet.BadUserNameOrPassword, "no authentication is configured")
		return
	}
	pw := bytes.Clone(password)
	cl := c.client
	c.paused = true
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.ln.srv.opts.AuthTimeout)
		err := authn.Authenticate(ctx, cl, pw)
		cancel()
		c.loggedIn(cp, err)
	}()
}

// loggedIn continues a CONNECT after the Authenticator answered.
func (c *conn) loggedIn(cp *connectParams, err error) {
	s := c.ln.srv
	if err != nil {
		code := packet.ReasonCode(auth.ReasonCode(err))
		result := authnFailure
		if !errors.Is(err, auth.ErrBadCredentials) && !errors.Is(err, auth.ErrNotAuthorized) {
			s.log.Error("authentication error", "client", cp.clientID, "remote", c.nc.RemoteAddr().String(), "err", err)
			code, result = packet.ServerUnavailable, authnError
		}
		s.countAuthn(result)
		s.stats.failedLogins.Add(1)
		delay := s.loginFailed(c.nc.RemoteAddr())
		s.log.Info("login failed", "client", cp.clientID, "user", cp.username,
			"remote", c.nc.RemoteAddr().String(), "delay", delay)
		time.AfterFunc(delay, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if !c.isClosing() && c.state != stateClosed {
				c.refuse(code, "authentication failed")
			}
		})
		return
	}
	// A success does not clear the address's failures: they fade with time
	// only, or an attacker with an account of its own could reset the delay
	// between guesses by logging in now and then.
	s.countAuthn(authnSuccess)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosing() || c.state == stateClosed {
		return
	}
	c.paused = false
	c.admit(cp, nil)
	if len(c.in.Bytes()) > 0 && !c.isClosing() {
		c.consume(nil, 0) // what the client sent meanwhile
	}
}

// admit lets an authenticated client in, unless its will goes where it may
// not publish: an authorisation check that fails refuses the CONNECT.
// [MQTT-3.1.4-2] (v5); 3.1.1 §3.1.4 allows the same without a number.
func (c *conn) admit(cp *connectParams, authData []byte) {
	if cp.will != nil {
		if !c.mayPublish(cp.clientID, cp.will.Topic) {
			c.ln.srv.stats.deniedWill.Add(1)
			c.refuse(packet.NotAuthorized, "the will's topic is not allowed")
			return
		}
		if c.ln.srv.authorizing() {
			c.statShard().allowed.Add(1)
		}
	}
	if c.ln.srv.opts.Cluster != nil {
		// The session's owner is cluster-wide: claimed first, off the
		// event loop (handover.go). The CONNECT came in time; the claim
		// may wait for the directory's election after a node's loss, and
		// the session may come from another node or the replica.
		c.paused = true
		c.deadline.Store(time.Now().Add(claimWait).UnixNano())
		go c.claimOnCluster(cp, authData)
		return
	}
	c.accept(cp, authData)
}

// tlsState is the TLS state of a connection on a TLS or wss listener.
func (c *conn) tlsState() (tls.ConnectionState, bool) {
	u, ok := c.nc.(listener.Underlying)
	if !ok {
		return tls.ConnectionState{}, false
	}
	tc, ok := u.NetConn().(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return tls.ConnectionState{}, false
	}
	return tc.ConnectionState(), true
}

// peerCertificates is the verified client certificate chain of a TLS
// connection, nil otherwise.
func (c *conn) peerCertificates() []*x509.Certificate {
	st, ok := c.tlsState()
	if !ok || len(st.VerifiedChains) == 0 {
		return nil
	}
	return st.VerifiedChains[0]
}

// certIdentity takes the user name from the verified client certificate
// when the listener says so (UsernameFrom "cn", "san", ...).
func (c *conn) certIdentity() (string, bool) {
	from := c.ln.cfg.UsernameFrom
	if from == "" {
		return "", false
	}
	st, ok := c.tlsState()
	if !ok {
		return "", false
	}
	return tlsconf.IdentityFrom(st, from)
}

// negotiate records what the client asked for in CONNECT: its session
// expiry, and for MQTT 5 its own limits, which bind what the broker sends.
func (c *conn) negotiate(p *packet.Connect, cp *connectParams) {
	o := &c.ln.srv.opts
	c.window = uint16(min(o.MaxInflight, 65535))
	c.problemInfo = true
	if p.Version != packet.V5 {
		// MQTT 3: a session that is not clean lasts until the next clean
		// start, or as long as the server allows.
		if !p.CleanStart {
			cp.expiry = o.sessionExpiry(expiryNever)
		}
		return
	}
	asked := p.Props.SessionExpiry // absent means 0 [MQTT-3.1.2-11]
	cp.expiry = o.sessionExpiry(asked)
	cp.expiryCapped = cp.expiry != asked
	if p.Props.Has(packet.PropReceiveMaximum) {
		c.window = min(c.window, p.Props.ReceiveMaximum) // [MQTT-3.3.4-9]
	}
	if p.Props.Has(packet.PropMaximumPacketSize) {
		c.maxOut = p.Props.MaximumPacketSize
	}
	c.aliasMax = p.Props.TopicAliasMaximum // absent means none [MQTT-3.1.2-26]
	if p.Props.Has(packet.PropRequestProblemInfo) && p.Props.RequestProblemInfo == 0 {
		c.problemInfo = false
	}
	cp.responseInfo = p.Props.RequestResponseInfo == 1
}

// checkClientID applies the client identifier rules of the client's protocol level.
func (c *conn) checkClientID(p *packet.Connect) packet.ReasonCode {
	id := p.ClientID
	switch {
	case id == "" && p.Version == packet.V31:
		// MQTT 3.1 requires 1 to 23 characters.
		return packet.ClientIdentifierNotValid
	case id == "" && !p.CleanStart && p.Version != packet.V5:
		// An empty id cannot name a session to resume. [MQTT-3.1.3-8]
		return packet.ClientIdentifierNotValid
	case p.Version == packet.V31 && len(id) > 23:
		return packet.ClientIdentifierNotValid
	case len(id) > c.ln.srv.opts.MaxClientIDLength:
		return packet.ClientIdentifierNotValid
	}
	return packet.Success
}

// checkWill refuses a will the broker would not accept as a PUBLISH.
func (c *conn) checkWill(p *packet.Connect) (packet.ReasonCode, string) {
	o := &c.ln.srv.opts
	switch {
	case p.WillQoS > o.maxQoS():
		return packet.QoSNotSupported, "will QoS above the maximum QoS" // [MQTT-3.2.2-12]
	case p.WillRetain && o.DisableRetain:
		return packet.RetainNotSupported, "retained wills are not available" // [MQTT-3.2.2-13]
	case p.WillProps.Has(packet.PropPayloadFormat) && p.WillProps.PayloadFormat == 1 && !utf8.Valid(p.WillPayload):
		return packet.PayloadFormatInvalid, "will payload is not UTF-8 as its format indicator says"
	}
	return packet.Success, ""
}

// refuse answers CONNECT with a failure code and closes. MQTT 3 clients get
// the nearest 3.1.1 return code, or just the close when none fits.
// [MQTT-3.2.2-5] [MQTT-3.2.2-6]
func (c *conn) refuse(code packet.ReasonCode, reason string) {
	if c.ln.srv.debugging() {
		c.ln.srv.log.Debug("connection refused", "remote", c.nc.RemoteAddr().String(), "code", byte(code), "reason", reason)
	}
	c.ln.srv.stats.refused.Add(1)
	if c.version == packet.V5 {
		c.ln.srv.countConnack(code)
		c.writePacket(&packet.Connack{Code: code, Props: c.reasonProps(reason)})
	} else if rc, ok := v3ReturnCode(code); ok {
		c.ln.srv.countConnack(code)
		c.writePacket(&packet.Connack{Code: rc})
	}
	c.shutdown()
}

// v3ReturnCode maps an MQTT 5 CONNACK reason to the 3.1.1 return code.
func v3ReturnCode(code packet.ReasonCode) (packet.ReasonCode, bool) {
	switch code {
	case packet.UnsupportedProtocolVersion:
		return packet.ConnRefusedUnacceptableProtocol, true
	case packet.ClientIdentifierNotValid:
		return packet.ConnRefusedIdentifierRejected, true
	case packet.ServerUnavailable, packet.ServerBusy, packet.ServerShuttingDown:
		return packet.ConnRefusedServerUnavailable, true
	case packet.BadUserNameOrPassword:
		return packet.ConnRefusedBadUsernamePassword, true
	case packet.NotAuthorized, packet.Banned:
		return packet.ConnRefusedNotAuthorized, true
	case packet.QuotaExceeded, packet.ConnectionRateExceeded:
		return packet.ConnRefusedServerUnavailable, true
	}
	return 0, false
}

// accept opens the session and sends CONNACK with what the broker grants
// and enforces. authData is the final data of an authentication exchange.
func (c *conn) accept(cp *connectParams, authData []byte) {
	o := &c.ln.srv.opts
	connack := connacks.Get().(*packet.Connack)
	*connack = packet.Connack{Code: packet.Success}
	keepAlive := time.Duration(cp.keepAlive) * time.Second
	if c.serverKeepAlive(cp) {
		keepAlive = o.ServerKeepAlive // [MQTT-3.2.2-21]
	}
	if c.version == packet.V5 {
		c.connackProps(cp, &connack.Props, authData)
	}
	c.keepAliveMs = uint32(min(keepAlive, 65535*time.Second) / time.Millisecond)
	c.connectedAt = time.Now().UnixNano()
	c.cleanStart = cp.cleanStart
	c.state = stateConnected
	if c.version == packet.V5 {
		c.flags.Or(flagConnectedV5)
	}
	if keepAlive > 0 {
		// The server allows one and a half keep alive periods of silence. [MQTT-3.1.2-24]
		c.deadline.Store(c.keepAliveDeadline(time.Now()))
		c.ln.srv.conns.refile(c) // it may come before the CONNECT timeout
	} else {
		c.deadline.Store(0)
	}
	c.ln.srv.openSession(c, cp, connack)
	present := connack.SessionPresent
	*connack = packet.Connack{}
	connacks.Put(connack)
	if h := &o.Hooks; h.OnConnect != nil || h.OnDisconnect != nil {
		c.connectHook(present)
	}
	c.logConnected(cp, keepAlive)
}

// connacks recycles the CONNACKs of accepted connections: one is written
// as soon as it is made, and an allocation per connection would stay
// behind as garbage among the connection's long-lived objects.
var connacks = sync.Pool{New: func() any { return new(packet.Connack) }}

// serverKeepAlive reports whether the broker's maximum keep alive replaces
// the client's: an MQTT 5 client asking for more, or for none, is told the
// maximum in CONNACK (an MQTT 3 client asking for more was refused). A
// shorter keep alive is always kept. [MQTT-3.1.2-24]
func (c *conn) serverKeepAlive(cp *connectParams) bool {
	max := c.ln.srv.opts.ServerKeepAlive
	return max > 0 && c.version == packet.V5 && (cp.keepAlive == 0 || time.Duration(cp.keepAlive)*time.Second > max)
}

// connackProps advertises the broker's limits and features to an MQTT 5
// client; each is enforced where the packets arrive. [MQTT-3.2.2-9..22]
func (c *conn) connackProps(cp *connectParams, p *packet.Properties, authData []byte) {
	o := &c.ln.srv.opts
	if cp.expiryCapped {
		p.SessionExpiry = cp.expiry
		p.Mark(packet.PropSessionExpiry)
	}
	if o.ReceiveMaximum < maxReceiveMaximum {
		p.ReceiveMaximum = uint16(o.ReceiveMaximum)
		p.Mark(packet.PropReceiveMaximum)
	}
	if q := o.maxQoS(); q < 2 {
		p.MaximumQoS = q
		p.Mark(packet.PropMaximumQoS)
	}
	if o.DisableRetain {
		p.RetainAvailable = 0
		p.Mark(packet.PropRetainAvailable)
	}
	p.MaximumPacketSize = uint32(o.MaxPacketSize)
	p.Mark(packet.PropMaximumPacketSize)
	if cp.assigned {
		p.AssignedClientID = cp.clientID
		p.Mark(packet.PropAssignedClientID)
	}
	if o.TopicAliasMaximum > 0 {
		p.TopicAliasMaximum = uint16(o.TopicAliasMaximum)
		p.Mark(packet.PropTopicAliasMaximum)
	}
	if o.DisableWildcardSubscriptions {
		p.WildcardSubAvailable = 0
		p.Mark(packet.PropWildcardSubAvailable)
	}
	if o.DisableSubscriptionIdentifiers {
		p.SubIDAvailable = 0
		p.Mark(packet.PropSubIDAvailable)
	}
	if o.DisableSharedSubscriptions {
		p.SharedSubAvailable = 0
		p.Mark(packet.PropSharedSubAvailable)
	}
	if c.serverKeepAlive(cp) {
		p.ServerKeepAlive = uint16(min(o.ServerKeepAlive/time.Second, 65535))
		p.Mark(packet.PropServerKeepAlive)
	}
	if cp.responseInfo && o.ResponseInformation != "" {
		p.ResponseInfo = o.ResponseInformation + cp.clientID // [MQTT-3.1.2-28]
		p.Mark(packet.PropResponseInfo)
	}
	if cp.authMethod != "" {
		p.AuthMethod = cp.authMethod
		p.Mark(packet.PropAuthMethod)
		if len(authData) > 0 {
			p.AuthData = authData
			p.Mark(packet.PropAuthData)
		}
	}
}

// assignClientID makes a unique identifier for a client that sent none.
func (s *Server) assignClientID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "petrel-" + hex.EncodeToString(b[:])
}
