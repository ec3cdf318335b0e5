package admin

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

type subscriptionPage struct {
	Subscriptions []subscriptionJSON `json:"subscriptions"`
	Next          string             `json:"next_cursor"`
}

// allSubscriptions pages through GET /api/v1/subscriptions?query and
// returns each page's subscriptions as "client filter".
func (f *fixture) allSubscriptions(query string) [][]string {
	f.t.Helper()
	return pages(f, "/api/v1/subscriptions", query, nil, func(p *subscriptionPage) ([]string, string) {
		var subs []string
		for _, s := range p.Subscriptions {
			key := s.ClientID + " " + s.Filter
			if s.ShareGroup != "" {
				key += " share:" + s.ShareGroup
			}
			subs = append(subs, key)
		}
		return subs, p.Next
	})
}

// A client's subscriptions, and everyone's, with their options; filter
// and topic keep what they say; pages split a client's subscriptions as
// well as they split clients.
func TestSubscriptions(t *testing.T) {
	f := start(t)
	a := f.connectV5("a", nil)
	a.subscribe(t, paho.SubscribeOptions{Topic: "sensors/+/temp", QoS: 1, NoLocal: true, RetainAsPublished: true},
		paho.SubscribeOptions{Topic: "$share/workers/jobs/#", QoS: 0})
	b := f.connectV5("b", nil)
	id := 7
	ctx := t.Context()
	if _, err := b.c.Subscribe(ctx, &paho.Subscribe{Properties: &paho.SubscribeProperties{SubscriptionIdentifier: &id},
		Subscriptions: []paho.SubscribeOptions{{Topic: "sensors/#", QoS: 2}}}); err != nil {
		t.Fatal(err)
	}
	var mine struct {
		Subscriptions []subscriptionJSON `json:"subscriptions"`
	}
	f.expect(http.StatusOK, "GET", "/api/v1/clients/a/subscriptions", nil, &mine)
	want := []subscriptionJSON{
		{ClientID: "a", Filter: "jobs/#", ShareGroup: "workers"},
		{ClientID: "a", Filter: "sensors/+/temp", QoS: 1, NoLocal: true, RetainAsPublished: true},
	}
	if !slices.Equal(mine.Subscriptions, want) {
		t.Errorf("a's subscriptions: %+v, want %+v", mine.Subscriptions, want)
	}
	f.expect(http.StatusOK, "GET", "/api/v1/clients/b/subscriptions", nil, &mine)
	if len(mine.Subscriptions) != 1 || mine.Subscriptions[0].SubscriptionID != 7 || mine.Subscriptions[0].QoS != 2 {
		t.Errorf("b's subscriptions: %+v", mine.Subscriptions)
	}
	f.expect(http.StatusNotFound, "GET", "/api/v1/clients/c/subscriptions", nil, nil)

	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"a jobs/# share:workers", "a sensors/+/temp", "b sensors/#"}},
		{"filter=sensors/%23", []string{"a sensors/+/temp", "b sensors/#"}},
		{"filter=%2B/%2B/temp", []string{"a sensors/+/temp"}},
		{"filter=jobs/%23", []string{"a jobs/# share:workers"}},
		{"topic=sensors/kitchen/temp", []string{"a sensors/+/temp", "b sensors/#"}},
		{"topic=jobs/1", []string{"a jobs/# share:workers"}},
		{"topic=elsewhere", nil},
		{"limit=1", []string{"a jobs/# share:workers", "a sensors/+/temp", "b sensors/#"}},
	} {
		got := slices.Concat(f.allSubscriptions(tc.query)...)
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("subscriptions?%s = %q, want %q", tc.query, got, tc.want)
		}
	}
	for _, bad := range []string{"filter=a/%23/b", "topic=a/%2B", "limit=0", "cursor=x", "client=a"} {
		f.expect(http.StatusBadRequest, "GET", "/api/v1/subscriptions?"+bad, nil, nil)
	}

	// 250 subscriptions of one client in pages of 100: three pages.
	many, _ := wiretest.MustConnect(t, f.mqttAddr(), "many", true)
	var wantMany []string
	sp := &packet.Subscribe{PacketID: 1}
	for i := range 250 {
		filter := fmt.Sprintf("many/%03d", i)
		sp.Subs = append(sp.Subs, packet.Subscription{Filter: filter})
		wantMany = append(wantMany, "many "+filter)
	}
	many.SendSubscribe(sp) // one SUBSCRIBE: the control rate allows few
	pages := f.allSubscriptions("limit=100&filter=many/%2B")
	if len(pages) != 3 || len(pages[0]) != 100 || len(pages[1]) != 100 || len(pages[2]) != 50 {
		t.Fatalf("250 subscriptions in pages of 100: %d pages", len(pages))
	}
	if got := slices.Concat(pages...); !slices.Equal(got, wantMany) {
		t.Fatalf("the pages hold %d subscriptions, want the 250 in order", len(got))
	}
}

