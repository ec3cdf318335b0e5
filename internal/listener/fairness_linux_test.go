package listener

import (
	"io"
	"sync"
	"testing"
	"time"
)

// A connection that becomes ready while the loop works through a long
// round of busy senders is served within about one of their reads, not at
// the end of the round: otherwise another loop could route a PUBLISH that
// arrived after this connection's SUBSCRIBE before the SUBSCRIBE, and the
// subscriber would miss a message sent after it subscribed.
func TestNewlyReadyServedBeforeTheRoundEnds(t *testing.T) {
	const busy = 8
	h := newTestHandler(t)
	var mu sync.Mutex
	var order []byte // the role of each Data call; '|' marks the light client's write
	h.onData = func(e *testEndpoint, b []byte) {
		if e.role == 0 {
			e.role = b[0]
		}
		if e.role == 'B' {
			// A busy sender's read carries work: a millisecond of it.
			for start := time.Now(); time.Since(start) < time.Millisecond; {
			}
		} else {
			e.write([]byte("ok")) // answered, as a SUBSCRIBE is
		}
		mu.Lock()
		order = append(order, e.role)
		mu.Unlock()
	}
	dk := driverKind{"eventloop", NewEventLoopDriver}
	s := startServer(t, dk, h, Options{Loops: 1, ReadBufferSize: 1024})

	light := dial(t, s.addr)
	light.Write([]byte("L"))
	receive(t, h.opened, "Open")
	reply := make([]byte, 2)
	if _, err := io.ReadFull(light, reply); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	for range busy {
		c := dial(t, s.addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			chunk := make([]byte, 64<<10)
			chunk[0] = 'B'
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
				c.Write(chunk)
			}
		}()
	}
	// Wait until rounds of busy reads run, then write once more.
	deadline := time.Now().Add(testTimeout)
	for {
		mu.Lock()
		n := len(order)
		mu.Unlock()
		if n > 4*busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the busy senders were not served")
		}
		time.Sleep(time.Millisecond)
	}
	// Like a client that waits for each answer (CONNACK, then SUBSCRIBE),
	// the light one writes again once answered.
	for round := range 5 {
		mu.Lock()
		order = append(order, '|')
		mu.Unlock()
		light.Write([]byte("L"))
		var before int
		for found := false; !found; {
			if time.Now().After(deadline) {
				t.Fatal("the light client was not served")
			}
			time.Sleep(time.Millisecond)
			mu.Lock()
			mark := -1
			for i := len(order) - 1; i >= 0; i-- {
				if order[i] == '|' {
					mark = i
					break
				}
			}
			before = 0
			for _, r := range order[mark+1:] {
				if r == 'L' {
					found = true
					break
				}
				before++
			}
			mu.Unlock()
		}
		// The read under way, and perhaps one begun before the loop looked.
		if before > 2 {
			t.Errorf("round %d: the light client waited for %d busy reads (a round is %d)", round, before, busy)
		}
		if _, err := io.ReadFull(light, reply); err != nil {
			t.Fatal(err)
		}
	}
}
