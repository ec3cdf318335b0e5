package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// httpGet sends GET url with the token (none when empty) and returns the
// status and body.
func httpGet(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// With http.listen, petrel serve opens the HTTP server; with no token file
// named, it creates one in the data directory (mode 0600) and logs where,
// never the token; SIGHUP reads it again; SIGTERM stops it all.
func TestServeHTTP(t *testing.T) {
	dir := t.TempDir()
	b := startConfigured(t, dir, "listeners:\n  - address: 127.0.0.1:0\nhttp:\n  listen: 127.0.0.1:0\ncluster:\n  node: http-test\n")
	tokenFile := filepath.Join(dir, "data", "http-token")
	b.log.waitFor(t, `msg="http: created a token.*" file=`+regexp.QuoteMeta(tokenFile))
	base := "http://" + b.log.waitFor(t, `msg="http: listening" addr=(\S+)`)[1]
	st, err := os.Stat(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", st.Mode().Perm())
	}
	raw, _ := os.ReadFile(tokenFile)
	token := strings.TrimSpace(string(raw))
	if strings.Contains(b.log.String(), token) {
		t.Errorf("the log shows the token")
	}

	// Listening is logged as each listener opens; ready is once all are.
	deadline := time.Now().Add(10 * time.Second)
	for code, body := httpGet(t, base+"/readyz", ""); code != 200; code, body = httpGet(t, base+"/readyz", "") {
		if code != 503 || time.Now().After(deadline) {
			t.Fatalf("/readyz: %d %s, want 200 within 10s of listening", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := httpGet(t, base+"/", ""); code != 200 || !strings.Contains(body, "<title>Petrel</title>") {
		t.Errorf("the dashboard at / without the token: %d %.200s", code, body)
	}
	if code, _ := httpGet(t, base+"/api/v1/clients", ""); code != 401 {
		t.Errorf("/api/v1/clients without the token: %d, want 401", code)
	}
	if code, body := httpGet(t, base+"/api/v1/clients", token); code != 200 || !strings.Contains(body, `"clients"`) {
		t.Errorf("/api/v1/clients: %d %s", code, body)
	}
	// The statistics and the metrics are the broker's own, with the node's
	// name (cluster.node, clustering off).
	if code, body := httpGet(t, base+"/api/v1/stats", token); code != 200 || !strings.Contains(body, `"clients_connected":0`) ||
		!strings.Contains(body, `"node":"http-test"`) {
		t.Errorf("/api/v1/stats: %d %.300s", code, body)
	}
	if code, _ := httpGet(t, base+"/metrics", ""); code != 401 {
		t.Errorf("/metrics without the token (http.metrics_auth defaults to true): %d, want 401", code)
	}
	if code, body := httpGet(t, base+"/metrics", token); code != 200 ||
		!strings.Contains(body, "\npetrel_clients_connected{node=\"http-test\"} 0\n") {
		t.Errorf("/metrics: %d %.300s", code, body)
	}

	writeTestFile(t, tokenFile, "a-token-set-by-hand-0123\n")
	b.process.Signal(syscall.SIGHUP)
	b.log.waitFor(t, `msg="admin API token reloaded"`)
	if code, _ := httpGet(t, base+"/api/v1/clients", "a-token-set-by-hand-0123"); code != 200 {
		t.Errorf("the new token after SIGHUP: %d", code)
	}

	b.process.Signal(syscall.SIGTERM)
	b.log.waitFor(t, `msg="shutting down"`)
	deadline = time.Now().Add(10 * time.Second)
	for _, open := b.log.matches(`^$`); open; _, open = b.log.matches(`^$`) {
		if time.Now().After(deadline) {
			t.Fatal("petrel did not exit within 10s of SIGTERM")
		}
		time.Sleep(10 * time.Millisecond) // the log closes when the process exits
	}
	b.log.mustNotHave(t, `level=(WARN|ERROR) msg="http`)
}

// --http ADDR turns the server on over a file without one.
func TestServeHTTPFlag(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	writeTestFile(t, tokenFile, "0123456789abcdef0123\n")
	b := startConfigured(t, dir, fmt.Sprintf("listeners:\n  - address: 127.0.0.1:0\nhttp:\n  token_file: %s\n  metrics_auth: false\n", tokenFile),
		"--http", "127.0.0.1:0")
	base := "http://" + b.log.waitFor(t, `msg="http: listening" addr=(\S+)`)[1]
	if code, _ := httpGet(t, base+"/api/v1/clients", "0123456789abcdef0123"); code != 200 {
		t.Errorf("/api/v1/clients with the file's token: %d", code)
	}
	if code, _ := httpGet(t, base+"/metrics", ""); code == 401 {
		t.Errorf("/metrics with metrics_auth false: 401")
	}
}

// A token file named but missing, or an HTTP address in use, stops the
// broker before it listens for MQTT.
func TestServeHTTPRefusesBadSettings(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing-token")
	config := filepath.Join(dir, "petrel.yaml")
	writeTestFile(t, config, fmt.Sprintf("listeners:\n  - address: 127.0.0.1:0\nhttp:\n  listen: 127.0.0.1:0\n  token_file: %s\n", missing))
	code, stderr := refusedServe(t, petrel("--config", config, "--data-dir", filepath.Join(dir, "data")))
	if code != 2 || !strings.Contains(stderr, missing) {
		t.Errorf("a missing token file: exit %d, stderr:\n%s", code, stderr)
	}
	if strings.Contains(stderr, "msg=listening") {
		t.Errorf("the broker listened before refusing:\n%s", stderr)
	}
}
