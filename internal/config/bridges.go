package config

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/petrelmq/petrel/internal/topic"
)

// Bridge links the broker to another MQTT broker (package bridge;
// docs/BRIDGES.md): an entry of the bridges list. The password and
// certificate files are read when the broker starts.
type Bridge struct {
	// Name names the bridge in logs, metrics and its local session: 1 to
	// 64 letters, digits, '-' or '_', unique.
	Name string `yaml:"name"`
	// URL is the remote broker: mqtt://, mqtts://, ws:// or wss://.
	URL string `yaml:"url"`
	// Protocol is the remote protocol version: "5" or "3.1.1".
	Protocol string `yaml:"protocol"`
	// ClientID is the bridge's client identifier at the remote broker.
	// Empty: petrel-bridge-<name>.
	ClientID string `yaml:"client_id"`
	// Username, and the password in PasswordFile (without surrounding
	// white space), are sent to the remote broker.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// CleanStart false keeps a session at the remote broker across
	// connections.
	CleanStart bool `yaml:"clean_start"`
	// MaxQueuedMessages and MaxQueuedBytes bound what waits to go out (the
	// bridge's session on this broker); 0: mqtt.max_queued_messages and
	// mqtt.max_queued_bytes.
	MaxQueuedMessages int  `yaml:"max_queued_messages"`
	MaxQueuedBytes    Size `yaml:"max_queued_bytes"`
	// TLS, for mqtts:// and wss://.
	TLS BridgeTLS `yaml:"tls"`
	// Topics are the bridge's rules.
	Topics []BridgeTopic `yaml:"topics"`
}

func (b *Bridge) setDefaults() { b.Protocol = "5" }

// BridgeTLS names a bridge's TLS files: the CA that verifies the remote
// broker (empty: the system's roots), and a client certificate with its
// key (both or neither).
type BridgeTLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// BridgeTopic is one rule, as Mosquitto's `topic pattern direction qos
// local-prefix remote-prefix`.
type BridgeTopic struct {
	Pattern      string `yaml:"pattern"`
	Direction    string `yaml:"direction"` // in | out | both
	QoS          int    `yaml:"qos"`
	LocalPrefix  string `yaml:"local_prefix"`
	RemotePrefix string `yaml:"remote_prefix"`
}

func (t *BridgeTopic) setDefaults() { t.Direction = "out" }

// bridges checks the bridges list.
func (v *validator) bridges(bs []Bridge) {
	seen := make(map[string]bool)
	for i, b := range bs {
		key := indexKey("bridges", i)
		switch {
		case !nameRE.MatchString(b.Name):
			v.failf(key+".name", "%q is not a bridge name: use 1 to 64 letters, digits, '-' or '_'", b.Name)
		case seen[b.Name]:
			v.failf(key+".name", "%q names another bridge too", b.Name)
		}
		seen[b.Name] = true
		u, err := url.Parse(b.URL)
		switch {
		case b.URL == "":
			v.failf(key+".url", "missing: the remote broker, such as mqtt://broker.example.com:1883")
		case err != nil:
			v.failf(key+".url", "%q: %v", b.URL, err)
		case u.Scheme != "mqtt" && u.Scheme != "mqtts" && u.Scheme != "ws" && u.Scheme != "wss":
			v.failf(key+".url", "%q: the scheme must be mqtt, mqtts, ws or wss", b.URL)
		case u.Host == "":
			v.failf(key+".url", "%q has no host", b.URL)
		}
		if b.Protocol != "5" && b.Protocol != "3.1.1" {
			v.failf(key+".protocol", "%q is not 5 or 3.1.1", b.Protocol)
		}
		if b.MaxQueuedMessages < 0 {
			v.failf(key+".max_queued_messages", "%d is negative (0: mqtt.max_queued_messages)", b.MaxQueuedMessages)
		}
		if b.MaxQueuedBytes < 0 {
			v.failf(key+".max_queued_bytes", "%s is negative (0: mqtt.max_queued_bytes)", b.MaxQueuedBytes)
		}
		if b.PasswordFile != "" && b.Username == "" {
			v.failf(key+".password_file", "set, but username is not: MQTT sends a password only with a user name")
		}
		if (b.TLS.CertFile == "") != (b.TLS.KeyFile == "") {
			v.failf(key+".tls", "cert_file and key_file go together: set both or neither")
		}
		if b.TLS != (BridgeTLS{}) && u != nil && (u.Scheme == "mqtt" || u.Scheme == "ws") {
			v.failf(key+".tls", "set, but the url's scheme %q is not encrypted: use mqtts or wss", u.Scheme)
		}
		if len(b.Topics) == 0 {
			v.failf(key+".topics", "empty: the bridge needs at least one rule")
		}
		for j, t := range b.Topics {
			v.bridgeTopic(indexKey(key+".topics", j), t)
		}
		if b.Protocol == "3.1.1" {
			v.bridgeLoops(key, b.Topics)
		}
	}
}

func (v *validator) bridgeTopic(key string, t BridgeTopic) {
	if err := topic.ValidateFilter(t.Pattern); err != nil || t.Pattern == "" {
		v.failf(key+".pattern", "%q is not a topic filter", t.Pattern)
	}
	switch t.Direction {
	case "in", "out", "both":
	default:
		v.failf(key+".direction", "%q is not in, out or both", t.Direction)
	}
	if t.QoS < 0 || t.QoS > 2 {
		v.failf(key+".qos", "%d is not 0, 1 or 2", t.QoS)
	}
	for name, p := range map[string]string{"local_prefix": t.LocalPrefix, "remote_prefix": t.RemotePrefix} {
		if strings.ContainsAny(p, "+#\x00") {
			v.failf(key+"."+name, "%q: a prefix is part of a topic name, without wildcards", p)
		}
	}
}

// bridgeLoops rejects the rules of an MQTT 3.1.1 bridge that would send a
// message round for ever: 3.1.1 has no No Local, so the remote broker
// gives the bridge back what it published there whenever an in rule
// subscribes to it.
func (v *validator) bridgeLoops(key string, ts []BridgeTopic) {
	for i, o := range ts {
		if o.Direction == "in" {
			continue
		}
		for j, in := range ts {
			if in.Direction == "out" {
				continue
			}
			if filtersOverlap(o.RemotePrefix+o.Pattern, in.RemotePrefix+in.Pattern) {
				v.failf(indexKey(key+".topics", j), "would loop with topics[%d]: what that rule sends out, this one brings back "+
					"(MQTT 3.1.1 has no No Local); use protocol 5, or rules whose remote topics do not overlap", i)
			}
		}
	}
}

// filtersOverlap reports whether some topic name matches both filters.
func filtersOverlap(a, b string) bool {
	al, bl := strings.Split(a, "/"), strings.Split(b, "/")
	for i := 0; ; i++ {
		switch {
		case i < len(al) && al[i] == "#", i < len(bl) && bl[i] == "#":
			return true
		case i == len(al) || i == len(bl):
			return len(al) == len(bl)
		case al[i] != "+" && bl[i] != "+" && al[i] != bl[i]:
			return false
		}
	}
}

// String gives a rule as Mosquitto writes it, for logs.
func (t BridgeTopic) String() string {
	return fmt.Sprintf("%s %s %d %q %q", t.Pattern, t.Direction, t.QoS, t.LocalPrefix, t.RemotePrefix)
}
