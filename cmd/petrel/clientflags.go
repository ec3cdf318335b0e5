package main

//lint:file-ignore ST1005 these errors are printed to a person after "Error: " as whole sentences, worded as mosquitto_pub's and mosquitto_sub's are; none is wrapped into another message.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/petrelmq/petrel/client"
	"github.com/petrelmq/petrel/internal/clienttls"
	"github.com/petrelmq/petrel/internal/propflag"
	"github.com/petrelmq/petrel/packet"
)

// This file holds what `petrel pub` and `petrel sub` share: their flags,
// named as mosquitto_pub's and mosquitto_sub's are, the client options they
// make, and their exit codes.

// Exit codes, as mosquitto_pub and mosquitto_sub's: 0 for success, 1 for a
// usage error or a failure, the CONNACK reason code when the server refuses
// the connection, and 27 (libmosquitto's MOSQ_ERR_TIMEOUT) when sub's -W
// expires.
const (
	exitOK      = 0
	exitFail    = 1
	exitTimeout = 27
)

// clientFlags are the flags of pub and sub.
type clientFlags struct {
	cmd string // "pub" or "sub", for messages

	host, unixPath, bind string
	port                 int
	url                  string // -L
	topics               []string
	username             string
	password             *string
	id, idPrefix         string
	keepAlive            int
	noClean              bool
	sessionExpiry        int64 // -1: not given
	version              byte  // 0: not given
	qos                  int

	props propflag.Props // -D

	willTopic, willPayload string
	willQoS                int
	willRetain             bool

	tls clienttls.Options

	debug, quiet bool
	help         bool
}

// unsentCommands are the packets a command never sends: -D may not give
// them properties.
var unsentCommands = map[string][]string{"pub": {"SUBSCRIBE", "UNSUBSCRIBE"}, "sub": {"PUBLISH"}}

// flagSpec is one option: its names, how many arguments it takes, and what
// it does with them.
type flagSpec struct {
	names string // space-separated: "-h --host"
	nargs int
	set   func(args []string) error
}

// commonSpecs are the options of both commands.
func (f *clientFlags) commonSpecs() []flagSpec {
	str := func(p *string) func([]string) error {
		return func(a []string) error { *p = a[0]; return nil }
	}
	boolean := func(p *bool) func([]string) error {
		return func([]string) error { *p = true; return nil }
	}
	return []flagSpec{
		{"-h --host", 1, str(&f.host)},
		{"-p --port", 1, intFlag(&f.port, 1, 65535, "port")},
		{"--unix", 1, str(&f.unixPath)},
		{"-A", 1, str(&f.bind)},
		{"-L --url", 1, str(&f.url)},
		{"-t --topic", 1, func(a []string) error { f.topics = append(f.topics, a[0]); return nil }},
		{"-u --username", 1, str(&f.username)},
		{"-P --pw --password", 1, func(a []string) error { f.password = &a[0]; return nil }},
		{"-i --id", 1, str(&f.id)},
		{"-I --id-prefix", 1, str(&f.idPrefix)},
		{"-k --keepalive", 1, func(a []string) error {
			k, err := strconv.Atoi(a[0])
			if err != nil || k < 0 || k > 65535 {
				return errors.New("Invalid keepalive given, it must be between 0 and 65535 inclusive.")
			}
			f.keepAlive = k
			return nil
		}},
		{"-c --disable-clean-session", 0, boolean(&f.noClean)},
		{"-x --session-expiry-interval", 1, func(a []string) error {
			switch a[0] {
			case "-1", "∞":
				f.sessionExpiry = math.MaxUint32
				return nil
			}
			v, err := strconv.ParseUint(a[0], 10, 32)
			if err != nil {
				return errors.New("Invalid session expiry interval given: " + a[0])
			}
			f.sessionExpiry = int64(v)
			return nil
		}},
		{"-V --protocol-version", 1, func(a []string) error {
			switch strings.ToLower(a[0]) {
			case "31", "mqttv31":
				f.version = packet.V31
			case "311", "mqttv311":
				f.version = packet.V311
			case "5", "mqttv5":
				f.version = packet.V5
			default:
				return errors.New("Invalid protocol version given: " + a[0])
			}
			return nil
		}},
		{"-q --qos", 1, intFlag(&f.qos, 0, 2, "QoS")},
		{"--will-topic", 1, str(&f.willTopic)},
		{"--will-payload", 1, str(&f.willPayload)},
		{"--will-qos", 1, intFlag(&f.willQoS, 0, 2, "will QoS")},
		{"--will-retain", 0, boolean(&f.willRetain)},
		{"--cafile", 1, str(&f.tls.CAFile)},
		{"--capath", 1, str(&f.tls.CAPath)},
		{"--cert", 1, str(&f.tls.CertFile)},
		{"--key", 1, str(&f.tls.KeyFile)},
		{"--insecure", 0, boolean(&f.tls.Insecure)},
		{"--tls-version", 1, str(&f.tls.Version)},
		{"--tls-alpn", 1, str(&f.tls.ALPN)},
		{"--tls-use-os-certs", 0, boolean(&f.tls.OSCerts)},
		{"--nodelay", 0, func([]string) error { return nil }}, // Go's TCP connections have TCP_NODELAY already
		{"-d --debug", 0, boolean(&f.debug)},
		{"--quiet", 0, boolean(&f.quiet)},
		{"--help", 0, boolean(&f.help)},
	}
}

