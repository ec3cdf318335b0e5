package config

import (
	"testing"
)

// A bridge section is checked as strictly as the rest, each problem named
// with its line and key.
func TestValidateBridges(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"good", `
bridges:
  - name: cloud
    url: mqtt://127.0.0.1:1883
    topics:
      - {pattern: "a/#", direction: both, qos: 2, local_prefix: "l/", remote_prefix: "r/"}
  - name: old
    url: ws://127.0.0.1:8080/mqtt
    protocol: 3.1.1
    topics:
      - {pattern: "a/#", direction: out, remote_prefix: "x/"}
      - {pattern: "a/#", direction: in, remote_prefix: "y/"}
`, ""},
		{"bad fields", `
bridges:
  - name: "no spaces"
    url: http://example.com
    protocol: 4
    password_file: pw
    tls: {cert_file: c.crt}
    topics:
      - {pattern: "a/#/b", direction: sideways, qos: 3, local_prefix: "+/"}
  - name: b
    url: mqtts://
    topics: []
`, `petrel.yaml:3: bridges[0].name: "no spaces" is not a bridge name: use 1 to 64 letters, digits, '-' or '_'
petrel.yaml:4: bridges[0].url: "http://example.com": the scheme must be mqtt, mqtts, ws or wss
petrel.yaml:5: bridges[0].protocol: "4" is not 5 or 3.1.1
petrel.yaml:6: bridges[0].password_file: set, but username is not: MQTT sends a password only with a user name
petrel.yaml:7: bridges[0].tls: cert_file and key_file go together: set both or neither
petrel.yaml:9: bridges[0].topics[0].pattern: "a/#/b" is not a topic filter
petrel.yaml:9: bridges[0].topics[0].direction: "sideways" is not in, out or both
petrel.yaml:9: bridges[0].topics[0].qos: 3 is not 0, 1 or 2
petrel.yaml:9: bridges[0].topics[0].local_prefix: "+/": a prefix is part of a topic name, without wildcards
petrel.yaml:11: bridges[1].url: "mqtts://" has no host
petrel.yaml:12: bridges[1].topics: empty: the bridge needs at least one rule`},
		{"names unique, tls needs encryption", `
bridges:
  - {name: x, url: "mqtt://a:1883", tls: {ca_file: ca.crt}, topics: [{pattern: "#"}]}
  - {name: x, url: "mqtt://b:1883", topics: [{pattern: "#"}]}
`, `petrel.yaml:3: bridges[0].tls: set, but the url's scheme "mqtt" is not encrypted: use mqtts or wss
petrel.yaml:4: bridges[1].name: "x" names another bridge too`},
		// MQTT 3.1.1 has no No Local: the remote broker would hand back
		// what the bridge sent out whenever an in rule covers it.
		{"3.1.1 loops", `
bridges:
  - name: loop
    url: mqtt://127.0.0.1:1883
    protocol: 3.1.1
    topics:
      - {pattern: "a/#", direction: both}
      - {pattern: "s/#", direction: out, remote_prefix: "site/"}
      - {pattern: "+/cmd", direction: in, remote_prefix: "site/"}
`, `petrel.yaml:7: bridges[0].topics[0]: would loop with topics[0]: what that rule sends out, this one brings back (MQTT 3.1.1 has no No Local); use protocol 5, or rules whose remote topics do not overlap
petrel.yaml:9: bridges[0].topics[2]: would loop with topics[1]: what that rule sends out, this one brings back (MQTT 3.1.1 has no No Local); use protocol 5, or rules whose remote topics do not overlap`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("petrel.yaml", []byte(tc.yaml))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("Parse error =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestFiltersOverlap(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"a/b", "a/b", true}, {"a/b", "a/c", false}, {"a/#", "a", true}, {"a/+", "a", false},
		{"+/+", "a/b", true}, {"a/+/c", "a/b/#", true}, {"a/b", "a/b/c", false}, {"#", "x/y", true},
		{"site/s/#", "site/+/cmd", true}, {"x/a/#", "y/a/#", false},
	} {
		if got := filtersOverlap(tc.a, tc.b); got != tc.want {
			t.Errorf("filtersOverlap(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := filtersOverlap(tc.b, tc.a); got != tc.want {
			t.Errorf("filtersOverlap(%q, %q) = %v, want %v", tc.b, tc.a, got, tc.want)
		}
	}
}
