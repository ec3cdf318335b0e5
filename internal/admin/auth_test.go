package admin

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/testlog"
	"github.com/petrelmq/petrel/internal/throttle"
)

// samplePath is a path that a route's pattern matches.
func samplePath(pattern string) string {
	return regexp.MustCompile(`\{[^}]*\}`).ReplaceAllString(pattern, "x")
}

// Every route but the health checks refuses a request without the token,
// with a wrong one, or with the token under another scheme: 401, a
// WWW-Authenticate: Bearer challenge, and the same body whatever was
// wrong.
func TestEveryRouteButHealthNeedsTheToken(t *testing.T) {
	f := start(t)
	wrong := []struct{ name, authorization string }{
		{"no header", ""},
		{"wrong token", "Bearer " + strings.Repeat("0", len(f.token))},
		{"token with a character more", "Bearer " + f.token + "0"},
		{"prefix of the token", "Bearer " + f.token[:len(f.token)-1]},
		{"empty token", "Bearer "},
		{"basic scheme", "Basic " + f.token},
		{"no scheme", f.token},
		{"token scheme", "Token " + f.token},
	}
	for _, rt := range routes {
		path := samplePath(rt.pattern)
		if rt.access == public {
			if r := f.requestAuth(rt.method, path, nil, ""); r.status != http.StatusOK {
				t.Errorf("%s %s without a token: status %d, want 200", rt.method, path, r.status)
			}
			continue
		}
		var first []byte
		for _, w := range wrong {
			r := f.requestAuth(rt.method, path, nil, w.authorization)
			if r.status != http.StatusUnauthorized {
				t.Errorf("%s %s, %s: status %d, want 401", rt.method, path, w.name, r.status)
				continue
			}
			if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("%s %s, %s: WWW-Authenticate %q, want a Bearer challenge", rt.method, path, w.name, got)
			}
			if first == nil {
				first = r.body
			} else if !bytes.Equal(r.body, first) {
				t.Errorf("%s %s, %s: body %q differs from %q: it tells what was wrong", rt.method, path, w.name, r.body, first)
			}
		}
	}
	// The token is accepted with the scheme in any case.
	if r := f.requestAuth("GET", "/api/v1/clients", nil, "bearer "+f.token); r.status != http.StatusOK {
		t.Errorf("scheme in lower case: status %d, want 200", r.status)
	}
}

// Failed authentications from one address are answered later and later,
// as failed MQTT logins are; a request with the token from the same
// address is not held up.
func TestFailedAuthenticationIsDelayed(t *testing.T) {
	const base = 200 * time.Millisecond
	f := start(t, func(c *Config) { c.Throttle = throttle.Config{Base: base, Max: 4 * base} })
	for i, want := range []time.Duration{base, 2 * base, 4 * base, 4 * base} {
		t0 := time.Now()
		r := f.requestAuth("GET", "/api/v1/clients", nil, "Bearer wrong")
		took := time.Since(t0)
		if r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: status %d, want 401", i+1, r.status)
		}
		if took < want {
			t.Fatalf("failure %d answered after %v, want at least %v", i+1, took, want)
		}
	}
	t0 := time.Now()
	f.expect(http.StatusOK, "GET", "/api/v1/clients", nil, nil)
	if took := time.Since(t0); took >= base {
		t.Fatalf("a request with the token took %v after the failures: it was held up too", took)
	}
}

// A request that gives up while its failure is delayed is not answered,
// and does not hold the server up.
func TestDelayedFailureEndsWithTheRequest(t *testing.T) {
	f := start(t, func(c *Config) { c.Throttle = throttle.Config{Base: time.Minute, Max: time.Minute} })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.base+"/api/v1/clients", nil)
	if resp, err := f.http.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a delayed failure was answered (%d) before its minute", resp.StatusCode)
	}
	f.expect(http.StatusOK, "GET", "/api/v1/clients", nil, nil)
}

