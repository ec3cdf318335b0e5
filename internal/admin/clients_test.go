package admin

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// clientPage is a page of GET /api/v1/clients.
type clientPage struct {
	Clients []clientJSON `json:"clients"`
	Next    string       `json:"next_cursor"`
}

// allClients pages through GET /api/v1/clients?query, calling between
// pages, and returns the client ids of every page.
func (f *fixture) allClients(query string, between func()) [][]string {
	f.t.Helper()
	return pages(f, "/api/v1/clients", query, between, func(p *clientPage) ([]string, string) {
		ids := make([]string, len(p.Clients))
		for i, c := range p.Clients {
			ids[i] = c.ClientID
		}
		return ids, p.Next
	})
}

// 250 clients in pages of 100 are three pages, each client on one of them
// once; with clients connecting between pages, each of the 250 still comes
// exactly once.
func TestClientsPaging(t *testing.T) {
	f := start(t)
	var want []string
	for i := range 250 {
		id := fmt.Sprintf("client-%03d", i)
		want = append(want, id)
		wiretest.MustConnect(t, f.mqttAddr(), id, true)
	}
	pages := f.allClients("limit=100", nil)
	if len(pages) != 3 || len(pages[0]) != 100 || len(pages[1]) != 100 || len(pages[2]) != 50 {
		sizes := []int{}
		for _, p := range pages {
			sizes = append(sizes, len(p))
		}
		t.Fatalf("pages of %v clients, want 100, 100, 50", sizes)
	}
	got := slices.Concat(pages...)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("the pages hold %d clients (%d distinct), want each of the 250 once", len(got), len(slices.Compact(got)))
	}

	extra := 0
	pages = f.allClients("limit=30", func() {
		for range 20 {
			wiretest.MustConnect(t, f.mqttAddr(), fmt.Sprintf("late-%03d", extra), true)
			extra++
		}
	})
	got = got[:0]
	for _, id := range slices.Concat(pages...) {
		if strings.HasPrefix(id, "client-") {
			got = append(got, id)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("with %d clients connecting between pages, the pages hold %d of the first clients, want each of the 250 once",
			extra, len(got))
	}
	// A cursor of another kind, or none of ours, is refused.
	f.expect(http.StatusBadRequest, "GET", "/api/v1/clients?cursor=nonsense", nil, nil)
	var subs struct {
		Next string `json:"next_cursor"`
	}
	for _, id := range []string{"subscriber", "subscriber2"} {
		w, _ := wiretest.MustConnect(t, f.mqttAddr(), id, true)
		w.Subscribe(id, 0)
	}
	f.expect(http.StatusOK, "GET", "/api/v1/subscriptions?limit=1", nil, &subs)
	f.expect(http.StatusBadRequest, "GET", "/api/v1/clients?cursor="+subs.Next, nil, nil)
}

// The filters keep what they say, alone and together; a bad filter is 400.
func TestClientsFilters(t *testing.T) {
	f := start(t)
	connect := func(id, user string) {
		_, ack := wiretest.Connect(t, f.mqttAddr(), &packet.Connect{Version: packet.V311, ClientID: id, CleanStart: true,
			KeepAlive: 60, UsernameFlag: user != "", Username: user})
		if ack.Code != 0 {
			t.Fatalf("%s: CONNACK 0x%02x", id, byte(ack.Code))
		}
	}
	connect("sensor-1", "alice")
	connect("sensor-2", "bob")
	connect("app-1", "alice")
	offline, _ := wiretest.MustConnect(t, f.mqttAddr(), "sensor-3", false) // anonymous
	offline.Disconnect()
	wiretest.Eventually(t, "sensor-3 offline", func() bool {
		var c clientJSON
		f.expect(http.StatusOK, "GET", "/api/v1/clients/sensor-3", nil, &c)
		return !c.Connected
	})
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"app-1", "sensor-1", "sensor-2", "sensor-3"}},
		{"prefix=sensor-", []string{"sensor-1", "sensor-2", "sensor-3"}},
		{"prefix=nothing", nil},
		{"username=alice", []string{"app-1", "sensor-1"}},
		{"connected=false", []string{"sensor-3"}},
		{"connected=true&prefix=sensor-", []string{"sensor-1", "sensor-2"}},
		{"address=127.0.0.1", []string{"app-1", "sensor-1", "sensor-2"}}, // an anonymous offline session keeps no address
		{"address=127.0.0.0/8&username=bob", []string{"sensor-2"}},
		{"address=10.0.0.0/8", nil},
		{"prefix=sensor-&limit=1", []string{"sensor-1", "sensor-2", "sensor-3"}},
	} {
		var got []string
		for _, p := range f.allClients(tc.query, nil) {
			got = append(got, p...)
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("clients?%s = %q, want %q", tc.query, got, tc.want)
		}
	}
	// Every client says which node it is on, connected or not.
	var all clientPage
	f.expect(http.StatusOK, "GET", "/api/v1/clients", nil, &all)
	if len(all.Clients) != 4 {
		t.Errorf("%d clients, want 4", len(all.Clients))
	}
	for _, c := range all.Clients {
		if c.Node != testNode {
			t.Errorf("client %s (connected %v): node %q, want %q", c.ClientID, c.Connected, c.Node, testNode)
		}
	}
	// An address with its port is the client's exact address.
	var one clientJSON
	f.expect(http.StatusOK, "GET", "/api/v1/clients/sensor-1", nil, &one)
	var page clientPage
	f.expect(http.StatusOK, "GET", "/api/v1/clients?address="+url.QueryEscape(one.Address), nil, &page)
	if len(page.Clients) != 1 || page.Clients[0].ClientID != "sensor-1" {
		t.Errorf("clients?address=%s = %+v, want sensor-1 alone", one.Address, page.Clients)
	}
	for _, bad := range []string{"limit=0", "limit=1001", "limit=ten", "connected=yes", "address=nowhere",
		"colour=blue", "prefix=a&prefix=b", "cursor=AAAA"} {
		r := f.expect(http.StatusBadRequest, "GET", "/api/v1/clients?"+bad, nil, nil)
		t.Logf("clients?%s: %s", bad, r.errorText(t))
	}
}

