package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sys.interval and --sys-interval: the file's 0 turns $SYS off, which the
// broker spells negative (its 0 means the default); the flag overrides the
// file, and is checked by the file's rules, without blaming the file.
func TestBrokerSysInterval(t *testing.T) {
	seconds := func(n int) *time.Duration { d := time.Duration(n) * time.Second; return &d }
	for _, tc := range []struct {
		yaml string
		flag *time.Duration
		want time.Duration
	}{
		{"", nil, 10 * time.Second},
		{"sys:\n  interval: 30s\n", nil, 30 * time.Second},
		{"sys:\n  interval: 0s\n", nil, -1},
		{"sys:\n  interval: 30s\n", seconds(5), 5 * time.Second},
		{"sys:\n  interval: 30s\n", seconds(0), -1},
		{"", seconds(0), -1},
	} {
		file := filepath.Join(t.TempDir(), "petrel.yaml")
		if err := os.WriteFile(file, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig(file, overrides{sysInterval: tc.flag})
		if err != nil {
			t.Fatalf("%q, flag %v: %v", tc.yaml, tc.flag, err)
		}
		if o, _ := mustBrokerOptions(t, cfg); o.SysInterval != tc.want {
			t.Errorf("%q, flag %v: SysInterval = %v, want %v", tc.yaml, tc.flag, o.SysInterval, tc.want)
		}
	}

	file := filepath.Join(t.TempDir(), "petrel.yaml")
	if err := os.WriteFile(file, []byte("sys:\n  interval: 30s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tooOften := 50 * time.Millisecond
	_, err := loadConfig(file, overrides{sysInterval: &tooOften})
	if err == nil || err.Error() != "sys.interval: 50ms must be 0 (off) or at least 1s" {
		t.Errorf("--sys-interval 50ms: %v, want the key named and no line of the file", err)
	}
}

// A duration without a unit is refused as the file refuses it.
func TestSysIntervalFlagWithoutUnit(t *testing.T) {
	var stderr strings.Builder
	cmd := petrel("--listen", "127.0.0.1:0", "--sys-interval", "10")
	cmd.Stderr = &stderr
	if code := exitCode(cmd.Run()); code != 2 || !strings.Contains(stderr.String(), `write "10s" for seconds`) {
		t.Fatalf("exit %d, stderr %q; want 2 and the unit asked for", code, stderr.String())
	}
}

// petrel serve --sys-interval 1s publishes $SYS/broker/uptime at start and
// again each second, as Mosquitto's mosquitto_sub reads it. (An update may
// come between the subscription and its retained messages, and bring the
// same value as they do: two lines of uptime may be alike, not three.)
func TestServeSysInterval(t *testing.T) {
	sub := lookTool(t, "mosquitto_sub")
	b := startConfigured(t, t.TempDir(), "listeners:\n  - address: 127.0.0.1:0\nstore:\n  engine: memory\n",
		"--sys-interval", "1s")
	_, port, _ := net.SplitHostPort(b.addr)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, sub, "-h", "127.0.0.1", "-p", port, "-t", "$SYS/broker/version",
		"-t", "$SYS/broker/uptime", "-v", "-C", "4", "-W", "15").Output()
	if err != nil {
		t.Fatalf("mosquitto_sub: %v; printed %q", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	versions, uptimes := 0, make(map[string]bool)
	for _, line := range lines {
		if v, ok := strings.CutPrefix(line, "$SYS/broker/uptime "); ok && strings.HasSuffix(v, " seconds") {
			uptimes[v] = true
		} else if strings.HasPrefix(line, "$SYS/broker/version petrel version ") {
			versions++
		}
	}
	if len(lines) != 4 || versions != 1 || len(uptimes) < 2 {
		t.Errorf("mosquitto_sub printed %q; want the version once, and the uptime changing", lines)
	}
}