type retainedPage struct {
	Retained []messageOut `json:"retained"`
	Next     string       `json:"next_cursor"`
}

// Retained messages: PUT sets one without delivering it, GET reads it,
// DELETE removes it; text and base64 payloads, properties; topics with
// empty levels; a subscriber that subscribes later gets what PUT set.
func TestRetainedCRUD(t *testing.T) {
	f := start(t)
	watcher := f.connectV5("watcher", nil)
	watcher.subscribe(t, paho.SubscribeOptions{Topic: "home/#", QoS: 1})

	body := map[string]any{"payload": "on", "qos": 1, "properties": map[string]any{
		"content_type": "text/plain", "response_topic": "home/reply", "correlation_data": "c-1", "payload_format": 1,
		"user_properties": []map[string]string{{"key": "room", "value": "hall"}, {"key": "room", "value": "stairs"}}}}
	var got messageOut
	f.expect(http.StatusCreated, "PUT", "/api/v1/retained/home/light", body, &got)
	if got.Topic != "home/light" || got.Payload == nil || *got.Payload != "on" || got.PayloadBase64 != "b24=" || got.QoS != 1 ||
		got.Properties == nil || got.Properties.ContentType != "text/plain" || len(got.Properties.UserProperties) != 2 {
		t.Errorf("PUT answered %+v", got)
	}
	body["payload"] = "off"
	f.expect(http.StatusOK, "PUT", "/api/v1/retained/home/light", body, &got)
	got = messageOut{}
	f.expect(http.StatusOK, "GET", "/api/v1/retained/home/light", nil, &got)
	if *got.Payload != "off" || got.Properties.ResponseTopic != "home/reply" || *got.Properties.CorrelationData != "c-1" ||
		*got.Properties.PayloadFormat != 1 || got.Properties.UserProperties[1] != (userJSON{"room", "stairs"}) {
		t.Errorf("GET answered %+v", got)
	}
	// PUT delivered nothing to the subscriber already there: the first
	// message it gets is the one published after.
	f.expect(http.StatusAccepted, "POST", "/api/v1/publish", map[string]any{"topic": "home/sentinel", "payload": "x"}, nil)
	if m := watcher.next(t); m.Topic != "home/sentinel" {
		t.Fatalf("the subscriber got %q first: PUT delivered it", m.Topic)
	}
	// One who subscribes now gets it, with its properties.
	late := f.connectV5("late", nil)
	late.subscribe(t, paho.SubscribeOptions{Topic: "home/light", QoS: 1})
	m := late.next(t)
	if string(m.Payload) != "off" || !m.Retain || m.Properties.ContentType != "text/plain" ||
		string(m.Properties.CorrelationData) != "c-1" || m.Properties.User.Get("room") != "hall" {
		t.Errorf("a late subscriber got %q retain %v %+v", m.Payload, m.Retain, m.Properties)
	}

	// Binary payloads come back as base64 only; topics keep empty levels.
	binary := []byte{0xff, 0x00, 0xfe}
	f.expect(http.StatusCreated, "PUT", "/api/v1/retained/%2Fodd%2F%2Ftopic", map[string]any{
		"payload_base64": base64.StdEncoding.EncodeToString(binary)}, nil)
	got = messageOut{}
	f.expect(http.StatusOK, "GET", "/api/v1/retained/%2Fodd%2F%2Ftopic", nil, &got)
	if got.Topic != "/odd//topic" || got.Payload != nil || got.PayloadBase64 != base64.StdEncoding.EncodeToString(binary) {
		t.Errorf("binary retained message: %+v", got)
	}
	// Unescaped, the same path is the same topic: never cleaned or redirected.
	f.expect(http.StatusOK, "GET", "/api/v1/retained//odd//topic", nil, &got)

	f.expect(http.StatusNoContent, "DELETE", "/api/v1/retained/home/light", nil, nil)
	f.expect(http.StatusNotFound, "GET", "/api/v1/retained/home/light", nil, nil)
	f.expect(http.StatusNotFound, "DELETE", "/api/v1/retained/home/light", nil, nil)
	gone := f.connectV5("gone", nil)
	gone.subscribe(t, paho.SubscribeOptions{Topic: "home/light", QoS: 1})
	f.expect(http.StatusAccepted, "POST", "/api/v1/publish", map[string]any{"topic": "home/light", "payload": "new"}, nil)
	if m := gone.next(t); string(m.Payload) != "new" || m.Retain {
		t.Errorf("after DELETE a subscriber got %q retain %v first, want the live message", m.Payload, m.Retain)
	}

	for _, bad := range []any{
		map[string]any{}, // an empty payload would delete
		map[string]any{"payload": "a", "payload_base64": "YQ=="},
		map[string]any{"payload": "a", "qos": 3},
		map[string]any{"payload": "a", "retian": true},
		map[string]any{"payload_base64": "not base64!"},
		map[string]any{"payload": "a", "topic": "elsewhere"},
		map[string]any{"payload_base64": "/w==", "properties": map[string]any{"payload_format": 1}},
		`{"payload": "a"} {"payload": "b"}`,
		`not json`,
		``,
	} {
		r := f.expect(http.StatusBadRequest, "PUT", "/api/v1/retained/home/bad", bad, nil)
		t.Logf("PUT %v: %s", bad, r.errorText(t))
	}
	f.expect(http.StatusBadRequest, "PUT", "/api/v1/retained/home/%2B", map[string]any{"payload": "a"}, nil)
	f.expect(http.StatusNotFound, "GET", "/api/v1/retained/home/bad", nil, nil)
}

