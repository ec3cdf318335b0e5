package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/packet"
)

// Hooks let a program that embeds the broker watch it and steer it: who
// may connect, what a client may publish and subscribe to, and what
// becomes of each message. Every field is optional; a nil one costs the
// broker one comparison where it would be called, so Hooks{} is free.
//
// Hooks is a struct of functions, not an interface with a no-op base to
// embed, for that reason: the broker can tell a hook that is not set
// without calling anything, on paths that run millions of times a second.
// It also lets a program set just the hooks it needs, as closures over its
// own state, without declaring a type. To run several functions for one
// hook, call them from one.
//
// # The contract
//
// Hooks run on the broker's own goroutines: the event loops that serve
// every connection, the store's committer, the timers. A hook that blocks
// stalls every client served there. A hook must return quickly and must
// not wait for the network, the disk, a lock held across slow work or a
// full channel; hand slow work to a goroutine of your own (a buffered
// channel with a non-blocking send, say).
//
// Hooks are called concurrently, for different clients, from several
// goroutines: what they share must be safe for that.
//
// What a hook is given is valid only during the call: the *auth.Client,
// the password and the MessageView alias the broker's buffers, which are
// reused once the hook returns. Keep copies (MessageView.Clone,
// strings.Clone, bytes.Clone), never the values themselves; and change
// none of them.
//
// A hook that panics does not bring the broker down: the panic is
// recovered and logged with its stack, and the connection of the client
// concerned is closed (MQTT 5: DISCONNECT 0x80 Unspecified error, or
// CONNACK 0x88 Server unavailable during OnConnectAuthenticate).
//
// Locks (docs/LOCKING.md): OnConnectAuthenticate, OnACLCheck, OnPublish and
// OnConnect run under the client's connection lock only, and may call
// Server.Publish (mind that at QoS 1 and 2 it waits for the store, and
// that OnPublish sees that message too). OnDisconnect runs under at most a
// connection lock (its own, or that of the connection that took its
// session over), and may call Server.Publish too. OnDelivered and
// OnDropped run under the receiving session's lock: they must not call
// back into the Server at all.
type Hooks struct {
	// OnConnectAuthenticate decides whether a client may connect. It runs
	// for every CONNECT that passed the protocol checks, before anything
	// else is asked, and either decides (decided true) or leaves the
	// decision to the configured rules (decided false): an identity from
	// the client certificate, anonymous access per listener, then
	// Options.Authenticator. When it decides, nothing else is asked: code
	// packet.Success admits the client; any other code refuses it with
	// that CONNACK reason code (one below 0x80 refuses with 0x87 Not
	// authorized), which an MQTT 3 client gets as the nearest 3.1.1
	// return code. A refusal here is not delayed by the login throttle.
	//
	// A CONNECT that names an MQTT 5 authentication method (AuthMethod
	// set) goes on to that method's exchange whatever the hook answers,
	// unless it refuses.
	OnConnectAuthenticate func(r *ConnectRequest) (code packet.ReasonCode, decided bool)

	// OnACLCheck decides whether a client may publish to a topic
	// (auth.Write: each PUBLISH, and the will at CONNECT) or subscribe to
	// a filter (auth.Subscribe: each filter of a SUBSCRIBE, without a
	// $share/ prefix). It is never asked for auth.Read: what a subscription
	// it allowed brings is delivered (Options.Authorizer may still withhold
	// it). Both it and Options.Authorizer must allow: the hook cannot grant
	// what the Authorizer refuses. Topics starting with '$' are refused to
	// clients before either is asked. A refused PUBLISH is acknowledged
	// (MQTT 5: 0x87 Not authorized) and dropped, a refused filter gets
	// SUBACK 0x87 (MQTT 3: 0x80), a refused will refuses the connection.
	OnACLCheck func(c *auth.Client, access auth.Access, topic string) bool

	// OnConnect runs once a client is connected: its session is attached
	// and the successful CONNACK is on its way. Messages that waited for
	// the session may already have gone out (and OnDelivered run) by then.
	OnConnect func(c *auth.Client, sessionPresent bool)

	// OnDisconnect runs once for each connection that OnConnect reported,
	// after it: when the connection ends, for whatever reason (the client's
	// DISCONNECT, a protocol violation, the network, a keep alive timeout,
	// a takeover, Server.Close). When a new connection takes a session
	// over, the old connection's OnDisconnect runs before the new one's
	// OnConnect.
	OnDisconnect func(c *auth.Client, d DisconnectInfo)

	// OnPublish sees each message accepted for routing: a client's
	// PUBLISH once it passed the checks and authorization, and each
	// Server.Publish (c nil). Wills are not passed here (OnACLCheck vetted
	// them at CONNECT; OnDisconnect says whether one was published).
	//
	// It may inspect the message and may reject it, not change it: a
	// message is shared by every subscriber it goes to. packet.Success
	// (the zero value) accepts; a code of 0x80 or above rejects: the
	// message is not routed nor retained, an MQTT 5 client publishing at
	// QoS 1 or 2 gets that code in its PUBACK or PUBREC, an MQTT 3 client is
	// acknowledged as usual (3.1.1 has no way to say no), and
	// Server.Publish returns an error wrapping ErrRejected. To pass on a
	// changed message, reject it and Server.Publish the changed one
	// (under another topic, or it comes back here).
	OnPublish func(c *auth.Client, m MessageView) packet.ReasonCode

	// OnDelivered runs when a message has reached a subscriber: at QoS 0
	// when its PUBLISH is written to the connection's output (the network
	// may still lose it), at QoS 1 when the client's PUBACK arrives, at
	// QoS 2 when its PUBREC arrives (the client owns the message then;
	// PUBCOMP only ends the exchange). m's QoS and Retain are those of the
	// delivery, which the subscription may lower or clear.
	OnDelivered func(clientID string, m MessageView)

	// OnDropped runs when a message meant for a session is given up for
	// it, with the reason (DropReason). A message a shared subscription's
	// member refuses may still go to another member.
	OnDropped func(clientID string, m MessageView, reason DropReason)
}

