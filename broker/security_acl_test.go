package broker

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// Authorisation on every path a message can take: live delivery, retained
// messages on subscribe, wills, shared subscriptions and $ topics, with the
// ACL file testdata/security/acl.conf (Mosquitto's syntax). The broker has
// no Authenticator here: on a loopback listener a user name is then only a
// name, which is all an ACL needs to be tested. (security_auth_test.go
// proves the logins.)

// aclServer runs a broker that authorizes with testdata/security/acl.conf.
func aclServer(t *testing.T) *Server {
	t.Helper()
	acl, err := auth.LoadACLFile("testdata/security/acl.conf")
	if err != nil {
		t.Fatal(err)
	}
	// No $SYS of the broker's own: the tests publish the $SYS messages
	// they check (sys_test.go has the broker's under an ACL).
	return secStart(t, Options{Authorizer: acl, SysInterval: -1}, nil)
}

// aclConnect connects clientID as user (anonymous when user is "").
func aclConnect(t *testing.T, srv *Server, version byte, clientID, user string) *secClient {
	t.Helper()
	p := connectPacket(version, clientID)
	if user != "" {
		p.UsernameFlag, p.Username = true, user
	}
	return secMustConnect(t, srv.Addrs()[0].String(), p)
}

// aclTopics are published by admin, who may write them all; aclReaders say
// which of them each reader may read under acl.conf.
var aclTopics = []string{
	"home/alice/a", "home/alice/secret/b", "public/news", "shared/hidden/x", "shared/open/x",
	"devices/bob-1/x", "devices/alice-1/x", "devices/alice-1/locked", "devices/anon-1/x",
	"users/bob/inbox/m", "users/alice/inbox/m", "misc/z",
}

var aclReaders = []struct {
	version  byte
	id, user string
	reads    []string
}{
	{packet.V5, "bob-1", "bob", []string{"public/news", "shared/open/x", "devices/bob-1/x", "devices/alice-1/x",
		"devices/alice-1/locked", "devices/anon-1/x", "users/bob/inbox/m", "users/alice/inbox/m", "misc/z"}},
	{packet.V311, "alice-1", "alice", []string{"home/alice/a", "public/news", "shared/hidden/x", "shared/open/x",
		"devices/alice-1/x", "users/alice/inbox/m"}},
	{packet.V311, "anon-1", "", []string{"public/news", "devices/anon-1/x"}},
}

// withPayloads turns topics into "topic=payload" with the topic as payload.
func withPayloads(topics []string) []string {
	out := make([]string, len(topics))
	for i, tp := range topics {
		out[i] = tp + "=" + tp
	}
	return out
}

// A subscription to # delivers only what its client may read: every other
// message is withheld, one by one, and counted.
// [MQTT-4.7.2-1] v3.1.1
func TestACLLiveDeliveryToHashSubscriber(t *testing.T) {
	srv := aclServer(t)
	readers := make([]*secClient, len(aclReaders))
	want := 0
	for i, r := range aclReaders {
		readers[i] = aclConnect(t, srv, r.version, r.id, r.user)
		readers[i].mustSubscribe(1, 0, "#")
		want += len(aclTopics) - len(r.reads)
	}
	withheld := srv.stats.withheld.Load()

	admin := aclConnect(t, srv, packet.V5, "admin-1", "admin")
	for i, tp := range aclTopics {
		if code := admin.publish(uint16(i+1), 1, tp, tp, false); code.IsError() {
			t.Fatalf("admin publishes %s: PUBACK 0x%02x, want success", tp, byte(code))
		}
	}
	admin.publish(100, 1, "public/end", "", false)

	for i, r := range aclReaders {
		got := readers[i].until("public/end")
		if w := withPayloads(r.reads); !slices.Equal(got, w) {
			t.Errorf("%s (user %q) subscribed to #: got %q\nwant %q", r.id, r.user, got, w)
		}
	}
	if d := srv.stats.withheld.Load() - withheld; d != int64(want) {
		t.Errorf("withheld counter rose by %d, want %d (one per message a reader may not read)", d, want)
	}
}

