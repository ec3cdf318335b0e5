package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"math"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/client"
	"github.com/petrelmq/petrel/internal/testpki"
	"github.com/petrelmq/petrel/packet"
)

// The tests of petrel pub and petrel sub run the commands in-process
// (runPub, runSub) against an in-process broker, and check what they send
// with the client package.

// cliBroker runs a broker on a free loopback port and returns its port.
func cliBroker(t *testing.T, opts broker.Options) string {
	t.Helper()
	if len(opts.Listeners) == 0 {
		opts.Listeners = []broker.ListenerConfig{{Address: "127.0.0.1:0"}}
	}
	_, port, _ := net.SplitHostPort(cliListeners(t, opts)[0])
	return port
}

// cliListeners runs a broker and returns the addresses of its listeners.
func cliListeners(t *testing.T, opts broker.Options) []string {
	t.Helper()
	s := broker.New(opts)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var addrs []string
	for _, a := range s.Addrs() {
		addrs = append(addrs, a.String())
	}
	return addrs
}

// cliPub runs petrel pub with stdin and returns its exit code and output.
func cliPub(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runPub(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// mustPub runs petrel pub and fails the test unless it succeeds.
func mustPub(t *testing.T, args ...string) {
	t.Helper()
	if code, _, stderr := cliPub(t, "", args...); code != 0 {
		t.Fatalf("petrel pub %s: exit %d, stderr %q", strings.Join(args, " "), code, stderr)
	}
}

// syncBuffer is an output shared between the command's goroutines and the
// test: it signals each write.
type syncBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{wrote: make(chan struct{}, 1)} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case s.wrote <- struct{}{}:
	default:
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runningSub is a petrel sub running in-process.
type runningSub struct {
	stdout, stderr *syncBuffer
	cancel         context.CancelFunc
	exit           chan int
}

// cliSub starts petrel sub and returns once it is subscribed (it runs with
// -d, whose SUBACK line says so). With -U alone, or -E, it may end first.
func cliSub(t *testing.T, args ...string) *runningSub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &runningSub{stdout: newSyncBuffer(), stderr: newSyncBuffer(), cancel: cancel, exit: make(chan int, 1)}
	go func() { s.exit <- runSub(ctx, append(args, "-d"), s.stdout, s.stderr) }()
	t.Cleanup(func() {
		cancel()
		<-s.exit
	})
	s.await(t, "received SUBACK")
	return s
}

// await waits until sub's debug output says text, or sub has ended.
func (s *runningSub) await(t *testing.T, text string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(s.stderr.String(), text) {
		select {
		case code := <-s.exit:
			s.exit <- code
			return
		case <-s.stderr.wrote:
		case <-deadline:
			t.Fatalf("petrel sub: no %q after 10s; stderr %q", text, s.stderr.String())
		}
	}
}

// wait returns the exit code once sub has ended by itself.
func (s *runningSub) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-s.exit:
		s.exit <- code
		return code
	case <-time.After(10 * time.Second):
		t.Fatalf("petrel sub still running after 10s; stdout %q", s.stdout.String())
		return -1
	}
}

// stop interrupts sub, as Ctrl-C does, and returns its exit code.
func (s *runningSub) stop(t *testing.T) int {
	s.cancel()
	return s.wait(t)
}

// collector is a client of the client package that records what arrives.
type collector struct {
	mu   sync.Mutex
	msgs []*client.Message
	more chan struct{}
}

func cliCollect(t *testing.T, port string, v byte, filter string, qos byte) *collector {
	t.Helper()
	col := &collector{more: make(chan struct{}, 1)}
	c, _, err := client.Connect(context.Background(), client.Options{Addr: "127.0.0.1:" + port, Version: v,
		CleanStart: true, ClientID: "collector-" + strconv.Itoa(int(v)), OnMessage: func(m *client.Message) {
			col.mu.Lock()
			col.msgs = append(col.msgs, m.Clone())
			col.mu.Unlock()
			select {
			case col.more <- struct{}{}:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Subscribe(context.Background(), []packet.Subscription{{Filter: filter, QoS: qos}}, packet.Properties{}); err != nil {
		t.Fatal(err)
	}
	return col
}

// wait returns the first n messages.
func (c *collector) wait(t *testing.T, n int) []*client.Message {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		if len(c.msgs) >= n {
			m := c.msgs[:n:n]
			c.mu.Unlock()
			return m
		}
		got := len(c.msgs)
		c.mu.Unlock()
		select {
		case <-c.more:
		case <-timeout:
			t.Fatalf("received %d messages after 10s, want %d", got, n)
		}
	}
}

// cliPKI writes a CA, a server certificate for localhost (only: not
// 127.0.0.1, for --insecure) and a client certificate, all PEM, into dir.
type cliPKI struct {
	dir                   string
	ca, cert, key         string // server
	clientCert, clientKey string
	pool                  *x509.CertPool
}

func newCLIPKI(t *testing.T) *cliPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		testpki.WriteFile(t, path, data)
		return path
	}
	ca := testpki.NewCA(t, "petrel CLI test CA")
	srv := ca.Issue(t, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	cli := ca.Client(t, &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}})
	return &cliPKI{dir: dir, pool: ca.Pool(), ca: write("ca.crt", ca.PEM),
		cert: write("server.crt", srv.CertPEM), key: write("server.key", srv.KeyPEM),
		clientCert: write("client.crt", cli.CertPEM), clientKey: write("client.key", cli.KeyPEM)}
}