// ConnectRequest is what OnConnectAuthenticate is asked about.
type ConnectRequest struct {
	// Client is who connects: ClientID (the one the broker assigned, if
	// the client sent none), Username and HasUsername (the identity from
	// the certificate on a listener configured with UsernameFrom),
	// Listener, RemoteAddr and the verified Certificates.
	auth.Client
	// Password is CONNECT's password, nil when it has none. Valid only
	// during the call.
	Password []byte
	// TLS is the connection's TLS state on "tls" and "wss" listeners, nil
	// on the others.
	TLS *tls.ConnectionState
	// ProtocolVersion is 3 (MQTT 3.1), 4 (3.1.1) or 5.
	ProtocolVersion byte
	// CleanStart is CONNECT's Clean Start (Clean Session before MQTT 5).
	CleanStart bool
	// AuthMethod is the MQTT 5 authentication method CONNECT names, ""
	// for none.
	AuthMethod string
}

// DisconnectInfo tells OnDisconnect how a connection ended.
type DisconnectInfo struct {
	// ByClient reports that the client ended it with DISCONNECT; Code is
	// then the DISCONNECT's reason code (MQTT 3: always 0).
	ByClient bool
	// Code is, when the broker closed the connection, the reason code it
	// closed with (sent in DISCONNECT to an MQTT 5 client): for example
	// 0x8E Session taken over, 0x8D Keep alive timeout, 0x8B Server
	// shutting down, 0x82 Protocol error. It is 0 when the network
	// connection ended without either side saying why.
	Code packet.ReasonCode
	// Err says why in words: nil after a DISCONNECT with reason 0,
	// otherwise the violation, the broker's reason, or an error wrapping
	// ErrConnectionLost with the network's error.
	Err error
	// WillPublished reports that the connection's will was published as
	// it ended. WillDelayed reports that it waits for its Will Delay
	// Interval instead, to be published then unless the client returns
	// first. Both are false when there was no will or it was discarded
	// (a DISCONNECT with reason 0, a server shutting down).
	WillPublished, WillDelayed bool
}

