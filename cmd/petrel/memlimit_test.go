package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/petrelmq/petrel/internal/config"
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