// Retained messages sent on subscribe go through the same check as live
// ones: a subscriber to # gets the retained messages it may read, no other.
// [MQTT-3.3.1-6] v3.1.1
func TestACLRetainedOnSubscribe(t *testing.T) {
	srv := aclServer(t)
	admin := aclConnect(t, srv, packet.V5, "admin-1", "admin")
	for i, tp := range aclTopics {
		if code := admin.publish(uint16(i+1), 1, tp, tp, true); code.IsError() {
			t.Fatalf("admin publishes retained %s: PUBACK 0x%02x", tp, byte(code))
		}
	}
	want := 0
	withheld := srv.stats.withheld.Load()
	for _, r := range aclReaders {
		c := aclConnect(t, srv, r.version, r.id, r.user)
		c.mustSubscribe(1, 0, "#")
		got := c.untilPong()
		slices.Sort(got)
		w := withPayloads(r.reads)
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Errorf("%s (user %q) subscribed to #: retained %q\nwant %q", r.id, r.user, got, w)
		}
		want += len(aclTopics) - len(r.reads)
	}
	if d := srv.stats.withheld.Load() - withheld; d != int64(want) {
		t.Errorf("withheld counter rose by %d, want %d", d, want)
	}
}

// A will is a PUBLISH the client prepares in CONNECT: one to a topic the
// client may not write refuses the CONNECT (0x87, 3.1.1: 0x05), and one
// it may write reaches only those allowed to read it.
// [MQTT-3.1.4-2] v5
func TestACLWill(t *testing.T) {
	srv := aclServer(t)
	addr := srv.Addrs()[0].String()
	refused := []struct {
		name, user, topic string
	}{
		{"another user's topic", "alice", "home/bob/status"},
		{"read-only topic", "", "public/status"},
		{"$SYS, though the ACL grants it", "admin", "$SYS/broker/status"},
	}
	for _, tc := range refused {
		for _, v := range []struct {
			version byte
			code    packet.ReasonCode
		}{{packet.V5, packet.NotAuthorized}, {packet.V311, packet.ConnRefusedNotAuthorized}} {
			t.Run(fmt.Sprintf("%s v%d", tc.name, v.version), func(t *testing.T) {
				p := connectPacket(v.version, "will-"+tc.user)
				if tc.user != "" {
					p.UsernameFlag, p.Username = true, tc.user
				}
				p.WillFlag, p.WillTopic, p.WillPayload = true, tc.topic, []byte("gone")
				c, ack := secConnect(t, addr, p)
				expectRefused(t, c, ack, v.code)
			})
		}
	}

	t.Run("allowed will reaches only its readers", func(t *testing.T) {
		bob := aclConnect(t, srv, packet.V5, "bob-1", "bob")
		bob.mustSubscribe(1, 0, "#")
		anon := aclConnect(t, srv, packet.V311, "anon-1", "")
		anon.mustSubscribe(1, 0, "#")
		admin := aclConnect(t, srv, packet.V5, "admin-sub", "admin")
		admin.mustSubscribe(1, 0, "#")

		p := connectPacket(packet.V311, "alice-will")
		p.UsernameFlag, p.Username = true, "alice"
		p.WillFlag, p.WillTopic, p.WillPayload = true, "home/alice/status", []byte("gone")
		alice := secMustConnect(t, addr, p)
		alice.ping()
		withheld := srv.stats.withheld.Load()
		alice.nc.Close() // no DISCONNECT: the will goes out

		if m := admin.nextPublish(); m.Topic != "home/alice/status" || string(m.Payload) != "gone" {
			t.Fatalf("admin got %s=%q, want the will home/alice/status=gone", m.Topic, m.Payload)
		}
		// bob and the anonymous client were each asked about, and refused.
		wiretest.Eventually(t, "the will withheld from bob and the anonymous client", func() bool {
			return srv.stats.withheld.Load() >= withheld+2
		})
		bob.ping()
		anon.ping()
	})
}

