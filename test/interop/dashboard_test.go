//go:build interop

package interop

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/admin"
	"github.com/petrelmq/petrel/internal/dashboard"
	"github.com/petrelmq/petrel/internal/throttle"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// TestDashboard opens the dashboard in headless Chromium, as an operator
// would, against a broker and its HTTP server: a wrong token brings the
// login form back with why; the token in the URL fragment signs in and
// leaves the address bar; the connection count goes from N to N+1 when a
// client connects; the rate chart rises while a client publishes; the
// kick button (and its confirmation) disconnects an MQTT 5 client with
// DISCONNECT 0x98; the page fits 1024 pixels and a phone; no script error
// on the way. Every step waits for what the page shows, polled, never for
// a fixed time.
func TestDashboard(t *testing.T) {
	_, err := findChromium()
	require(t, "Chromium with playwright-core", err)
	var counts messageCounts
	b := startBrokerWith(t, broker.Options{Hooks: counts.hooks()})
	base, token := startHTTPServer(t, b.srv, counts.stats(b.srv))
	d := startDashboardDriver(t)
	mqttAddr := b.host + ":" + b.port

	// A wrong token: the login form comes back and says so.
	d.do("goto", map[string]any{"url": base + "/"})
	d.wait(`() => !document.getElementById('login').hidden && document.getElementById('dashboard').hidden`, nil)
	d.do("fill", map[string]any{"selector": "#token-input", "value": "not-the-token"})
	d.do("click", map[string]any{"selector": "#login-form button[type=submit]"})
	d.waitText("login-error", "The broker refused the token. Enter it again.")

	// The token in the fragment: signed in, and the fragment is gone from
	// the address bar but kept for the tab.
	d.do("goto", map[string]any{"url": "about:blank"})
	d.do("goto", map[string]any{"url": base + "/#token=" + token})
	d.wait(`() => !document.getElementById('dashboard').hidden`, nil)
	var where struct{ Href, Stored string }
	d.eval(`() => ({href: location.href, stored: sessionStorage.getItem('petrel.token')})`, nil, &where)
	if where.Href != base+"/" || where.Stored != token {
		t.Fatalf("after /#token=…: address %q and the tab keeps %q; want %q and the token", where.Href, where.Stored, base+"/")
	}
	d.wait(`() => /^[0-9]+$/.test(document.getElementById('stat-connections').textContent)`, nil)
	n := d.connections()
	for _, addr := range b.srv.Addrs() {
		d.waitContains("listeners", addr.String())
	}
	d.wait(`() => document.getElementById('version').textContent !== '—' &&
		/[0-9]+ s$/.test(document.getElementById('uptime').textContent)`, nil)

	// N to N+1.
	kicked, ack := wiretest.Connect(t, mqttAddr, &packet.Connect{Version: packet.V5, ClientID: "dash-kick-me",
		CleanStart: true, KeepAlive: 60})
	if ack.Code != packet.Success {
		t.Fatalf("dash-kick-me: CONNACK 0x%02x", byte(ack.Code))
	}
	d.waitText("stat-connections", strconv.Itoa(n+1))

	// The chart rises while a client publishes to a subscriber: its line of
	// messages in is no longer flat, and the legend shows the rates.
	before := d.evalString(`() => document.getElementById('chart-in').getAttribute('d')`)
	sub, _ := wiretest.MustConnect(t, mqttAddr, "dash-sub", true)
	sub.Subscribe("dash/rate", 0)
	go func() {
		for {
			if _, err := sub.TryNext(); err != nil {
				return
			}
		}
	}()
	pub, _ := wiretest.MustConnect(t, mqttAddr, "dash-pub", true)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if pub.TrySend(&packet.Publish{Topic: "dash/rate", Payload: []byte("tick")}) != nil {
					return
				}
			}
		}
	}()
	d.wait(`(before) => {
		const d = document.getElementById('chart-in').getAttribute('d')
		const ys = new Set([...d.matchAll(/[ML][0-9.]+ ([0-9.]+)/g)].map((m) => m[1]))
		const rate = (k) => parseFloat(document.getElementById('rate-' + k).textContent)
		return d !== before && ys.size > 1 && rate('in') > 0 && rate('out') > 0
	}`, before)
	close(stop)
	<-stopped
	t.Logf("chart: %s", d.evalString(`() => document.getElementById('chart-desc').textContent`))

	// Kick from the page: search, click, confirm; the client gets
	// DISCONNECT 0x98 and its row goes (its session ended with it).
	d.do("fill", map[string]any{"selector": "#client-prefix", "value": "dash-kick"})
	d.do("click", map[string]any{"selector": `button[aria-label="Disconnect dash-kick-me"]`})
	d.wait(`() => document.getElementById('kick-dialog').open &&
		document.getElementById('kick-title').textContent.includes('dash-kick-me')`, nil)
	d.do("click", map[string]any{"selector": "#kick-confirm"})
	kicked.ExpectDisconnect(packet.AdministrativeAction)
	d.waitText("status", "Disconnected “dash-kick-me”; its session was ended.")
	d.wait(`() => !document.querySelector('button[aria-label="Disconnect dash-kick-me"]') &&
		document.getElementById('clients-empty').textContent === 'No clients.'`, nil)
	d.waitText("stat-connections", strconv.Itoa(n+2)) // the publisher and the subscriber

	// The page fits a laptop's width and a phone's: the tables scroll in
	// their boxes, the page itself does not.
	for _, size := range [][2]int{{1024, 768}, {390, 844}} {
		d.do("viewport", map[string]any{"width": size[0], "height": size[1]})
		ev := d.try("wait", map[string]any{"js": `() => document.documentElement.scrollWidth <= window.innerWidth`,
			"timeout": timeout.Milliseconds()})
		if ev.Ev == "error" {
			var wide []string
			d.eval(`() => [...document.querySelectorAll('body *')]
				.filter((el) => el.getBoundingClientRect().right > window.innerWidth && !el.closest('.table-box'))
				.map((el) => el.tagName + '#' + el.id + '.' + el.className + ' to ' + el.getBoundingClientRect().right)`, nil, &wide)
			t.Fatalf("at %dx%d the page is wider than the window; outside the tables' boxes: %v", size[0], size[1], wide)
		}
	}

	var problems []string
	d.decode(d.do("problems", nil), &problems)
	// The wrong token's 401 is the one error the browser logs by itself.
	problems = slices.DeleteFunc(problems, func(p string) bool { return strings.Contains(p, "status of 401") })
	if len(problems) > 0 {
		t.Errorf("the page had problems:\n%s", strings.Join(problems, "\n"))
	}
}

