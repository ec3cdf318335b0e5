//go:build linux

package listener

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
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
	if err := raiseFileLimit(uint64(n) + 100); err != nil {
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
	before := sampleMemory()

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
	after := sampleMemory()

	heap := float64(after.heapStack-before.heapStack) / float64(n)
	rss := float64(after.rss-before.rss) / float64(n)
	t.Logf("%s driver, %d idle connections (opened in %v): HeapInuse+StackInuse %+.0f B/conn (heap %+.0f, stack %+.0f), VmRSS %+.0f B/conn, goroutines %d",
		dk.name, n, took.Round(time.Millisecond), heap,
		float64(after.heap-before.heap)/float64(n), float64(after.stack-before.stack)/float64(n),
		rss, after.goroutines)
}

type memSample struct {
	heap, stack, heapStack, rss int64
	goroutines                  int
}

func sampleMemory() memSample {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := memSample{
		heap:       int64(ms.HeapInuse),
		stack:      int64(ms.StackInuse),
		rss:        vmRSS(),
		goroutines: runtime.NumGoroutine(),
	}
	s.heapStack = s.heap + s.stack
	return s
}

// vmRSS is the resident set size in bytes, or 0 where /proc is missing.
func vmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, _ := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// raiseFileLimit lifts the soft descriptor limit towards the hard one.
func raiseFileLimit(need uint64) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return err
		}
	}
	if rl.Cur < need {
		return fmt.Errorf("need %d descriptors, the limit is %d (ulimit -n)", need, rl.Cur)
	}
	return nil
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
	if err := raiseFileLimit(uint64(n) + 100); err != nil {
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