// A member of a shared subscription that may not read a topic is passed
// over: another member gets the message, none is lost.
func TestACLSharedSubscriptionSkipsMemberThatMayNotRead(t *testing.T) {
	srv := aclServer(t)
	alice := aclConnect(t, srv, packet.V5, "alice-s", "alice")
	bob := aclConnect(t, srv, packet.V5, "bob-s", "bob")
	for _, c := range []*secClient{alice, bob} {
		c.mustSubscribe(1, 0, "$share/g/shared/#", "public/end")
	}
	withheld := srv.stats.withheld.Load()
	admin := aclConnect(t, srv, packet.V5, "admin-1", "admin")
	const n = 6
	for i := range n {
		admin.publish(0, 0, "shared/hidden/x", fmt.Sprint("h", i), false)
		admin.publish(0, 0, "shared/open/x", fmt.Sprint("o", i), false)
	}
	admin.publish(0, 0, "public/end", "", false)

	count := func(msgs []string, prefix string) (k int) {
		for _, m := range msgs {
			if strings.HasPrefix(m, prefix) {
				k++
			}
		}
		return k
	}
	a, b := alice.until("public/end"), bob.until("public/end")
	if h := count(b, "shared/hidden/"); h != 0 {
		t.Errorf("bob, who may not read shared/hidden/, got %d of its messages: %q", h, b)
	}
	if h := count(a, "shared/hidden/"); h != n {
		t.Errorf("alice got %d of the %d shared/hidden/ messages bob had to pass on: %q", h, n, a)
	}
	if o := count(a, "shared/open/") + count(b, "shared/open/"); o != n {
		t.Errorf("shared/open/ messages delivered %d times in all, want %d (once each): alice %q, bob %q", o, n, a, b)
	}
	if srv.stats.withheld.Load() == withheld {
		t.Error("withheld counter did not rise: was bob ever asked?")
	}
}

// No client publishes to a topic starting with '$', whatever the ACL
// grants and with no authorizer at all: 3.1.1 acknowledges as usual and
// drops the message, MQTT 5 answers 0x87; QoS 0 is dropped.
// [MQTT-3.3.5-2] v3.1.1
// [MQTT-4.7.2-1] v3.1.1
// [MQTT-4.7.2-1] v5
func TestNoClientPublishesToDollarTopics(t *testing.T) {
	acl, err := auth.LoadACLFile("testdata/security/acl.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		opts    Options
		user    string
		filters []string // what the watcher may subscribe to
	}{
		{"ACL grants admin $SYS/#", Options{Authorizer: acl}, "admin", []string{"$SYS/#", "#", "+/x"}},
		{"no authorizer", Options{}, "", []string{"$SYS/#", "$anything/#", "$", "#", "+/x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.SysInterval = -1 // the broker's own $SYS messages would reach the watcher
			srv := secStart(t, tc.opts, nil)
			watcher := aclConnect(t, srv, packet.V5, "watcher", tc.user)
			watcher.mustSubscribe(1, 1, tc.filters...)
			denied := srv.stats.deniedPublish.Load()
			topics := []string{"$SYS/x", "$anything/x", "$"}
			publishes := 0
			for _, version := range []byte{packet.V311, packet.V5} {
				pub := aclConnect(t, srv, version, fmt.Sprint("pub-v", version), tc.user)
				for i, tp := range topics {
					pid := uint16(10 * (i + 1))
					pub.publish(0, 0, tp, "qos0", false)
					code1 := pub.publish(pid, 1, tp, "qos1", i == 0)
					code2 := pub.publish(pid+1, 2, tp, "qos2", false)
					publishes += 3
					want := packet.Success // 3.1.1 has no way to say no [MQTT-3.3.5-2]
					if version == packet.V5 {
						want = packet.NotAuthorized
					} else {
						pub.send(&packet.Ack{Kind: packet.PUBREL, PacketID: pid + 1})
						pub.nextAck(packet.PUBCOMP, pid+1)
					}
					if code1 != want || code2 != want {
						t.Errorf("v%d publish to %q: PUBACK 0x%02x, PUBREC 0x%02x; want 0x%02x", version, tp,
							byte(code1), byte(code2), byte(want))
					}
				}
				pub.ping() // the connection stays up
			}
			watcher.ping() // nothing was delivered
			if d := srv.stats.deniedPublish.Load() - denied; d != int64(publishes) {
				t.Errorf("deniedPublish rose by %d, want %d", d, publishes)
			}
			// Nor was anything retained.
			late := aclConnect(t, srv, packet.V311, "late", tc.user)
			late.mustSubscribe(1, 0, "$SYS/#")
			if got := late.untilPong(); len(got) > 0 {
				t.Errorf("a new $SYS/# subscriber got retained %q", got)
			}
		})
	}
}