// intFlag sets *p to its argument, an integer from lo to hi; what names
// the option in the error.
func intFlag(p *int, lo, hi int, what string) func([]string) error {
	return func(a []string) error {
		n, err := strconv.Atoi(a[0])
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("Invalid %s given: %s", what, a[0])
		}
		*p = n
		return nil
	}
}

// parseFlags reads args against specs. -D (--property) takes three
// arguments, four for user-property.
func (f *clientFlags) parseFlags(args []string, specs []flagSpec) error {
	byName := map[string]*flagSpec{}
	for i := range specs {
		for _, n := range strings.Fields(specs[i].names) {
			byName[n] = &specs[i]
		}
	}
	f.sessionExpiry = -1
	f.keepAlive = 60
	f.props.Program, f.props.Unsent = "petrel "+f.cmd, unsentCommands[f.cmd]
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-D" || a == "--property" {
			n := propflag.Args(args[i+1:])
			if i+n >= len(args) {
				return errors.New(a + " argument given but not enough arguments specified.")
			}
			if err := f.props.Add(args[i+1 : i+1+n]); err != nil {
				return err
			}
			i += n
			continue
		}
		s := byName[a]
		if s == nil {
			return errors.New("Unknown option '" + a + "'.")
		}
		if i+s.nargs >= len(args) && s.nargs > 0 {
			return errors.New(a + " argument given but no value specified.")
		}
		if err := s.set(args[i+1 : i+1+s.nargs]); err != nil {
			return err
		}
		i += s.nargs
	}
	return nil
}