// startHTTPServer runs srv's HTTP server as petrel serve --http does
// (cmd/petrel/http.go), on a loopback port, with the dashboard and stats,
// until the test ends. It returns the base URL and the token. Failed
// authentications wait a millisecond, not the half second of the default.
func startHTTPServer(t *testing.T, srv *broker.Server, stats func() any) (base, token string) {
	t.Helper()
	var logs syncBuffer
	tokenFile := filepath.Join(t.TempDir(), "data", "http-token")
	hs, err := admin.New(admin.Config{
		Listen:      "127.0.0.1:0",
		TokenFile:   tokenFile,
		CreateToken: true,
		Broker:      srv,
		Stats:       stats,
		Dashboard:   dashboard.Handler(),
		Throttle:    throttle.Config{Base: time.Millisecond, Max: time.Millisecond},
		Logger:      slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := hs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
		if t.Failed() {
			t.Logf("HTTP server log:\n%s", logs.String())
		}
	})
	raw, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + hs.Addr().String(), strings.TrimSpace(string(raw))
}

// messageCounts counts, with the broker's hooks, the messages that
// GET /api/v1/stats reports.
type messageCounts struct {
	received, sent [3]atomic.Uint64
	mu             sync.Mutex
	dropped        map[string]uint64
}