// The broker's own $ topics reach those who subscribe to them by name,
// never a subscription starting with a wildcard; under an ACL, only a
// client granted them may subscribe.
// [MQTT-4.7.2-1] v3.1.1
// [MQTT-4.7.2-1] v5
func TestHashSubscriptionNeverGetsDollarTopics(t *testing.T) {
	srv := aclServer(t)
	hash := aclConnect(t, srv, packet.V311, "hash", "admin")
	hash.mustSubscribe(1, 0, "#", "+/broker/uptime")
	sys := aclConnect(t, srv, packet.V5, "sys", "admin")
	sys.mustSubscribe(1, 0, "$SYS/#")
	anon := aclConnect(t, srv, packet.V5, "anon-sys", "")
	if codes := anon.subscribe(1, 0, "$SYS/#"); codes[0] != packet.NotAuthorized {
		t.Errorf("anonymous SUBSCRIBE $SYS/#: 0x%02x, want 0x87", byte(codes[0]))
	}

	// What the broker would publish about itself.
	srv.publishWill(newMessage(&packet.Publish{Topic: "$SYS/broker/uptime", Payload: []byte("42")}, 0))
	if m := sys.nextPublish(); m.Topic != "$SYS/broker/uptime" {
		t.Fatalf("$SYS/# subscriber got %s, want $SYS/broker/uptime", m.Topic)
	}
	hash.ping()
	anon.ping()
}

// A PUBLISH the client may not make is dropped: 3.1.1 acknowledges it as
// usual (it has no way to say no), MQTT 5 answers 0x87; QoS 0 is dropped
// silently. The connection stays up.
// [MQTT-3.3.5-2] v3.1.1
func TestACLPublishDenied(t *testing.T) {
	srv := aclServer(t)
	watcher := aclConnect(t, srv, packet.V5, "admin-w", "admin")
	watcher.mustSubscribe(1, 0, "#")
	denied := srv.stats.deniedPublish.Load()
	cases := []struct {
		version  byte
		id, user string
		topic    string
	}{
		{packet.V311, "anon-3", "", "public/x"},
		{packet.V5, "anon-5", "", "public/x"},
		{packet.V311, "bob-3", "bob", "home/alice/x"},
		{packet.V5, "bob-5", "bob", "home/alice/x"},
		{packet.V5, "alice-5", "alice", "home/alice/secret/x"},
		{packet.V5, "dev-5", "", "devices/dev-5/locked"},
	}
	for _, tc := range cases {
		c := aclConnect(t, srv, tc.version, tc.id, tc.user)
		c.publish(0, 0, tc.topic, "qos0", false)
		code1 := c.publish(1, 1, tc.topic, "qos1", true)
		code2 := c.publish(2, 2, tc.topic, "qos2", false)
		want := packet.NotAuthorized
		if tc.version == packet.V311 {
			want = packet.Success
			c.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 2})
			c.nextAck(packet.PUBCOMP, 2)
		}
		if code1 != want || code2 != want {
			t.Errorf("%s (v%d) publishes %s: PUBACK 0x%02x, PUBREC 0x%02x; want 0x%02x", tc.id, tc.version, tc.topic,
				byte(code1), byte(code2), byte(want))
		}
		c.ping()
	}
	// Every denied PUBLISH was handled before its client's PINGRESP, so a
	// message published now arrives after any of them that got through.
	watcher2 := aclConnect(t, srv, packet.V5, "admin-p", "admin")
	watcher2.publish(0, 0, "public/end", "", false)
	if got := watcher.until("public/end"); len(got) > 0 {
		t.Errorf("denied messages were delivered: %q", got)
	}
	if d := srv.stats.deniedPublish.Load() - denied; d != int64(3*len(cases)) {
		t.Errorf("deniedPublish rose by %d, want %d", d, 3*len(cases))
	}
	late := aclConnect(t, srv, packet.V311, "admin-late", "admin")
	late.mustSubscribe(1, 0, "#")
	if got := late.untilPong(); len(got) > 0 {
		t.Errorf("denied retained messages were kept: %q", got)
	}
}

