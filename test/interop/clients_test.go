//go:build interop

package interop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPahoPython runs the scenarios with Python's paho-mqtt over TCP and
// WebSocket, MQTT 3.1.1 and 5.
func TestPahoPython(t *testing.T) {
	_, err := findPython()
	require(t, "Python paho-mqtt", err)
	runScenarios(t, func(t *testing.T) *peer { return startPythonPeer(t, "paho-mqtt") }, "tcp", "ws")
}

// TestMQTTJS runs the scenarios with MQTT.js in Node over TCP and
// WebSocket, MQTT 3.1.1 and 5.
func TestMQTTJS(t *testing.T) {
	_, err := findNode()
	require(t, "Node.js with MQTT.js", err)
	runScenarios(t, func(t *testing.T) *peer { return startNodePeer(t, "MQTT.js") }, "tcp", "ws")
}

// TestBrowser runs the scenarios with MQTT.js in a page in headless
// Chromium, over WebSocket (the only way a browser has), MQTT 3.1.1 and 5.
// The page's messages come back through the driver to this test, and what
// the page publishes reaches the Go client.
func TestBrowser(t *testing.T) {
	_, err := findChromium()
	require(t, "Chromium with playwright-core", err)
	runScenarios(t, func(t *testing.T) *peer { return startBrowserPeer(t, "browser") }, "ws")
}

func startPythonPeer(t *testing.T, name string) *peer {
	t.Helper()
	python, err := findPython()
	require(t, "Python paho-mqtt", err)
	return startPeer(t, name, nil, python, "-u", "paho_peer.py")
}

func startNodePeer(t *testing.T, name string) *peer {
	t.Helper()
	node, err := findNode()
	require(t, "Node.js with MQTT.js", err)
	return startPeer(t, name, nil, node, "mqttjs_peer.js")
}

// startBrowserPeer opens page.html in headless Chromium. With
// PETREL_INTEROP_SCREENSHOTS=dir, the page is saved as dir/<test>.png.
func startBrowserPeer(t *testing.T, name string) *peer {
	t.Helper()
	chromium, err := findChromium()
	require(t, "Chromium with playwright-core", err)
	node, _ := findNode()
	env := []string{"CHROMIUM=" + chromium}
	if dir := os.Getenv("PETREL_INTEROP_SCREENSHOTS"); dir != "" {
		file := strings.ReplaceAll(t.Name(), "/", "_") + ".png"
		env = append(env, "SCREENSHOT="+filepath.Join(dir, file))
	}
	return startPeer(t, name, env, node, "browser_peer.js")
}
