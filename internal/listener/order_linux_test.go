package listener

import (
	"io"
	"sync"
	"testing"
)

// On a driver that is not busy, bytes that reached one connection before
// another's are handed to their endpoints first, though the two are on
// different loops: the order a single event loop would give. (With loops
// that each parked on Go's poller, the later connection's Data came first
// in most rounds.) The broker's TestSubscribeTakesEffectBeforeALaterPublish
// checks the same through MQTT.
func TestEarlierBytesHandedOverFirstAcrossLoops(t *testing.T) {
	const rounds = 500
	h := newTestHandler(t)
	var mu sync.Mutex
	var order []byte
	h.onData = func(e *testEndpoint, b []byte) {
		for _, c := range b {
			if e.role == 0 {
				e.role = c // the first byte names the connection
				continue
			}
			mu.Lock()
			order = append(order, e.role)
			mu.Unlock()
			e.write([]byte{c})
		}
	}
	dk := driverKind{"eventloop", NewEventLoopDriver}
	s := startServer(t, dk, h, Options{Loops: 2})
	first, second := dial(t, s.addr), dial(t, s.addr)
	first.Write([]byte("F"))
	second.Write([]byte("S"))
	e1, e2 := receive(t, h.opened, "Open"), receive(t, h.opened, "Open")
	if e1.conn.(*econn).l == e2.conn.(*econn).l {
		t.Fatal("both connections are on one loop; the test needs two")
	}
	echo := make([]byte, 1)
	for i := range rounds {
		// Back to back from this goroutine: first's byte is in its socket
		// before second's is written.
		first.Write([]byte{'x'})
		second.Write([]byte{'x'})
		for _, c := range []io.Reader{first, second} {
			if _, err := io.ReadFull(c, echo); err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	misordered := 0
	for i := 0; i+1 < len(order); i += 2 {
		if order[i] != 'F' || order[i+1] != 'S' {
			misordered++
		}
	}
	// A round or two in a thousand runs can still come out the other way,
	// not always the driver's doing: the kernel hands a socket the bytes
	// written to it from the CPU that wrote them, and a writer moved to the
	// other CPU between its two writes can have the second delivered
	// first. Loops that parked on Go's poller each misordered most rounds;
	// a hub's set watched level-triggered, a third.
	if len(order) != 2*rounds || misordered > rounds/100 {
		t.Fatalf("%d of %d rounds handed the later bytes over first (%d Data calls)", misordered, rounds, len(order))
	}
}
