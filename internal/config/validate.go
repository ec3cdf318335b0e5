package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

var (
	logLevels     = []string{"debug", "info", "warn", "error"}
	logFormats    = []string{"text", "json"}
	storeEngines  = []string{"pebble", "memory"}
	syncModes     = []string{"always", "periodic"}
	listenerKinds = []string{"tcp", "tls", "ws", "wss", "unix"}
	clientAuths   = []string{"none", "request", "require"}
	tlsVersions   = []string{"1.2", "1.3"}
	// identitySources are the values tlsconf.CheckIdentitySource accepts
	// (a test keeps them in step).
	identitySources = []string{"cn", "san", "dn", "san:dns", "san:email", "san:uri"}
)

func (v *validator) store(s Store) {
	v.oneOf("store.engine", s.Engine, storeEngines)
	v.oneOf("store.sync", s.Sync, syncModes)
	if s.Engine == "pebble" && strings.TrimSpace(s.Dir) == "" {
		v.failf("store.dir", "required with the pebble engine")
	}
	if s.SyncInterval.Duration < time.Millisecond || s.SyncInterval.Duration > time.Minute {
		v.failf("store.sync_interval", "%s is out of range 1ms..1m", s.SyncInterval)
	}
}

// Validate fills in the values derived from others (a listener's default
// name) and checks f as a whole: every value in its range, every choice one
// of its options, no two listeners alike. It returns every problem, joined,
// each an *Error naming its key. When f came from Parse and the file set the
// bad value, the error also names the file and the line; a value changed
// since, as command-line flags change them, is not blamed on the file.
//
// Parse has already validated the File it returns; call Validate again after
// changing one.
func (f *File) Validate() error {
	return joinErrors(f.name, f.validate())
}

func (f *File) validate() []*Error {
	f.fillDerived()
	v := validator{f: f}
	v.log(f.Log)
	v.positive("shutdown_timeout", f.ShutdownTimeout)
	v.listeners(f.Listeners)
	v.auth(f.Auth)
	v.limits(f.Limits)
	v.mqtt(f.MQTT)
	v.sys(f.Sys)
	v.store(f.Store)
	v.http(f.HTTP, f)
	v.cluster(f.Cluster, f)
	v.bridges(f.Bridges)
	return v.errs
}

// fillDerived sets the values whose defaults depend on other values, and
// the defaults of listeners built in Go, which have not had setDefaults.
func (f *File) fillDerived() {
	for i := range f.Listeners {
		l := &f.Listeners[i]
		l.fillEmpty()
		if l.Name == "" {
			l.Name = defaultListenerName(l.Kind, l.Address)
		}
	}
}

type validator struct {
	f    *File
	errs []*Error
}

// failf records a problem with key. It names the file and the line when the
// file set key, or, for a key the file left out of a list entry (a
// listener's address), the entry, and only while the value there is still
// the one the file gave.
func (v *validator) failf(key, format string, args ...any) {
	e := &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
	if p, ok := v.f.place(key); ok {
		e.File, e.Line, e.Column = v.f.name, p.line, p.column
	}
	v.errs = append(v.errs, e)
}

// place returns where the file set key, or the list entry around it.
func (f *File) place(key string) (position, bool) {
	at := key
	p, ok := f.pos[at]
	for !ok && at != "" {
		if at = parentKey(at); strings.HasSuffix(at, "]") {
			p, ok = f.pos[at]
		}
	}

	if !ok || f.parsed == nil {
		return position{}, false
	}
	now, ok1 := valueAt(reflect.ValueOf(f).Elem(), at)
	then, ok2 := valueAt(reflect.ValueOf(f.parsed).Elem(), at)
	if !ok1 || !ok2 || !reflect.DeepEqual(now.Interface(), then.Interface()) {
		return position{}, false
	}
	return p, true
}

// oneOf reports whether value is one of options, and records a problem
// when it is not.
func (v *validator) oneOf(key, value string, options []string) bool {
	if !slices.Contains(options, value) {
		v.failf(key, "%q is not one of %s", value, strings.Join(options, ", "))
		return false
	}
	return true
}

// unlimited checks a limit for which 0 means unlimited.
func (v *validator) unlimited(key string, value int) {
	if value < 0 {
		v.failf(key, "%d is negative (0 means unlimited)", value)
	}
}

