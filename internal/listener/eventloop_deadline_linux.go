//go:build linux

package listener

import (
	"time"
)

// nextDeadline is the nearest close or drain deadline, if any.
func (l *loop) nextDeadline() (time.Duration, bool) {
	next, ok := l.closingQ.next()
	if at, ok2 := l.drainQ.next(); ok2 && (!ok || at < next) {
		next, ok = at, true
	}
	return next, ok
}

// publishDeadline tells the hub the loop's nearest deadline.
func (l *loop) publishDeadline() {
	at, _ := l.nextDeadline()
	l.deadline.Store(int64(at))
}

// deadlineDue reports whether a close or drain deadline has passed.
func (l *loop) deadlineDue() bool {
	at, ok := l.nextDeadline()
	return ok && at <= l.d.now()
}

// expire closes connections whose close or drain deadline passed.
func (l *loop) expire() {
	now := l.d.now()
	for _, q := range [...]struct {
		q     *deadlineQueue
		phase phase
	}{{&l.closingQ, phaseClosing}, {&l.drainQ, phaseDraining}} {
		for {
			c, at, ok := q.q.peek()
			if !ok || at > now {
				break
			}
			q.q.pop()
			// An entry is stale if the connection moved on. A connection
			// enters each phase once (they only go forward), so each queue
			// holds it once, and its phase tells.
			if c.phase == q.phase {
				l.finalize(c, nil)
			}
		}
	}
}

// deadlineQueue holds close deadlines in the order they were set. Each
// queue has one fixed timeout, so that order is also deadline order and a
// FIFO serves as a priority queue. Stale entries are skipped when popped.
type deadlineQueue struct {
	items []deadlineItem
	head  int
}

type deadlineItem struct {
	c  *econn
	at time.Duration
}

func (q *deadlineQueue) push(c *econn, at time.Duration) {
	if q.head > 64 && q.head > len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, deadlineItem{c, at})
}

func (q *deadlineQueue) peek() (*econn, time.Duration, bool) {
	if q.head == len(q.items) {
		return nil, 0, false
	}
	it := q.items[q.head]
	return it.c, it.at, true
}

func (q *deadlineQueue) next() (time.Duration, bool) {
	_, at, ok := q.peek()
	return at, ok
}

func (q *deadlineQueue) pop() {
	q.items[q.head] = deadlineItem{}
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
}
