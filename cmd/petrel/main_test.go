package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the tests run this binary as the petrel command: a child
// started with PETREL_TEST_MAIN=1 runs main's logic on its arguments.
func TestMain(m *testing.M) {
	if os.Getenv("PETREL_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func petrel(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "PETREL_TEST_MAIN=1")
	return cmd
}

func TestBadConfigNamesFileLineAndKey(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "petrel.yaml")
	os.WriteFile(file, []byte("log:\n  level: info\nmqtt:\n  max_inflight: lots\n"), 0o600)
	var stderr bytes.Buffer
	cmd := petrel("--config", file, "--data-dir", dir)
	cmd.Stderr = &stderr
	err := cmd.Run()
	if code := exitCode(err); code != 2 {
		t.Fatalf("exit code %d (%v), want 2; stderr: %s", code, err, stderr.String())
	}
	want := file + ":4: mqtt.max_inflight:"
	if !strings.Contains(stderr.String(), want) {
		t.Fatalf("stderr %q does not name %q", stderr.String(), want)
	}
}

func TestUnknownCommand(t *testing.T) {
	var stderr bytes.Buffer
	cmd := petrel("frobnicate")
	cmd.Stderr = &stderr
	if code := exitCode(cmd.Run()); code != 2 || !strings.Contains(stderr.String(), `unknown command "frobnicate"`) {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestBadListenAddress(t *testing.T) {
	var stderr bytes.Buffer
	cmd := petrel("--listen", "nonsense")
	cmd.Stderr = &stderr
	if code := exitCode(cmd.Run()); code != 2 || !strings.Contains(stderr.String(), "listeners[0].address") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

// TestServeAndStop runs the broker on a free port, talks MQTT to it and
// stops it with SIGTERM.
func TestServeAndStop(t *testing.T) {
	cmd := petrel("--listen", "127.0.0.1:0", "--log-level", "info", "--data-dir", t.TempDir())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	addr := awaitLog(t, stderr, `msg=listening .*addr=(\S+)`)

	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// CONNECT (3.1.1, clean session, client id "cli"), then PINGREQ.
	c.Write([]byte{0x10, 15, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 3, 'c', 'l', 'i', 0xc0, 0})
	got := make([]byte, 6)
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, []byte{0x20, 2, 0, 0, 0xd0, 0}) {
		t.Fatalf("got % x (%v), want CONNACK then PINGRESP", got, err)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		exited = true
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the broker did not stop within 10s of SIGTERM")
	}
}

// awaitLog reads the broker's log until a line matches pattern, and returns
// the pattern's first group. The rest of the log is read and dropped, so
// the broker never blocks on it.
func awaitLog(t *testing.T, log io.Reader, pattern string) string {
	t.Helper()
	re := regexp.MustCompile(pattern)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(log)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case v := <-found:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("the broker logged no line matching %q", pattern)
		return ""
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}