// unlimitedRate checks a rate for which 0 means unlimited.
func (v *validator) unlimitedRate(key string, value float64) {
	if value < 0 {
		v.failf(key, "%g is negative (0 means unlimited)", value)
	}
}

// positive checks a duration that must be greater than 0.
func (v *validator) positive(key string, d Duration) {
	if d.Duration <= 0 {
		v.failf(key, "%s must be greater than 0", d)
	}
}

func (v *validator) intRange(key string, value, lo, hi int) {
	if value < lo || value > hi {
		v.failf(key, "%d is out of range %d..%d", value, lo, hi)
	}
}

func (v *validator) log(l Log) {
	v.oneOf("log.level", l.Level, logLevels)
	v.oneOf("log.format", l.Format, logFormats)
}

func (v *validator) listeners(ls []Listener) {
	if len(ls) == 0 {
		v.failf("listeners", "at least one listener is required")
		return
	}
	addresses := make(map[string]int, len(ls))
	names := make(map[string]int, len(ls))
	for i := range ls {
		l := &ls[i]
		key := indexKey("listeners", i)
		derived := l.Name == defaultListenerName(l.Kind, l.Address)
		if v.oneOf(key+".kind", l.Kind, listenerKinds) {
			v.listenerTLS(key, l)
			v.listenerWebSocket(key, l)
		}
		v.unlimited(key+".max_connections", l.MaxConnections)
		if !v.listenAddress(key+".address", l.Kind, l.Address) {
			continue
		}
		// Two listeners on port 0 get different ports; any other repeat
		// would fail to bind.
		if addr, ok := bindingOf(l.Kind, l.Address); ok {
			if first, dup := addresses[addr]; dup {
				v.failf(key+".address", "%q is already the address of listeners[%d]", l.Address, first)
				if derived {
					continue // and so is its default name: one report is enough
				}
			} else {
				addresses[addr] = i
			}
		}
		first, dup := names[l.Name]
		switch {
		case dup && derived:
			v.failf(key+".name", "%q (the default name) is already the name of listeners[%d]; give one of them a name", l.Name, first)
		case dup:
			v.failf(key+".name", "%q is already the name of listeners[%d]", l.Name, first)
		default:
			names[l.Name] = i
		}
	}
}

// listenAddress checks a listener's address for its kind, reporting
// whether it is usable.
func (v *validator) listenAddress(key, kind, addr string) bool {
	if kind == "unix" {
		return v.socketPath(key, addr)
	}
	return v.address(key, addr)
}

// bindingOf returns what a listener binds, in one spelling per binding (a
// unix socket's cleaned path, a network address with its port), and false
// when its port is 0: any number of those can bind.
func bindingOf(kind, addr string) (string, bool) {
	if kind == "unix" {
		return "unix:" + filepath.Clean(addr), true
	}
	addr, port := normalizeAddress(addr)
	return addr, port != 0
}

// exampleSocket is the socket path error messages suggest.
const exampleSocket = "/run/petrel/mqtt.sock"

// socketPath checks a unix listener's address, reporting whether it is
// usable. The file is not looked at: it is created when the broker starts.
func (v *validator) socketPath(key, p string) bool {
	switch {
	case p == "":
		v.failf(key, "required (a socket path, such as %q)", exampleSocket)
	case !strings.Contains(p, "/") && isHostPort(p):
		v.failf(key, "%q is host:port; a unix listener takes a socket path, such as %q", p, exampleSocket)
	case strings.HasSuffix(p, "/"):
		v.failf(key, "%q names a directory; name the socket file in it", p)
	case len(p) > maxSocketPath():
		v.failf(key, "%q is %d bytes long; a socket path may be at most %d", p, len(p), maxSocketPath())
	default:
		return true
	}
	return false
}

// isHostPort reports whether s reads as host:port with a numeric port.
func isHostPort(s string) bool {
	_, port, err := net.SplitHostPort(s)
	return err == nil && port != "" && strings.Trim(port, "0123456789") == ""
}

// maxSocketPath is the longest path a unix socket can be bound to: the
// size of sockaddr_un's sun_path less its terminating NUL.
func maxSocketPath() int {
	if runtime.GOOS == "linux" {
		return 107
	}
	return 103 // the BSDs and macOS
}

