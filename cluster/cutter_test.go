package cluster

import (
	"io"
	"net"
	"regexp"
	"sync"
	"testing"
	"time"
)

// cutter stands in every route between the nodes of a test, so that the
// test can cut a node off from the others and restore it. Each node
// advertises a proxy of its route port (cluster.advertise) and names the
// others' proxies as its peers: every route connection, named or learned
// by gossip, is dialed to a proxy. A connection's ends are the proxy's
// node and the dialer, which names itself (server_name) in the route INFO
// it sends; what the dialer sends waits until then, so that nothing
// crosses a cut.
type cutter struct {
	t     *testing.T
	mu    sync.Mutex
	cut   map[string]bool // nodes cut off
	conns map[*routeConn]bool
}

type routeConn struct {
	dialer, node string // dialer is "" until it has named itself
	a, b         net.Conn
}

func (rc *routeConn) close() {
	rc.a.Close()
	rc.b.Close()
}

// startCutProcs starts n nodes as startProcs does, with their routes
// through ct.
func startCutProcs(t *testing.T, n int, ct *cutter) []*procNode {
	t.Helper()
	return startProcsWith(t, n, func(nodes []*procNode) {
		fronts := make([]string, len(nodes))
		for i, nd := range nodes {
			fronts[i] = ct.front(nd.name, nd.route)
			nd.advertise = fronts[i]
		}
		for i, nd := range nodes {
			nd.peers = nil
			for j, f := range fronts {
				if j != i {
					nd.peers = append(nd.peers, f)
				}
			}
		}
	})
}

func newCutter(t *testing.T) *cutter {
	ct := &cutter{t: t, cut: map[string]bool{}, conns: map[*routeConn]bool{}}
	t.Cleanup(func() {
		ct.mu.Lock()
		defer ct.mu.Unlock()
		for rc := range ct.conns {
			rc.close()
		}
	})
	return ct
}

// front listens on a port of its own for node's route connections, and
// forwards them to its route address. It returns the proxy's address.
func (ct *cutter) front(node, route string) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ct.t.Fatal(err)
	}
	ct.t.Cleanup(func() { l.Close() })
	go func() {
		for {
			a, err := l.Accept()
			if err != nil {
				return
			}
			go ct.forward(node, route, a)
		}
	}()
	return l.Addr().String()
}

var serverNameRE = regexp.MustCompile(`"server_name":"([^"]+)"`)

// forward joins a, a connection to node's proxy, to node's route port,
// once it knows who dialed, unless either end is cut off.
func (ct *cutter) forward(node, route string, a net.Conn) {
	ct.mu.Lock()
	isCut := ct.cut[node]
	ct.mu.Unlock()
	if isCut {
		a.Close()
		return
	}
	b, err := net.DialTimeout("tcp", route, 5*time.Second)
	if err != nil {
		a.Close()
		return
	}
	rc := &routeConn{node: node, a: a, b: b}
	if !ct.add(rc) {
		return
	}
	defer ct.remove(rc)
	go func() {
		_, _ = io.Copy(a, b)
		rc.close()
	}()
	// Hold what the dialer sends until it has named itself.
	var held []byte
	buf := make([]byte, 32<<10)
	for rc.dialer == "" {
		_ = a.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := a.Read(buf)
		if err != nil {
			rc.close()
			return
		}
		held = append(held, buf[:n]...)
		if m := serverNameRE.FindSubmatch(held); m != nil {
			if !ct.named(rc, string(m[1])) {
				return
			}
		} else if len(held) > 1<<20 {
			ct.t.Errorf("cutter: a route connection to %s sent %d bytes without naming its node", node, len(held))
			rc.close()
			return
		}
	}
	_ = a.SetReadDeadline(time.Time{})
	if _, err := b.Write(held); err != nil {
		rc.close()
		return
	}
	_, _ = io.Copy(b, a)
	rc.close()
}

func (ct *cutter) add(rc *routeConn) bool {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if ct.cut[rc.node] {
		rc.close()
		return false
	}
	ct.conns[rc] = true
	return true
}

func (ct *cutter) remove(rc *routeConn) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	delete(ct.conns, rc)
}

// named records rc's dialer; false (and rc closed) when it is cut off.
func (ct *cutter) named(rc *routeConn, dialer string) bool {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	rc.dialer = dialer
	if ct.cut[dialer] || ct.cut[rc.node] {
		rc.close()
		return false
	}
	return true
}

// isolate cuts node off from every other: its route connections close,
// and new ones are closed before anything crosses.
func (ct *cutter) isolate(node string) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	ct.cut[node] = true
	for rc := range ct.conns {
		if rc.node == node || rc.dialer == node {
			rc.close()
		}
	}
}

// heal lets node's routes through again; the nodes dial each other anew.
func (ct *cutter) heal(node string) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	delete(ct.cut, node)
}

// bridged reports whether some route connection joins a and b.
func (ct *cutter) bridged(a, b string) bool {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	for rc := range ct.conns {
		if rc.node == a && rc.dialer == b || rc.node == b && rc.dialer == a {
			return true
		}
	}
	return false
}
