package cluster

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The nodes of these tests are `petrel serve` processes, children of the
// test, so that one can be killed (SIGKILL) as a machine dies.

var petrelBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "petrel-cluster-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	petrelBin = filepath.Join(dir, "petrel")
	build := exec.Command("go", "build", "-o", petrelBin, "../cmd/petrel")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build petrel:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// procNode is one node running as a child process; without a route, a
// single broker.
type procNode struct {
	name, route, addr, dir string
	peers                  []string
	advertise              string // cluster.advertise, when set
	cmd                    *exec.Cmd
	done                   chan struct{}

	mu  sync.Mutex
	log []string
}

var listeningRE = regexp.MustCompile(`msg=listening .*addr=(127\.0\.0\.1:\d+)`)

// startProcs starts n nodes, each with its own data directory (pebble),
// and returns once every one serves and has joined.
func startProcs(t *testing.T, n int) []*procNode {
	t.Helper()
	return startProcsWith(t, n, nil)
}

// startProcsWith is startProcs with the nodes changed by adjust (if not
// nil) before they start.
func startProcsWith(t *testing.T, n int, adjust func(nodes []*procNode)) []*procNode {
	t.Helper()
	return onFreePorts(t, func() ([]*procNode, error) { return tryStartProcs(t, n, adjust) })
}

func tryStartProcs(t *testing.T, n int, adjust func(nodes []*procNode)) ([]*procNode, error) {
	t.Helper()
	nodes := make([]*procNode, n)
	routes := make([]string, n)
	for i := range routes {
		routes[i] = freePort(t)
	}
	for i := range nodes {
		nodes[i] = &procNode{name: fmt.Sprintf("n%d", i+1), route: routes[i], dir: filepath.Join(t.TempDir(), "data")}
		// Every node names every other, as docs/CLUSTER.md says to: nodes
		// starting together that each know only one peer can bootstrap
		// JetStream twice, one node alone (seen once in ten runs).
		for j, r := range routes {
			if j != i {
				nodes[i].peers = append(nodes[i].peers, r)
			}
		}
	}
	if adjust != nil {
		adjust(nodes)
	}
	for _, nd := range nodes {
		nd.start(t)
	}
	if err := serving(nodes...); err != nil {
		for _, nd := range nodes {
			nd.kill(t)
		}
		return nil, err
	}
	return nodes, nil
}

// start runs the node's process (again, after a kill: same name, route
// and data directory).
func (nd *procNode) start(t *testing.T) {
	t.Helper()
	args := []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", nd.dir, "--node", nd.name,
		"--log-level", "info", "--sys-interval", "0"}
	yaml := "limits:\n  control_rate: 100000\n"
	if nd.route != "" {
		args = append(args, "--cluster", nd.route)
		// A short node timeout, so that a killed node's routes go quickly.
		yaml += "cluster:\n  node_timeout: 1s\n"
		if nd.advertise != "" {
			yaml += "  advertise: " + nd.advertise + "\n"
		}
	}
	if len(nd.peers) > 0 {
		args = append(args, "--peers", strings.Join(nd.peers, ","))
	}
	conf := filepath.Join(filepath.Dir(nd.dir), "petrel.yaml")
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	args = append(args, "--config", conf)
	cmd := exec.Command(petrelBin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", nd.name, err)
	}
	nd.mu.Lock()
	nd.cmd, nd.addr, nd.log = cmd, "", nil
	nd.done = make(chan struct{})
	done := nd.done
	nd.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			nd.mu.Lock()
			nd.log = append(nd.log, line)
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				nd.addr = m[1]
			}
			nd.mu.Unlock()
		}
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			nd.mu.Lock()
			for _, l := range nd.log {
				t.Logf("%s: %s", nd.name, l)
			}
			nd.mu.Unlock()
		}
	})
}

// serving waits for the node's MQTT listener (which opens once the node
// has joined the cluster); an error says why it never opened.
func (nd *procNode) serving() error { return serving(nd) }

// serving waits until every node serves. A node that exits first is the
// error, whichever it is: the others may be waiting for it (a peer's route
// port taken by another socket ends that peer at once, while the rest wait
// for their quorum).
func serving(nodes ...*procNode) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		waiting := ""
		for _, nd := range nodes {
			nd.mu.Lock()
			addr := nd.addr
			nd.mu.Unlock()
			if addr != "" {
				continue
			}
			select {
			case <-nd.done:
				nd.mu.Lock()
				defer nd.mu.Unlock()
				for _, l := range nd.log {
					if strings.Contains(l, "cannot start") {
						return fmt.Errorf("%s exited before serving: %s", nd.name, l)
					}
				}
				return fmt.Errorf("%s exited before serving", nd.name)
			default:
			}
			waiting = nd.name
		}
		if waiting == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not serve after 60s", waiting)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop ends the node as SIGTERM does, and waits for it to be gone.
func (nd *procNode) stop(t *testing.T) {
	t.Helper()
	_ = nd.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-nd.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s still running 30s after SIGTERM", nd.name)
	}
}

// kill ends the node as a crash would, and waits for it to be gone.
func (nd *procNode) kill(t *testing.T) {
	t.Helper()
	_ = nd.cmd.Process.Kill()
	<-nd.done
}

// logged reports whether the node logged a line containing all of parts.
func (nd *procNode) logged(parts ...string) bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	for _, l := range nd.log {
		all := true
		for _, p := range parts {
			if !strings.Contains(l, p) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// count says how many lines the node logged containing part.
func (nd *procNode) count(part string) int {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	n := 0
	for _, l := range nd.log {
		if strings.Contains(l, part) {
			n++
		}
	}
	return n
}

// waitReplicated waits until the retained bucket has 3 replicas, so that
// losing one node loses none of it.
func waitReplicated(t *testing.T, nodes []*procNode) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, nd := range nodes {
			if nd.logged("retained messages replicated", "replicas=3") {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the retained bucket never reached 3 replicas")
}