// tlsHints say what to write instead of tls settings on a listener of a
// kind without TLS.
var tlsHints = map[string]string{
	"tcp":  "; for MQTT over TLS set kind: tls",
	"ws":   "; for WebSocket over TLS set kind: wss",
	"unix": "",
}

func (v *validator) listenerTLS(key string, l *Listener) {
	t := l.TLS
	key += ".tls"
	if l.Kind != "tls" && l.Kind != "wss" {
		if t != defaultTLS {
			v.failf(key, "a %s listener takes no tls settings%s", l.Kind, tlsHints[l.Kind])
		}
		return
	}
	if t.CertFile == "" && t.KeyFile == "" {
		v.failf(key, "required for a %s listener: set cert_file and key_file", l.Kind)
	} else {
		if t.CertFile == "" {
			v.failf(key+".cert_file", "required for a %s listener", l.Kind)
		}
		if t.KeyFile == "" {
			v.failf(key+".key_file", "required for a %s listener", l.Kind)
		}
	}
	if !v.certificate(key, t) || t.UsernameFrom == "" {
		return
	}
	if v.oneOf(key+".username_from", t.UsernameFrom, identitySources) && t.ClientAuth == "none" {
		v.failf(key+".username_from", "needs verified client certificates; set client_auth to request or require")
	}
}

// certificate checks a TLS section's options, and reports whether
// client_auth is valid.
func (v *validator) certificate(key string, t ListenerTLS) bool {
	v.oneOf(key+".min_version", t.MinVersion, tlsVersions)
	if !v.oneOf(key+".client_auth", t.ClientAuth, clientAuths) {
		return false
	}
	verifies := t.ClientAuth != "none"
	switch {
	case verifies && t.ClientCAFile == "":
		v.failf(key+".client_ca_file", "required with client_auth: %s (the CA that verifies client certificates)", t.ClientAuth)
	case !verifies && t.ClientCAFile != "":
		v.failf(key+".client_ca_file", "set, but client_auth is none, so no client certificate is asked for; set client_auth to request or require")
	}
	return true
}

// http checks the HTTP server's settings; f gives the listeners (whose
// addresses it must not take) and the store (where its token goes).
func (v *validator) http(h HTTP, f *File) {
	if h.Listen == "" {
		return // off: the other settings wait for --http
	}
	if v.address("http.listen", h.Listen) {
		if addr, ok := bindingOf("tcp", h.Listen); ok {
			for i, l := range f.Listeners {
				if other, ok := bindingOf(l.Kind, l.Address); ok && other == addr {
					v.failf("http.listen", "%q is already the address of listeners[%d]", h.Listen, i)
				}
			}
		}
	}
	if h.TokenFile == "" && strings.TrimSpace(f.Store.Dir) == "" {
		v.failf("store.dir", "must be set for http.token_file's default (<store.dir>/%s); or set http.token_file", HTTPTokenFile)
	}
	t := h.TLS
	if !t.Enabled() && t == Default().HTTP.TLS {
		return
	}
	// A missing file is blamed on the section, which the file did set.
	switch {
	case t.CertFile == "" && t.KeyFile == "":
		v.failf("http.tls", "set cert_file and key_file to serve HTTPS")
	case t.CertFile == "":
		v.failf("http.tls", "key_file is set, but cert_file, its certificate, is not")
	case t.KeyFile == "":
		v.failf("http.tls", "cert_file is set, but key_file, its private key, is not")
	}
	v.certificate("http.tls", t.Listener())
}

func (v *validator) listenerWebSocket(key string, l *Listener) {
	w := l.WebSocket
	key += ".websocket"
	if l.Kind != "ws" && l.Kind != "wss" {
		if w.Path != defaultWebSocketPath || len(w.AllowedOrigins) > 0 || w.TrustProxy {
			v.failf(key, "a %s listener takes no websocket settings; they are for kind ws or wss", l.Kind)
		}
		return
	}
	if !strings.HasPrefix(w.Path, "/") {
		v.failf(key+".path", "%q does not start with /", w.Path)
	}
	for i, p := range w.AllowedOrigins {
		if p == "" {
			v.failf(indexKey(key+".allowed_origins", i), "empty; write a host pattern such as %q", "*.example.com")
		} else if _, err := path.Match(p, ""); err != nil {
			v.failf(indexKey(key+".allowed_origins", i), "%q is not a valid host pattern (%v)", p, err)
		}
	}
}

