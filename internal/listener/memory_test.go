//go:build linux

package listener

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/memstat"
)

// TestIdleMemory measures what an idle connection costs the server side:
//
//	PETREL_MEMTEST=1 go test -run TestIdleMemory -v ./listener
//
// PETREL_MEMTEST_CONNS sets the number of connections (default 10,000).
// The clients run in a child process (this test binary again, as
// TestIdleMemoryClient), so their sockets and goroutines do not count.
func TestIdleMemory(t *testing.T) {
	if os.Getenv("PETREL_MEMTEST") != "1" {
		t.Skip("set PETREL_MEMTEST=1 to measure idle connection memory")
	}
	n := 10000
	if s := os.Getenv("PETREL_MEMTEST_CONNS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatalf("PETREL_MEMTEST_CONNS: %v", err)
		}
	}
	if err := memstat.RaiseFileLimit(uint64(n) + 100); err != nil {
		t.Skip(err)
	}
	for _, dk := range driverKinds {
		t.Run(dk.name, func(t *testing.T) { measureIdle(t, dk, n) })
	}
}

// idleEndpoint is as small as an endpoint gets: the figures are the driver's.
type idleEndpoint struct{}

func (idleEndpoint) Data([]byte)    {}
func (idleEndpoint) Output() []byte { return nil }
func (idleEndpoint) Closed(error)   {}

type countingHandler struct {
	opened atomic.Int64
	want   int64
	all    chan struct{}
}

func (h *countingHandler) Open(Conn) Endpoint {
	if h.opened.Add(1) == h.want {
		close(h.all)
	}
	return idleEndpoint{}
}

func measureIdle(t *testing.T, dk driverKind, n int) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	h := &countingHandler{want: int64(n), all: make(chan struct{})}
	d, err := dk.new(ln, h, Options{})
	if err != nil {
		t.Fatal(err)
	}
	go d.Serve(context.Background())
	defer d.Close()
	before := memstat.Take()

	child := exec.Command(os.Args[0], "-test.run=^TestIdleMemoryClient$")
	child.Env = append(os.Environ(), "PETREL_MEMCLIENT_ADDR="+ln.Addr().String(),
		"PETREL_MEMCLIENT_CONNS="+strconv.Itoa(n))
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close() // the child exits, closing its connections
		child.Wait()
	}()
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("child said %q", line)
		}
		ready <- err
		io.Copy(io.Discard, stdout)
	}()
	if err := receive(t, ready, "the client process to connect"); err != nil {
		t.Fatalf("client process: %v", err)
	}
	receive(t, h.all, "every connection to open")
	took := time.Since(start)
	after := memstat.Take()

	heap := float64(after.HeapStack()-before.HeapStack()) / float64(n)
	rss := float64(after.RSS-before.RSS) / float64(n)
	t.Logf("%s driver, %d idle connections (opened in %v): HeapInuse+StackInuse %+.0f B/conn (heap %+.0f, stack %+.0f), VmRSS %+.0f B/conn, goroutines %d",
		dk.name, n, took.Round(time.Millisecond), heap,
		float64(after.Heap-before.Heap)/float64(n), float64(after.Stack-before.Stack)/float64(n),
		rss, after.Goroutines)
}

// TestIdleMemoryClient is the client side of TestIdleMemory, run in a
// child process: it opens the connections, says "ready", and holds them
// until its standard input closes.
func TestIdleMemoryClient(t *testing.T) {
	addr := os.Getenv("PETREL_MEMCLIENT_ADDR")
	if addr == "" {
		t.Skip("run by TestIdleMemory")
	}
	n, _ := strconv.Atoi(os.Getenv("PETREL_MEMCLIENT_CONNS"))
	if err := memstat.RaiseFileLimit(uint64(n) + 100); err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				c, err := net.DialTimeout("tcp", addr, testTimeout)
				if err != nil {
					t.Errorf("dial %d: %v", i, err)
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}