// ErrConnectionLost is wrapped by DisconnectInfo.Err when the network
// connection ended without a DISCONNECT from either side.
var ErrConnectionLost = errors.New("broker: connection lost")

// DropReason is why a message was given up for a session.
type DropReason uint8

const (
	// DropQueueFull: the session's queue was at Options.MaxQueuedMessages
	// or MaxQueuedBytes.
	DropQueueFull DropReason = iota + 1
	// DropMemory: the memory for queued messages (Limits.QueuedMemory)
	// was spent and the session is offline.
	DropMemory
	// DropOffline: a QoS 0 message for a session whose client is not
	// connected (only persistent sessions with Options.QueueQoS0 queue
	// them).
	DropOffline
	// DropSlowClient: a QoS 0 message for a client with more than 4 MiB of
	// output it has not read.
	DropSlowClient
	// DropTooLarge: larger than the client's Maximum Packet Size (MQTT 5).
	DropTooLarge
	// DropExpired: its Message Expiry Interval passed before delivery.
	DropExpired
	// DropRefused: the client answered PUBACK or PUBREC with an error code
	// (MQTT 5).
	DropRefused
	// DropStoreFailed: the store refused the write that would have kept it
	// for a persistent session (a full disk).
	DropStoreFailed
)

// String says the reason in words, for logs.
func (r DropReason) String() string {
	switch r {
	case DropQueueFull:
		return "queue full"
	case DropMemory:
		return "queued-message memory spent"
	case DropOffline:
		return "QoS 0 to an offline session"
	case DropSlowClient:
		return "QoS 0 to a client not reading"
	case DropTooLarge:
		return "larger than the client's maximum packet size"
	case DropExpired:
		return "expired"
	case DropRefused:
		return "refused by the client"
	case DropStoreFailed:
		return "store write failed"
	}
	return fmt.Sprintf("DropReason(%d)", uint8(r))
}

// MessageView shows a message to a hook without letting the hook change
// or keep it: its topic, payload and properties alias the broker's
// buffers, which are reused (and the message recycled) once the hook
// returns. Read them during the call; Clone what must outlive it.
type MessageView struct {
	topic   string
	payload []byte
	// props holds the properties forwarded to subscribers; others in it
	// (a decoded PUBLISH's topic alias) are not shown.
	props  *packet.Properties
	expiry time.Time
	qos    byte
	retain bool
}

// Topic is the topic name (valid during the call only).
func (v MessageView) Topic() string { return v.topic }

// Payload is the payload (valid during the call only; do not change it).
func (v MessageView) Payload() []byte { return v.payload }

// QoS is the message's QoS; for OnDelivered and OnDropped, the delivery's.
func (v MessageView) QoS() byte { return v.qos }

// Retain is the message's RETAIN flag; for OnDelivered and OnDropped, the
// delivery's.
func (v MessageView) Retain() bool { return v.retain }

// Expiry is when the message expires (MQTT 5 Message Expiry Interval);
// zero for never.
func (v MessageView) Expiry() time.Time { return v.expiry }

// PayloadFormat is the MQTT 5 Payload Format Indicator: 1 for UTF-8 text,
// 0 when unspecified.
func (v MessageView) PayloadFormat() byte {
	if v.props == nil || !v.props.Has(packet.PropPayloadFormat) {
		return 0
	}
	return v.props.PayloadFormat
}

// ContentType is the MQTT 5 Content Type, "" when none.
func (v MessageView) ContentType() string {
	if v.props == nil || !v.props.Has(packet.PropContentType) {
		return ""
	}
	return v.props.ContentType
}