func (c *messageCounts) hooks() broker.Hooks {
	return broker.Hooks{
		OnPublish: func(_ *auth.Client, m broker.MessageView) packet.ReasonCode {
			c.received[min(m.QoS(), 2)].Add(1)
			return packet.Success
		},
		OnDelivered: func(_ string, m broker.MessageView) { c.sent[min(m.QoS(), 2)].Add(1) },
		OnDropped: func(_ string, _ broker.MessageView, r broker.DropReason) {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.dropped == nil {
				c.dropped = map[string]uint64{}
			}
			c.dropped[r.String()]++
		},
	}
}

// standInStats has the fields of the broker's statistics that the
// dashboard reads, named as broker.Stats names them in JSON.
type standInStats struct {
	Version             string            `json:"version"`
	StartTime           time.Time         `json:"start_time"`
	ClientsConnected    int64             `json:"clients_connected"`
	Sessions            int64             `json:"sessions"`
	Subscriptions       int64             `json:"subscriptions"`
	RetainedMessages    int64             `json:"retained_messages"`
	HeldBackConnections int64             `json:"held_back_connections"`
	MessagesReceived    [3]uint64         `json:"messages_received"`
	MessagesSent        [3]uint64         `json:"messages_sent"`
	MessagesDropped     map[string]uint64 `json:"messages_dropped"`
}

// stats returns what GET /api/v1/stats serves: the broker's own
// Server.Stats when it has one (issue 17's metrics, written beside the
// dashboard: looked up by name, so that this test runs before and after it
// lands), else a stand-in from the live broker's client list and the
// hooks' counts.
func (c *messageCounts) stats(srv *broker.Server) func() any {
	if m := reflect.ValueOf(srv).MethodByName("Stats"); m.IsValid() && m.Type().NumIn() == 0 && m.Type().NumOut() == 1 {
		return func() any { return m.Call(nil)[0].Interface() }
	}
	started := time.Now()
	return func() any {
		st := standInStats{Version: "interop", StartTime: started, MessagesDropped: map[string]uint64{}}
		for cursor := ""; ; {
			page, err := srv.Clients(broker.ClientQuery{Cursor: cursor, Limit: broker.MaxPageLimit})
			if err != nil {
				break
			}
			for _, in := range page.Clients {
				st.Sessions++
				st.Subscriptions += int64(in.Subscriptions)
				if in.Connected {
					st.ClientsConnected++
				}
				if in.HeldBack {
					st.HeldBackConnections++
				}
			}
			if cursor = page.Next; cursor == "" {
				break
			}
		}
		for cursor := ""; ; {
			page, err := srv.RetainedMessages(broker.RetainedQuery{Cursor: cursor, Limit: broker.MaxPageLimit})
			if err != nil {
				break
			}
			st.RetainedMessages += int64(len(page.Messages))
			if cursor = page.Next; cursor == "" {
				break
			}
		}
		for i := range 3 {
			st.MessagesReceived[i], st.MessagesSent[i] = c.received[i].Load(), c.sent[i].Load()
		}
		c.mu.Lock()
		for k, v := range c.dropped {
			st.MessagesDropped[k] = v
		}
		c.mu.Unlock()
		return st
	}
}

// dashboardDriver is dashboard_driver.js: Chromium, driven command by
// command.
type dashboardDriver struct {
	t *testing.T
	p *peer
}

// startDashboardDriver starts the browser. With
// PETREL_INTEROP_SCREENSHOTS=dir, the page is saved as dir/<test>.png.
func startDashboardDriver(t *testing.T) *dashboardDriver {
	t.Helper()
	chromium, _ := findChromium()
	node, _ := findNode()
	env := []string{"CHROMIUM=" + chromium}
	if dir := os.Getenv("PETREL_INTEROP_SCREENSHOTS"); dir != "" {
		env = append(env, "SCREENSHOT="+filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".png"))
	}
	return &dashboardDriver{t: t, p: startPeer(t, "dashboard", env, node, "dashboard_driver.js")}
}

