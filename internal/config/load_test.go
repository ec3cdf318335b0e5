package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// parseErrors lists files that must be refused, each with the exact report
// a user sees. Lines of want are the joined errors, in file order.
var parseErrors = []struct {
	name string
	yaml string
	want string
}{
	// Unknown keys, with the suggestion that goes with them.
	{"unknown key in a list element",
		"listeners:\n  - address: 127.0.0.1:1883\n  - adress: 127.0.0.1:1884\n",
		`petrel.yaml:3: listeners[1].adress: unknown key (did you mean "address"?)` + "\n" +
			`petrel.yaml:3: listeners[1].address: required (host:port, such as "127.0.0.1:1883" or ":1883")`},
	{"unknown key, letters swapped",
		"log:\n  levle: debug\n",
		`petrel.yaml:2: log.levle: unknown key (did you mean "level"?)`},
	{"unknown key, camel case",
		"mqtt:\n  maxInflight: 10\n",
		`petrel.yaml:2: mqtt.maxInflight: unknown key (did you mean "max_inflight"?)`},
	{"unknown key, dashes",
		"mqtt:\n  max-packet-size: 1MiB\n",
		`petrel.yaml:2: mqtt.max-packet-size: unknown key (did you mean "max_packet_size"?)`},
	{"unknown key at the wrong level",
		"max_inflight: 10\n",
		`petrel.yaml:1: max_inflight: unknown key (did you mean "mqtt.max_inflight"?)`},
	{"unknown key, nothing alike",
		"log:\n  colour: true\n",
		`petrel.yaml:2: log.colour: unknown key (expected one of: level, format)`},
	{"unknown top-level key",
		"metrics:\n  path: /var/lib/petrel\n",
		`petrel.yaml:1: metrics: unknown key (expected one of: log, listeners, auth, limits, mqtt, sys, store, http, cluster, bridges, shutdown_timeout)`},
	{"misspelled top-level key",
		"storage:\n  dir: /var/lib/petrel\n",
		`petrel.yaml:1: storage: unknown key (did you mean "store"?)`},

	// Duplicate keys.
	{"duplicate key",
		"log:\n  level: info\n  level: debug\n",
		`petrel.yaml:3: log.level: duplicate key (first set on line 2)`},
	{"duplicate section",
		"mqtt:\n  max_inflight: 1\nmqtt:\n  max_inflight: 2\n",
		`petrel.yaml:3: mqtt: duplicate key (first set on line 1)`},

	// Wrong kinds.
	{"list where a mapping is expected",
		"log:\n  - level: info\n",
		`petrel.yaml:2: log: expected a mapping (keys: level, format), got a list`},
	{"mapping where a list is expected",
		"listeners:\n  address: 127.0.0.1:1883\n",
		`petrel.yaml:2: listeners: expected a list, got a mapping`},
	{"scalar where a list is expected",
		"listeners: \":1883\"\n",
		`petrel.yaml:1: listeners: expected a list, got ":1883"`},
	{"list where an integer is expected",
		"mqtt:\n  max_inflight: [1]\n",
		`petrel.yaml:2: mqtt.max_inflight: expected an integer, got a list`},
	{"mapping where a size is expected",
		"mqtt:\n  max_packet_size: {value: 1}\n",
		`petrel.yaml:2: mqtt.max_packet_size: expected a size, got a mapping`},
	{"list where a string is expected",
		"log:\n  level: [debug]\n",
		`petrel.yaml:2: log.level: expected a single value, got a list`},
	{"file is a list",
		"- log\n- mqtt\n",
		`petrel.yaml:1: expected a mapping (keys: log, listeners, auth, limits, mqtt, sys, store, http, cluster, bridges, shutdown_timeout), got a list`},
	{"file is a scalar",
		"hello\n",
		`petrel.yaml:1: expected a mapping (keys: log, listeners, auth, limits, mqtt, sys, store, http, cluster, bridges, shutdown_timeout), got "hello"`},
	{"key is not a name",
		"log:\n  ? [level]\n  : debug\n",
		`petrel.yaml:2: log: a key must be a plain name, not a list`},
	{"merge key",
		"log:\n  <<: {level: debug}\n",
		`petrel.yaml:2: log: merge keys (<<) are not supported; write the keys out`},

	// Scalars that are not what the key takes.
	{"not an integer",
		"mqtt:\n  max_inflight: lots\n",
		`petrel.yaml:2: mqtt.max_inflight: "lots" is not an integer`},
	{"max_qos out of range",
		"mqtt:\n  max_qos: 3\n",
		`petrel.yaml:2: mqtt.max_qos: 3 is out of range 0..2`},
	{"stall_timeout below a second",
		"mqtt:\n  stall_timeout: 500ms\n",
		`petrel.yaml:2: mqtt.stall_timeout: 500ms must be 0 (off) or at least 1s`},
	{"negative stall_timeout",
		"mqtt:\n  stall_timeout: -1s\n",
		`petrel.yaml:2: mqtt.stall_timeout: -1s must be 0 (off) or at least 1s`},
	{"sys.interval below a second",
		"sys:\n  interval: 50ms\n",
		`petrel.yaml:2: sys.interval: 50ms must be 0 (off) or at least 1s`},
	{"negative sys.interval",
		"log:\n  level: info\nsys:\n  interval: -10s\n",
		`petrel.yaml:4: sys.interval: -10s must be 0 (off) or at least 1s`},
	{"sys.interval without a unit",
		"sys:\n  interval: 10\n",
		`petrel.yaml:2: sys.interval: 10 has no unit; write "10s" for seconds (units: ms, s, m, h)`},
	{"server_keep_alive fraction",
		"mqtt:\n  server_keep_alive: 1500ms\n",
		`petrel.yaml:2: mqtt.server_keep_alive: 1.5s is not a whole number of seconds`},
	{"quoted integer",
		"mqtt:\n  max_inflight: \"100\"\n",
		`petrel.yaml:2: mqtt.max_inflight: "100" is a string, not an integer (remove the quotes)`},
	{"fraction for an integer",
		"mqtt:\n  max_inflight: 1.5\n",
		`petrel.yaml:2: mqtt.max_inflight: "1.5" is not an integer`},
	{"hexadecimal integer",
		"mqtt:\n  max_inflight: 0x10\n",
		`petrel.yaml:2: mqtt.max_inflight: "0x10" is not a decimal integer`},
	{"integer beyond int64",
		"mqtt:\n  max_inflight: 9223372036854775808\n",
		`petrel.yaml:2: mqtt.max_inflight: 9223372036854775808 is out of range`},
	{"integer beyond uint64",
		"mqtt:\n  max_inflight: 99999999999999999999\n",
		`petrel.yaml:2: mqtt.max_inflight: 99999999999999999999 is out of range`},
	{"not a boolean",
		"mqtt:\n  queue_qos0: yes\n",
		`petrel.yaml:2: mqtt.queue_qos0: "yes" is not a boolean (write true or false)`},
	{"missing value",
		"mqtt:\n  max_inflight:\n",
		`petrel.yaml:2: mqtt.max_inflight: missing value (remove the key to use the default)`},
	{"null string",
		"log:\n  level: ~\n",
		`petrel.yaml:2: log.level: missing value (remove the key to use the default)`},

	// Sizes.
	{"negative size",
		"mqtt:\n  max_queued_bytes: -1\n",
		`petrel.yaml:2: mqtt.max_queued_bytes: "-1" is a negative size`},
	{"negative size with a unit",
		"mqtt:\n  max_queued_bytes: -64KiB\n",
		`petrel.yaml:2: mqtt.max_queued_bytes: "-64KiB" is a negative size`},
	{"not a size",
		"mqtt:\n  max_packet_size: big\n",
		`petrel.yaml:2: mqtt.max_packet_size: "big" is not a size (write bytes, or a whole number with a unit: 512, 64KiB, 1MiB, 2GiB, 1KB)`},
	{"unknown size unit",
		"mqtt:\n  max_packet_size: 1XB\n",
		`petrel.yaml:2: mqtt.max_packet_size: "1XB" has an unknown unit "XB" (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)`},
	{"fractional size",
		"mqtt:\n  max_packet_size: 1.5MiB\n",
		`petrel.yaml:2: mqtt.max_packet_size: "1.5MiB" is not a whole number; use a smaller unit`},
	{"size beyond int64",
		"mqtt:\n  max_queued_bytes: 99999999TiB\n",
		`petrel.yaml:2: mqtt.max_queued_bytes: "99999999TiB" is too large`},
	{"packet size too small",
		"mqtt:\n  max_packet_size: 512\n",
		`petrel.yaml:2: mqtt.max_packet_size: 512 is out of range 1KiB..268435460`},
	{"packet size too large",
		"mqtt:\n  max_packet_size: 1GiB\n",
		`petrel.yaml:2: mqtt.max_packet_size: 1GiB is out of range 1KiB..268435460`},

	// Durations.
	{"duration without a unit",
		"mqtt:\n  connect_timeout: 10\n",
		`petrel.yaml:2: mqtt.connect_timeout: 10 has no unit; write "10s" for seconds (units: ms, s, m, h)`},
	{"not a duration",
		"mqtt:\n  connect_timeout: soon\n",
		`petrel.yaml:2: mqtt.connect_timeout: "soon" is not a duration (write e.g. 10s, 1m30s, 250ms)`},
	{"zero timeout",
		"mqtt:\n  connect_timeout: 0s\n",
		`petrel.yaml:2: mqtt.connect_timeout: 0s must be greater than 0`},
	{"negative timeout",
		"mqtt:\n  connect_timeout: -5s\n",
		`petrel.yaml:2: mqtt.connect_timeout: -5s must be greater than 0`},

	// Ranges and choices.
	{"inflight zero",
		"mqtt:\n  max_inflight: 0\n",
		`petrel.yaml:2: mqtt.max_inflight: 0 is out of range 1..65535`},
	{"inflight too large",
		"mqtt:\n  max_inflight: 65536\n",
		`petrel.yaml:2: mqtt.max_inflight: 65536 is out of range 1..65535`},
	{"negative queue length",
		"mqtt:\n  max_queued_messages: -1\n",
		`petrel.yaml:2: mqtt.max_queued_messages: -1 is negative (0 means unlimited)`},
	{"client id length below the spec's minimum",
		"mqtt:\n  max_client_id_length: 22\n",
		`petrel.yaml:2: mqtt.max_client_id_length: 22 is out of range 23..65535`},
	{"log level",
		"log:\n  level: loud\n",
		`petrel.yaml:2: log.level: "loud" is not one of debug, info, warn, error`},
	{"log format",
		"log:\n  format: xml\n",
		`petrel.yaml:2: log.format: "xml" is not one of text, json`},
	{"shutdown timeout zero",
		"log:\n  level: info\nshutdown_timeout: 0s\n",
		`petrel.yaml:3: shutdown_timeout: 0s must be greater than 0`},
	{"shutdown timeout without a unit",
		"shutdown_timeout: 10\n",
		`petrel.yaml:1: shutdown_timeout: 10 has no unit; write "10s" for seconds (units: ms, s, m, h)`},

	// Listeners.
	{"empty listener list",
		"listeners: []\n",
		`petrel.yaml:1: listeners: at least one listener is required`},
	{"listener list with nothing in it",
		"listeners:\n  # - address: 127.0.0.1:1883\n",
		`petrel.yaml:1: listeners: at least one listener is required`},
	{"listener written as an address",
		"listeners:\n  - \":1883\"\n",
		`petrel.yaml:2: listeners[0]: expected a mapping (keys: name, kind, address, allow_anonymous, max_connections, tls, websocket), got ":1883"`},
	{"listener without an address",
		"listeners:\n  - name: main\n",
		`petrel.yaml:2: listeners[0].address: required (host:port, such as "127.0.0.1:1883" or ":1883")`},
	{"address without a port",
		"listeners:\n  - address: localhost\n",
		`petrel.yaml:2: listeners[0].address: "localhost" is not host:port (missing port in address)`},
	{"address with an empty port",
		"listeners:\n  - address: \"localhost:\"\n",
		`petrel.yaml:2: listeners[0].address: "localhost:" has no port number`},
	{"port is a name",
		"listeners:\n  - address: localhost:mqtt\n",
		`petrel.yaml:2: listeners[0].address: "localhost:mqtt": port "mqtt" is not a number`},
	{"port out of range",
		"listeners:\n  - address: localhost:70000\n",
		`petrel.yaml:2: listeners[0].address: "localhost:70000": port 70000 is out of range 0..65535`},
	{"IPv6 address without brackets",
		"listeners:\n  - address: ::1:1883\n",
		`petrel.yaml:2: listeners[0].address: "::1:1883" is not host:port (too many colons in address)`},
	{"duplicate address",
		"listeners:\n  - address: 127.0.0.1:1883\n  - address: 127.0.0.1:1883\n",
		`petrel.yaml:3: listeners[1].address: "127.0.0.1:1883" is already the address of listeners[0]`},
	{"duplicate address spelled differently",
		"listeners:\n  - address: \"[::1]:1883\"\n  - address: \"[::1]:01883\"\n",
		`petrel.yaml:3: listeners[1].address: "[::1]:01883" is already the address of listeners[0]`},
	{"duplicate name",
		"listeners:\n  - name: main\n    address: :1883\n  - name: main\n    address: :1884\n",
		`petrel.yaml:4: listeners[1].name: "main" is already the name of listeners[0]`},
	{"default name taken",
		"listeners:\n  - name: tcp:127.0.0.1:1884\n    address: :1883\n  - address: 127.0.0.1:1884\n",
		`petrel.yaml:4: listeners[1].name: "tcp:127.0.0.1:1884" (the default name) is already the name of listeners[0]; give one of them a name`},
	{"two unnamed listeners on port 0",
		"listeners:\n  - address: 127.0.0.1:0\n  - address: 127.0.0.1:0\n",
		`petrel.yaml:3: listeners[1].name: "tcp:127.0.0.1:0" (the default name) is already the name of listeners[0]; give one of them a name`},

	// Listener kinds and their addresses.
	{"unknown listener kind",
		"listeners:\n  - kind: mqtts\n    address: :8883\n",
		`petrel.yaml:2: listeners[0].kind: "mqtts" is not one of tcp, tls, ws, wss, unix`},
	{"unix listener on host:port",
		"listeners:\n  - kind: unix\n    address: localhost:1883\n",
		`petrel.yaml:3: listeners[0].address: "localhost:1883" is host:port; a unix listener takes a socket path, such as "/run/petrel/mqtt.sock"`},
	{"unix listener without a path",
		"listeners:\n  - kind: unix\n",
		`petrel.yaml:2: listeners[0].address: required (a socket path, such as "/run/petrel/mqtt.sock")`},
	{"unix listener on a directory",
		"listeners:\n  - kind: unix\n    address: /run/petrel/\n",
		`petrel.yaml:3: listeners[0].address: "/run/petrel/" names a directory; name the socket file in it`},
	{"unix socket path too long",
		"listeners:\n  - kind: unix\n    address: /" + strings.Repeat("s", 200) + "\n",
		fmt.Sprintf(`petrel.yaml:3: listeners[0].address: "/%s" is 201 bytes long; a socket path may be at most %d`, strings.Repeat("s", 200), maxSocketPath())},
	{"socket path on a tcp listener",
		"listeners:\n  - address: /run/petrel/mqtt.sock\n",
		`petrel.yaml:2: listeners[0].address: "/run/petrel/mqtt.sock" is not host:port; for a unix socket set kind: unix`},
	{"duplicate socket path",
		"listeners:\n  - {kind: unix, address: /run/petrel.sock, name: a}\n  - {kind: unix, address: /run/../run/petrel.sock, name: b}\n",
		`petrel.yaml:3: listeners[1].address: "/run/../run/petrel.sock" is already the address of listeners[0]`},
	{"tls and tcp on one port",
		"listeners:\n  - address: :8883\n  - kind: tls\n    address: :8883\n    tls: {cert_file: c.pem, key_file: k.pem}\n",
		`petrel.yaml:4: listeners[1].address: ":8883" is already the address of listeners[0]`},
	{"default names follow the kind",
		"listeners:\n  - name: ws::80\n    address: :1883\n  - kind: ws\n    address: :80\n",
		`petrel.yaml:4: listeners[1].name: "ws::80" (the default name) is already the name of listeners[0]; give one of them a name`},
	{"allow_anonymous not a tristate",
		"listeners:\n  - address: :1883\n    allow_anonymous: yes\n",
		`petrel.yaml:3: listeners[0].allow_anonymous: "yes" is not true, false or auto`},
	{"allow_anonymous a list",
		"listeners:\n  - address: :1883\n    allow_anonymous: [true]\n",
		`petrel.yaml:3: listeners[0].allow_anonymous: expected true, false or auto, got a list`},
	{"negative listener connections",
		"listeners:\n  - address: :1883\n    max_connections: -1\n",
		`petrel.yaml:3: listeners[0].max_connections: -1 is negative (0 means unlimited)`},

	// TLS settings.
	{"tls listener without tls",
		"listeners:\n  - kind: tls\n    address: :8883\n",
		`petrel.yaml:2: listeners[0].tls: required for a tls listener: set cert_file and key_file`},
	{"wss listener with tls commented out",
		"listeners:\n  - kind: wss\n    address: :443\n    tls:\n      # cert_file: c.pem\n",
		`petrel.yaml:4: listeners[0].tls: required for a wss listener: set cert_file and key_file`},
	{"tls listener without a key",
		"listeners:\n  - kind: tls\n    address: :8883\n    tls:\n      cert_file: c.pem\n",
		`petrel.yaml:2: listeners[0].tls.key_file: required for a tls listener`},
	{"tls settings on a tcp listener",
		"listeners:\n  - address: :8883\n    tls:\n      cert_file: c.pem\n      key_file: k.pem\n",
		`petrel.yaml:3: listeners[0].tls: a tcp listener takes no tls settings; for MQTT over TLS set kind: tls`},
	{"tls settings on a ws listener",
		"listeners:\n  - kind: ws\n    address: :80\n    tls: {cert_file: c.pem, key_file: k.pem}\n",
		`petrel.yaml:4: listeners[0].tls: a ws listener takes no tls settings; for WebSocket over TLS set kind: wss`},
	{"tls settings on a unix listener",
		"listeners:\n  - kind: unix\n    address: petrel.sock\n    tls: {min_version: \"1.3\"}\n",
		`petrel.yaml:4: listeners[0].tls: a unix listener takes no tls settings`},
	{"unknown client_auth",
		"listeners:\n  - kind: tls\n    address: :8883\n    tls: {cert_file: c.pem, key_file: k.pem, client_auth: optional}\n",
		`petrel.yaml:4: listeners[0].tls.client_auth: "optional" is not one of none, request, require`},
	{"client_auth without a CA",
		"listeners:\n  - kind: tls\n    address: :8883\n    tls:\n      cert_file: c.pem\n      key_file: k.pem\n      client_auth: require\n",
		`petrel.yaml:2: listeners[0].tls.client_ca_file: required with client_auth: require (the CA that verifies client certificates)`},
	{"CA without client_auth",
		"listeners:\n  - kind: tls\n    address: :8883\n    tls:\n      cert_file: c.pem\n      key_file: k.pem\n      client_ca_file: ca.pem\n",
		`petrel.yaml:7: listeners[0].tls.client_ca_file: set, but client_auth is none, so no client certificate is asked for; set client_auth to request or require`},
	{"old TLS version",
		"listeners:\n  - kind: tls\n    address: :8883\n    tls: {cert_file: c.pem, key_file: k.pem, min_version: 1.1}\n",
		`petrel.yaml:4: listeners[0].tls.min_version: "1.1" is not one of 1.2, 1.3`},
	{"unknown identity source",
		"listeners:\n  - kind: tls\n    address: :8883\n    tls:\n      cert_file: c.pem\n      key_file: k.pem\n      client_ca_file: ca.pem\n      client_auth: require\n      username_from: email\n",
		`petrel.yaml:9: listeners[0].tls.username_from: "email" is not one of cn, san, dn, san:dns, san:email, san:uri`},
	{"identity from certificates nobody asks for",
		"listeners:\n  - kind: tls\n    address: :8883\n    tls:\n      cert_file: c.pem\n      key_file: k.pem\n      username_from: cn\n",
		`petrel.yaml:7: listeners[0].tls.username_from: needs verified client certificates; set client_auth to request or require`},

	// WebSocket settings.
	{"websocket settings on a tls listener",
		"listeners:\n  - kind: tls\n    address: :8883\n    tls: {cert_file: c.pem, key_file: k.pem}\n    websocket: {path: /ws}\n",
		`petrel.yaml:5: listeners[0].websocket: a tls listener takes no websocket settings; they are for kind ws or wss`},
	{"websocket path without a slash",
		"listeners:\n  - kind: ws\n    address: :80\n    websocket:\n      path: mqtt\n",
		`petrel.yaml:5: listeners[0].websocket.path: "mqtt" does not start with /`},
	{"bad origin pattern",
		"listeners:\n  - kind: ws\n    address: :80\n    websocket:\n      allowed_origins: [\"example.com\", \"[a-\"]\n",
		`petrel.yaml:5: listeners[0].websocket.allowed_origins[1]: "[a-" is not a valid host pattern (syntax error in pattern)`},
	{"empty origin pattern",
		"listeners:\n  - kind: ws\n    address: :80\n    websocket:\n      allowed_origins:\n        - \"\"\n",
		`petrel.yaml:6: listeners[0].websocket.allowed_origins[0]: empty; write a host pattern such as "*.example.com"`},

	// Authentication and authorisation.
	{"two authenticators",
		"auth:\n  password_file: /etc/petrel/passwd\n  http:\n    auth_url: https://auth.example.com/login\n",
		`petrel.yaml:4: auth.http.auth_url: set together with auth.password_file; choose one authenticator`},
	{"two authorizers",
		"auth:\n  acl_file: /etc/petrel/acl\n  http:\n    acl_url: https://auth.example.com/acl\n",
		`petrel.yaml:4: auth.http.acl_url: set together with auth.acl_file; choose one authorizer`},
	{"auth URL without a scheme",
		"auth:\n  http:\n    auth_url: auth.example.com/login\n",
		`petrel.yaml:3: auth.http.auth_url: "auth.example.com/login" is not an http or https URL`},
	{"ACL URL of another scheme",
		"auth:\n  http:\n    acl_url: ftp://auth.example.com/acl\n",
		`petrel.yaml:3: auth.http.acl_url: "ftp://auth.example.com/acl" is not an http or https URL`},
	{"auth URL without a host",
		"auth:\n  http:\n    auth_url: \"http://\"\n",
		`petrel.yaml:3: auth.http.auth_url: "http://" is not an http or https URL`},
	{"auth URL that does not parse",
		"auth:\n  http:\n    auth_url: \"http://[::1\"\n",
		`petrel.yaml:3: auth.http.auth_url: "http://[::1" is not an http or https URL`},
	{"zero auth timeout",
		"auth:\n  timeout: 0s\n",
		`petrel.yaml:2: auth.timeout: 0s must be greater than 0`},
	{"zero http durations",
		"auth:\n  http:\n    timeout: 0s\n    cache_ttl: -1s\n    negative_ttl: 0s\n",
		`petrel.yaml:3: auth.http.timeout: 0s must be greater than 0` + "\n" +
			`petrel.yaml:4: auth.http.cache_ttl: -1s must be greater than 0` + "\n" +
			`petrel.yaml:5: auth.http.negative_ttl: 0s must be greater than 0`},

	// Limits.
	{"negative limits",
		"limits:\n  max_connections: -1\n  connection_rate: -0.5\n  max_topic_levels: -1\n  max_subscriptions: -1\n  publish_rate: -2\n  control_rate: -1\n",
		`petrel.yaml:2: limits.max_connections: -1 is negative (0 means unlimited)` + "\n" +
			`petrel.yaml:3: limits.connection_rate: -0.5 is negative (0 means unlimited)` + "\n" +
			`petrel.yaml:4: limits.max_topic_levels: -1 is negative (0 means unlimited)` + "\n" +
			`petrel.yaml:5: limits.max_subscriptions: -1 is negative (0 means unlimited)` + "\n" +
			`petrel.yaml:6: limits.publish_rate: -2 is negative (0 means unlimited)` + "\n" +
			`petrel.yaml:7: limits.control_rate: -1 is negative (0 means unlimited)`},
	{"negative sizes of limits",
		"limits:\n  queued_memory: -1MiB\n  publish_bytes_rate: -1\n  max_outbound_bytes: -1KiB\n",
		`petrel.yaml:2: limits.queued_memory: "-1MiB" is a negative size` + "\n" +
			`petrel.yaml:3: limits.publish_bytes_rate: "-1" is a negative size` + "\n" +
			`petrel.yaml:4: limits.max_outbound_bytes: "-1KiB" is a negative size`},
	{"no connection burst",
		"limits:\n  connection_burst: 0\n",
		`petrel.yaml:2: limits.connection_burst: 0 must be at least 1`},
	{"topic length beyond MQTT",
		"limits:\n  max_topic_length: 65536\n",
		`petrel.yaml:2: limits.max_topic_length: 65536 is out of range 0..65535`},
	{"incomplete packets never time out",
		"limits:\n  incomplete_packet_timeout: 0s\n",
		`petrel.yaml:2: limits.incomplete_packet_timeout: 0s must be greater than 0`},
	{"rate written as a string",
		"limits:\n  publish_rate: \"10\"\n",
		`petrel.yaml:2: limits.publish_rate: "10" is a string, not a number (remove the quotes)`},

	// The HTTP server.
	{"http address without a port",
		"http:\n  listen: localhost\n",
		`petrel.yaml:2: http.listen: "localhost" is not host:port (missing port in address)`},
	{"http on an MQTT listener's port",
		"listeners:\n  - address: 127.0.0.1:1883\nhttp:\n  listen: 127.0.0.1:1883\n",
		`petrel.yaml:4: http.listen: "127.0.0.1:1883" is already the address of listeners[0]`},
	{"https without a key",
		"http:\n  listen: :8443\n  tls:\n    cert_file: c.pem\n",
		`petrel.yaml:3: http.tls: cert_file is set, but key_file, its private key, is not`},
	{"https options without a certificate",
		"http:\n  listen: :8443\n  tls:\n    min_version: \"1.3\"\n",
		`petrel.yaml:3: http.tls: set cert_file and key_file to serve HTTPS`},
	{"https client CA without client_auth",
		"http:\n  listen: :8443\n  tls: {cert_file: c.pem, key_file: k.pem, client_ca_file: ca.pem}\n",
		`petrel.yaml:3: http.tls.client_ca_file: set, but client_auth is none, so no client certificate is asked for; set client_auth to request or require`},
	{"http token with nowhere to create it",
		"store:\n  engine: memory\n  dir: \"\"\nhttp:\n  listen: 127.0.0.1:8080\n",
		`petrel.yaml:3: store.dir: must be set for http.token_file's default (<store.dir>/http-token); or set http.token_file`},
	{"http username from a certificate",
		"http:\n  tls:\n    username_from: cn\n",
		`petrel.yaml:3: http.tls.username_from: unknown key (did you mean "listeners[].tls.username_from"?)`},

	// YAML itself.
	{"bad indentation",
		"log:\n  level: info\n    format: json\n",
		`petrel.yaml:3: invalid YAML: mapping values are not allowed in this context`},
	{"syntax error without a line",
		"log: *nowhere\n",
		`petrel.yaml: invalid YAML: unknown anchor 'nowhere' referenced`},
	{"missing colon",
		"a: 1\nb: 2\nc 2\n",
		`petrel.yaml:3: invalid YAML: could not find expected ':'`},
	{"tab indentation",
		"log:\n\tlevel: info\n",
		`petrel.yaml:2: invalid YAML: found character that cannot start any token (the line is indented with a tab; YAML allows only spaces)`},
	{"two documents",
		"log:\n  level: info\n---\nmqtt:\n  max_inflight: 10\n",
		`petrel.yaml:3: a second YAML document (after ---); a config file holds one`},

	// Several problems at once, in the order of the file.
	{"every problem, in file order",
		"mqtt:\n  max_inflight: 0\n  connect_timeout: 10\nlog:\n  level: loud\n  formt: json\n",
		`petrel.yaml:2: mqtt.max_inflight: 0 is out of range 1..65535` + "\n" +
			`petrel.yaml:3: mqtt.connect_timeout: 10 has no unit; write "10s" for seconds (units: ms, s, m, h)` + "\n" +
			`petrel.yaml:5: log.level: "loud" is not one of debug, info, warn, error` + "\n" +
			`petrel.yaml:6: log.formt: unknown key (did you mean "format"?)`},
}