// A client's details: its connection while it is connected, its session
// always; a client id with a slash is percent-encoded in the path.
func TestClientDetails(t *testing.T) {
	f := start(t)
	t0 := time.Now().Add(-time.Second)
	expiry := uint32(300)
	c := f.connectV5("room/1", &paho.Connect{KeepAlive: 45, CleanStart: true, Username: "alice", UsernameFlag: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	c.subscribe(t, paho.SubscribeOptions{Topic: "room/1/#", QoS: 1})
	var got clientJSON
	f.expect(http.StatusOK, "GET", "/api/v1/clients/room%2F1", nil, &got)
	if got.ClientID != "room/1" || !got.Connected || got.Node != testNode || got.Username == nil || *got.Username != "alice" ||
		got.Address != c.local || got.Protocol != "MQTT 5.0" || got.ProtocolVersion != 5 ||
		got.KeepAlive == nil || *got.KeepAlive != 45 || got.CleanStart == nil || !*got.CleanStart ||
		got.SessionExpiry != 300 || got.Subscriptions != 1 || got.HeldBack == nil || *got.HeldBack ||
		got.ConnectedSince == nil || got.ConnectedSince.Before(t0) || got.ConnectedSince.After(time.Now()) ||
		got.DisconnectedSince != nil || got.Listener == "" {
		t.Errorf("client details %+v", got)
	}

	// In flight: a raw client that does not acknowledge.
	raw, _ := wiretest.MustConnect(t, f.mqttAddr(), "slow", true)
	raw.Subscribe("slow/#", 1)
	f.expect(http.StatusAccepted, "POST", "/api/v1/publish", map[string]any{"topic": "slow/a", "payload": "x", "qos": 1}, nil)
	raw.NextPublish()
	got = clientJSON{}
	f.expect(http.StatusOK, "GET", "/api/v1/clients/slow", nil, &got)
	if got.InFlight != 1 || got.Protocol != "MQTT 3.1.1" || got.Username != nil {
		t.Errorf("a client with one message unacknowledged: %+v", got)
	}

	// Offline: queued messages, when the session expires.
	off, _ := wiretest.MustConnect(t, f.mqttAddr(), "away", false)
	off.Subscribe("away/#", 1)
	off.Disconnect()
	wiretest.Eventually(t, "away offline", func() bool {
		got = clientJSON{}
		f.expect(http.StatusOK, "GET", "/api/v1/clients/away", nil, &got)
		return !got.Connected
	})
	for range 3 {
		f.expect(http.StatusAccepted, "POST", "/api/v1/publish", map[string]any{"topic": "away/x", "payload": "12345", "qos": 1}, nil)
	}
	got = clientJSON{}
	f.expect(http.StatusOK, "GET", "/api/v1/clients/away", nil, &got)
	if got.Connected || got.Node != testNode || got.Queued != 3 || got.QueuedBytes != 15 || got.DisconnectedSince == nil ||
		got.ConnectedSince != nil || got.KeepAlive != nil || got.Protocol != "" ||
		got.SessionExpiry != 0xFFFFFFFF || got.SessionExpiresAt != nil {
		t.Errorf("an offline session with 3 messages queued: %+v", got)
	}
	// A client that gave a user name keeps it, and its address, offline.
	if err := c.c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	wiretest.Eventually(t, "room/1 offline", func() bool {
		got = clientJSON{}
		f.expect(http.StatusOK, "GET", "/api/v1/clients/room%2F1", nil, &got)
		return !got.Connected
	})
	if got.Username == nil || *got.Username != "alice" || got.Address != c.local || got.SessionExpiresAt == nil ||
		got.SessionExpiresAt.Before(time.Now().Add(290*time.Second)) {
		t.Errorf("room/1 offline: %+v", got)
	}
	if r := f.expect(http.StatusNotFound, "GET", "/api/v1/clients/nobody", nil, nil); r.errorText(t) != "no such client" {
		t.Errorf("unknown client: %s", r.body)
	}
}

// Kicking: an MQTT 5 client gets DISCONNECT 0x98 and its session stays;
// kicking it again while it is offline is 409; ?session=discard ends the
// session, connected or not.
func TestKick(t *testing.T) {
	f := start(t)
	expiry := uint32(300)
	c := f.connectV5("kickme", &paho.Connect{KeepAlive: 30, CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	var res map[string]string
	f.expect(http.StatusOK, "DELETE", "/api/v1/clients/kickme", nil, &res)
	if res["session"] != "kept" || res["client_id"] != "kickme" {
		t.Errorf("kick answered %v", res)
	}
	c.expectDisconnect(t, packet.AdministrativeAction)
	var got clientJSON
	wiretest.Eventually(t, "kicked client offline", func() bool {
		got = clientJSON{}
		f.expect(http.StatusOK, "GET", "/api/v1/clients/kickme", nil, &got)
		return !got.Connected
	})
	if got.SessionExpiresAt == nil {
		t.Errorf("the kicked client's session: %+v, want one that expires", got)
	}
	f.expect(http.StatusConflict, "DELETE", "/api/v1/clients/kickme", nil, nil)
	f.expect(http.StatusOK, "DELETE", "/api/v1/clients/kickme?session=discard", nil, &res)
	if res["session"] != "discarded" {
		t.Errorf("discard answered %v", res)
	}
	f.expect(http.StatusNotFound, "GET", "/api/v1/clients/kickme", nil, nil)
	f.expect(http.StatusNotFound, "DELETE", "/api/v1/clients/kickme", nil, nil)
	f.expect(http.StatusBadRequest, "DELETE", "/api/v1/clients/x?session=forget", nil, nil)

	// Connected, with discard: DISCONNECT 0x98 and no session to come back to.
	c = f.connectV5("gone", &paho.Connect{KeepAlive: 30, CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	c.subscribe(t, paho.SubscribeOptions{Topic: "gone/#", QoS: 1})
	f.expect(http.StatusOK, "DELETE", "/api/v1/clients/gone?session=discard", nil, nil)
	c.expectDisconnect(t, packet.AdministrativeAction)
	f.expect(http.StatusNotFound, "GET", "/api/v1/clients/gone", nil, nil)
	var pub publishResult
	f.expect(http.StatusAccepted, "POST", "/api/v1/publish", map[string]any{"topic": "gone/x", "payload": "x"}, &pub)
	if pub.Matched != 0 {
		t.Errorf("the discarded session's subscription still matches: %+v", pub)
	}
	back := wiretest.Dial(t, "tcp", f.mqttAddr(), "gone", packet.V5)
	if ack := back.SendConnect(&packet.Connect{Version: packet.V5, ClientID: "gone", KeepAlive: 30}); ack.SessionPresent {
		t.Error("the discarded session is present on reconnection")
	}
}

// An MQTT 3.1.1 client has no DISCONNECT from the server: kicked, its
// connection closes.
func TestKickV311(t *testing.T) {
	f := start(t)
	lost := make(chan error, 1)
	opts := paho3.NewClientOptions().AddBroker("tcp://" + f.mqttAddr()).SetClientID("old").
		SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectionLostHandler(func(_ paho3.Client, err error) { lost <- err })
	c := paho3.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(wiretest.Timeout) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	var res map[string]string
	f.expect(http.StatusOK, "DELETE", "/api/v1/clients/old", nil, &res)
	if res["session"] != "ended" {
		t.Errorf("kicking a clean session answered %v, want it ended", res)
	}
	select {
	case <-lost:
	case <-time.After(wiretest.Timeout):
		t.Fatal("the kicked 3.1.1 client is still connected")
	}
	f.expect(http.StatusNotFound, "GET", "/api/v1/clients/old", nil, nil) // a clean session ends with its connection
}
