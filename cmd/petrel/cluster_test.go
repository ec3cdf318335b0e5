package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/cluster"
	"github.com/petrelmq/petrel/internal/testpki"
)

// These tests map the configuration onto package cluster without starting
// a node: nothing here joins a cluster.

// A bad --cluster, --peers or --node is a configuration error (exit 2) that
// names the key the flag sets, before anything starts.
func TestBadClusterFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster", "nonsense"}, `cluster.listen: "nonsense" is not host:port`},
		{[]string{"--cluster", "127.0.0.1:0"}, `cluster.listen: "127.0.0.1:0": port 0 is out of range 1..65535`},
		{[]string{"--cluster", "127.0.0.1:16222", "--peers", "10.0.0.2:6222,10.0.0.3"}, `cluster.peers[1]: "10.0.0.3" is not host:port`},
		{[]string{"--peers", "10.0.0.2:6222"}, `cluster.peers: set, but cluster.listen is not`},
		{[]string{"--node", "node.1"}, `cluster.node: "node.1" is not a node name`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stderr bytes.Buffer
			cmd := petrel(append(tc.args, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())...)
			cmd.Stderr = &stderr
			if code := exitCode(cmd.Run()); code != 2 || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tc.want)
			}
		})
	}
}

// The flags replace the file's settings.
func TestClusterFlagsOverrideTheFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "petrel.yaml")
	writeTestFile(t, file, "cluster:\n  node: a\n  listen: 10.0.0.1:6222\n  peers: [10.0.0.9:6222]\n")
	cfg, err := loadConfig(file, overrides{node: "b", cluster: "127.0.0.1:16222", peers: splitList("10.0.0.2:6222, 10.0.0.3:6222")})
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Cluster
	if c.Node != "b" || c.Listen != "127.0.0.1:16222" || !reflect.DeepEqual(c.Peers, []string{"10.0.0.2:6222", "10.0.0.3:6222"}) {
		t.Errorf("cluster = %+v; want node b, listen 127.0.0.1:16222, peers 10.0.0.2:6222 and 10.0.0.3:6222", c)
	}
	if cfg, err = loadConfig(file, overrides{}); err != nil || cfg.Cluster.Node != "a" || len(cfg.Cluster.Peers) != 1 {
		t.Errorf("without flags: %+v, %v; want the file's", cfg.Cluster, err)
	}
}

// Unclustered, the broker is named all the same: by cluster.node, or by
// the host name made a node name.
func TestNodeName(t *testing.T) {
	host, _ := os.Hostname()
	o := mustBrokerOptionsOf(t, "")
	if o.NodeName != cluster.NodeName(host) || o.Cluster != nil {
		t.Errorf("NodeName %q, Cluster %v; want %q and none", o.NodeName, o.Cluster, cluster.NodeName(host))
	}
	o = mustBrokerOptionsOf(t, "cluster:\n  node: edge-7\n")
	if o.NodeName != "edge-7" || o.Cluster != nil {
		t.Errorf("NodeName %q, Cluster %v; want edge-7 and none", o.NodeName, o.Cluster)
	}
}

func mustBrokerOptionsOf(t *testing.T, yaml string) broker.Options {
	t.Helper()
	o, _ := mustBrokerOptions(t, parseTestConfig(t, yaml))
	return o
}

// clusterFiles writes a route password file and mutual TLS files.
type clusterFiles struct{ dir, password, cert, key, ca string }

func writeClusterFiles(t *testing.T) clusterFiles {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "cluster CA")
	leaf := ca.Server(t, 2)
	f := clusterFiles{dir: dir, password: filepath.Join(dir, "cluster-password"),
		cert: filepath.Join(dir, "node.crt"), key: filepath.Join(dir, "node.key"), ca: filepath.Join(dir, "ca.crt")}
	writeTestFile(t, f.password, "  s3cret\n")
	writeTestFile(t, f.cert, string(leaf.CertPEM))
	writeTestFile(t, f.key, string(leaf.KeyPEM))
	writeTestFile(t, f.ca, string(ca.PEM))
	return f
}

func (f clusterFiles) yaml() string {
	return "  username: petrel\n  password_file: " + f.password + "\n  tls:\n    cert_file: " + f.cert +
		"\n    key_file: " + f.key + "\n    ca_file: " + f.ca + "\n"
}