// ResponseTopic is the MQTT 5 Response Topic, "" when none.
func (v MessageView) ResponseTopic() string {
	if v.props == nil || !v.props.Has(packet.PropResponseTopic) {
		return ""
	}
	return v.props.ResponseTopic
}

// CorrelationData is the MQTT 5 Correlation Data, nil when none.
func (v MessageView) CorrelationData() []byte {
	if v.props == nil || !v.props.Has(packet.PropCorrelationData) {
		return nil
	}
	return v.props.CorrelationData
}

// UserProperties are the MQTT 5 User Properties, in order.
func (v MessageView) UserProperties() []packet.UserProperty {
	if v.props == nil {
		return nil
	}
	return v.props.User
}

// Clone returns a copy that owns its memory, to keep after the call.
func (v MessageView) Clone() MessageView {
	v.topic = strings.Clone(v.topic)
	v.payload = slices.Clone(v.payload)
	if v.props != nil {
		v.props = copyForwarded(v.props)
	}
	return v
}

// viewOfPublish shows a decoded PUBLISH.
func viewOfPublish(p *packet.Publish) MessageView {
	v := MessageView{topic: p.Topic, payload: p.Payload, qos: p.QoS, retain: p.Retain}
	if p.Props.Present&forwarded != 0 || len(p.Props.User) > 0 {
		v.props = &p.Props
	}
	if p.Props.Has(packet.PropMessageExpiry) && p.Props.MessageExpiry > 0 {
		v.expiry = time.Now().Add(time.Duration(p.Props.MessageExpiry) * time.Second)
	}
	return v
}

// viewOfDelivery shows a message as delivered to one session.
func viewOfDelivery(d *delivery) MessageView {
	m := d.msg
	return MessageView{topic: m.Topic, payload: m.body(), props: m.Props, expiry: m.Expiry, qos: d.qos, retain: d.retain}
}

// ErrRejected is wrapped by the error of a Server.Publish that OnPublish
// rejected.
var ErrRejected = errors.New("broker: message rejected by OnPublish")

// needsIdentityHooks reports whether a hook is given the client's identity.
func (h *Hooks) needsIdentity() bool {
	return h.OnConnectAuthenticate != nil || h.OnACLCheck != nil || h.OnConnect != nil ||
		h.OnDisconnect != nil || h.OnPublish != nil
}

// hookPanicked logs and counts a hook's panic; the caller decides what
// becomes of the client.
func (s *Server) hookPanicked(hook, clientID string, r any) {
	s.stats.hookPanics.Add(1)
	s.log.Error("hook panicked: closing the client's connection", "hook", hook, "client", clientID,
		"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
}

// hookPanicReason is what a client whose hook panicked is told.
const hookPanicReason = "internal error"

// authenticateHook asks OnConnectAuthenticate. A panic refuses the client
// (server unavailable).
func (c *conn) authenticateHook(r *ConnectRequest) (code packet.ReasonCode, decided bool) {
	defer func() {
		if p := recover(); p != nil {
			c.ln.srv.hookPanicked("OnConnectAuthenticate", r.ClientID, p)
			code, decided = packet.ServerUnavailable, true
		}
	}()
	code, decided = c.ln.srv.opts.Hooks.OnConnectAuthenticate(r)
	if decided && code != packet.Success && !code.IsError() {
		code = packet.NotAuthorized
	}
	return code, decided
}

// connectRequest gathers what OnConnectAuthenticate is told.
func (c *conn) connectRequest(p *packet.Connect) *ConnectRequest {
	r := &ConnectRequest{Password: p.Password, ProtocolVersion: p.Version, CleanStart: p.CleanStart}
	if c.client != nil {
		r.Client = *c.client
	}
	if p.Version == packet.V5 && p.Props.Has(packet.PropAuthMethod) {
		r.AuthMethod = p.Props.AuthMethod
	}
	if st, ok := c.tlsState(); ok {
		r.TLS = &st
	}
	return r
}

// aclHook asks OnACLCheck. A panic refuses, and closes the connection.
func (c *conn) aclHook(a auth.Access, topic string) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			c.ln.srv.hookPanicked("OnACLCheck", c.clientID(), p)
			c.disconnectAs(closeInternalError, packet.UnspecifiedError, hookPanicReason)
			ok = false
		}
	}()
	return c.ln.srv.opts.Hooks.OnACLCheck(c.client, a, topic)
}

