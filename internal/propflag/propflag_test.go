package propflag

import (
	"strings"
	"testing"

	"github.com/petrelmq/petrel/packet"
)

func TestArgs(t *testing.T) {
	for _, tc := range []struct {
		rest []string
		want int
	}{
		{[]string{"CONNECT", "user-property", "k", "v"}, 4},
		{[]string{"CONNECT", "receive-maximum", "10"}, 3},
		{[]string{"CONNECT"}, 3},
		{nil, 3},
	} {
		if got := Args(tc.rest); got != tc.want {
			t.Errorf("Args(%q) = %d, want %d", tc.rest, got, tc.want)
		}
	}
}

// TestAddSetsProperties: each -D lands in its command's properties, marked
// present; user properties keep their order.
func TestAddSetsProperties(t *testing.T) {
	ps := Props{Program: "petrel pub"}
	if ps.Any() {
		t.Error("Any before a -D")
	}
	for _, a := range [][]string{
		{"connect", "receive-maximum", "10"}, // the command in any case
		{"CONNECT", "session-expiry-interval", "4294967295"},
		{"CONNECT", "user-property", "k", "v"},
		{"CONNECT", "user-property", "k", "w"},
		{"PUBLISH", "payload-format-indicator", "1"},
		{"PUBLISH", "content-type", "text/plain"},
		{"PUBLISH", "correlation-data", "id-1"},
		{"PUBLISH", "topic-alias", "3"},
		{"WILL", "will-delay-interval", "30"},
		{"SUBSCRIBE", "subscription-identifier", "268435455"},
		{"DISCONNECT", "reason-string", "bye"},
	} {
		if err := ps.Add(a); err != nil {
			t.Fatalf("-D %q: %v", a, err)
		}
	}
	if !ps.Any() {
		t.Error("not Any after -D")
	}
	c := ps.Of("CONNECT")
	if c.ReceiveMaximum != 10 || !c.Has(packet.PropReceiveMaximum) || c.SessionExpiry != 4294967295 ||
		len(c.User) != 2 || c.User[0] != (packet.UserProperty{Key: "k", Value: "v"}) || c.User[1].Value != "w" {
		t.Errorf("CONNECT: %+v", c)
	}
	p := ps.Of("PUBLISH")
	if p.PayloadFormat != 1 || p.ContentType != "text/plain" || string(p.CorrelationData) != "id-1" ||
		p.TopicAlias != 3 || !p.Has(packet.PropContentType) || !p.Has(packet.PropTopicAlias) {
		t.Errorf("PUBLISH: %+v", p)
	}
	if w := ps.Of("WILL"); w.WillDelay != 30 || !w.Has(packet.PropWillDelay) {
		t.Errorf("WILL: %+v", w)
	}
	if s := ps.Of("SUBSCRIBE"); len(s.SubscriptionIDs) != 1 || s.SubscriptionIDs[0] != 268435455 {
		t.Errorf("SUBSCRIBE: %+v", s)
	}
	if d := ps.Of("DISCONNECT"); d.ReasonString != "bye" {
		t.Errorf("DISCONNECT: %+v", d)
	}
	if u := ps.Of("UNSUBSCRIBE"); !u.Empty() {
		t.Errorf("UNSUBSCRIBE, given nothing: %+v", u)
	}
}

// TestAddErrors: what -D refuses, and the message it gives.
func TestAddErrors(t *testing.T) {
	ps := Props{Program: "petrel sub", Unsent: []string{"PUBLISH"}}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"CONNEC", "receive-maximum", "1"}, "Invalid command CONNEC given in --property argument."},
		{[]string{"PUBACK", "reason-string", "x"}, "Properties of PUBACK are not supported."},
		{[]string{"CONNECT", "authentication-method", "x"}, "Enhanced authentication (authentication-method) is not supported."},
		{[]string{"CONNECT", "no-such-property", "1"}, "Invalid property name no-such-property given in --property argument."},
		{[]string{"CONNECT", "topic-alias", "1"}, "Property topic-alias is not valid for CONNECT in petrel sub."},
		{[]string{"PUBLISH", "content-type", "x"}, "Property content-type is not valid for PUBLISH in petrel sub."},
		{[]string{"CONNECT", "receive-maximum", "70000"}, `Invalid value "70000" for property receive-maximum.`},
		{[]string{"CONNECT", "request-problem-information", "2"}, `Invalid value "2" for property request-problem-information.`},
		{[]string{"CONNECT", "maximum-packet-size", "-1"}, `Invalid value "-1" for property maximum-packet-size.`},
		{[]string{"SUBSCRIBE", "subscription-identifier", "0"}, `Invalid value "0" for property subscription-identifier.`},
		{[]string{"SUBSCRIBE", "subscription-identifier", "268435456"}, `Invalid value "268435456" for property subscription-identifier.`},
	} {
		err := ps.Add(tc.args)
		if err == nil || err.Error() != tc.want {
			t.Errorf("-D %s: %v, want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