// address checks a listen address, reporting whether it is usable.
func (v *validator) address(key, addr string) bool {
	if addr == "" {
		v.failf(key, "required (host:port, such as %q or \":1883\")", DefaultListenAddress)
		return false
	}
	_, portText, err := net.SplitHostPort(addr)
	if err != nil && strings.Contains(addr, "/") {
		v.failf(key, "%q is not host:port; for a unix socket set kind: unix", addr)
		return false
	}
	if err != nil {
		reason := err.Error()
		if ae, ok := errors.AsType[*net.AddrError](err); ok {
			reason = ae.Err
		}
		v.failf(key, "%q is not host:port (%s)", addr, reason)
		return false
	}
	port, err := strconv.Atoi(portText)
	switch {
	case portText == "":
		v.failf(key, "%q has no port number", addr)
	case err != nil:
		v.failf(key, "%q: port %q is not a number", addr, portText)
	case port < 0 || port > 65535:
		v.failf(key, "%q: port %d is out of range 0..65535", addr, port)
	default:
		return true
	}
	return false
}

// normalizeAddress returns addr in one spelling per address ("[::1]:1883"
// and "[::1]:01883" alike) and its port. addr has passed address.
func normalizeAddress(addr string) (string, int) {
	host, portText, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portText)
	return net.JoinHostPort(host, strconv.Itoa(port)), port
}

func (v *validator) mqtt(m MQTT) {
	if m.MaxPacketSize < MinPacketSize || m.MaxPacketSize > MaxPacketSize {
		v.failf("mqtt.max_packet_size", "%s is out of range %s..%s", m.MaxPacketSize, MinPacketSize, MaxPacketSize)
	}
	if m.ConnectTimeout.Duration <= 0 {
		v.failf("mqtt.connect_timeout", "%s must be greater than 0", m.ConnectTimeout)
	}
	v.intRange("mqtt.max_inflight", m.MaxInflight, 1, 65535)
	if m.MaxQueuedMessages < 0 {
		v.failf("mqtt.max_queued_messages", "%d is negative (0 means unlimited)", m.MaxQueuedMessages)
	}
	if m.MaxQueuedBytes < 0 {
		v.failf("mqtt.max_queued_bytes", "%s is negative (0 means unlimited)", m.MaxQueuedBytes)
	}
	if m.BacklogMessages < 1 {
		v.failf("mqtt.backlog_messages", "%d must be at least 1", m.BacklogMessages)
	}
	if m.BacklogBytes < 1 {
		v.failf("mqtt.backlog_bytes", "%s must be more than 0", m.BacklogBytes)
	}
	// Below a second, a client on a slow link that is acknowledging could
	// be cut off before its acknowledgements arrive.
	if d := m.StallTimeout.Duration; d < 0 || (d > 0 && d < time.Second) {
		v.failf("mqtt.stall_timeout", "%s must be 0 (off) or at least 1s", m.StallTimeout)
	}
	v.intRange("mqtt.max_client_id_length", m.MaxClientIDLength, MinClientIDLength, 65535)
	v.intRange("mqtt.max_qos", m.MaxQoS, 0, 2)
	v.intRange("mqtt.receive_maximum", m.ReceiveMaximum, 1, 65535)
	v.intRange("mqtt.topic_alias_maximum", m.TopicAliasMaximum, 0, 65535)
	if m.ServerKeepAlive.Duration < 0 || m.ServerKeepAlive.Duration > 65535*time.Second {
		v.failf("mqtt.server_keep_alive", "%s is out of range 0s..18h12m15s (0: no maximum)", m.ServerKeepAlive)
	} else if m.ServerKeepAlive.Duration%time.Second != 0 {
		v.failf("mqtt.server_keep_alive", "%s is not a whole number of seconds", m.ServerKeepAlive)
	}
	if m.MaxSessionExpiry.Duration < 0 {
		v.failf("mqtt.max_session_expiry", "%s is negative (0 means no cap)", m.MaxSessionExpiry)
	}
}

