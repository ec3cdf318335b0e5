package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/petrelmq/petrel/client"
	"github.com/petrelmq/petrel/internal/config"
	"github.com/petrelmq/petrel/packet"
)

func TestMemoryLimitFromBudgets(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits config.Limits
		want   int64
	}{
		{"defaults", config.Default().Limits, 128<<20 + 256<<20},
		{"connections bounded too", config.Limits{QueuedMemory: 32 * config.MiB, MaxConnections: 100, MaxOutboundBytes: config.MiB}, 128<<20 + 32<<20 + 100<<20},
		{"outbound unlimited", config.Limits{QueuedMemory: 32 * config.MiB, MaxConnections: 100}, 128<<20 + 32<<20},
		{"queues unlimited", config.Limits{MaxConnections: 100, MaxOutboundBytes: config.MiB}, 0},
	} {
		if got := memoryLimit(tc.limits); got != tc.want {
			t.Errorf("%s: memoryLimit = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// `petrel serve` puts the derived limit in force, unless GOMEMLIMIT says
// otherwise; the log line reads the limit back from the runtime.
func TestServeSetsMemoryLimit(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "petrel.yaml")
	yaml := "limits:\n  queued_memory: 32MiB\n  max_connections: 100\n  max_outbound_bytes: 1MiB\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, env, pattern, want string
	}{
		// 128MiB of headroom, 32MiB of queues, 100 connections × 1MiB.
		{"derived", "", `msg="memory: soft limit set.*" limit=(\S+)`, "260MiB"},
		{"GOMEMLIMIT", "GOMEMLIMIT=1GiB", `msg="memory: GOMEMLIMIT is set.* limit=(\S+)`, "1GiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := petrel("serve", "--config", file, "--listen", "127.0.0.1:0", "--store", "memory")
			if tc.env != "" {
				cmd.Env = append(cmd.Env, tc.env)
			}
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				cmd.Process.Kill()
				cmd.Wait()
			})
			if got := awaitLog(t, stderr, tc.pattern); got != tc.want {
				t.Errorf("limit in force %s, want %s", got, tc.want)
			}
		})
	}
}

func TestLimitWithState(t *testing.T) {
	const base = 384 << 20
	for _, tc := range []struct {
		name               string
		live, queued, want int64
	}{
		{"state within the allowance", 40 << 20, 0, base},
		{"queues are budgeted, not state", 300 << 20, 280 << 20, base},
		{"1,000,000 retained messages", 450 << 20, 0, base + 483<<20}, // (450-64) × 1.25 = 482.5, up
		{"rounded up to a MiB", 64<<20 + 1, 0, base + 1<<20},
		{"store bytes counted as queued: errs low", 100 << 20, 1 << 30, base},
	} {
		if got := limitWithState(base, tc.live, tc.queued); got != tc.want {
			t.Errorf("%s: limitWithState = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// A broker whose retained messages outgrow the headroom's share for state
// raises its soft limit above what is live, rather than leaving the
// collector to run all the time under it.
func TestServeLimitFollowsRetained(t *testing.T) {
	dir := t.TempDir()
	// 128MiB of headroom and 8MiB of queues: 136MiB, of which 64MiB for state.
	b := startConfigured(t, dir, "listeners:\n  - address: 127.0.0.1:0\nlimits:\n  queued_memory: 8MiB\nstore:\n  engine: memory\n")
	b.log.waitFor(t, `msg="memory: soft limit set.*" limit=136MiB`)
	c, _, err := client.Connect(t.Context(), client.Options{Addr: b.addr, Version: packet.V311, CleanStart: true,
		ClientID: "retainer", MaxInflight: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := make([]byte, 200<<10)
	for i := range 600 { // 117MiB retained: 53MiB past the allowance
		payload[0], payload[1] = byte(i), byte(i>>8)
		if _, err := c.Publish(t.Context(), &packet.Publish{Topic: fmt.Sprintf("big/%d", i), QoS: 1, Retain: true, Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	m := b.log.waitFor(t, `msg="memory: soft limit follows the broker's state" limit=(\S+) live_heap=(\S+)`)
	limit, err1 := config.ParseSize(m[1])
	live, err2 := config.ParseSize(m[2])
	if err1 != nil || err2 != nil || limit <= live || limit <= 136<<20 {
		t.Errorf("soft limit %s with %s live; want it above both the live heap and the configured 136MiB", m[1], m[2])
	}
}