// The retained messages in pages, in order of their topics; a filter keeps
// what it matches, MQTT's way ('#' leaves '$' topics out, no filter
// does not).
func TestRetainedPaging(t *testing.T) {
	f := start(t)
	var want []string
	for i := range 250 {
		topic := fmt.Sprintf("r/%03d", i)
		want = append(want, topic)
		if err := f.broker.SetRetained(topic, []byte("x"), brokerOptions(0)); err != nil {
			t.Fatal(err)
		}
	}
	f.expect(http.StatusCreated, "PUT", "/api/v1/retained/$SYS/info", map[string]any{"payload": "sys"}, nil)
	pages := f.allRetained("limit=100&filter=r/%2B")
	if len(pages) != 3 || len(pages[0]) != 100 || len(pages[1]) != 100 || len(pages[2]) != 50 {
		t.Fatalf("250 retained messages in pages of 100: %d pages", len(pages))
	}
	if got := slices.Concat(pages...); !slices.Equal(got, want) {
		t.Fatalf("the pages hold %d topics, want the 250 in order", len(got))
	}
	all := slices.Concat(f.allRetained("limit=7")...)
	if len(all) != 251 || all[0] != "$SYS/info" || all[1] != "r/000" {
		t.Errorf("every retained message: %d, first %q", len(all), all[:2])
	}
	if hash := slices.Concat(f.allRetained("filter=%23")...); slices.Contains(hash, "$SYS/info") || len(hash) != 250 {
		t.Errorf("filter # gave %d topics, $SYS among them: %v", len(hash), slices.Contains(hash, "$SYS/info"))
	}
	f.expect(http.StatusBadRequest, "GET", "/api/v1/retained?filter=a/%23/b", nil, nil)
	f.expect(http.StatusBadRequest, "GET", "/api/v1/retained?cursor=zz", nil, nil)
}

// allRetained pages through GET /api/v1/retained?query and returns each
// page's topics.
func (f *fixture) allRetained(query string) [][]string {
	f.t.Helper()
	return pages(f, "/api/v1/retained", query, nil, func(p *retainedPage) ([]string, string) {
		var topics []string
		for _, m := range p.Retained {
			topics = append(topics, m.Topic)
		}
		return topics, p.Next
	})
}