// sys checks the $SYS interval. Mosquitto's is in seconds, and so is
// uptime: more often would only send the same values again.
func (v *validator) sys(s Sys) {
	if d := s.Interval.Duration; d < 0 || (d > 0 && d < time.Second) {
		v.failf("sys.interval", "%s must be 0 (off) or at least 1s", s.Interval)
	}
}

func (v *validator) auth(a Auth) {
	h := a.HTTP
	v.httpURL("auth.http.auth_url", h.AuthURL)
	v.httpURL("auth.http.acl_url", h.ACLURL)
	if a.PasswordFile != "" && h.AuthURL != "" {
		v.failf("auth.http.auth_url", "set together with auth.password_file; choose one authenticator")
	}
	if a.ACLFile != "" && h.ACLURL != "" {
		v.failf("auth.http.acl_url", "set together with auth.acl_file; choose one authorizer")
	}
	v.positive("auth.http.timeout", h.Timeout)
	v.positive("auth.http.cache_ttl", h.CacheTTL)
	v.positive("auth.http.negative_ttl", h.NegativeTTL)
	v.positive("auth.timeout", a.Timeout)
}

// httpURL checks a URL the broker will POST to; empty means none.
func (v *validator) httpURL(key, u string) {
	if u == "" {
		return
	}
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		v.failf(key, "%q is not an http or https URL", u)
	}
}

func (v *validator) limits(l Limits) {
	v.unlimited("limits.max_connections", l.MaxConnections)
	v.unlimitedRate("limits.connection_rate", l.ConnectionRate)
	if l.ConnectionBurst < 1 {
		v.failf("limits.connection_burst", "%d must be at least 1", l.ConnectionBurst)
	}
	v.intRange("limits.max_topic_length", l.MaxTopicLength, 0, 65535)
	v.unlimited("limits.max_topic_levels", l.MaxTopicLevels)
	v.unlimited("limits.max_subscriptions", l.MaxSubscriptions)
	v.unlimitedRate("limits.publish_rate", l.PublishRate)
	if l.PublishBytesRate < 0 {
		v.failf("limits.publish_bytes_rate", "%s is negative (0 means unlimited)", l.PublishBytesRate)
	}
	v.unlimitedRate("limits.control_rate", l.ControlRate)
	if l.QueuedMemory < 0 {
		v.failf("limits.queued_memory", "%s is negative (0 means unlimited)", l.QueuedMemory)
	}
	v.positive("limits.incomplete_packet_timeout", l.IncompletePacketTimeout)
	if l.MaxOutboundBytes < 0 {
		v.failf("limits.max_outbound_bytes", "%s is negative (0 means unlimited)", l.MaxOutboundBytes)
	}
}

// nameRE is what a node's and a cluster's name may be (package cluster
// takes the same).
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// exampleRoute is the route address error messages suggest.
const exampleRoute = "10.0.0.1:6222"