func TestParseURLFlag(t *testing.T) {
	pw := func(s string) *string { return &s }
	for _, tc := range []struct {
		in   string
		want urlFlag
	}{
		{"mqtt://h/a/b", urlFlag{scheme: "tcp", host: "h", topic: "a/b"}},
		{"mqtts://u:p@h:9/s/#", urlFlag{scheme: "tls", host: "h", port: 9, topic: "s/#", user: "u", pass: pw("p")}},
		{"mqtt://u@[::1]:7/+/x", urlFlag{scheme: "tcp", host: "::1", port: 7, topic: "+/x", user: "u"}},
		{"ws://h:8080", urlFlag{scheme: "ws", host: "h", port: 8080, path: "/mqtt"}},
		{"wss://u:p:q@h/custom", urlFlag{scheme: "wss", host: "h", path: "/custom", user: "u", pass: pw("p:q")}},
	} {
		got, err := parseURLFlag(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if (got.pass == nil) != (tc.want.pass == nil) || got.pass != nil && *got.pass != *tc.want.pass {
			t.Errorf("%s: password %v, want %v", tc.in, got.pass, tc.want.pass)
		}
		got.pass, tc.want.pass = nil, nil
		if got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"http://h/t", "mqtt:/h", "mqtt://:1/t", "mqtt://h:x/t"} {
		if _, err := parseURLFlag(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// TestClientFlagsOptions: flags become the client's options as mosquitto's do.
func TestClientFlagsOptions(t *testing.T) {
	parse := func(args ...string) (client.Options, error) {
		f := &clientFlags{cmd: "sub"}
		if err := f.parseFlags(args, f.commonSpecs()); err != nil {
			return client.Options{}, err
		}
		o, _, err := f.options()
		return o, err
	}
	o, err := parse()
	if err != nil || o.Addr != "tcp://localhost:1883" || o.Version != packet.V311 || !o.CleanStart ||
		!strings.HasPrefix(o.ClientID, "petrel-") || len(o.ClientID) != 23 || o.KeepAlive != time.Minute {
		t.Errorf("defaults: %+v, %v", o, err)
	}
	o, err = parse("-V", "mqttv5", "-h", "example.com", "-p", "1999", "-k", "0")
	if err != nil || o.Addr != "tcp://example.com:1999" || o.Version != packet.V5 || o.ClientID != "" || o.KeepAlive >= 0 {
		t.Errorf("v5: %+v, %v", o, err)
	}
	o, err = parse("-V", "5", "-c", "-i", "me")
	if err != nil || o.CleanStart || o.SessionExpiry != math.MaxUint32 {
		t.Errorf("-c in MQTT 5: clean %v expiry %d, %v", o.CleanStart, o.SessionExpiry, err)
	}
	o, err = parse("-V", "5", "-c", "-i", "me", "-x", "60")
	if err != nil || o.SessionExpiry != 60 {
		t.Errorf("-c -x 60: expiry %d, %v", o.SessionExpiry, err)
	}
	o, err = parse("-D", "CONNECT", "user-property", "k", "v", "-D", "CONNECT", "receive-maximum", "10", "-I", "pre-")
	if err != nil || o.Version != packet.V5 || len(o.ConnectProps.User) != 1 || o.ConnectProps.ReceiveMaximum != 10 ||
		o.ClientID != "pre-"+strconv.Itoa(os.Getpid()) {
		t.Errorf("-D: %+v, %v", o, err)
	}
	o, err = parse("-p", "8883")
	if err != nil || o.Addr != "tls://localhost:8883" || o.TLS == nil {
		t.Errorf("port 8883: %s, %v", o.Addr, err)
	}
	o, err = parse("-L", "mqtts://u:p@broker/x", "--will-topic", "w", "--will-qos", "1", "--will-retain")
	if err != nil || o.Addr != "tls://broker:8883" || o.Username != "u" || string(o.Password) != "p" ||
		o.Will == nil || o.Will.Topic != "w" || o.Will.QoS != 1 || !o.Will.Retain {
		t.Errorf("-L mqtts with a will: %+v, %v", o, err)
	}
	o, err = parse("--unix", "/run/p.sock")
	if err != nil || o.Addr != "unix:///run/p.sock" {
		t.Errorf("--unix: %s, %v", o.Addr, err)
	}
	o, err = parse("-L", "ws://h:8080/m")
	if err != nil || o.Addr != "ws://h:8080/m" {
		t.Errorf("-L ws: %s, %v", o.Addr, err)
	}
	for _, bad := range [][]string{
		{"-c"},                 // no client id
		{"-i", "a", "-I", "b"}, // both
		{"-V", "4"},            // no such version
		{"-V", "311", "-D", "CONNECT", "user-property", "k", "v"}, // properties need 5
		{"-D", "CONNECT", "no-such-property", "1"},
		{"-D", "PUBLISH", "content-type", "x"}, // not in sub
		{"-D", "CONNECT", "receive-maximum", "70000"},
		{"-P", "secret"}, // a password without a user before MQTT 5
		{"--will-payload", "x"},
		{"-q", "3"},
		{"-k", "-1"},
		{"-p"}, // no value
		{"--bogus"},
		{"--cert", "c.pem"}, // no key
	} {
		if _, err := parse(bad...); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
