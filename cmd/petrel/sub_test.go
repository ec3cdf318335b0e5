package main

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/client"
	"github.com/petrelmq/petrel/packet"
)

// TestSubOutputFormats: payload only, -v, -N, -F and -j print what
// mosquitto_sub's do.
func TestSubOutputFormats(t *testing.T) {
	port := cliBroker(t, broker.Options{})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "hello\n\n"},
		{[]string{"-v"}, "f/a hello\nf/b (null)\n"},
		{[]string{"-N"}, "hello"},
		{[]string{"-v", "-N"}, "f/a hellof/b (null)"},
		{[]string{"-F", `%t|%p|%q|%r|%l|%x|%X|%%|%-5t|%05l|%.1t\t@@`}, "f/a|hello|1|0|5|68656c6c6f|68656C6C6F|%|f/a  |00005|f\t@\n" +
			"f/b||0|0|0|||%|f/b  |00000|f\t@\n"},
		{[]string{"-F", "%t", "-v"}, "f/a\nf/b\n"}, // -F wins over -v
	} {
		s := cliSub(t, append([]string{"-p", port, "-t", "f/#", "-q", "1", "-C", "2"}, tc.args...)...)
		mustPub(t, "-p", port, "-t", "f/a", "-m", "hello", "-q", "1")
		mustPub(t, "-p", port, "-t", "f/b", "-n")
		if code := s.wait(t); code != 0 {
			t.Fatalf("sub %q: exit %d, %s", tc.args, code, s.stderr.String())
		}
		if got := s.stdout.String(); got != tc.want {
			t.Errorf("sub %q printed %q, want %q", tc.args, got, tc.want)
		}
	}
}

// subJSON is sub's -j output.
type subJSON struct {
	Tst        string         `json:"tst"`
	Topic      string         `json:"topic"`
	QoS        int            `json:"qos"`
	Retain     int            `json:"retain"`
	PayloadLen int            `json:"payloadlen"`
	Properties map[string]any `json:"properties"`
	Base64     bool           `json:"base64"`
	Payload    any            `json:"payload"`
}

// TestSubJSON: -j prints one object per line, with the MQTT 5 properties
// (user properties from pub's -D round trip into it), and base64 for a
// payload that is not UTF-8; --pretty indents; %J embeds a JSON payload.
func TestSubJSON(t *testing.T) {
	port := cliBroker(t, broker.Options{})
	s := cliSub(t, "-p", port, "-V", "5", "-t", "j/#", "-q", "2", "-C", "3", "-j", "-D", "SUBSCRIBE", "subscription-identifier", "9")
	mustPub(t, "-p", port, "-t", "j/text", "-m", "héllo \"w\"\n", "-q", "2", "-r",
		"-D", "PUBLISH", "user-property", "k", "v", "-D", "PUBLISH", "user-property", "k2", "v2",
		"-D", "PUBLISH", "content-type", "text/plain", "-D", "PUBLISH", "correlation-data", "id-1",
		"-D", "PUBLISH", "response-topic", "back")
	mustPub(t, "-p", port, "-t", "j/bin", "-f", writeCLIFile(t, "\xff\x00\x01"))
	mustPub(t, "-p", port, "-t", "j/empty", "-n", "-q", "1")
	if code := s.wait(t); code != 0 {
		t.Fatalf("exit %d, %s", code, s.stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(s.stdout.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines: %q", len(lines), s.stdout.String())
	}
	var got [3]subJSON
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &got[i]); err != nil {
			t.Fatalf("line %d %q: %v", i, l, err)
		}
	}
	text, bin, empty := got[0], got[1], got[2]
	if _, err := time.Parse(time.RFC3339Nano, text.Tst); err != nil {
		t.Errorf("tst %q: %v", text.Tst, err)
	}
	if text.Topic != "j/text" || text.QoS != 2 || text.Retain != 0 || text.Payload != "héllo \"w\"\n" ||
		text.PayloadLen != len("héllo \"w\"\n") || text.Base64 {
		t.Errorf("text message: %+v", text)
	}
	props, _ := json.Marshal(text.Properties)
	if want := `{"content-type":"text/plain","correlation-data":"id-1","response-topic":"back","subscription-identifier":9,"user-properties":{"k":"v","k2":"v2"}}`; string(props) != want {
		t.Errorf("properties %s, want %s", props, want)
	}
	if bin.Payload != "/wAB" || !bin.Base64 || bin.PayloadLen != 3 || bin.QoS != 0 {
		t.Errorf("binary message: %+v", bin)
	}
	if empty.Payload != "" || empty.PayloadLen != 0 || empty.QoS != 1 {
		t.Errorf("empty message: %+v", empty)
	}

	// --pretty, and %J with a payload that is JSON (and one that is not).
	s = cliSub(t, "-p", port, "-t", "j/text", "-C", "1", "-j", "--pretty", "-R")
	mustPub(t, "-p", port, "-t", "j/text", "-m", "x")
	s.wait(t)
	if out := s.stdout.String(); !strings.Contains(out, "{\n\t\"tst\": ") || !strings.HasSuffix(out, "\t\"payload\": \"x\"\n}\n") {
		t.Errorf("--pretty printed %q", out)
	}
	s = cliSub(t, "-p", port, "-t", "j/json", "-C", "1", "-F", "%J")
	mustPub(t, "-p", port, "-t", "j/json", "-m", "not json")
	mustPub(t, "-p", port, "-t", "j/json", "-m", `{"t":21.5}`)
	s.wait(t)
	if out := s.stdout.String(); !strings.HasSuffix(out, `"payload":{"t":21.5}}`+"\n") {
		t.Errorf("%%J printed %q", out)
	}
	if !strings.Contains(s.stderr.String(), "Message payload is not valid JSON on topic j/json") {
		t.Errorf("%%J with a payload that is not JSON: stderr %q", s.stderr.String())
	}
}