// A filter the client may not subscribe to gets SUBACK 0x87 (3.1.1: 0x80);
// the others in the same SUBSCRIBE are granted.
func TestACLSubscribeDenied(t *testing.T) {
	srv := aclServer(t)
	denied := srv.stats.deniedSubscribe.Load()
	cases := []struct {
		version  byte
		id, user string
		filters  []string
		want     []packet.ReasonCode
	}{
		{packet.V311, "anon-3", "", []string{"public/#", "home/#", "devices/anon-3/#"},
			[]packet.ReasonCode{0, packet.SubackFailure, 0}},
		{packet.V5, "anon-5", "", []string{"public/#", "home/#", "devices/anon-5/#"},
			[]packet.ReasonCode{0, packet.NotAuthorized, 0}},
		// A deny covering the whole filter refuses it; one covering part
		// of it leaves the subscription, and its messages are withheld.
		{packet.V5, "bob-5", "bob", []string{"home/alice/#", "$share/g/home/alice/#", "home/#"},
			[]packet.ReasonCode{packet.NotAuthorized, packet.NotAuthorized, 0}},
		{packet.V311, "alice-3", "alice", []string{"home/alice/secret/#", "home/bob/#", "home/+/a"},
			[]packet.ReasonCode{packet.SubackFailure, packet.SubackFailure, 0}},
	}
	refusals := 0
	for _, tc := range cases {
		c := aclConnect(t, srv, tc.version, tc.id, tc.user)
		if got := c.subscribe(1, 0, tc.filters...); !slices.Equal(got, tc.want) {
			t.Errorf("%s (v%d) subscribes %q: SUBACK % x, want % x", tc.id, tc.version, tc.filters, got, tc.want)
		}
		for _, code := range tc.want {
			if code.IsError() {
				refusals++
			}
		}
		c.ping()
	}
	if d := srv.stats.deniedSubscribe.Load() - denied; d != int64(refusals) {
		t.Errorf("deniedSubscribe rose by %d, want %d", d, refusals)
	}
}

// %c and %u stand for a whole level, and only for a client id or user name
// that is one: a client calling itself "+", "#" or "a/b" (or a user name
// like that) gets nothing from "pattern readwrite devices/%c/#".
func TestACLPatternInjection(t *testing.T) {
	srv := aclServer(t)
	denied, deniedPub := srv.stats.deniedSubscribe.Load(), srv.stats.deniedPublish.Load()
	cases := []struct {
		id, user string
		filters  []string
		publish  string // a topic the client must not be able to write
	}{
		{"+", "", []string{"devices/+/#", "devices/#", "devices/+/x"}, ""},
		{"#", "", []string{"devices/#", "devices/+/#"}, ""},
		{"a/b", "", []string{"devices/a/b/#", "devices/a/#"}, "devices/a/b/x"},
		{"user-plus", "+", []string{"users/+/inbox/#", "users/#"}, ""},
		{"user-slash", "x/y", []string{"users/x/y/inbox/#"}, ""},
	}
	wantDenied, wantDeniedPub := 0, 0
	for _, tc := range cases {
		c := aclConnect(t, srv, packet.V5, tc.id, tc.user)
		for i, code := range c.subscribe(1, 0, tc.filters...) {
			if code != packet.NotAuthorized {
				t.Errorf("client id %q user %q subscribes %q: 0x%02x, want 0x87", tc.id, tc.user, tc.filters[i], byte(code))
			}
		}
		wantDenied += len(tc.filters)
		if tc.publish != "" {
			if code := c.publish(2, 1, tc.publish, "x", false); code != packet.NotAuthorized {
				t.Errorf("client id %q publishes %q: PUBACK 0x%02x, want 0x87", tc.id, tc.publish, byte(code))
			}
			wantDeniedPub++
		}
	}

	// The patterns work for the clients they are meant for.
	dev := aclConnect(t, srv, packet.V5, "dev-9", "carol")
	if code := dev.publish(2, 1, "devices/dev-9/x", "mine", false); code != packet.NoMatchingSubscribers {
		t.Errorf("dev-9 publishes devices/dev-9/x: 0x%02x, want 0x10 (allowed, nobody subscribes)", byte(code))
	}
	dev.mustSubscribe(1, 0, "devices/dev-9/#", "users/carol/inbox/#")
	admin := aclConnect(t, srv, packet.V5, "admin-1", "admin")
	admin.publish(1, 1, "users/carol/inbox/hello", "for carol", false)
	admin.publish(2, 1, "devices/dev-9/x", "from admin", false)
	admin.publish(3, 1, "devices/dev-9/end", "", false)
	got := dev.until("devices/dev-9/end")
	if want := []string{"users/carol/inbox/hello=for carol", "devices/dev-9/x=from admin"}; !slices.Equal(got, want) {
		t.Errorf("dev-9 (user carol) got %q, want %q", got, want)
	}
	if d := srv.stats.deniedSubscribe.Load() - denied; d != int64(wantDenied) {
		t.Errorf("deniedSubscribe rose by %d, want %d", d, wantDenied)
	}
	if d := srv.stats.deniedPublish.Load() - deniedPub; d != int64(wantDeniedPub) {
		t.Errorf("deniedPublish rose by %d, want %d", d, wantDeniedPub)
	}
}
