//go:build interop

package interop

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// message is a PUBLISH as a subscriber saw it, whichever client it was.
type message struct {
	Topic   string `json:"topic"`
	Payload string `json:"payload"`
	QoS     byte   `json:"qos"`
	Retain  bool   `json:"retain"`
}

func (m message) String() string {
	s := fmt.Sprintf("%s %q QoS %d", m.Topic, m.Payload, m.QoS)
	if m.Retain {
		s += " retained"
	}
	return s
}

func compareMessages(a, b message) int {
	return cmp.Or(
		strings.Compare(a.Topic, b.Topic),
		strings.Compare(a.Payload, b.Payload),
		cmp.Compare(a.QoS, b.QoS),
		cmp.Compare(fmt.Sprint(a.Retain), fmt.Sprint(b.Retain)),
	)
}

// errNoMessage is what a receiver returns when nothing arrived in time.
var errNoMessage = errors.New("no message")

// A receiver is a subscriber of any kind: a peer, the Go reference client,
// mosquitto_sub.
type receiver interface {
	fmt.Stringer
	// receive returns the next message, errNoMessage once wait has passed,
	// or another error when no message can come any more.
	receive(wait time.Duration) (message, error)
}

// expect reads len(want) messages from r and fails unless they are want,
// in any order: different topics may be delivered in any order.
func expect(t *testing.T, r receiver, want ...message) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var got []message
	for len(got) < len(want) {
		m, err := r.receive(time.Until(deadline))
		if err != nil {
			t.Fatalf("%v received %d of %d messages (%v):\n got: %s\nwant: %s",
				r, len(got), len(want), err, list(got), list(want))
		}
		got = append(got, m)
	}
	slices.SortFunc(got, compareMessages)
	want = slices.Clone(want)
	slices.SortFunc(want, compareMessages)
	if !slices.Equal(got, want) {
		t.Fatalf("%v received the wrong messages:\n got: %s\nwant: %s", r, list(got), list(want))
	}
}

// expectNoMore fails if r has a message waiting; it does not wait for one.
func expectNoMore(t *testing.T, r receiver) {
	t.Helper()
	if m, err := r.receive(0); err == nil {
		t.Fatalf("%v received an unexpected message: %v", r, m)
	}
}

func list(ms []message) string {
	if len(ms) == 0 {
		return "(none)"
	}
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = m.String()
	}
	return strings.Join(s, "; ")
}

// receiveFrom takes the next message from ch within wait; closed tells why
// none can come once ch is closed.
func receiveFrom(ch <-chan message, wait time.Duration, closed func() error) (message, error) {
	if wait <= 0 {
		select {
		case m, ok := <-ch:
			if !ok {
				return message{}, closed()
			}
			return m, nil
		default:
			return message{}, errNoMessage
		}
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case m, ok := <-ch:
		if !ok {
			return message{}, closed()
		}
		return m, nil
	case <-timer.C:
		return message{}, fmt.Errorf("%w within %v", errNoMessage, wait)
	}
}
