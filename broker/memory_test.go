//go:build linux

package broker

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/petrelmq/petrel/internal/memstat"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// TestIdleMemory measures the broker memory an idle MQTT client costs: a
// TCP connection that sent CONNECT (clean session, keep alive 0) and got
// CONNACK, with its session. Run it with
//
//	PETREL_MEMTEST=1 go test -run 'TestIdleMemory$' -v ./broker
//
// PETREL_MEMTEST_CONNS sets the count (default 10,000). The clients run in a
// child process (this test binary again), so only the broker is measured.
func TestIdleMemory(t *testing.T) {
	if os.Getenv("PETREL_MEMTEST") != "1" {
		t.Skip("set PETREL_MEMTEST=1 to measure idle connection memory")
	}
	n := 10000
	if s := os.Getenv("PETREL_MEMTEST_CONNS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	if err := memstat.RaiseFileLimit(uint64(n) + 200); err != nil {
		t.Skip(err)
	}
	for _, goroutines := range []bool{false, true} {
		name := map[bool]string{false: "event-loop", true: "goroutine"}[goroutines]
		t.Run(name, func(t *testing.T) {
			srv := New(Options{Listeners: []ListenerConfig{{Address: "127.0.0.1:0", goroutineDriver: goroutines}}})
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			before := memstat.Take()
			start := time.Now()
			stop := startIdleClients(t, srv.Addrs()[0].String(), n)
			defer stop()
			took := time.Since(start)
			after := memstat.Take()
			if f := os.Getenv("PETREL_MEMTEST_HEAPPROFILE"); f != "" && !goroutines {
				out, err := os.Create(f)
				if err == nil {
					pprof.WriteHeapProfile(out)
					out.Close()
				}
			}
			per := func(a, b int64) float64 { return float64(a-b) / float64(n) }
			t.Logf("%s driver, %d idle MQTT clients (connected in %v, %.0f/s): HeapInuse+StackInuse %.0f B/conn (heap %.0f, stack %.0f), VmRSS %.0f B/conn, goroutines %d",
				name, n, took.Round(time.Millisecond), float64(n)/took.Seconds(),
				per(after.HeapStack(), before.HeapStack()), per(after.Heap, before.Heap), per(after.Stack, before.Stack),
				per(after.RSS, before.RSS), after.Goroutines)
		})
	}
}

// startIdleClients runs the client process and returns once every client
// has its CONNACK; stop ends the process and its connections.
func startIdleClients(t *testing.T, addr string, n int) (stop func()) {
	child := exec.Command(os.Args[0], "-test.run=^TestIdleMemoryClient$")
	child.Env = append(os.Environ(), "PETREL_MEMCLIENT_ADDR="+addr, "PETREL_MEMCLIENT_CONNS="+strconv.Itoa(n))
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	stop = func() {
		stdin.Close()
		child.Wait()
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("child said %q", line)
		}
		ready <- err
		io.Copy(io.Discard, stdout)
	}()
	select {
	case err := <-ready:
		if err != nil {
			stop()
			t.Fatalf("client process: %v", err)
		}
	case <-time.After(2 * time.Minute):
		stop()
		t.Fatal("client process did not connect in 2 minutes")
	}
	return stop
}

// TestIdleMemoryClient is the client side of TestIdleMemory, in a child
// process: it connects n MQTT clients, says "ready", and holds them until
// its standard input closes.
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
				c, err := net.DialTimeout("tcp", addr, wiretest.Timeout)
				if err != nil {
					t.Errorf("dial %d: %v", i, err)
					return
				}
				conns[i] = c
				connect, _ := packet.Append(nil, &packet.Connect{Version: packet.V311, CleanStart: true,
					ClientID: fmt.Sprintf("idle-%06d", i)}, packet.V311)
				ack := make([]byte, 4)
				c.SetDeadline(time.Now().Add(wiretest.Timeout))
				if _, err := c.Write(connect); err != nil {
					t.Errorf("connect %d: %v", i, err)
					return
				}
				if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
					t.Errorf("connack %d: % x %v", i, ack, err)
					return
				}
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

// An idle connection's conn and session are most of its memory (issue 21:
// an idle connection within 0.5 KiB). A field that takes either past its
// size class costs every connection the next class's 16 bytes or more:
// put what few connections need in inRare, outRare or sessionAside.
func TestIdleStructsSizeClass(t *testing.T) {
	for _, s := range []struct {
		name      string
		size, max uintptr
	}{
		{"conn", unsafe.Sizeof(conn{}), 160},
		{"session", unsafe.Sizeof(session{}), 128},
	} {
		if s.size > s.max {
			t.Errorf("%s is %d bytes, past the %d-byte size class", s.name, s.size, s.max)
		}
	}
}