// Without a token file, the server creates one: 32 random bytes in hex,
// mode 0600, in a directory made 0700; a second start reads it back.
func TestTokenFileIsCreated(t *testing.T) {
	f := start(t)
	path := f.admin.cfg.TokenFile
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", st.Mode().Perm())
	}
	if dir, _ := os.Stat(filepath.Dir(path)); dir.Mode().Perm() != 0o700 {
		t.Errorf("token directory mode %v, want 0700", dir.Mode().Perm())
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(f.token) {
		t.Errorf("token %q is not 32 bytes in hex", f.token)
	}
	again := startHTTP(t, f.broker, func(c *Config) { c.TokenFile = path })
	if again.token != f.token {
		t.Errorf("a second start made a new token")
	}
	again.expect(http.StatusOK, "GET", "/api/v1/clients", nil, nil)
	other := startHTTP(t, f.broker)
	if other.token == f.token {
		t.Errorf("two servers made the same token")
	}
}

// A token file that is missing (when the server is not to create it),
// empty or too short is refused at start.
func TestBadTokenFiles(t *testing.T) {
	b := broker.New(broker.Options{})
	dir := t.TempDir()
	for name, content := range map[string]string{"empty": "", "short": "abc\n", "two words": "0123456789abcdef 0123456789abcdef"} {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(content), 0o600)
		if _, err := New(Config{Listen: "127.0.0.1:0", TokenFile: path, Broker: b}); err == nil {
			t.Errorf("a token file %s was accepted", name)
		}
	}
	if _, err := New(Config{Listen: "127.0.0.1:0", TokenFile: filepath.Join(dir, "missing"), Broker: b}); err == nil {
		t.Errorf("a missing token file was accepted without CreateToken")
	}
}

// Reload reads the token file again: the new token is in force, the old
// one is refused; a file that fails to load keeps the token in force.
func TestTokenReload(t *testing.T) {
	f := start(t)
	path := f.admin.cfg.TokenFile
	old := f.token
	newToken := "a-new-token-0123456789"
	os.WriteFile(path, []byte(newToken+"\n"), 0o600)
	if err := f.admin.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := f.requestAuth("GET", "/api/v1/clients", nil, "Bearer "+old); r.status != http.StatusUnauthorized {
		t.Errorf("the old token after a reload: %d, want 401", r.status)
	}
	f.token = newToken
	f.expect(http.StatusOK, "GET", "/api/v1/clients", nil, nil)
	os.WriteFile(path, []byte("short"), 0o600)
	if err := f.admin.Reload(); err == nil {
		t.Fatal("a short token was reloaded")
	}
	f.expect(http.StatusOK, "GET", "/api/v1/clients", nil, nil)
}

// /metrics needs the token unless it is opened for a scraper; without a
// handler it answers 501.
func TestMetricsAuth(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write([]byte("petrel_up 1\n"))
	})
	f := start(t, func(c *Config) { c.Metrics = metrics })
	if r := f.requestAuth("GET", "/metrics", nil, ""); r.status != http.StatusUnauthorized {
		t.Errorf("/metrics without the token: %d, want 401", r.status)
	}
	if r := f.expect(http.StatusOK, "GET", "/metrics", nil, nil); string(r.body) != "petrel_up 1\n" {
		t.Errorf("/metrics with the token: %q", r.body)
	}
	open := start(t, func(c *Config) { c.Metrics, c.OpenMetrics = metrics, true })
	if r := open.requestAuth("GET", "/metrics", nil, ""); r.status != http.StatusOK || string(r.body) != "petrel_up 1\n" {
		t.Errorf("open /metrics without the token: %d %q, want 200", r.status, r.body)
	}
	if r := open.requestAuth("GET", "/api/v1/clients", nil, ""); r.status != http.StatusUnauthorized {
		t.Errorf("open metrics opened the API: %d", r.status)
	}
	none := start(t)
	none.expect(http.StatusNotImplemented, "GET", "/metrics", nil, nil)
}