// TestSubCountAndTimeout: -C exits 0 after the count, -W exits 27 with
// "Timed out", Ctrl-C exits 0.
func TestSubCountAndTimeout(t *testing.T) {
	port := cliBroker(t, broker.Options{})
	s := cliSub(t, "-p", port, "-t", "c", "-C", "2")
	for range 3 {
		mustPub(t, "-p", port, "-t", "c", "-m", "m")
	}
	if code := s.wait(t); code != 0 || s.stdout.String() != "m\nm\n" {
		t.Errorf("-C 2: exit %d, printed %q", code, s.stdout.String())
	}

	start := time.Now()
	s = cliSub(t, "-p", port, "-t", "c", "-W", "1")
	if code := s.wait(t); code != exitTimeout || !strings.Contains(s.stderr.String(), "Timed out") {
		t.Errorf("-W 1: exit %d, stderr %q; want 27 and Timed out", code, s.stderr.String())
	}
	if d := time.Since(start); d < time.Second || d > 3*time.Second {
		t.Errorf("-W 1 took %v", d)
	}

	s = cliSub(t, "-p", port, "-t", "c")
	if code := s.stop(t); code != 0 {
		t.Errorf("interrupted: exit %d", code)
	}
}

// TestSubRetainedOptions: -R, --retained-only, --remove-retained, -T, -U.
func TestSubRetainedOptions(t *testing.T) {
	port := cliBroker(t, broker.Options{})
	mustPub(t, "-p", port, "-t", "k/old", "-m", "stale", "-r")
	mustPub(t, "-p", port, "-t", "k/skip", "-m", "filtered", "-r")

	s := cliSub(t, "-p", port, "-t", "k/#", "-R", "-v", "-C", "1")
	mustPub(t, "-p", port, "-t", "k/new", "-m", "fresh")
	if s.wait(t); s.stdout.String() != "k/new fresh\n" {
		t.Errorf("-R printed %q", s.stdout.String())
	}

	s = cliSub(t, "-p", port, "-t", "k/#", "--retained-only", "-v", "-T", "k/skip")
	mustPub(t, "-p", port, "-t", "k/new", "-m", "fresh")
	if code := s.wait(t); code != 0 || s.stdout.String() != "k/old stale\n" {
		t.Errorf("--retained-only -T k/skip: exit %d, printed %q", code, s.stdout.String())
	}

	s = cliSub(t, "-p", port, "-t", "k/#", "--remove-retained", "--retained-only", "-T", "k/skip")
	mustPub(t, "-p", port, "-t", "k/new", "-m", "fresh")
	s.wait(t)
	s = cliSub(t, "-p", port, "-t", "k/#", "-v", "-W", "1")
	if s.wait(t); s.stdout.String() != "k/skip filtered\n" {
		t.Errorf("after --remove-retained -T k/skip, the retained messages are %q", s.stdout.String())
	}

	// -U after -t: the unsubscribed filter no longer delivers.
	s = cliSub(t, "-p", port, "-V", "5", "-t", "u/a", "-t", "u/b", "-U", "u/a", "-C", "1", "-v")
	s.await(t, "received UNSUBACK")
	mustPub(t, "-p", port, "-t", "u/a", "-m", "1")
	mustPub(t, "-p", port, "-t", "u/b", "-m", "2")
	if s.wait(t); s.stdout.String() != "u/b 2\n" {
		t.Errorf("-U u/a printed %q", s.stdout.String())
	}
}