// options turns the flags into the client's options. topicFromURL is the
// topic an mqtt:// or mqtts:// -L URL names, if any.
func (f *clientFlags) options() (o client.Options, topicFromURL string, err error) {
	switch {
	case f.version == 0 && f.props.Any():
		f.version = packet.V5 // -D makes an MQTT 5 client, as in mosquitto
	case f.version == 0:
		f.version = packet.V311
	case f.version != packet.V5 && f.props.Any():
		return o, "", errors.New("-D (--property) needs MQTT v5 (-V 5).")
	}
	o.Version = f.version
	o.Username = f.username
	if f.password != nil {
		if f.username == "" && f.version != packet.V5 {
			return o, "", errors.New("A password needs a username before MQTT v5 (-u).")
		}
		o.Password = []byte(*f.password)
	}

	useTLS := f.tls.CAFile != "" || f.tls.CAPath != "" || f.tls.CertFile != "" || f.tls.OSCerts
	scheme, host, port := "tcp", "localhost", f.port
	if f.host != "" {
		host = f.host
	}
	path := ""
	if f.url != "" {
		u, err := parseURLFlag(f.url)
		if err != nil {
			return o, "", err
		}
		scheme, host, port, path, topicFromURL = u.scheme, u.host, u.port, u.path, u.topic
		if u.user != "" {
			o.Username = u.user
		}
		if u.pass != nil {
			o.Password = []byte(*u.pass)
		}
		useTLS = useTLS || scheme == "tls" || scheme == "wss"
	}
	if useTLS && scheme == "tcp" {
		scheme = "tls"
	}
	if useTLS && scheme == "ws" {
		scheme = "wss"
	}
	if port == 0 {
		port = map[string]int{"tcp": 1883, "tls": 8883, "ws": 80, "wss": 443}[scheme]
	}
	if scheme == "tcp" && port == 8883 && f.url == "" {
		scheme = "tls" // as mosquitto: port 8883 means TLS with the system's roots
	}
	o.Addr = scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + path
	if f.unixPath != "" {
		o.Addr = "unix://" + f.unixPath
	}
	if scheme == "tls" || scheme == "wss" {
		if o.TLS, err = clienttls.Config(f.tls); err != nil {
			return o, "", err
		}
	}
	if f.bind != "" {
		ip, err := net.ResolveIPAddr("ip", f.bind)
		if err != nil {
			return o, "", fmt.Errorf("-A %s: %w", f.bind, err)
		}
		o.Dialer = &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip.IP}}
	}

	switch {
	case f.id != "" && f.idPrefix != "":
		return o, "", errors.New("-i and -I argument cannot be used together.")
	case f.idPrefix != "":
		o.ClientID = f.idPrefix + strconv.Itoa(os.Getpid())
	case f.id != "":
		o.ClientID = f.id
	case f.noClean || f.sessionExpiry > 0:
		return o, "", errors.New("You must provide a client id if you are using the -c option or a session expiry.")
	case f.version != packet.V5:
		o.ClientID = randomID()
	}
	// -c: resume the session; in MQTT 5 it never expires unless -x says.
	o.CleanStart = !f.noClean
	if f.version == packet.V5 {
		o.ConnectProps = f.props.Of("CONNECT")
		switch {
		case f.sessionExpiry >= 0:
			o.SessionExpiry = uint32(f.sessionExpiry)
		case f.noClean:
			o.SessionExpiry = math.MaxUint32
		}
	}
	o.KeepAlive = time.Duration(f.keepAlive) * time.Second
	if f.keepAlive == 0 {
		o.KeepAlive = -1
	}
	if f.willTopic != "" {
		o.Will = &packet.Publish{Topic: f.willTopic, Payload: []byte(f.willPayload), QoS: byte(f.willQoS),
			Retain: f.willRetain, Props: f.props.Of("WILL")}
	} else if f.willPayload != "" || f.willQoS != 0 || f.willRetain {
		return o, "", errors.New("Will topic must be provided (--will-topic).")
	}
	return o, topicFromURL, nil
}

// urlFlag is a parsed -L: mqtt(s)://[user[:pass]@]host[:port]/topic, or
// ws(s)://[user[:pass]@]host[:port]/path where the path is the WebSocket
// endpoint (default /mqtt) and topics come from -t.
type urlFlag struct {
	scheme, host, path, topic, user string
	pass                            *string
	port                            int
}