// refusedByHooks asks OnACLCheck and OnPublish about a client's PUBLISH
// that the Authorizer allowed, and answers it if either refuses.
func (c *conn) refusedByHooks(p *packet.Publish, ss *session) bool {
	h := &c.ln.srv.opts.Hooks
	if h.OnACLCheck != nil {
		if !c.aclHook(auth.Write, p.Topic) {
			c.denyPublish(p)
			return true
		}
		c.statShard().allowed.Add(1)
	}
	// A QoS 2 PUBLISH sent again before PUBREL was seen the first time.
	if h.OnPublish == nil || (p.QoS == 2 && ss.awaitingRelease(p.PacketID)) {
		return false
	}
	code := c.publishHook(p)
	if !code.IsError() {
		return false
	}
	c.ln.srv.stats.rejectedPublish.Add(1)
	c.ln.srv.log.Debug("publish rejected by OnPublish", "client", c.clientID(), "topic", p.Topic, "code", byte(code))
	c.refusePublish(p, code)
	return true
}

// publishHook asks OnPublish about a client's message. A panic rejects the
// message and closes the connection.
func (c *conn) publishHook(p *packet.Publish) (code packet.ReasonCode) {
	defer func() {
		if r := recover(); r != nil {
			c.ln.srv.hookPanicked("OnPublish", c.clientID(), r)
			c.disconnectAs(closeInternalError, packet.UnspecifiedError, hookPanicReason)
			code = packet.UnspecifiedError
		}
	}()
	return c.ln.srv.opts.Hooks.OnPublish(c.client, viewOfPublish(p))
}

// connectHook runs OnConnect, then OnDisconnect if the connection ended
// meanwhile (on another goroutine: a timeout, a takeover).
func (c *conn) connectHook(present bool) {
	h := &c.ln.srv.opts.Hooks
	if h.OnConnect != nil {
		func() {
			defer func() {
				if r := recover(); r != nil {
					c.ln.srv.hookPanicked("OnConnect", c.clientID(), r)
					c.disconnectAs(closeInternalError, packet.UnspecifiedError, hookPanicReason)
				}
			}()
			h.OnConnect(c.client, present)
		}()
	}
	if h.OnDisconnect != nil && c.flags.Or(flagConnectReported)&flagDisconnectReady != 0 {
		c.disconnectHook()
	}
}

// noteClose records why the connection ends, for its log line (noteEnd)
// and for OnDisconnect: err, or reason in words; the first reason given
// wins.
func (c *conn) noteClose(why closeReason, code packet.ReasonCode, reason string, err error) {
	c.noteEnd(why, code)
	if c.ln.srv.opts.Hooks.OnDisconnect == nil {
		return
	}
	byClient := why == closeClientDisconnect
	if err == nil && reason != "" {
		err = errors.New(reason)
	}
	c.outMu.Lock()
	r := c.outRareLocked()
	if r.closed == nil {
		r.closed = &DisconnectInfo{Code: code, ByClient: byClient, Err: err}
	}
	c.outMu.Unlock()
}

// lostConnection is the error of a connection that ended without a
// DISCONNECT.
func lostConnection(err error) error {
	if err == nil {
		return ErrConnectionLost
	}
	return fmt.Errorf("%w: %w", ErrConnectionLost, err)
}