// TestSubErrors: usage mistakes and refusals.
func TestSubErrors(t *testing.T) {
	port := cliBroker(t, broker.Options{DisableWildcardSubscriptions: true})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "You must specify a topic to subscribe to."},
		{[]string{"-t", "a/#/b"}, "Invalid subscription topic 'a/#/b'"},
		{[]string{"-t", "a", "-C", "0"}, "Invalid message count"},
		{[]string{"-t", "a", "--retain-as-published"}, "--retain-as-published needs MQTT v5"},
		{[]string{"-t", "a", "-D", "PUBLISH", "user-property", "k", "v"}, "not valid for PUBLISH"},
		{[]string{"-t", "a/#", "-p", port}, "All subscription requests were denied."},
	} {
		var out, errb syncBuffer
		code := runSub(t.Context(), tc.args, &out, &errb)
		if code != 1 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("sub %q: exit %d, stderr %q; want 1 and %q", tc.args, code, errb.String(), tc.want)
		}
	}
}

// TestSubConnectionLost: sub exits 1 when the server ends the connection.
func TestSubConnectionLost(t *testing.T) {
	port := cliBroker(t, broker.Options{})
	s := cliSub(t, "-p", port, "-V", "5", "-i", "taken", "-t", "a")
	c, _, err := client.Connect(t.Context(), client.Options{Addr: "127.0.0.1:" + port, Version: packet.V5, ClientID: "taken", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if code := s.wait(t); code != 1 || !strings.Contains(s.stderr.String(), "session taken over") {
		t.Errorf("taken over: exit %d, stderr %q", code, s.stderr.String())
	}
}

// TestPubSubTLS: pub and sub over the broker's TLS listener with --cafile,
// a client certificate, and --insecure for a server whose certificate does
// not name the host used.
func TestPubSubTLS(t *testing.T) {
	p := newCLIPKI(t)
	cert, err := tls.LoadX509KeyPair(p.cert, p.key)
	if err != nil {
		t.Fatal(err)
	}
	addrs := cliListeners(t, broker.Options{Listeners: []broker.ListenerConfig{{Kind: "tls", Address: "127.0.0.1:0",
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool}}}})
	_, tlsPort, _ := net.SplitHostPort(addrs[0])
	creds := []string{"--cafile", p.ca, "--cert", p.clientCert, "--key", p.clientKey}

	s := cliSub(t, append([]string{"-h", "localhost", "-p", tlsPort, "-t", "secure", "-C", "2", "-v"}, creds...)...)
	mustPub(t, append([]string{"-h", "localhost", "-p", tlsPort, "-t", "secure", "-m", "one", "-q", "1", "--tls-version", "tlsv1.3"}, creds...)...)
	mustPub(t, append([]string{"-L", "mqtts://localhost:" + tlsPort + "/secure", "-m", "two", "-V", "5"}, creds...)...)
	if code := s.wait(t); code != 0 || s.stdout.String() != "secure one\nsecure two\n" {
		t.Errorf("TLS sub: exit %d, printed %q, stderr %q", code, s.stdout.String(), s.stderr.String())
	}

	// The certificate names localhost, not 127.0.0.1.
	code, _, stderr := cliPub(t, "", append([]string{"-h", "127.0.0.1", "-p", tlsPort, "-t", "x", "-m", "y"}, creds...)...)
	if code != 1 || !strings.Contains(stderr, "certificate") {
		t.Errorf("wrong host name: exit %d, stderr %q", code, stderr)
	}
	mustPub(t, append([]string{"-h", "127.0.0.1", "-p", tlsPort, "-t", "x", "-m", "y", "--insecure"}, creds...)...)
	// --insecure still checks the chain: without the CA it fails.
	code, _, stderr = cliPub(t, "", "-h", "127.0.0.1", "-p", tlsPort, "-t", "x", "-m", "y", "--insecure",
		"--tls-use-os-certs", "--cert", p.clientCert, "--key", p.clientKey)
	if code != 1 || !strings.Contains(stderr, "certificate") {
		t.Errorf("--insecure without the CA: exit %d, stderr %q", code, stderr)
	}
	// No client certificate: the server refuses the handshake.
	code, _, _ = cliPub(t, "", "-h", "localhost", "-p", tlsPort, "-t", "x", "-m", "y", "--cafile", p.ca)
	if code != 1 {
		t.Errorf("no client certificate: exit %d", code)
	}
}

// TestPubSubWebSocket: -L ws:// and wss:// to the broker's WebSocket
// listeners.
func TestPubSubWebSocket(t *testing.T) {
	p := newCLIPKI(t)
	cert, err := tls.LoadX509KeyPair(p.cert, p.key)
	if err != nil {
		t.Fatal(err)
	}
	addrs := cliListeners(t, broker.Options{Listeners: []broker.ListenerConfig{
		{Kind: "ws", Address: "127.0.0.1:0"},
		{Kind: "wss", Address: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{cert}}},
	}})
	_, wssPort, _ := net.SplitHostPort(addrs[1])

	s := cliSub(t, "-L", "ws://"+addrs[0]+"/mqtt", "-t", "w", "-C", "2", "-V", "5")
	mustPub(t, "-L", "ws://"+addrs[0], "-t", "w", "-m", "over ws", "-q", "2")
	mustPub(t, "-L", "wss://localhost:"+wssPort+"/mqtt", "-t", "w", "-m", "over wss", "--cafile", p.ca)
	if code := s.wait(t); code != 0 || s.stdout.String() != "over ws\nover wss\n" {
		t.Errorf("exit %d, printed %q, stderr %q", code, s.stdout.String(), s.stderr.String())
	}
}

