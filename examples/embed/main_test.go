package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The example builds, and its self-check passes: it starts a broker on a
// port the system picks, connects to it with Paho and checks the hooks and
// Server.Publish.
func TestExampleSelfCheck(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "embed")
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command, to build the example: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, gobin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-addr", "127.0.0.1:0", "-selfcheck").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "self-check passed") {
		t.Fatalf("embed -selfcheck: %v\n%s", err, out)
	}
	for _, want := range []string{"client connected", "msg=OnConnect", "access denied", "msg=OnDisconnect", "client disconnected"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the example's log has no %q line:\n%s", want, out)
		}
	}
}