// POST /api/v1/publish: 202, with how many subscriptions took the message,
// "no subscribers" when none; the MQTT 5 properties reach the subscriber.
func TestPublish(t *testing.T) {
	f := start(t, func(c *Config) { c.MaxBodyBytes = 4096 })
	sub := f.connectV5("sub", nil)
	sub.subscribe(t, paho.SubscribeOptions{Topic: "t/#", QoS: 1})
	other := f.connectV5("other", nil)
	other.subscribe(t, paho.SubscribeOptions{Topic: "t/+", QoS: 0})

	var res publishResult
	f.expect(http.StatusAccepted, "POST", "/api/v1/publish", map[string]any{
		"topic": "t/1", "payload": "hello", "qos": 1, "properties": map[string]any{
			"content_type": "text/plain", "response_topic": "t/reply", "correlation_data_base64": "AAE=",
			"message_expiry": 60, "payload_format": 1,
			"user_properties": []map[string]string{{"key": "k", "value": "v"}}}}, &res)
	if res.Matched != 2 || res.Result != "routed to 2 subscriptions" {
		t.Errorf("publish answered %+v, want 2 subscriptions", res)
	}
	m := sub.next(t)
	p := m.Properties
	if m.Topic != "t/1" || string(m.Payload) != "hello" || m.QoS != 1 || p.ContentType != "text/plain" ||
		p.ResponseTopic != "t/reply" || string(p.CorrelationData) != "\x00\x01" || p.MessageExpiry == nil ||
		*p.MessageExpiry > 60 || *p.MessageExpiry < 55 || p.PayloadFormat == nil || *p.PayloadFormat != 1 ||
		p.User.Get("k") != "v" {
		t.Errorf("the subscriber got %q on %q, QoS %d, %+v", m.Payload, m.Topic, m.QoS, p)
	}
	other.next(t)

	f.expect(http.StatusAccepted, "POST", "/api/v1/publish", map[string]any{"topic": "nobody/here", "payload_base64": "AP8="}, &res)
	if res.Matched != 0 || res.Result != "no subscribers" {
		t.Errorf("a publish nobody takes answered %+v, want no subscribers", res)
	}

	// retain: kept, readable at once.
	f.expect(http.StatusAccepted, "POST", "/api/v1/publish", map[string]any{"topic": "kept/1", "payload": "v", "retain": true, "qos": 2}, nil)
	var got messageOut
	f.expect(http.StatusOK, "GET", "/api/v1/retained/kept/1", nil, &got)
	if *got.Payload != "v" || got.QoS != 2 {
		t.Errorf("published retained: %+v", got)
	}

	for _, bad := range []any{
		map[string]any{"payload": "no topic"},
		map[string]any{"topic": "a/#", "payload": "x"},
		map[string]any{"topic": "a", "qos": 3},
		map[string]any{"topic": "a", "payload_base64": "/w==", "properties": map[string]any{"payload_format": 1}},
		map[string]any{"topic": "a", "properties": map[string]any{"payload_format": 2}},
		map[string]any{"topic": "a", "properties": map[string]any{"correlation_data": "a", "correlation_data_base64": "YQ=="}},
		map[string]any{"topic": "a", "qso": 1},
	} {
		r := f.expect(http.StatusBadRequest, "POST", "/api/v1/publish", bad, nil)
		t.Logf("POST %v: %s", bad, r.errorText(t))
	}
	big := map[string]any{"topic": "a", "payload": strings.Repeat("x", 5000)}
	f.expect(http.StatusRequestEntityTooLarge, "POST", "/api/v1/publish", big, nil)
	f.expect(http.StatusMethodNotAllowed, "PUT", "/api/v1/publish", nil, nil)
	// After the broker stops: 503.
	f.broker.Close()
	f.expect(http.StatusServiceUnavailable, "POST", "/api/v1/publish", map[string]any{"topic": "a"}, nil)
}

func brokerOptions(qos byte) broker.PublishOptions { return broker.PublishOptions{QoS: qos} }