// TestPubSubUnixSocket: --unix to the broker's unix socket listener.
func TestPubSubUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mqtt.sock")
	cliListeners(t, broker.Options{Listeners: []broker.ListenerConfig{{Kind: "unix", Address: path}}})
	s := cliSub(t, "--unix", path, "-t", "u", "-C", "1")
	mustPub(t, "--unix", path, "-t", "u", "-m", "local")
	if code := s.wait(t); code != 0 || s.stdout.String() != "local\n" {
		t.Errorf("exit %d, printed %q", code, s.stdout.String())
	}
}

// TestPubSubMosquittoInterop: mosquitto_sub receives what petrel pub sends, and
// petrel sub what mosquitto_pub sends, in both protocol versions.
func TestPubSubMosquittoInterop(t *testing.T) {
	mosqSub := lookTool(t, "mosquitto_sub")
	mosqPub := lookTool(t, "mosquitto_pub")
	port := cliBroker(t, broker.Options{})
	for _, v := range []string{"311", "5"} {
		t.Run(v, func(t *testing.T) {
			// mosquitto_sub has no way to say it is subscribed: retained
			// messages arrive whenever it is.
			mustPub(t, "-p", port, "-V", v, "-t", "interop/"+v+"/a", "-m", "from petrel", "-q", "1", "-r")
			out, err := exec.Command(mosqSub, "-p", port, "-V", v, "-t", "interop/"+v+"/#", "-C", "1", "-v", "-W", "5").CombinedOutput()
			if err != nil || string(out) != "interop/"+v+"/a from petrel\n" {
				t.Errorf("mosquitto_sub: %v, %q", err, out)
			}
			mustPub(t, "-p", port, "-t", "interop/"+v+"/a", "-n", "-r")

			s := cliSub(t, "-p", port, "-V", v, "-t", "interop/"+v+"/b", "-C", "2", "-F", "%t %p %q")
			args := []string{"-p", port, "-V", v, "-t", "interop/" + v + "/b", "-q", "2"}
			if out, err := exec.Command(mosqPub, append(args, "-m", "from mosquitto")...).CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_pub: %v %s", err, out)
			}
			cmd := exec.Command(mosqPub, append(args, "-l")...)
			cmd.Stdin = strings.NewReader("a line\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_pub -l: %v %s", err, out)
			}
			want := "interop/" + v + "/b from mosquitto 0\ninterop/" + v + "/b a line 0\n"
			if code := s.wait(t); code != 0 || s.stdout.String() != want {
				t.Errorf("petrel sub: exit %d, printed %q, want %q", code, s.stdout.String(), want)
			}
		})
	}

	// MQTT 5 user properties, from mosquitto_pub to petrel sub -j.
	s := cliSub(t, "-p", port, "-V", "5", "-t", "interop/props", "-C", "1", "-j")
	out, err := exec.Command(mosqPub, "-p", port, "-V", "5", "-t", "interop/props", "-m", "p",
		"-D", "PUBLISH", "user-property", "from", "mosquitto").CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	s.wait(t)
	if !strings.Contains(s.stdout.String(), `"user-properties":{"from":"mosquitto"}`) {
		t.Errorf("petrel sub -j printed %q", s.stdout.String())
	}
}

func writeCLIFile(t *testing.T, content string) string {
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
