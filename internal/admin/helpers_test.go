package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/testlog"
	"github.com/petrelmq/petrel/internal/throttle"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// testNode is the name of the fixture's broker (Options.NodeName).
const testNode = "node-t"

// fixture is a broker and its HTTP server, both on 127.0.0.1 ports the OS
// picked, and an HTTP client.
type fixture struct {
	t      *testing.T
	broker *broker.Server
	admin  *Server
	base   string // http://127.0.0.1:port
	token  string
	http   *http.Client
}

// start runs a broker and its HTTP server until the test ends. edit
// changes the server's configuration before it starts; failed
// authentications are delayed by a millisecond unless it says otherwise.
func start(t *testing.T, edit ...func(*Config)) *fixture {
	t.Helper()
	log := testlog.New(t)
	// No $SYS: the tests count the retained messages they set.
	b := broker.New(broker.Options{Listeners: []broker.ListenerConfig{{Address: "127.0.0.1:0"}}, Logger: log, SysInterval: -1,
		NodeName: testNode})
	if err := b.Start(); err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return startHTTP(t, b, edit...)
}

// startHTTP runs the HTTP server of b until the test ends.
func startHTTP(t *testing.T, b *broker.Server, edit ...func(*Config)) *fixture {
	t.Helper()
	cfg := Config{
		Listen:      "127.0.0.1:0",
		TokenFile:   filepath.Join(t.TempDir(), "data", "http-token"),
		CreateToken: true,
		Broker:      b,
		Logger:      testlog.New(t),
		Throttle:    throttle.Config{Base: time.Millisecond, Max: time.Millisecond},
	}
	for _, e := range edit {
		e(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("admin.New: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("admin Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	token, err := os.ReadFile(cfg.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, broker: b, admin: s, base: "http://" + s.Addr().String(),
		token: strings.TrimSpace(string(token)), http: &http.Client{Timeout: wiretest.Timeout}}
}

// mqttAddr is the broker's MQTT address.
func (f *fixture) mqttAddr() string { return f.broker.Addrs()[0].String() }

// response is an answer, read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// decode reads the body as JSON into v, failing the test otherwise.
func (r *response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %q is not the JSON expected: %v", r.body, err)
	}
}

// errorText is the "error" of a JSON error body.
func (r *response) errorText(t *testing.T) string {
	t.Helper()
	var e apiError
	r.decode(t, &e)
	if e.Error == "" {
		t.Fatalf("status %d with body %q: no error message", r.status, r.body)
	}
	return e.Error
}

// request sends a request with the token; body, when not nil, goes as JSON
// (a string as it is).
func (f *fixture) request(method, path string, body any) *response {
	f.t.Helper()
	return f.requestAuth(method, path, body, "Bearer "+f.token)
}

// requestAuth sends a request with the Authorization header given (none
// when empty).
func (f *fixture) requestAuth(method, path string, body any, authorization string) *response {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			f.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, f.base+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := f.http.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}
}

// expect sends a request with the token and fails the test unless it is
// answered with status; the body is decoded into out when not nil.
func (f *fixture) expect(status int, method, path string, body, out any) *response {
	f.t.Helper()
	r := f.request(method, path, body)
	if r.status != status {
		f.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, r.status, status, r.body)
	}
	if out != nil {
		r.decode(f.t, out)
	}
	return r
}

// pages follows GET path?query page by page, calling between (when not
// nil) before each next page; take returns a page's entries, as strings,
// and its next cursor. It returns every page's entries.
func pages[P any](f *fixture, path, query string, between func(), take func(*P) ([]string, string)) [][]string {
	f.t.Helper()
	var all [][]string
	cursor := ""
	for len(all) < 1000 {
		q := query
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		var page P
		f.expect(http.StatusOK, "GET", path+"?"+q, nil, &page)
		entries, next := take(&page)
		all = append(all, entries)
		if cursor = next; cursor == "" {
			return all
		}
		if between != nil {
			between()
		}
	}
	f.t.Fatalf("paging through %s does not end", path)
	return nil
}

// connectV5 connects a paho.golang client with clientID; disconnect tells
// it the server's DISCONNECT, inbox the messages it receives.
type pahoV5 struct {
	c          *paho.Client
	inbox      chan *paho.Publish
	disconnect chan *paho.Disconnect
	local      string // the client's address, as the broker sees it
}

func (f *fixture) connectV5(clientID string, cp *paho.Connect) *pahoV5 {
	f.t.Helper()
	nc, err := net.Dial("tcp", f.mqttAddr())
	if err != nil {
		f.t.Fatal(err)
	}
	p := &pahoV5{inbox: make(chan *paho.Publish, 100), disconnect: make(chan *paho.Disconnect, 1),
		local: nc.LocalAddr().String()}
	p.c = paho.NewClient(paho.ClientConfig{
		ClientID:      clientID,
		Conn:          nc,
		PacketTimeout: wiretest.Timeout,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			p.inbox <- pr.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { p.disconnect <- d },
	})
	if cp == nil {
		cp = &paho.Connect{KeepAlive: 30, CleanStart: true}
	}
	cp.ClientID = clientID
	ctx, cancel := context.WithTimeout(context.Background(), wiretest.Timeout)
	defer cancel()
	if ca, err := p.c.Connect(ctx, cp); err != nil || ca.ReasonCode != 0 {
		nc.Close()
		f.t.Fatalf("connect %q: %v (%+v)", clientID, err, ca)
	}
	f.t.Cleanup(func() { _ = p.c.Disconnect(&paho.Disconnect{}) })
	return p
}

func (p *pahoV5) subscribe(t *testing.T, subs ...paho.SubscribeOptions) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wiretest.Timeout)
	defer cancel()
	sa, err := p.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	for i, code := range sa.Reasons {
		if code >= 0x80 {
			t.Fatalf("subscribe %q refused: 0x%02x", subs[i].Topic, code)
		}
	}
}

func (p *pahoV5) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case m := <-p.inbox:
		return m
	case <-time.After(wiretest.Timeout):
		t.Fatalf("no message within %v", wiretest.Timeout)
		return nil
	}
}

// expectDisconnect waits for the server's DISCONNECT and checks its code.
func (p *pahoV5) expectDisconnect(t *testing.T, code packet.ReasonCode) {
	t.Helper()
	select {
	case d := <-p.disconnect:
		if d.ReasonCode != byte(code) {
			t.Fatalf("DISCONNECT 0x%02x, want 0x%02x (%s)", d.ReasonCode, byte(code), code)
		}
	case <-time.After(wiretest.Timeout):
		t.Fatalf("no DISCONNECT from the server within %v", wiretest.Timeout)
	}
}