// parseURLFlag reads -L by hand: a topic may hold '#' and '+', which a URL
// parser would take for a fragment and a space.
func parseURLFlag(s string) (urlFlag, error) {
	bad := errors.New("Unsupported URL scheme or malformed URL: " + s)
	var u urlFlag
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return u, bad
	}
	switch strings.ToLower(scheme) {
	case "mqtt":
		u.scheme = "tcp"
	case "mqtts":
		u.scheme = "tls"
	case "ws", "wss":
		u.scheme = strings.ToLower(scheme)
	default:
		return u, bad
	}
	authority, path, _ := strings.Cut(rest, "/")
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		user, pass, hasPass := strings.Cut(authority[:at], ":")
		u.user = user
		if hasPass {
			u.pass = &pass
		}
		authority = authority[at+1:]
	}
	u.host = authority
	if h, p, err := net.SplitHostPort(authority); err == nil {
		port, err := strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			return u, bad
		}
		u.host, u.port = h, port
	}
	u.host = strings.Trim(u.host, "[]")
	if u.host == "" {
		return u, bad
	}
	if u.scheme == "ws" || u.scheme == "wss" {
		u.path = "/" + path
		if path == "" {
			u.path = "/mqtt"
		}
	} else {
		u.topic = path
	}
	return u, nil
}

// randomID is a client identifier for MQTT 3.1.1, which servers need not
// assign: "petrel-" and 16 letters and digits, 23 characters in all, the
// most MQTT 3.1 servers must accept.
func randomID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 16)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "petrel-" + string(b)
}

// connectClient connects with o and reports a failure as mosquitto does: a
// refusal exits with the CONNACK reason code.
func connectClient(ctx context.Context, f *clientFlags, o client.Options, stderr io.Writer) (*client.Client, *packet.Connack, int) {
	c, ack, err := client.Connect(ctx, o)
	if err == nil {
		return c, ack, exitOK
	}
	var ce *client.ConnectError
	if errors.As(err, &ce) {
		msg := "Connection error: Connection Refused: " + ce.Text() + "."
		if ce.Reason != "" {
			msg += " (" + ce.Reason + ")"
		}
		f.fail(stderr, msg)
		return nil, ack, int(ce.Code)
	}
	f.fail(stderr, "Error: "+strings.TrimPrefix(err.Error(), "client: "))
	return nil, nil, exitFail
}

// fail reports a runtime error unless --quiet.
func (f *clientFlags) fail(stderr io.Writer, msg string) {
	if !f.quiet {
		fmt.Fprintln(stderr, msg)
	}
}

// usageError reports a mistake in the arguments; --quiet does not hide it.
func usageError(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "Error: %v\n\nUse 'petrel %s --help' to see usage.\n", err, cmd)
	return exitFail
}

// commonUsage documents the flags both commands share.
const commonUsage = `
Connection:
 -h, --host HOST     broker host (default localhost)
 -p, --port PORT     port (default 1883, 8883 with TLS)
 -L, --url URL       mqtt(s)://[user[:pass]@]host[:port]/topic, or
                     ws(s)://[user[:pass]@]host[:port]/path (WebSocket, path
                     default /mqtt; topics from -t)
 --unix PATH         connect to a unix socket instead
 -A ADDRESS          bind the connection to this local address
 -V, --protocol-version 31|311|5 (or mqttv31, mqttv311, mqttv5; default 311)
 -i, --id ID         client id (default: random for 3.1.1, server-assigned for 5)
 -I, --id-prefix P   client id P followed by the process id
 -u, --username U    -P, --pw PASSWORD
 -k, --keepalive S   keep alive in seconds (default 60, 0 off)
 -c, --disable-clean-session   resume the session (needs -i); with MQTT 5
                     it never expires unless -x says
 -x SECONDS          session expiry interval (MQTT 5; -1 or ∞: never)
 -D, --property COMMAND NAME VALUE, or COMMAND user-property KEY VALUE
                     an MQTT 5 property (makes the client MQTT 5)
 --will-topic T [--will-payload P] [--will-qos Q] [--will-retain]
TLS (any of --cafile, --capath, --cert, --tls-use-os-certs, or port 8883
turns it on):
 --cafile FILE  --capath DIR  --cert FILE --key FILE  --tls-use-os-certs
 --insecure          do not check the server's host name (the chain still is)
 --tls-version tlsv1.3|tlsv1.2|tlsv1.1   --tls-alpn PROTOCOL
Other:
 -d, --debug         print the packets sent and received on stderr
 --quiet             print no runtime errors
 --nodelay           accepted; TCP_NODELAY is always on
 --help              this help
`
