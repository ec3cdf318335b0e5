// Package propflag reads MQTT 5 properties from a command line as
// mosquitto_pub's and mosquitto_sub's -D (--property) option gives them:
//
//	-D COMMAND NAME VALUE
//	-D COMMAND user-property KEY VALUE
//
// COMMAND names the packet that carries the property (CONNECT, PUBLISH,
// SUBSCRIBE, UNSUBSCRIBE, DISCONNECT, or WILL for the will message), NAME
// is the property's name in the specification, in lower case with '-'
// between words.
package propflag

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/petrelmq/petrel/packet"
)

// Props are the properties of one program's -D options, by command.
type Props struct {
	// Program names the program in errors: "petrel sub".
	Program string
	// Unsent are the commands the program never sends (PUBLISH for a
	// subscriber): it refuses properties for them.
	Unsent []string

	byCmd map[string]*packet.Properties
}

// Args is how many arguments follow a -D whose arguments start rest:
// four for a user property, else three.
func Args(rest []string) int {
	if len(rest) > 1 && rest[1] == "user-property" {
		return 4
	}
	return 3
}

// propTypes are the properties -D knows and the commands that may carry
// them.
var propTypes = map[string]struct {
	id   packet.PropID
	cmds string
}{
	"payload-format-indicator":     {packet.PropPayloadFormat, "PUBLISH WILL"},
	"message-expiry-interval":      {packet.PropMessageExpiry, "PUBLISH WILL"},
	"content-type":                 {packet.PropContentType, "PUBLISH WILL"},
	"response-topic":               {packet.PropResponseTopic, "PUBLISH WILL"},
	"correlation-data":             {packet.PropCorrelationData, "PUBLISH WILL"},
	"subscription-identifier":      {packet.PropSubscriptionID, "SUBSCRIBE"},
	"session-expiry-interval":      {packet.PropSessionExpiry, "CONNECT DISCONNECT"},
	"request-problem-information":  {packet.PropRequestProblemInfo, "CONNECT"},
	"will-delay-interval":          {packet.PropWillDelay, "WILL"},
	"request-response-information": {packet.PropRequestResponseInfo, "CONNECT"},
	"reason-string":                {packet.PropReasonString, "DISCONNECT"},
	"receive-maximum":              {packet.PropReceiveMaximum, "CONNECT"},
	"topic-alias-maximum":          {packet.PropTopicAliasMaximum, "CONNECT"},
	"topic-alias":                  {packet.PropTopicAlias, "PUBLISH"},
	"user-property":                {packet.PropUser, "CONNECT PUBLISH SUBSCRIBE UNSUBSCRIBE DISCONNECT WILL"},
	"maximum-packet-size":          {packet.PropMaximumPacketSize, "CONNECT"},
}

// Add reads the arguments of one -D, Args(a) of them: command, name,
// value, or command, user-property, key, value. Its errors are the
// messages to show the user.
func (ps *Props) Add(a []string) error {
	cmd, name := strings.ToUpper(a[0]), a[1]
	switch cmd {
	case "CONNECT", "PUBLISH", "SUBSCRIBE", "UNSUBSCRIBE", "DISCONNECT", "WILL":
	case "AUTH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP":
		return errors.New("Properties of " + cmd + " are not supported.")
	default:
		return errors.New("Invalid command " + a[0] + " given in --property argument.")
	}
	pt, ok := propTypes[name]
	if !ok {
		if name == "authentication-method" || name == "authentication-data" {
			return errors.New("Enhanced authentication (" + name + ") is not supported.")
		}
		return errors.New("Invalid property name " + name + " given in --property argument.")
	}
	if !strings.Contains(pt.cmds, cmd) || slices.Contains(ps.Unsent, cmd) {
		return errors.New("Property " + name + " is not valid for " + cmd + " in " + ps.Program + ".")
	}
	if ps.byCmd == nil {
		ps.byCmd = map[string]*packet.Properties{}
	}
	p := ps.byCmd[cmd]
	if p == nil {
		p = &packet.Properties{}
		ps.byCmd[cmd] = p
	}
	if pt.id == packet.PropUser {
		p.User = append(p.User, packet.UserProperty{Key: a[2], Value: a[3]})
		return nil
	}
	return set(p, pt.id, name, a[2])
}

// intBits are the sizes of the integer properties; the one-byte ones are
// flags, 0 or 1.
var intBits = map[packet.PropID]int{
	packet.PropPayloadFormat: 8, packet.PropRequestProblemInfo: 8, packet.PropRequestResponseInfo: 8,
	packet.PropReceiveMaximum: 16, packet.PropTopicAliasMaximum: 16, packet.PropTopicAlias: 16,
	packet.PropMessageExpiry: 32, packet.PropSessionExpiry: 32, packet.PropWillDelay: 32, packet.PropMaximumPacketSize: 32,
}

// set sets property id, named name, of p to value.
func set(p *packet.Properties, id packet.PropID, name, value string) error {
	bad := errors.New("Invalid value " + strconv.Quote(value) + " for property " + name + ".")
	switch id {
	case packet.PropSubscriptionID:
		v, err := strconv.ParseUint(value, 10, 32)
		if err != nil || v == 0 || v > 268435455 {
			return bad
		}
		p.SubscriptionIDs = append(p.SubscriptionIDs[:0], uint32(v))
		return nil
	case packet.PropContentType:
		p.ContentType = value
	case packet.PropResponseTopic:
		p.ResponseTopic = value
	case packet.PropCorrelationData:
		p.CorrelationData = []byte(value)
	case packet.PropReasonString:
		p.ReasonString = value
	default:
		bits := intBits[id]
		v, err := strconv.ParseUint(value, 10, bits)
		if err != nil || bits == 8 && v > 1 {
			return bad
		}
		setInt(p, id, v)
	}
	p.Mark(id)
	return nil
}

// setInt sets integer property id of p to v, which fits it.
func setInt(p *packet.Properties, id packet.PropID, v uint64) {
	switch id {
	case packet.PropPayloadFormat:
		p.PayloadFormat = byte(v)
	case packet.PropRequestProblemInfo:
		p.RequestProblemInfo = byte(v)
	case packet.PropRequestResponseInfo:
		p.RequestResponseInfo = byte(v)
	case packet.PropReceiveMaximum:
		p.ReceiveMaximum = uint16(v)
	case packet.PropTopicAliasMaximum:
		p.TopicAliasMaximum = uint16(v)
	case packet.PropTopicAlias:
		p.TopicAlias = uint16(v)
	case packet.PropMessageExpiry:
		p.MessageExpiry = uint32(v)
	case packet.PropSessionExpiry:
		p.SessionExpiry = uint32(v)
	case packet.PropWillDelay:
		p.WillDelay = uint32(v)
	case packet.PropMaximumPacketSize:
		p.MaximumPacketSize = uint32(v)
	}
}

// Of returns the properties given for cmd (empty if none).
func (ps *Props) Of(cmd string) packet.Properties {
	if p := ps.byCmd[cmd]; p != nil {
		return *p
	}
	return packet.Properties{}
}

// Any reports whether a property was given: -D makes an MQTT 5 client.
func (ps *Props) Any() bool { return len(ps.byCmd) > 0 }