// Every setting reaches package cluster: the password read from its file,
// the routes' mutual TLS, the JetStream directory beside the pebble store.
func TestClusterConfig(t *testing.T) {
	files := writeClusterFiles(t)
	cfg := parseTestConfig(t, "store:\n  dir: "+files.dir+"/data\ncluster:\n  node: n1\n  name: eu\n  listen: 127.0.0.1:16222\n"+
		"  peers: [10.0.0.2:6222]\n  node_timeout: 5s\n"+files.yaml())
	cc, err := clusterConfig(cfg, "n1", discardLog)
	if err != nil {
		t.Fatal(err)
	}
	if cc.Node != "n1" || cc.Name != "eu" || cc.Listen != "127.0.0.1:16222" || !reflect.DeepEqual(cc.Peers, []string{"10.0.0.2:6222"}) ||
		cc.NATSURL != "" || cc.NodeTimeout != 5*time.Second || cc.DataDir != files.dir+"/data" ||
		cc.Username != "petrel" || cc.Password != "s3cret" || cc.Logger != discardLog || cc.NoReplica {
		t.Errorf("cluster.Config = %+v", cc)
	}
	c := cc.TLS
	if c == nil {
		t.Fatal("no TLS")
	}
	if len(c.Certificates) != 1 || c.RootCAs == nil || !c.RootCAs.Equal(c.ClientCAs) ||
		c.ClientAuth != tls.RequireAndVerifyClientCert || c.MinVersion != tls.VersionTLS12 {
		t.Errorf("TLS: %d certificates, RootCAs %v (ClientCAs the same: %v), ClientAuth %v, MinVersion %x; want mutual TLS 1.2",
			len(c.Certificates), c.RootCAs != nil, c.RootCAs.Equal(c.ClientCAs), c.ClientAuth, c.MinVersion)
	}

	// The memory store keeps no directory; nor does a cluster without
	// credentials and TLS need files.
	cfg = parseTestConfig(t, "store:\n  engine: memory\ncluster:\n  listen: 127.0.0.1:16222\n")
	if cc, err = clusterConfig(cfg, "n1", discardLog); err != nil || cc.DataDir != "" || cc.TLS != nil || cc.Password != "" {
		t.Errorf("memory store: %+v, %v; want no DataDir, TLS or password", cc, err)
	}

	// The sessions' replica can be turned off.
	cfg = parseTestConfig(t, "cluster:\n  listen: 127.0.0.1:16222\n  replicate_sessions: false\n")
	if cc, err = clusterConfig(cfg, "n1", discardLog); err != nil || !cc.NoReplica {
		t.Errorf("replicate_sessions false: NoReplica %v, %v", cc.NoReplica, err)
	}

	// The address the others dial may differ from the one listened on.
	cfg = parseTestConfig(t, "cluster:\n  listen: 0.0.0.0:6222\n  advertise: 203.0.113.7:16222\n")
	if cc, err = clusterConfig(cfg, "n1", discardLog); err != nil || cc.Advertise != "203.0.113.7:16222" {
		t.Errorf("advertise: %q, %v", cc.Advertise, err)
	}
}

// Clustered, brokerOptions gives the broker a cluster, not yet joined.
func TestClusterOptions(t *testing.T) {
	o := mustBrokerOptionsOf(t, "store:\n  engine: memory\ncluster:\n  node: n1\n  listen: 127.0.0.1:16222\n  node_timeout: 2s\n")
	c, ok := o.Cluster.(*cluster.Cluster)
	if !ok || o.NodeName != "n1" {
		t.Fatalf("Cluster %T, NodeName %q; want a *cluster.Cluster named n1", o.Cluster, o.NodeName)
	}
	if c.NodeTimeout() != 2*time.Second || !reflect.DeepEqual(c.Nodes(), []string{"n1"}) || c.RouteAddr() != "" {
		t.Errorf("NodeTimeout %v, Nodes %v, RouteAddr %q; want 2s, [n1] and none (not started)", c.NodeTimeout(), c.Nodes(), c.RouteAddr())
	}
	host, _ := os.Hostname()
	o = mustBrokerOptionsOf(t, "store:\n  engine: memory\ncluster:\n  nats_url: nats://127.0.0.1:4222\n")
	if c, ok := o.Cluster.(*cluster.Cluster); !ok || o.NodeName != cluster.NodeName(host) || c.Nodes()[0] != o.NodeName {
		t.Errorf("nats_url: Cluster %T, NodeName %q; want a cluster named after the host, %q", o.Cluster, o.NodeName, cluster.NodeName(host))
	}
}