// do runs a command and fails the test if it fails.
func (d *dashboardDriver) do(op string, cmd map[string]any) event {
	d.t.Helper()
	if cmd == nil {
		return d.p.do(d.t, op, nil) // not a nil map in an interface, which would encode as null
	}
	return d.p.do(d.t, op, cmd)
}

// try runs a command and returns its answer, an error event included.
func (d *dashboardDriver) try(op string, cmd map[string]any) event {
	d.t.Helper()
	fields := map[string]any{"op": op}
	for k, v := range cmd {
		fields[k] = v
	}
	line, err := json.Marshal(fields)
	if err != nil {
		d.t.Fatalf("dashboard: encode %s: %v", op, err)
	}
	if _, err := d.p.stdin.Write(append(line, '\n')); err != nil {
		d.t.Fatalf("dashboard: send %s: %v", op, err)
	}
	select {
	case ev, ok := <-d.p.replies:
		if !ok {
			<-d.p.done
			d.t.Fatalf("dashboard driver exited (%v) before answering %s; stderr:\n%s", d.p.waitErr, op, d.p.stderr.String())
		}
		return ev
	case <-time.After(2 * timeout):
		d.t.Fatalf("dashboard: no answer to %s within %v", op, 2*timeout)
		return event{}
	}
}

func (d *dashboardDriver) decode(ev event, v any) {
	d.t.Helper()
	if v == nil {
		return
	}
	if err := json.Unmarshal(ev.Value, v); err != nil {
		d.t.Fatalf("dashboard: %s answered %s: %v", ev.Ev, ev.Value, err)
	}
}

// eval runs a function in the page and decodes its value into v.
func (d *dashboardDriver) eval(js string, arg, v any) {
	d.t.Helper()
	d.decode(d.do("eval", map[string]any{"js": js, "arg": arg}), v)
}

func (d *dashboardDriver) evalString(js string) string {
	d.t.Helper()
	var s string
	d.eval(js, nil, &s)
	return s
}

// wait waits until a function in the page returns a truthy value.
func (d *dashboardDriver) wait(js string, arg any) {
	d.t.Helper()
	d.waitValue(js, arg, nil)
}

// waitValue waits until a function in the page returns a truthy value and
// decodes it into v.
func (d *dashboardDriver) waitValue(js string, arg, v any) {
	d.t.Helper()
	ev := d.try("wait", map[string]any{"js": js, "arg": arg, "timeout": timeout.Milliseconds()})
	if ev.Ev == "error" {
		d.t.Fatalf("dashboard: waiting for %s: %s", js, ev.Error)
	}
	d.decode(ev, v)
}

// text is the text of the element with that id.
func (d *dashboardDriver) text(id string) string {
	d.t.Helper()
	var s string
	d.eval(`(id) => document.getElementById(id).textContent`, id, &s)
	return s
}

// waitText waits until the element's text is want.
func (d *dashboardDriver) waitText(id, want string) {
	d.t.Helper()
	d.waitFor(id, want, `(a) => document.getElementById(a.id).textContent === a.want`, "is")
}

// waitContains waits until the element's text contains want.
func (d *dashboardDriver) waitContains(id, want string) {
	d.t.Helper()
	d.waitFor(id, want, `(a) => document.getElementById(a.id).textContent.includes(a.want)`, "contains")
}

func (d *dashboardDriver) waitFor(id, want, js, how string) {
	d.t.Helper()
	ev := d.try("wait", map[string]any{"js": js, "arg": map[string]string{"id": id, "want": want},
		"timeout": timeout.Milliseconds()})
	if ev.Ev == "error" {
		d.t.Fatalf("dashboard: #%s shows %q after %v; want it %s %q (%s)", id, d.text(id), timeout, how, want, ev.Error)
	}
}

// connections is the connection count the page shows.
func (d *dashboardDriver) connections() int {
	d.t.Helper()
	s := d.text("stat-connections")
	n, err := strconv.Atoi(s)
	if err != nil {
		d.t.Fatalf("dashboard: connections %q is not a number", s)
	}
	return n
}
