package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// loggedBroker is petrel serve as a child process writing a JSON log,
// every line of which the test keeps.
type loggedBroker struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{} // closed once the process is gone and its log read
	err    error         // its exit status, set before exited closes
	gone   time.Time     // when Wait returned

	mu    sync.Mutex
	lines []string
}

// startLoggedBroker runs petrel serve on a free loopback port with a JSON
// log at info, and extra arguments.
func startLoggedBroker(t *testing.T, extra ...string) *loggedBroker {
	t.Helper()
	args := append([]string{"--listen", "127.0.0.1:0", "--log-level", "info", "--log-format", "json"}, extra...)
	b := &loggedBroker{cmd: petrel(args...), exited: make(chan struct{})}
	// Under the race detector a process sleeps a second before it exits
	// (atexit_sleep_ms), which is not the broker's time.
	b.cmd.Env = append(b.cmd.Env, "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			b.mu.Lock()
			b.lines = append(b.lines, line)
			b.mu.Unlock()
			if strings.Contains(line, `"msg":"listening"`) {
				var m struct{ Addr string }
				json.Unmarshal([]byte(line), &m)
				addrs <- m.Addr
			}
		}
		b.err = b.cmd.Wait()
		b.gone = time.Now()
		close(b.exited)
	}()
	t.Cleanup(func() {
		b.cmd.Process.Kill()
		<-b.exited
	})
	select {
	case b.addr = <-addrs:
	case <-b.exited:
		t.Fatalf("broker exited before listening: %v\n%s", b.err, b.log())
	case <-time.After(20 * time.Second):
		t.Fatal("broker did not start listening within 20s")
	}
	return b
}

// log returns the lines so far, for failure messages.
func (b *loggedBroker) log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// find returns the lines whose msg is msg, decoded.
func (b *loggedBroker) find(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var found []map[string]any
	for _, line := range b.lines {
		if !strings.Contains(line, `"msg":"`+msg+`"`) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, line)
		}
		if m["msg"] == msg {
			found = append(found, m)
		}
	}
	return found
}

// stop sends sig and waits for the process to exit, at most within.
// It returns how long that took from the signal.
func (b *loggedBroker) stop(t *testing.T, sig os.Signal, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if err := b.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.exited:
		return b.gone.Sub(start)
	case <-time.After(within):
		t.Fatalf("the broker did not exit within %v of %v; its log ends:\n%s", within, sig, tail(b.log(), 20))
		return 0
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
