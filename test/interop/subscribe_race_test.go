//go:build interop

package interop

import (
	"context"
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/petrelmq/petrel/broker"
)

// TestPahoPythonSubscribeRace runs the sequence on which Paho's
// interoperability suite (test_request_response, test_subscribe_options)
// failed most runs: one client subscribes and, without waiting for SUBACK,
// another publishes to that topic at once, from the same process. The
// message must reach the subscriber every time, as from a single-threaded
// broker; ten runs of 100 rounds, each on a fresh broker.
func TestPahoPythonSubscribeRace(t *testing.T) {
	python, err := findPython()
	require(t, "Python paho-mqtt", err)
	for run := range 10 {
		// A round subscribes and unsubscribes: past the default bound of
		// 100 a second per connection.
		b := startBrokerWith(t, broker.Options{Limits: broker.Limits{ControlRate: -1}})
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		out, err := exec.CommandContext(ctx, python, "-u", "subscribe_race.py", b.host, b.port, "100").Output()
		cancel()
		if err != nil {
			t.Fatalf("run %d: subscribe_race.py: %v\n%s", run, err, errOutput(err))
		}
		var res struct{ Rounds, Missed int }
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("run %d: subscribe_race.py printed %q: %v", run, out, err)
		}
		if res.Rounds != 100 || res.Missed != 0 {
			t.Fatalf("run %d: %d of %d messages published right after a SUBSCRIBE missed it", run, res.Missed, res.Rounds)
		}
	}
}

// errOutput is what a failed command wrote to its standard error.
func errOutput(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
