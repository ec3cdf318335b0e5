package broker

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/petrelmq/petrel/internal/topic"
	"github.com/petrelmq/petrel/packet"
)

// ErrNotRunning is returned by Publish before Start has finished or once
// Close has begun.
var ErrNotRunning = errors.New("broker: server is not running")

// ErrInvalidMessage is wrapped by the errors of Publish (and of the admin
// methods that take a message) for a message the broker would refuse from
// a client: a bad topic, a QoS above the maximum, a payload too large.
var ErrInvalidMessage = errors.New("broker: invalid message")

// invalidMessage is a message refused by checkPublish: it is
// ErrInvalidMessage, and reads as the reason.
type invalidMessage struct{ error }

func (e invalidMessage) Unwrap() error        { return e.error }
func (e invalidMessage) Is(target error) bool { return target == ErrInvalidMessage }

// PublishOptions are a message's QoS, RETAIN flag and MQTT 5 properties,
// for PublishWith.
type PublishOptions struct {
	QoS    byte
	Retain bool
	// Properties are forwarded to MQTT 5 subscribers, as a client's
	// PUBLISH would have them: Payload Format Indicator, Content Type,
	// Response Topic, Correlation Data, User Properties, and the Message
	// Expiry Interval (which counts from the call). The others are
	// ignored. Nil for none. Publish copies what it keeps.
	Properties *packet.Properties
}

// Publish publishes a message from the program that embeds the broker,
// routed as a client's PUBLISH would be: to every matching subscription
// and shared subscription group, and kept as the topic's retained message
// when retain is set (an empty payload deletes it). It is PublishWith
// without properties.
func (s *Server) Publish(topic string, payload []byte, qos byte, retain bool) error {
	return s.PublishWith(topic, payload, PublishOptions{QoS: qos, Retain: retain})
}

// PublishWith publishes a message from the program that embeds the broker
// (see Publish), with MQTT 5 properties. It is safe for concurrent use.
//
// The message is checked as a client's would be (a topic name without
// wildcards, within Limits; QoS and RETAIN within what Options allow; a
// payload within MaxPacketSize, and UTF-8 if the Payload Format Indicator
// says so), except that the topic may start with '$', and it is not
// checked against Authorizer or OnACLCheck: the program is trusted.
// OnPublish sees it (with a nil client) and may reject it: the error then
// wraps ErrRejected. Nobody's No Local subscription option excludes it.
//
// At QoS 0, Publish returns once the message is routed. At QoS 1 and 2 it
// returns once the message is in the store for every persistent session
// it goes to, and as the retained message if it is one: what a client's
// PUBACK promises (with Options.SyncPeriod, without waiting for the sync),
// and, in a cluster, once every other node it goes to has taken it.
// An error then means the store refused it. Slow subscribers do not hold
// Publish back: their queue limits apply.
//
// Publish may be called from OnConnectAuthenticate, OnACLCheck, OnConnect,
// OnDisconnect and OnPublish (which sees the message too, so beware of
// loops), never from OnDelivered or OnDropped. At QoS 1 and 2 it waits for
// the disk, which a hook should not.
func (s *Server) PublishWith(topic string, payload []byte, o PublishOptions) error {
	_, err := s.publishWith(topic, payload, o)
	return err
}

// publishWith is PublishWith, and says how many subscriptions took the
// message (a shared subscription group counts once).
func (s *Server) publishWith(topic string, payload []byte, o PublishOptions) (matched int, err error) {
	if err := s.checkPublish(topic, payload, &o); err != nil {
		return 0, invalidMessage{err}
	}
	s.pubMu.RLock()
	defer s.pubMu.RUnlock()
	if !s.running.Load() || s.shuttingDown.Load() {
		return 0, ErrNotRunning
	}
	p := packet.Publish{Topic: topic, Payload: payload, QoS: o.QoS, Retain: o.Retain}
	if o.Properties != nil {
		p.Props = *o.Properties
	}
	if s.opts.Hooks.OnPublish != nil {
		if code := s.publishHook(&p); code.IsError() {
			s.stats.rejectedPublish.Add(1)
			return 0, fmt.Errorf("%w: reason code 0x%02x (%v)", ErrRejected, byte(code), code)
		}
	}
	m := makeMessage(&p, 0, false, nil)
	tx := txPool.Get().(*routeTx)
	defer putTx(tx)
	matched = s.publish(m, tx)
	s.messageShard(m).addSent(&tx.sent)
	m.unref()
	if o.QoS == 0 || tx.group() == 0 {
		tx.finish(s, nil)
		return matched, s.awaitNodes(o.QoS, tx.remote)
	}
	w := publishWaiter(make(chan error, 1))
	tx.finish(s, w)
	if err := <-w; err != nil {
		return matched, fmt.Errorf("broker: publish: the store refused the message: %w", commitError(err))
	}
	return matched, s.awaitNodes(o.QoS, tx.remote)
}

// awaitNodes waits, at QoS 1 and 2, until the other nodes of a cluster
// have taken a message, as a client's PUBACK does. The cluster completes
// its work when a node answers or is found dead; the bound is a backstop.
func (s *Server) awaitNodes(qos byte, remote []*Pending) error {
	if qos == 0 {
		return nil
	}
	for _, p := range remote {
		if !p.Wait(time.Minute) {
			return errors.New("broker: publish: the cluster's other nodes did not take the message within a minute")
		}
		if p.Failed() {
			return fmt.Errorf("broker: publish: %w", errNodeLost)
		}
	}
	return nil
}

// checkPublish refuses what the broker would refuse from a client.
func (s *Server) checkPublish(name string, payload []byte, o *PublishOptions) error {
	if err := topic.ValidateName(name); err != nil {
		return fmt.Errorf("broker: publish: topic %q: %w", name, err)
	}
	lim := &s.opts.Limits
	switch {
	case !utf8.ValidString(name):
		return fmt.Errorf("broker: publish: topic %q is not UTF-8", name)
	case lim.topicTooBig(name):
		return fmt.Errorf("broker: publish: topic longer than %d bytes or %d levels", lim.MaxTopicLength, lim.MaxTopicLevels)
	case o.QoS > s.opts.maxQoS():
		return fmt.Errorf("broker: publish: QoS %d above the maximum %d", o.QoS, s.opts.maxQoS())
	case o.Retain && s.opts.DisableRetain:
		return errors.New("broker: publish: retained messages are disabled")
	case len(payload) > s.opts.MaxPacketSize:
		return fmt.Errorf("broker: publish: payload of %d bytes above MaxPacketSize %d", len(payload), s.opts.MaxPacketSize)
	case o.Properties != nil && o.Properties.Has(packet.PropPayloadFormat) && o.Properties.PayloadFormat == 1 && !utf8.Valid(payload):
		return errors.New("broker: publish: payload is not UTF-8 as its format indicator says")
	}
	return nil
}

// publishHook asks OnPublish about a message of the embedding program. A
// panic rejects it.
func (s *Server) publishHook(p *packet.Publish) (code packet.ReasonCode) {
	defer func() {
		if r := recover(); r != nil {
			s.hookPanicked("OnPublish", "", r)
			code = packet.UnspecifiedError
		}
	}()
	return s.opts.Hooks.OnPublish(nil, viewOfPublish(p))
}

// publishWaiter hears that a Publish's store writes are durable.
type publishWaiter chan error

func (w publishWaiter) committed(_ uint64, err error) { w <- err }
