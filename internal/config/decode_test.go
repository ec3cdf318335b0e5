package config

import (
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// walkerSchema exercises the parts of the decoder that the File schema does
// not use yet, so that a later issue can rely on them.
type walkerSchema struct {
	Small  int8                  `yaml:"small"`
	Count  uint16                `yaml:"count"`
	Ratio  float64               `yaml:"ratio"`
	Tags   []string              `yaml:"tags"`
	Limits map[string]Size       `yaml:"limits"`
	Routes map[string]walkerItem `yaml:"routes"`
	Items  []walkerItem          `yaml:"items"`
	Nested [][]int               `yaml:"nested"`

	walkerCommon `yaml:",inline"`
	Untagged     string // not a key: it has no tag
	Skipped      string `yaml:"-"`
}

type walkerCommon struct {
	Label string `yaml:"label"`
}

type walkerItem struct {
	Name   string `yaml:"name"`
	Weight int    `yaml:"weight"`
}

func (i *walkerItem) setDefaults() { i.Weight = 1 }

// decodeWalker decodes data over start and returns the result and the error
// messages, formatted as Parse would.
func decodeWalker(t *testing.T, data string, start walkerSchema) (walkerSchema, []string) {
	t.Helper()
	root, err := parseYAML("t.yaml", []byte(data))
	if err != nil {
		t.Fatalf("parseYAML(%q): %v", data, err)
	}
	d := decoder{file: "t.yaml", pos: make(map[string]position)}
	d.decodeInto(root, &start)
	var msgs []string
	for _, e := range d.errs {
		msgs = append(msgs, e.Error())
	}
	return start, msgs
}

func TestWalkerDecodes(t *testing.T) {
	data := `
small: -128
count: 65535
ratio: 0.25
tags: [a, "b", 3]
limits: {queue: 1MiB, packet: 512}
routes:
  east: {name: e}
  west: {name: w, weight: 5}
items:
  - name: x
  - {name: y, weight: 0}
nested: [[1, 2], [], [3]]
label: common
`
	got, errs := decodeWalker(t, data, walkerSchema{Untagged: "kept", Skipped: "kept", Tags: []string{"default"}})
	if len(errs) > 0 {
		t.Fatalf("decode errors: %q", errs)
	}
	want := walkerSchema{
		Small:        -128,
		Count:        65535,
		Ratio:        0.25,
		Tags:         []string{"a", "b", "3"},
		Limits:       map[string]Size{"queue": MiB, "packet": 512},
		Routes:       map[string]walkerItem{"east": {"e", 1}, "west": {"w", 5}},
		Items:        []walkerItem{{"x", 1}, {"y", 0}},
		Nested:       [][]int{{1, 2}, {}, {3}},
		walkerCommon: walkerCommon{Label: "common"},
		Untagged:     "kept",
		Skipped:      "kept",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded\n got: %+v\nwant: %+v", got, want)
	}
}

func TestWalkerNullCollections(t *testing.T) {
	start := walkerSchema{Tags: []string{"a"}, Limits: map[string]Size{"a": 1}}
	got, errs := decodeWalker(t, "tags:\nlimits: ~\n", start)
	if len(errs) > 0 {
		t.Fatalf("decode errors: %q", errs)
	}
	if got.Tags == nil || len(got.Tags) != 0 || got.Limits == nil || len(got.Limits) != 0 {
		t.Errorf("null list and map decoded as %#v and %#v, want both empty", got.Tags, got.Limits)
	}
}

func TestWalkerErrors(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"int8 overflow", "small: 200", `t.yaml:1: small: 200 is out of range`},
		{"negative unsigned", "count: -1", `t.yaml:1: count: -1 is negative; this key takes 0 or more`},
		{"unsigned overflow", "count: 70000", `t.yaml:1: count: 70000 is out of range`},
		{"quoted unsigned", "count: '7'", `t.yaml:1: count: "7" is a string, not an integer (remove the quotes)`},
		{"infinite float", "ratio: .inf", `t.yaml:1: ratio: ".inf" is not a finite number`},
		{"not a float", "ratio: half", `t.yaml:1: ratio: "half" is not a number`},
		{"quoted float", "ratio: \"0.5\"", `t.yaml:1: ratio: "0.5" is a string, not a number (remove the quotes)`},
		{"null list element", "tags: [a, ~]", `t.yaml:1: tags[1]: missing value (remove the key to use the default)`},
		{"list element of the wrong kind", "tags:\n  - a\n  - {b: c}", `t.yaml:3: tags[1]: expected a single value, got a mapping`},
		{"nested list element", "nested: [[1], [x]]", `t.yaml:1: nested[1][0]: "x" is not an integer`},
		{"map value", "limits:\n  queue: lots", `t.yaml:2: limits.queue: "lots" is not a size (write bytes, or a whole number with a unit: 512, 64KiB, 1MiB, 2GiB, 1KB)`},
		{"map duplicate key", "limits:\n  a: 1\n  a: 2", `t.yaml:3: limits.a: duplicate key (first set on line 2)`},
		{"map of the wrong kind", "routes: [a]", `t.yaml:1: routes: expected a mapping, got a list`},
		{"unknown key in a map value", "routes:\n  east: {nme: e}", `t.yaml:2: routes.east.nme: unknown key (did you mean "name"?)`},
		{"inline key misspelt", "lable: x", `t.yaml:1: lable: unknown key (did you mean "label"?)`},
		{"untagged field is no key", "untagged: x", `t.yaml:1: untagged: unknown key (expected one of: small, count, ratio, tags, limits, routes, items, nested, label)`},
		{"skipped field is no key", "skipped: x", `t.yaml:1: skipped: unknown key (expected one of: small, count, ratio, tags, limits, routes, items, nested, label)`},
		{"key found deeper", "weight: 2", `t.yaml:1: weight: unknown key (did you mean "routes.*.weight"?)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := decodeWalker(t, tc.yaml, walkerSchema{})
			if len(errs) != 1 || errs[0] != tc.want {
				t.Errorf("decode(%q) errors:\n got: %q\nwant: %q", tc.yaml, errs, tc.want)
			}
		})
	}
}

func TestWalkerRecordsPositions(t *testing.T) {
	data := "log:\n  level: debug\nlisteners:\n  - name: a\n    address: :1883\n  - address: :1884\n"
	f, err := Parse("petrel.yaml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]position{
		"log":                  {1, 1},
		"log.level":            {2, 3},
		"listeners":            {3, 1},
		"listeners[0]":         {4, 5},
		"listeners[0].name":    {4, 5},
		"listeners[0].address": {5, 5},
		"listeners[1]":         {6, 5},
		"listeners[1].address": {6, 5},
	}
	if !reflect.DeepEqual(f.pos, want) {
		t.Errorf("positions\n got: %v\nwant: %v", f.pos, want)
	}
}

func TestKeyPaths(t *testing.T) {
	want := []string{
		"log", "log.level", "log.format",
		"listeners", "listeners[].name", "listeners[].kind", "listeners[].address",
		"listeners[].allow_anonymous", "listeners[].max_connections",
		"listeners[].tls", "listeners[].tls.cert_file", "listeners[].tls.key_file", "listeners[].tls.client_ca_file",
		"listeners[].tls.client_auth", "listeners[].tls.min_version", "listeners[].tls.username_from",
		"listeners[].websocket", "listeners[].websocket.path", "listeners[].websocket.allowed_origins",
		"listeners[].websocket.trust_proxy",
		"auth", "auth.password_file", "auth.acl_file", "auth.http", "auth.http.auth_url", "auth.http.acl_url",
		"auth.http.timeout", "auth.http.cache_ttl", "auth.http.negative_ttl", "auth.timeout",
		"limits", "limits.max_connections", "limits.connection_rate", "limits.connection_burst",
		"limits.max_topic_length", "limits.max_topic_levels", "limits.max_subscriptions", "limits.publish_rate",
		"limits.publish_bytes_rate", "limits.control_rate", "limits.queued_memory", "limits.incomplete_packet_timeout",
		"limits.max_outbound_bytes",
		"mqtt", "mqtt.max_packet_size", "mqtt.connect_timeout", "mqtt.max_inflight",
		"mqtt.max_queued_messages", "mqtt.max_queued_bytes", "mqtt.backlog_messages", "mqtt.backlog_bytes", "mqtt.stall_timeout",
		"mqtt.queue_qos0", "mqtt.splice_payloads",
		"mqtt.retain_available", "mqtt.max_client_id_length",
		"mqtt.max_qos", "mqtt.receive_maximum", "mqtt.wildcard_subscriptions", "mqtt.subscription_identifiers",
		"mqtt.shared_subscriptions", "mqtt.topic_alias_maximum", "mqtt.server_keep_alive", "mqtt.max_session_expiry",
		"mqtt.response_information",
		"sys", "sys.interval",
		"store", "store.engine", "store.dir", "store.sync", "store.sync_interval",
		"http", "http.listen", "http.token_file", "http.metrics_auth", "http.tls", "http.tls.cert_file",
		"http.tls.key_file", "http.tls.client_ca_file", "http.tls.client_auth", "http.tls.min_version",
		"cluster", "cluster.node", "cluster.name", "cluster.listen", "cluster.advertise", "cluster.peers", "cluster.nats_url",
		"cluster.node_timeout", "cluster.replicate_sessions", "cluster.username", "cluster.password_file",
		"cluster.tls", "cluster.tls.cert_file", "cluster.tls.key_file", "cluster.tls.ca_file",
		"bridges", "bridges[].name", "bridges[].url", "bridges[].protocol", "bridges[].client_id", "bridges[].username",
		"bridges[].password_file", "bridges[].clean_start", "bridges[].max_queued_messages", "bridges[].max_queued_bytes", "bridges[].tls", "bridges[].tls.ca_file",
		"bridges[].tls.cert_file", "bridges[].tls.key_file", "bridges[].topics", "bridges[].topics[].pattern",
		"bridges[].topics[].direction", "bridges[].topics[].qos", "bridges[].topics[].local_prefix",
		"bridges[].topics[].remote_prefix",
		"shutdown_timeout",
	}
	if got := keyPaths(reflect.TypeFor[File](), ""); !slices.Equal(got, want) {
		t.Errorf("keyPaths(File)\n got: %q\nwant: %q", got, want)
	}
}

// TestSchemaIsDecodable checks every key of the schema: it has a snake_case
// name, unique among its siblings, and a type the decoder takes. A field
// added in a later issue that breaks a rule fails here rather than at a
// user's first file.
func TestSchemaIsDecodable(t *testing.T) {
	checkDecodable(t, reflect.TypeFor[File](), "")
}

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

func checkDecodable(t *testing.T, ty reflect.Type, path string) {
	t.Helper()
	if reflect.PointerTo(ty).Implements(textUnmarshalerType) {
		return
	}
	switch ty.Kind() {
	case reflect.Bool, reflect.String, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
	case reflect.Slice:
		checkDecodable(t, ty.Elem(), path+"[]")
	case reflect.Map:
		if ty.Key().Kind() != reflect.String {
			t.Errorf("%s: map keys must be strings, not %s", path, ty.Key())
		}
		checkDecodable(t, ty.Elem(), path+".*")
	case reflect.Struct:
		seen := map[string]bool{}
		for _, sf := range reflect.VisibleFields(ty) {
			if !sf.IsExported() || len(sf.Index) > 1 {
				continue
			}
			tag := sf.Tag.Get("yaml")
			if name, opts, _ := strings.Cut(tag, ","); name == "" && opts != "inline" {
				t.Errorf("%s: field %s has no yaml tag", path, sf.Name)
			}
		}
		for _, f := range fieldsOf(ty) {
			key := childKey(path, f.name)
			if !snakeCase.MatchString(f.name) {
				t.Errorf("%s: key is not snake_case", key)
			}
			if seen[f.name] {
				t.Errorf("%s: key declared twice", key)
			}
			seen[f.name] = true
			checkDecodable(t, ty.FieldByIndex(f.index).Type, key)
		}
	default:
		t.Errorf("%s: the decoder does not take %s", path, ty)
	}
}