// ended reports, once, that a connection holding a session ended and what
// became of its will. OnDisconnect runs now if OnConnect has run, else
// connectHook runs it after OnConnect.
func (c *conn) ended(willPublished, willDelayed bool) {
	c.outMu.Lock()
	r := c.outRareLocked()
	if r.ended {
		c.outMu.Unlock()
		return // the connection's first release reported it
	}
	r.ended = true
	if r.closed == nil {
		r.closed = &DisconnectInfo{Err: ErrConnectionLost}
	}
	r.closed.WillPublished, r.closed.WillDelayed = willPublished, willDelayed
	c.outMu.Unlock()
	if c.flags.Or(flagDisconnectReady)&flagConnectReported != 0 {
		c.disconnectHook()
	}
}

// disconnectHook runs OnDisconnect with what noteClose and ended recorded.
func (c *conn) disconnectHook() {
	if c.flags.Or(flagDisconnectReported)&flagDisconnectReported != 0 {
		return
	}
	c.outMu.Lock()
	info := *c.rare.closed
	c.outMu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			c.ln.srv.hookPanicked("OnDisconnect", c.clientID(), r)
		}
	}()
	c.ln.srv.opts.Hooks.OnDisconnect(c.client, info)
}

// gaveUp reports a delivery the session gives up to OnDropped. ss.mu is
// held.
func (ss *session) gaveUp(d *delivery, reason DropReason) {
	if ss.srv.opts.Hooks.OnDropped != nil {
		ss.droppedHook(d, reason)
	}
}

// wroteQoS0 reports a QoS 0 delivery handed to the connection: delivered,
// or dropped as r says. ss.mu is held.
func (ss *session) wroteQoS0(d *delivery, r writeResult) {
	switch r {
	case written, writtenOver:
		if ss.srv.opts.Hooks.OnDelivered != nil {
			ss.deliveredHook(d)
		}
	case notWritten:
		ss.srv.stats.droppedQoS0Offline.Add(1) // its connection closed as it was written
		ss.gaveUp(d, DropOffline)
	case skippedSlow:
		ss.gaveUp(d, DropSlowClient)
	case tooLarge:
		ss.gaveUp(d, DropTooLarge)
	}
}

// acknowledged reports a QoS 1 or 2 delivery the client acknowledged
// (PUBACK, PUBREC): delivered, or refused with an error code. ss.mu is
// held.
func (ss *session) acknowledged(d *delivery, code packet.ReasonCode) {
	if code.IsError() || ss.srv.opts.Hooks.OnDelivered != nil { // inline, for every acknowledgement
		ss.reportAcknowledged(d, code)
	}
}

func (ss *session) reportAcknowledged(d *delivery, code packet.ReasonCode) {
	switch {
	case code.IsError():
		ss.srv.stats.droppedRefused.Add(1)
		ss.gaveUp(d, DropRefused)
	case ss.srv.opts.Hooks.OnDelivered != nil:
		ss.deliveredHook(d)
	}
}

// deliveredHook runs OnDelivered for a delivery to ss. ss.mu is held.
func (ss *session) deliveredHook(d *delivery) {
	defer ss.recoverHook("OnDelivered")
	ss.srv.opts.Hooks.OnDelivered(ss.clientID, viewOfDelivery(d))
}

// droppedHook runs OnDropped for a delivery ss gives up. ss.mu is held.
func (ss *session) droppedHook(d *delivery, reason DropReason) {
	defer ss.recoverHook("OnDropped")
	ss.srv.opts.Hooks.OnDropped(ss.clientID, viewOfDelivery(d), reason)
}

// recoverHook recovers a session hook's panic: the session's connection,
// if any, is closed from another goroutine (the session's lock is held,
// and closing takes it).
func (ss *session) recoverHook(hook string) {
	r := recover()
	if r == nil {
		return
	}
	ss.srv.hookPanicked(hook, ss.clientID, r)
	if c := ss.conn; c != nil {
		go c.disconnectAs(closeInternalError, packet.UnspecifiedError, hookPanicReason)
	}
}
