package msgformat

import (
	"strings"
	"testing"
	"time"

	"github.com/petrelmq/petrel/client"
	"github.com/petrelmq/petrel/packet"
)

func TestAppendFormatWidths(t *testing.T) {
	m := &client.Message{Topic: "héllo/wörld", Payload: []byte("p"), QoS: 1}
	for format, want := range map[string]string{
		"%.2t|":              "hé|",
		"%-6.3t|":            "hél   |",
		"%14t|":              "   héllo/wörld|",
		"%03l|%-3q|%3q|%03t": "001|1  |  1|héllo/wörld", // 0 pads numbers only
		"%":                  "%",
		"%z":                 "%z",
		`\e\0\q`:             "\x1b\x00\\q",
		"@@@q":               "@@q",
	} {
		got, err := AppendFormat(nil, format, m, time.Unix(0, 5), false)
		if err != nil || string(got) != want {
			t.Errorf("-F %q: %q, %v; want %q", format, got, err, want)
		}
	}
}

// TestAppendJSON: mosquitto_sub's keys in its order, the MQTT 5
// properties, base64 for a payload that is not UTF-8, %J's payload
// embedded as JSON, and --pretty's indentation.
func TestAppendJSON(t *testing.T) {
	now := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	m := &client.Message{Topic: "a/\"b\"", Payload: []byte("hé\n"), QoS: 1, Retain: true}
	m.Props.ContentType = "text/plain"
	m.Props.Mark(packet.PropContentType)
	m.Props.SubscriptionIDs = []uint32{3}
	m.Props.User = []packet.UserProperty{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}}
	got, err := AppendJSON([]byte("> "), m, now, false)
	want := `> {"tst":"2024-05-06T07:08:09.123456Z","topic":"a/\"b\"","qos":1,"retain":1,"payloadlen":4,` +
		`"properties":{"content-type":"text/plain","subscription-identifier":3,"user-properties":{"k":"v","k":"w"}},` +
		`"payload":"hé\n"}`
	if err != nil || string(got) != want {
		t.Errorf("JSON:\n%s, %v\nwant:\n%s", got, err, want)
	}

	bin := &client.Message{Topic: "t", Payload: []byte{0xff, 0, 1}}
	got, err = AppendJSON(nil, bin, now, true)
	want = "{\n\t\"tst\": \"2024-05-06T07:08:09.123456Z\",\n\t\"topic\": \"t\",\n\t\"qos\": 0,\n\t\"retain\": 0," +
		"\n\t\"payloadlen\": 3,\n\t\"base64\": true,\n\t\"payload\": \"/wAB\"\n}"
	if err != nil || string(got) != want {
		t.Errorf("pretty JSON of a binary payload:\n%s, %v\nwant:\n%s", got, err, want)
	}

	raw := &client.Message{Topic: "t", Payload: []byte(`{"t":21.5}`)}
	got, err = AppendFormat(nil, "%J", raw, now, false)
	if want := `"payload":{"t":21.5}}`; err != nil || !strings.HasSuffix(string(got), want) {
		t.Errorf("%%J: %s, %v; want it to end %s", got, err, want)
	}
	if _, err := AppendFormat(nil, "%J", bin, now, false); err == nil {
		t.Error("%J accepted a payload that is not JSON")
	}
}
