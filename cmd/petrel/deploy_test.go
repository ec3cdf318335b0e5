package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/config"
)

// TestDeployConfigPassesCheckConfig: the example configuration the image
// and the systemd unit ship is valid as it is.
func TestDeployConfigPassesCheckConfig(t *testing.T) {
	code, stdout, stderr := checkConfigOf("../../deploy/petrel.yaml")
	if code != 0 || stdout != "ok\n" || stderr != "" {
		t.Fatalf("check-config deploy/petrel.yaml: exit %d, stdout %q, stderr %q; want 0, \"ok\", nothing", code, stdout, stderr)
	}
}

// unitSettings reads a systemd unit's Key=Value lines; a key may repeat.
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string][]string{}
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: a line that is not Key=Value: %q", path, line)
		}
		settings[k] = append(settings[k], v)
	}
	return settings
}

// TestSystemdUnit: deploy/petrel.service runs the broker hardened (its own
// dynamic user, a read-only system but for its state directory, no
// capabilities), gives the shutdown more time than shutdown_timeout, and
// keeps its state where deploy/petrel.yaml says; systemd-analyze verify
// accepts it, when systemd-analyze is here.
func TestSystemdUnit(t *testing.T) {
	const unit = "../../deploy/petrel.service"
	s := unitSettings(t, unit)
	for key, want := range map[string]string{
		"DynamicUser": "yes", "StateDirectory": "petrel", "ProtectSystem": "strict", "ProtectHome": "yes",
		"PrivateTmp": "yes", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "KillSignal": "SIGTERM",
		"ExecStart": "/usr/local/bin/petrel serve --config /etc/petrel/petrel.yaml",
	} {
		if got := s[key]; !slices.Equal(got, []string{want}) {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
	cfg, err := config.Load("../../deploy/petrel.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Dir != "/var/lib/"+strings.Join(s["StateDirectory"], "") {
		t.Errorf("deploy/petrel.yaml keeps the store in %s, the unit's StateDirectory is /var/lib/%s", cfg.Store.Dir, s["StateDirectory"])
	}
	stop, err := time.ParseDuration(strings.Join(s["TimeoutStopSec"], ""))
	if err != nil || stop <= cfg.ShutdownTimeout.Duration {
		t.Errorf("TimeoutStopSec=%q: systemd must wait longer than shutdown_timeout (%v) before SIGKILL", s["TimeoutStopSec"], cfg.ShutdownTimeout)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze to verify the unit with")
	}
	// verify wants ExecStart's program to exist: this test's binary stands
	// in for /usr/local/bin/petrel.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(unit)
	copied := filepath.Join(t.TempDir(), "petrel.service")
	writeTestFile(t, copied, strings.ReplaceAll(string(data), "/usr/local/bin/petrel", self))
	out, err := exec.Command(analyze, "verify", copied).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	if out, err := exec.Command(analyze, "security", "--offline=yes", copied).CombinedOutput(); err == nil {
		if m := regexp.MustCompile(`Overall exposure level for \S+: .*`).Find(out); m != nil {
			t.Logf("systemd-analyze security: %s", m)
		}
	}
}

// dockerInstructions reads a Dockerfile's instructions, upper-cased, with
// their arguments; continuation lines are joined.
func dockerInstructions(t *testing.T, path string) [][2]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ins [][2]string
	joined := strings.ReplaceAll(string(data), "\\\n", " ")
	for line := range strings.Lines(joined) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		op, args, _ := strings.Cut(line, " ")
		ins = append(ins, [2]string{strings.ToUpper(op), strings.TrimSpace(args)})
	}
	return ins
}

// TestDockerfile: deploy/Dockerfile builds a static binary in a Go stage
// of go.mod's version and runs it from a minimal image as a non-root user,
// with the /data volume as its data directory, the MQTT, MQTT over TLS and
// HTTP ports exposed, and deploy/petrel.yaml as its configuration. (No
// docker daemon is needed: the file is read, not built.)
func TestDockerfile(t *testing.T) {
	ins := dockerInstructions(t, "../../deploy/Dockerfile")
	var froms []string
	var final [][2]string // the instructions of the last stage
	args := map[string]string{}
	for _, in := range ins {
		switch in[0] {
		case "FROM":
			froms = append(froms, in[1])
			final = nil
		case "ARG":
			k, v, _ := strings.Cut(in[1], "=")
			args[k] = v
		}
		final = append(final, in)
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[0], "golang:") {
		t.Fatalf("stages FROM %q: want a golang builder, then the runtime image", froms)
	}
	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goVersion == nil || !strings.HasPrefix(froms[0], "golang:${GO_VERSION}") || args["GO_VERSION"] != string(goVersion[1]) {
		t.Errorf("builder FROM %q with GO_VERSION %q, want golang:${GO_VERSION} with go.mod's %s", froms[0], args["GO_VERSION"], goVersion)
	}
	runtime := froms[len(froms)-1]
	if runtime != "scratch" && !strings.HasPrefix(runtime, "gcr.io/distroless/static") {
		t.Errorf("runtime FROM %q, want scratch or distroless static", runtime)
	}
	static := slices.ContainsFunc(ins, func(in [2]string) bool {
		return in[0] == "RUN" && strings.Contains(in[1], "CGO_ENABLED=0") && strings.Contains(in[1], "go build")
	})
	if !static {
		t.Error("no RUN CGO_ENABLED=0 go build: the binary must be static")
	}

	last := func(op string) (string, bool) {
		for i := len(final) - 1; i >= 0; i-- {
			if final[i][0] == op {
				return final[i][1], true
			}
		}
		return "", false
	}
	if user, ok := last("USER"); !ok || user == "" || user == "root" || strings.HasPrefix(user, "0:") || user == "0" {
		t.Errorf("USER %q, want a non-root user", user)
	}
	if v, _ := last("VOLUME"); v != "/data" && v != `["/data"]` {
		t.Errorf("VOLUME %q, want /data", v)
	}
	if e, _ := last("EXPOSE"); !slices.Equal(strings.Fields(e), []string{"1883", "8883", "8080"}) {
		t.Errorf("EXPOSE %q, want 1883 8883 8080", e)
	}
	entry, _ := last("ENTRYPOINT")
	cmd, _ := last("CMD")
	command := strings.NewReplacer(`"`, "", "[", "", "]", "", ",", "").Replace(entry + " " + cmd)
	if !strings.Contains(command, "petrel serve --config /etc/petrel/petrel.yaml --data-dir /data") {
		t.Errorf("ENTRYPOINT %s CMD %s, want petrel serve --config /etc/petrel/petrel.yaml --data-dir /data", entry, cmd)
	}
	if !slices.Contains(ins, [2]string{"COPY", "deploy/petrel.yaml /etc/petrel/petrel.yaml"}) {
		t.Error("the image does not get deploy/petrel.yaml as /etc/petrel/petrel.yaml")
	}
	cfg, err := config.Load("../../deploy/petrel.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Listeners) == 0 || !strings.HasPrefix(cfg.Listeners[0].Address, "0.0.0.0:1883") {
		t.Errorf("deploy/petrel.yaml listens on %+v: in a container it must listen on 0.0.0.0:1883", cfg.Listeners)
	}
}
