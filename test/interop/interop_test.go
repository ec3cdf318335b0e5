//go:build interop

// Package interop runs MQTT clients we did not write against an in-process
// broker: Debian's mosquitto_pub and mosquitto_sub, Python's paho-mqtt, and
// MQTT.js in Node and in headless Chromium, over TCP and WebSocket, MQTT
// 3.1.1 and 5. Eclipse Paho's Go client is the reference on the other side.
//
// The build tag keeps it out of `go test ./...`; `make interop` runs it.
// README.md beside this file says what to install. A test whose tool is
// missing is skipped, unless PETREL_INTEROP_REQUIRE=1 (CI) makes it fail.
package interop

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/petrelmq/petrel/broker"
)

// timeout bounds every wait for an answer: a command's reply, a message, a
// subprocess that should exit. Generous, as the race detector and two busy
// cores slow everything.
const timeout = 20 * time.Second

// testBroker is a broker with a TCP and a WebSocket listener on loopback.
type testBroker struct {
	srv  *broker.Server
	host string
	port string // TCP
	// mqttURL and wsURL address the TCP and WebSocket listeners.
	mqttURL, wsURL string
}

func startBroker(t *testing.T) *testBroker { return startBrokerWith(t, broker.Options{}) }

// startBrokerWith is startBroker with options other than the defaults; its
// listeners and logger are set here.
func startBrokerWith(t *testing.T, opts broker.Options) *testBroker {
	t.Helper()
	var logs syncBuffer
	opts.Listeners = []broker.ListenerConfig{
		{Address: "127.0.0.1:0"},
		{Kind: "ws", Address: "127.0.0.1:0"},
	}
	opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := broker.New(opts)
	if err := srv.Start(); err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
		if t.Failed() {
			t.Logf("broker log:\n%s", logs.String())
		}
	})
	addrs := srv.Addrs()
	host, port, err := net.SplitHostPort(addrs[0].String())
	if err != nil {
		t.Fatalf("broker TCP address %v: %v", addrs[0], err)
	}
	return &testBroker{
		srv:     srv,
		host:    host,
		port:    port,
		mqttURL: "mqtt://" + addrs[0].String(),
		wsURL:   "ws://" + addrs[1].String() + "/mqtt",
	}
}

// url is the broker's address for a transport: "tcp" or "ws".
func (b *testBroker) url(transport string) string {
	if transport == "ws" {
		return b.wsURL
	}
	return b.mqttURL
}

// require skips the test when a tool is missing, or fails it when
// PETREL_INTEROP_REQUIRE=1: CI must not pass by skipping everything.
func require(t *testing.T, tool string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("PETREL_INTEROP_REQUIRE") == "1" {
		t.Fatalf("%s is required (PETREL_INTEROP_REQUIRE=1): %v", tool, err)
	}
	t.Skipf("%s not available, skipped: %v (see test/interop/README.md)", tool, err)
}

// Tools are looked for once per test binary.
var (
	findPython = sync.OnceValues(func() (string, error) {
		// Debian's python3-paho-mqtt is in /usr/bin/python3's path only: a
		// python3 earlier on PATH (pyenv, a virtualenv) does not see it.
		candidates := []string{os.Getenv("PETREL_PYTHON"), "/usr/bin/python3"}
		if p, err := exec.LookPath("python3"); err == nil {
			candidates = append(candidates, p)
		}
		var tried []string
		for _, py := range candidates {
			if py == "" {
				continue
			}
			out, err := exec.Command(py, "-c", "import paho.mqtt.client").CombinedOutput()
			if err == nil {
				return py, nil
			}
			tried = append(tried, fmt.Sprintf("%s: %v %s", py, err, bytes.TrimSpace(out)))
		}
		return "", fmt.Errorf("no python3 that imports paho.mqtt (install python3-paho-mqtt); tried %q", tried)
	})

	findNode = sync.OnceValues(func() (string, error) {
		node, err := exec.LookPath("node")
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(filepath.Join("node_modules", "mqtt", "package.json")); err != nil {
			return "", fmt.Errorf("MQTT.js not installed (run npm ci in test/interop): %w", err)
		}
		return node, nil
	})

	findChromium = sync.OnceValues(func() (string, error) {
		if _, err := findNode(); err != nil {
			return "", err
		}
		if _, err := os.Stat(filepath.Join("node_modules", "playwright-core", "package.json")); err != nil {
			return "", fmt.Errorf("playwright-core not installed (run npm ci in test/interop): %w", err)
		}
		for _, c := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium"} {
			if c == "" {
				continue
			}
			if _, err := os.Stat(c); err == nil {
				return c, nil
			}
		}
		return exec.LookPath("chromium")
	})

	findMosquitto = sync.OnceValues(func() (string, error) {
		for _, tool := range []string{"mosquitto_sub", "stdbuf"} {
			if _, err := exec.LookPath(tool); err != nil {
				return "", err
			}
		}
		pub, err := exec.LookPath("mosquitto_pub")
		if err != nil {
			return "", err
		}
		out, _ := exec.Command(pub, "--help").CombinedOutput()
		// The second line names the version: "mosquitto_pub version 2.0.11 running on ...".
		lines := bytes.SplitN(out, []byte("\n"), 3)
		if len(lines) < 2 {
			return "mosquitto_pub", nil
		}
		return string(bytes.TrimSpace(lines[1])), nil
	})
)

// syncBuffer is a bytes.Buffer that goroutines may write at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
