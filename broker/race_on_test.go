//go:build race

package broker

// raceEnabled: the race detector slows the broker several times; the
// heavier tests do less by default under it.
const raceEnabled = true