// /healthz answers while the process runs; /readyz only while the broker
// serves: 503 before its store is recovered and its listeners open, and
// from the moment it starts shutting down.
func TestHealthAndReadiness(t *testing.T) {
	b := broker.New(broker.Options{Listeners: []broker.ListenerConfig{{Address: "127.0.0.1:0"}}, Logger: testlog.New(t)})
	t.Cleanup(func() { b.Close() })
	f := startHTTP(t, b)
	ready := func(want int) string {
		t.Helper()
		r := f.requestAuth("GET", "/readyz", nil, "")
		if r.status != want {
			t.Fatalf("/readyz: %d %s, want %d", r.status, r.body, want)
		}
		var body struct{ Status, Reason string }
		r.decode(t, &body)
		return body.Reason
	}
	f.expect(http.StatusOK, "GET", "/healthz", nil, nil)
	if reason := ready(http.StatusServiceUnavailable); !strings.Contains(reason, "starting") {
		t.Errorf("/readyz before Start: reason %q", reason)
	}
	if r := f.requestAuth("HEAD", "/readyz", nil, ""); r.status != http.StatusServiceUnavailable {
		t.Errorf("HEAD /readyz before Start: %d", r.status)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	ready(http.StatusOK)
	b.Close()
	if reason := ready(http.StatusServiceUnavailable); reason != "shutting down" {
		t.Errorf("/readyz after Close: reason %q, want shutting down", reason)
	}
	f.expect(http.StatusOK, "GET", "/healthz", nil, nil)
}

// GET /api/v1/stats shows what Stats returns; without it, 501.
func TestStats(t *testing.T) {
	none := start(t)
	if r := none.expect(http.StatusNotImplemented, "GET", "/api/v1/stats", nil, nil); r.errorText(t) == "" {
		t.Fatal("no error message")
	}
	f := start(t, func(c *Config) {
		c.Stats = func() any { return map[string]int{"clients_connected": 3} }
	})
	var got map[string]int
	f.expect(http.StatusOK, "GET", "/api/v1/stats", nil, &got)
	if got["clients_connected"] != 3 {
		t.Fatalf("stats %v", got)
	}
	// The broker's own, as petrel serve gives them: with the node's name.
	srv := start(t).broker
	g := startHTTP(t, srv, func(c *Config) { c.Stats = func() any { return srv.Stats() } })
	var st map[string]any
	g.expect(http.StatusOK, "GET", "/api/v1/stats", nil, &st)
	if st["node"] != testNode || st["version"] == "" {
		t.Errorf("the broker's stats: node %v, version %v; want node %q", st["node"], st["version"], testNode)
	}
}

// Unknown paths are 404 under /api and go to the dashboard elsewhere;
// a known path with another method is 405 with Allow; all as JSON.
func TestRouting(t *testing.T) {
	dashboard := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("dashboard " + r.URL.Path))
	})
	f := start(t, func(c *Config) { c.Dashboard = dashboard })
	if r := f.requestAuth("GET", "/", nil, ""); r.status != http.StatusOK || string(r.body) != "dashboard /" {
		t.Errorf("GET / without a token: %d %q, want the dashboard", r.status, r.body)
	}
	if r := f.requestAuth("GET", "/app.js", nil, ""); string(r.body) != "dashboard /app.js" {
		t.Errorf("GET /app.js: %q", r.body)
	}
	if r := f.expect(http.StatusNotFound, "GET", "/api/v1/nothing", nil, nil); r.errorText(t) != "not found" {
		t.Errorf("unknown API path: %s", r.body)
	}
	r := f.expect(http.StatusMethodNotAllowed, "PATCH", "/api/v1/clients/x", nil, nil)
	if r.header.Get("Allow") != "GET, DELETE" {
		t.Errorf("Allow %q, want GET, DELETE", r.header.Get("Allow"))
	}
	r.errorText(t)
	f.expect(http.StatusMethodNotAllowed, "GET", "/api/v1/publish", nil, nil)
	none := start(t)
	none.expect(http.StatusNotFound, "GET", "/", nil, nil)
}
