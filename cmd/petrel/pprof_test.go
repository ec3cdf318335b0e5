package main

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestPprofOnlyOnLoopback(t *testing.T) {
	var stderr bytes.Buffer
	cmd := petrel("--listen", "127.0.0.1:0", "--store", "memory", "--pprof", "0.0.0.0:0")
	cmd.Stderr = &stderr
	if code := exitCode(cmd.Run()); code != 2 || !strings.Contains(stderr.String(), "only a loopback address") {
		t.Fatalf("exit %d, stderr %q; want 2 and the reason", code, stderr.String())
	}
}

func TestPprofServesProfiles(t *testing.T) {
	cmd := petrel("--listen", "127.0.0.1:0", "--store", "memory", "--log-level", "info", "--pprof", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := awaitLog(t, stderr, `msg="serving profiles" url=(\S+)`)
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(url + "goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(body.String(), "goroutine profile:") {
		t.Fatalf("GET goroutine profile: %s, %.200q", resp.Status, body.String())
	}
}