func TestParseErrors(t *testing.T) {
	for _, tc := range parseErrors {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse("petrel.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse accepted\n%s\nwant error\n%s", tc.yaml, tc.want)
			}
			if f != nil {
				t.Errorf("Parse returned a File along with its error")
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("Parse(\n%s)\n got: %s\nwant: %s", tc.yaml, got, tc.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not a *config.Error", err)
			}
			if first, _, _ := strings.Cut(tc.want, "\n"); e.Error() != first {
				t.Errorf("errors.As found %q, want the first error %q", e, first)
			}
		})
	}
}

func TestErrorFields(t *testing.T) {
	_, err := Parse("petrel.yaml", []byte("log:\n  level: info\nmqtt:\n    max_inflight: lots\n"))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Parse error %v is not a *config.Error", err)
	}
	want := Error{File: "petrel.yaml", Line: 4, Column: 19, Key: "mqtt.max_inflight", Msg: `"lots" is not an integer`}
	if *e != want {
		t.Errorf("Parse error = %+v, want %+v", *e, want)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		err  Error
		want string
	}{
		{Error{File: "p.yaml", Line: 3, Column: 5, Key: "log.level", Msg: "bad"}, "p.yaml:3: log.level: bad"},
		{Error{File: "p.yaml", Key: "log.level", Msg: "bad"}, "p.yaml: log.level: bad"},
		{Error{Line: 3, Key: "log.level", Msg: "bad"}, "line 3: log.level: bad"},
		{Error{Key: "log.level", Msg: "bad"}, "log.level: bad"},
		{Error{File: "p.yaml", Line: 3, Msg: "bad"}, "p.yaml:3: bad"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%+v.Error() = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestTooManyErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString("log:\n")
	for i := range 2 * maxErrors {
		b.WriteString("  key" + strings.Repeat("x", i) + ": 1\n")
	}
	_, err := Parse("petrel.yaml", []byte(b.String()))
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxErrors+1 {
		t.Fatalf("got %d lines of errors, want %d then a note", len(lines), maxErrors)
	}
	if want := "petrel.yaml: too many errors; fix these first"; lines[maxErrors] != want {
		t.Errorf("last line = %q, want %q", lines[maxErrors], want)
	}
}

// TestAliasesAreCheap feeds the classic "billion laughs" file: aliases that
// would expand to 9^6 listeners. The walker must report the problem without
// expanding it.
func TestAliasesAreCheap(t *testing.T) {
	data := "a: &a [x,x,x,x,x,x,x,x,x]\n" +
		"b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n" +
		"c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n" +
		"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n" +
		"e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n" +
		"f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n" +
		"listeners: *f\n"
	start := time.Now()
	_, err := Parse("petrel.yaml", []byte(data))
	if err == nil {
		t.Fatal("Parse accepted a file of aliases")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Parse took %v", d)
	}
}

func TestEmptyFilesMeanDefaults(t *testing.T) {
	for name, data := range map[string]string{
		"empty":         "",
		"comments only": "# Petrel configuration\n# log:\n#   level: debug\n",
		"blank lines":   "\n\n   \n",
		"document mark": "---\n",
		"null document": "~\n",
		"empty mapping": "{}\n",
	} {
		t.Run(name, func(t *testing.T) {
			f, err := Parse("petrel.yaml", []byte(data))
			if err != nil {
				t.Fatalf("Parse(%q): %v", data, err)
			}
			assertSettings(t, f, Default())
		})
	}
}

func TestEmptySectionsKeepDefaults(t *testing.T) {
	f, err := Parse("petrel.yaml", []byte("log:\nmqtt:\n  # max_inflight: 10\n"))
	if err != nil {
		t.Fatal(err)
	}
	assertSettings(t, f, Default())
}

func TestOverlay(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		edit func(*File) // applied to Default() gives the expected File
	}{
		{"one log field",
			"log:\n  level: debug\n",
			func(f *File) { f.Log.Level = "debug" }},
		{"one mqtt field",
			"mqtt:\n  max_inflight: 20\n",
			func(f *File) { f.MQTT.MaxInflight = 20 }},
		{"booleans both ways",
			"mqtt:\n  queue_qos0: true\n  retain_available: false\n",
			func(f *File) { f.MQTT.QueueQoS0, f.MQTT.RetainAvailable = true, false }},
		{"a size and a duration",
			"mqtt:\n  max_packet_size: 64KiB\n  connect_timeout: 1m30s\n",
			func(f *File) {
				f.MQTT.MaxPacketSize = 64 * KiB
				f.MQTT.ConnectTimeout = Duration{90 * time.Second}
			}},
		{"a size in plain bytes",
			"mqtt:\n  max_queued_bytes: 1000000\n",
			func(f *File) { f.MQTT.MaxQueuedBytes = 1000000 }},
		{"listeners replace the default list",
			"listeners:\n  - address: \":1883\"\n  - name: local\n    address: 127.0.0.1:1884\n",
			func(f *File) {
				f.Listeners = []Listener{tcpListener("tcp::1883", ":1883"), tcpListener("local", "127.0.0.1:1884")}
			}},
		{"two named listeners on port 0",
			"listeners:\n  - {name: a, address: \"127.0.0.1:0\"}\n  - {name: b, address: \"127.0.0.1:0\"}\n",
			func(f *File) {
				f.Listeners = []Listener{tcpListener("a", "127.0.0.1:0"), tcpListener("b", "127.0.0.1:0")}
			}},
		{"flow style and aliases",
			"mqtt: {max_inflight: &n 7, max_queued_messages: *n}\n",
			func(f *File) { f.MQTT.MaxInflight, f.MQTT.MaxQueuedMessages = 7, 7 }},
		{"zero means unlimited",
			"mqtt:\n  max_queued_messages: 0\n",
			func(f *File) { f.MQTT.MaxQueuedMessages = 0 }},
		{"integers with separators",
			"mqtt:\n  max_queued_messages: 10_000\n",
			func(f *File) { f.MQTT.MaxQueuedMessages = 10000 }},
		{"a tls listener",
			"listeners:\n  - kind: tls\n    address: :8883\n    allow_anonymous: true\n    max_connections: 5\n" +
				"    tls:\n      cert_file: c.pem\n      key_file: k.pem\n      client_ca_file: ca.pem\n" +
				"      client_auth: require\n      min_version: 1.3\n      username_from: san:email\n",
			func(f *File) {
				f.Listeners = []Listener{{Name: "tls::8883", Kind: "tls", Address: ":8883", AllowAnonymous: True, MaxConnections: 5,
					TLS: ListenerTLS{CertFile: "c.pem", KeyFile: "k.pem", ClientCAFile: "ca.pem", ClientAuth: "require",
						MinVersion: "1.3", UsernameFrom: "san:email"},
					WebSocket: ListenerWebSocket{Path: "/mqtt"}}}
			}},
		{"ws and unix listeners",
			"listeners:\n  - kind: ws\n    address: 127.0.0.1:8080\n    allow_anonymous: auto\n" +
				"    websocket: {path: /, allowed_origins: [\"*.example.com\"], trust_proxy: true}\n" +
				"  - kind: unix\n    address: petrel.sock\n    allow_anonymous: FALSE\n",
			func(f *File) {
				f.Listeners = []Listener{
					{Name: "ws:127.0.0.1:8080", Kind: "ws", Address: "127.0.0.1:8080", TLS: defaultTLS,
						WebSocket: ListenerWebSocket{Path: "/", AllowedOrigins: []string{"*.example.com"}, TrustProxy: true}},
					{Name: "unix:petrel.sock", Kind: "unix", Address: "petrel.sock", AllowAnonymous: False, TLS: defaultTLS,
						WebSocket: ListenerWebSocket{Path: "/mqtt"}},
				}
			}},
		{"a socket path may hold a colon",
			"listeners:\n  - kind: unix\n    address: ./mqtt:1883\n",
			func(f *File) {
				f.Listeners = []Listener{{Name: "unix:./mqtt:1883", Kind: "unix", Address: "./mqtt:1883", TLS: defaultTLS,
					WebSocket: ListenerWebSocket{Path: "/mqtt"}}}
			}},
		{"a password file and an ACL service",
			"auth:\n  password_file: passwd\n  http:\n    acl_url: http://127.0.0.1:8080/acl\n    cache_ttl: 10m\n  timeout: 3s\n",
			func(f *File) {
				f.Auth.PasswordFile = "passwd"
				f.Auth.HTTP.ACLURL = "http://127.0.0.1:8080/acl"
				f.Auth.HTTP.CacheTTL = Duration{10 * time.Minute}
				f.Auth.Timeout = Duration{3 * time.Second}
			}},
		{"a login service and an ACL file",
			"auth:\n  acl_file: acl\n  http: {auth_url: \"https://auth.example.com/login\"}\n",
			func(f *File) {
				f.Auth.ACLFile = "acl"
				f.Auth.HTTP.AuthURL = "https://auth.example.com/login"
			}},
		{"limits lifted",
			"limits:\n  max_topic_length: 0\n  max_topic_levels: 0\n  max_subscriptions: 0\n  control_rate: 0\n  queued_memory: 0\n  max_outbound_bytes: 0\n",
			func(f *File) {
				f.Limits.MaxTopicLength, f.Limits.MaxTopicLevels, f.Limits.MaxSubscriptions = 0, 0, 0
				f.Limits.ControlRate, f.Limits.QueuedMemory, f.Limits.MaxOutboundBytes = 0, 0, 0
			}},
		{"fractional rates",
			"limits:\n  connection_rate: 0.5\n  publish_rate: 2.5\n  publish_bytes_rate: 64KiB\n",
			func(f *File) {
				f.Limits.ConnectionRate, f.Limits.PublishRate, f.Limits.PublishBytesRate = 0.5, 2.5, 64*KiB
			}},
		{"the largest packet",
			"mqtt:\n  max_packet_size: 268435460\n",
			func(f *File) { f.MQTT.MaxPacketSize = MaxPacketSize }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse("petrel.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatalf("Parse(\n%s): %v", tc.yaml, err)
			}
			want := Default()
			tc.edit(want)
			assertSettings(t, f, want)
		})
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "petrel.yaml")
	if err := os.WriteFile(path, []byte("log:\n  level: warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Log.Level != "warn" {
		t.Errorf("log.level = %q, want warn", f.Log.Level)
	}

	if err := os.WriteFile(path, []byte("log:\n  level: loud\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if want := path + `:2: log.level: "loud" is not one of debug, info, warn, error`; err == nil || err.Error() != want {
		t.Errorf("Load error = %v, want %s", err, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file = %v, want fs.ErrNotExist", err)
	}
}

func TestExampleFile(t *testing.T) {
	f, err := Load("testdata/petrel.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &File{
		Log: Log{Level: "info", Format: "json"},
		Listeners: []Listener{
			{
				Name: "browsers", Kind: "wss", Address: "0.0.0.0:443", AllowAnonymous: False, MaxConnections: 10000,
				TLS: ListenerTLS{CertFile: "/etc/petrel/server.crt", KeyFile: "/etc/petrel/server.key",
					ClientCAFile: "/etc/petrel/clients-ca.crt", ClientAuth: "request", MinVersion: "1.3", UsernameFrom: "cn"},
				WebSocket: ListenerWebSocket{Path: "/mqtt", AllowedOrigins: []string{"app.example.com", "*.example.com"}},
			},
			tcpListener("local", "127.0.0.1:1883"),
			tcpListener("tcp:[::1]:1883", "[::1]:1883"),
			{
				Name: "tls::8883", Kind: "tls", Address: ":8883",
				TLS:       ListenerTLS{CertFile: "/etc/petrel/server.crt", KeyFile: "/etc/petrel/server.key", ClientAuth: "none", MinVersion: "1.2"},
				WebSocket: ListenerWebSocket{Path: "/mqtt"},
			},
			{Name: "unix:/run/petrel/mqtt.sock", Kind: "unix", Address: "/run/petrel/mqtt.sock", TLS: defaultTLS, WebSocket: ListenerWebSocket{Path: "/mqtt"}},
		},
		Auth: Auth{
			PasswordFile: "/etc/petrel/passwd",
			HTTP: AuthHTTP{ACLURL: "https://auth.example.com/mqtt/acl", Timeout: Duration{2 * time.Second},
				CacheTTL: Duration{time.Minute}, NegativeTTL: Duration{5 * time.Second}},
			Timeout: Duration{10 * time.Second},
		},
		Limits: Limits{
			MaxConnections:          50000,
			ConnectionRate:          20,
			ConnectionBurst:         10,
			MaxTopicLength:          1024,
			MaxTopicLevels:          32,
			MaxSubscriptions:        1000,
			PublishBytesRate:        MiB,
			ControlRate:             100,
			QueuedMemory:            256 * MiB,
			IncompletePacketTimeout: Duration{30 * time.Second},
			MaxOutboundBytes:        1 * MiB,
		},
		MQTT: MQTT{
			MaxPacketSize:     256 * KiB,
			ConnectTimeout:    Duration{5 * time.Second},
			MaxInflight:       200,
			MaxQueuedMessages: 10000,
			MaxQueuedBytes:    64 * MiB,
			BacklogMessages:   1000,
			BacklogBytes:      16 * MiB,
			StallTimeout:      Duration{30 * time.Second},
			QueueQoS0:         false,
			SplicePayloads:    true,
			RetainAvailable:   true,
			MaxClientIDLength: 256,

			MaxQoS:                  2,
			ReceiveMaximum:          1000,
			WildcardSubscriptions:   true,
			SubscriptionIdentifiers: true,
			SharedSubscriptions:     true,
			TopicAliasMaximum:       10,
			MaxSessionExpiry:        Duration{168 * time.Hour},
			ResponseInformation:     "responses/",
		},
		Sys:   Sys{Interval: Duration{30 * time.Second}},
		Store: Store{Engine: "pebble", Dir: "/var/lib/petrel", Sync: "always", SyncInterval: Duration{100 * time.Millisecond}},
		HTTP: HTTP{Listen: "127.0.0.1:8080", TokenFile: "/etc/petrel/http-token", MetricsAuth: false,
			TLS: HTTPTLS{CertFile: "/etc/petrel/server.crt", KeyFile: "/etc/petrel/server.key",
				ClientCAFile: "/etc/petrel/admins-ca.crt", ClientAuth: "require", MinVersion: "1.3"}},
		Cluster: Cluster{Node: "node-1", Name: "petrel", Listen: "10.0.0.1:6222", Peers: []string{"10.0.0.2:6222", "10.0.0.3:6222"},
			NodeTimeout: Duration{3 * time.Second}, ReplicateSessions: true, Username: "petrel", PasswordFile: "/etc/petrel/cluster-password",
			TLS: ClusterTLS{CertFile: "/etc/petrel/node.crt", KeyFile: "/etc/petrel/node.key", CAFile: "/etc/petrel/cluster-ca.crt"}},
		Bridges: []Bridge{{Name: "cloud", URL: "mqtts://broker.example.com:8883", Protocol: "5", ClientID: "site1-bridge",
			Username: "site1", PasswordFile: "/etc/petrel/bridge-cloud-password", MaxQueuedMessages: 100000, MaxQueuedBytes: 256 << 20,
			TLS: BridgeTLS{CAFile: "/etc/petrel/cloud-ca.crt", CertFile: "/etc/petrel/site1.crt", KeyFile: "/etc/petrel/site1.key"},
			Topics: []BridgeTopic{
				{Pattern: "sensors/#", Direction: "out", QoS: 1, RemotePrefix: "site1/"},
				{Pattern: "cmd/#", Direction: "in", QoS: 1, RemotePrefix: "site1/"},
			}}},

		ShutdownTimeout: Duration{10 * time.Second},
	}
	assertSettings(t, f, want)
}