// A cluster file that cannot be used stops the broker before it starts,
// naming the file.
func TestClusterFileErrors(t *testing.T) {
	files := writeClusterFiles(t)
	other := testpki.SelfSigned(t, "other")
	otherKey := filepath.Join(files.dir, "other.key")
	writeTestFile(t, otherKey, string(other.KeyPEM))
	empty := filepath.Join(files.dir, "empty")
	writeTestFile(t, empty, " \n")
	missing := filepath.Join(files.dir, "missing")
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"missing password file", "  username: petrel\n  password_file: " + missing + "\n",
			missing + ": no such file or directory"},
		{"empty password file", "  username: petrel\n  password_file: " + empty + "\n",
			empty + ": empty (cluster.password_file: the routes' password)"},
		{"missing certificate", "  tls: {cert_file: " + missing + ", key_file: " + files.key + ", ca_file: " + files.ca + "}\n",
			missing + ": no such file or directory"},
		{"key of another certificate", "  tls: {cert_file: " + files.cert + ", key_file: " + otherKey + ", ca_file: " + files.ca + "}\n",
			files.cert + " and " + otherKey + ": tls: private key does not match public key"},
		{"missing CA", "  tls: {cert_file: " + files.cert + ", key_file: " + files.key + ", ca_file: " + missing + "}\n",
			missing + ": no such file or directory"},
		{"CA without certificates", "  tls: {cert_file: " + files.cert + ", key_file: " + files.key + ", ca_file: " + empty + "}\n",
			empty + ": no PEM certificate in it (cluster.tls.ca_file)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := parseTestConfig(t, "store:\n  engine: memory\ncluster:\n  listen: 127.0.0.1:16222\n"+tc.yaml)
			_, _, err := brokerOptions(cfg, discardLog)
			if err == nil || err.Error() != tc.want {
				t.Errorf("brokerOptions error = %v, want %s", err, tc.want)
			}
		})
	}
}

// check-config reads the cluster's files as serve does, and joins nothing.
func TestCheckConfigCluster(t *testing.T) {
	files := writeClusterFiles(t)
	dir := t.TempDir()
	write := func(content string) string {
		path := filepath.Join(dir, "petrel.yaml")
		writeTestFile(t, path, content)
		return path
	}
	code, stdout, stderr := checkConfigOf(write("store:\n  dir: " + dir + "/data\ncluster:\n  listen: 127.0.0.1:16222\n" + files.yaml()))
	if code != 0 || stdout != "ok\n" || stderr != "" {
		t.Errorf("valid cluster: exit %d, stdout %q, stderr %q; want 0, ok, nothing", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Errorf("check-config made the data directory (%v)", err)
	}
	missing := filepath.Join(dir, "missing")
	code, _, stderr = checkConfigOf(write("cluster:\n  listen: 127.0.0.1:16222\n  username: petrel\n  password_file: " + missing + "\n"))
	if want := missing + ": no such file or directory"; code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("missing password file: exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
	file := write("cluster:\n  listen: 127.0.0.1:16222\n  nats_url: nats://127.0.0.1:4222\n")
	code, _, stderr = checkConfigOf(file)
	if want := file + ":3: cluster.nats_url: set together with cluster.listen"; code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("listen and nats_url: exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
}

// A lone node of a cluster waits for a peer before it serves; SIGTERM in
// that wait stops it at once, saying why, rather than after the join's
// two minutes.
func TestClusterNodeStopsWhileJoining(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	route := l.Addr().String()
	l.Close()
	cmd := petrel("--listen", "127.0.0.1:0", "--store", "memory", "--node", "lone", "--cluster", route,
		"--log-format", "json")
	// Stopped while joining, the node exits without removing the directory
	// it made for JetStream (there is no data directory): it goes in the
	// test's.
	cmd.Env = append(cmd.Env, "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0", "TMPDIR="+t.TempDir())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waiting := make(chan struct{})
	var lines []string
	var mu sync.Mutex
	done := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
			if strings.Contains(sc.Text(), "waiting for JetStream") {
				once.Do(func() { close(waiting) })
			}
		}
		done <- cmd.Wait()
	}()
	select {
	case <-waiting:
	case err := <-done:
		t.Fatalf("exited before waiting for its peers: %v\n%s", err, strings.Join(lines, "\n"))
	case <-time.After(30 * time.Second):
		t.Fatal("no 'waiting for JetStream' line within 30s")
	}
	sent := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if code := exitCode(err); code != 1 {
			t.Errorf("exit code %d (%v), want 1", code, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still running 5s after SIGTERM")
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(strings.Join(lines, "\n"), "still joining the cluster") {
		t.Errorf("no line saying why it stopped:\n%s", strings.Join(lines, "\n"))
	}
	t.Logf("stopped %v after SIGTERM", time.Since(sent).Round(time.Millisecond))
}