// cluster checks the cluster section; f gives the listeners and the HTTP
// server, whose addresses the route address must not take. Its values are
// checked whether or not clustering is on; what they need of each other
// (peers of listen, credentials in pairs) too, so that a --cluster flag
// does not meet a problem the file had all along.
func (v *validator) cluster(c Cluster, f *File) {
	if c.Node != "" && !nameRE.MatchString(c.Node) {
		v.failf("cluster.node", "%q is not a node name: use 1 to 64 letters, digits, '-' or '_' (empty: the host name)", c.Node)
	}
	if !nameRE.MatchString(c.Name) {
		v.failf("cluster.name", "%q is not a cluster name: use 1 to 64 letters, digits, '-' or '_'", c.Name)
	}
	if d := c.NodeTimeout.Duration; d < MinNodeTimeout || d > MaxNodeTimeout {
		v.failf("cluster.node_timeout", "%s is out of range 300ms..1m", c.NodeTimeout)
	}
	if c.Listen != "" && v.routeAddress("cluster.listen", c.Listen, false) {
		if addr, ok := bindingOf("tcp", c.Listen); ok {
			for i, l := range f.Listeners {
				if other, ok := bindingOf(l.Kind, l.Address); ok && other == addr {
					v.failf("cluster.listen", "%q is already the address of listeners[%d]", c.Listen, i)
				}
			}
			if other, ok := bindingOf("tcp", f.HTTP.Listen); ok && f.HTTP.Listen != "" && other == addr {
				v.failf("cluster.listen", "%q is already http.listen", c.Listen)
			}
		}
	}
	if c.Advertise != "" {
		v.routeAddress("cluster.advertise", c.Advertise, true)
	}
	for i, p := range c.Peers {
		v.routeAddress(indexKey("cluster.peers", i), p, true)
	}
	if c.NATSURL != "" {
		v.natsURL("cluster.nats_url", c.NATSURL)
	}
	switch {
	case c.NATSURL != "" && c.Listen != "":
		v.failf("cluster.nats_url", "set together with cluster.listen; choose one: an embedded NATS server with routes on listen, or the existing NATS cluster at nats_url")
	case c.NATSURL != "" && len(c.Peers) > 0:
		v.failf("cluster.peers", "unused with cluster.nats_url: the NATS cluster joins its own servers")
	case c.Listen == "" && len(c.Peers) > 0:
		v.failf("cluster.peers", "set, but cluster.listen is not: set this node's route address (host:port) too")
	}
	// A missing setting is blamed on the one the file did set.
	switch {
	case c.Username != "" && c.PasswordFile == "":
		v.failf("cluster.username", "set, but cluster.password_file (the file holding the routes' password) is not; set both or neither")
	case c.Username == "" && c.PasswordFile != "":
		v.failf("cluster.password_file", "set, but cluster.username (the routes' user name) is not; set both or neither")
	case c.Username != "" && c.NATSURL != "":
		v.failf("cluster.username", "unused with cluster.nats_url, which has no routes of its own; write the credentials in the URL")
	}
	t := c.TLS
	if !t.Enabled() {
		return
	}
	if c.NATSURL != "" {
		v.failf("cluster.tls", "unused with cluster.nats_url, which has no routes of its own")
		return
	}
	// Routes verify each other both ways: each file is needed. A missing
	// one is blamed on the section, which the file did set.
	var missing []string
	for _, k := range []struct{ key, value string }{
		{"cert_file", t.CertFile}, {"key_file", t.KeyFile}, {"ca_file", t.CAFile},
	} {
		if k.value == "" {
			missing = append(missing, k.key)
		}
	}
	if len(missing) > 0 {
		v.failf("cluster.tls", "%s not set; routes use mutual TLS: set cert_file, key_file and ca_file, or none", strings.Join(missing, " and "))
	}
}

// routeAddress checks a route address (host:port), reporting whether it is
// usable. Port 0 is refused: the other nodes must know the port to name
// it, and the embedded NATS server would take 0 to mean no routes. A peer
// must name its host.
func (v *validator) routeAddress(key, addr string, peer bool) bool {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		reason := err.Error()
		if ae, ok := errors.AsType[*net.AddrError](err); ok {
			reason = ae.Err
		}
		v.failf(key, "%q is not host:port (%s), such as %q", addr, reason, exampleRoute)
		return false
	}
	port, err := strconv.Atoi(portText)
	switch {
	case portText == "":
		v.failf(key, "%q has no port number", addr)
	case err != nil:
		v.failf(key, "%q: port %q is not a number", addr, portText)
	case port < 1 || port > 65535:
		v.failf(key, "%q: port %d is out of range 1..65535", addr, port)
	case peer && host == "":
		v.failf(key, "%q has no host; name the other node, such as %q", addr, exampleRoute)
	default:
		return true
	}
	return false
}

// natsSchemes are the URL schemes a NATS client dials.
var natsSchemes = []string{"nats", "tls", "ws", "wss"}

// natsURL checks the URL of an existing NATS cluster: one URL, or several
// separated by commas, as a NATS client takes them.
func (v *validator) natsURL(key, s string) {
	for u := range strings.SplitSeq(s, ",") {
		u = strings.TrimSpace(u)
		p, err := url.Parse(u)
		if err != nil || !slices.Contains(natsSchemes, p.Scheme) || p.Host == "" {
			if err == nil {
				u = p.Redacted() // not the password it may hold
			}
			v.failf(key, "%q is not a NATS URL, such as %q (schemes %s; several separated by commas)",
				u, "nats://nats.example.com:4222", strings.Join(natsSchemes, ", "))
			return
		}
	}
}
