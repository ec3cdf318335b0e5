//go:build linux

package listener

import (
	"sync"
	"testing"
)

// The descriptor table finds what was set, forgets what was cleared, grows
// for high numbers while other goroutines read and write it, and a loop
// never takes another loop's connection for its own (a number reused by
// another loop after a close, while an event for it was still pending).
func TestFDTable(t *testing.T) {
	d := &eventLoopDriver{}
	tab := &d.fds
	la, lb := &loop{d: d}, &loop{d: d}
	if tab.get(5) != nil || tab.get(-1) != nil || tab.get(1<<20) != nil {
		t.Fatal("an empty table found something")
	}
	a := &econn{l: la, fd: 5}
	tab.set(a)
	if tab.get(5) != a || tab.get(6) != nil {
		t.Fatal("get after set")
	}
	b := &econn{l: lb, fd: 5}
	tab.clear(b) // not the one on 5: nothing happens
	if tab.get(5) != a {
		t.Fatal("clearing another connection took this one out")
	}
	tab.clear(a)
	tab.set(b) // 5 reused by the other loop
	if la.conn(5) != nil || lb.conn(5) != b {
		t.Fatal("a loop took another loop's connection on a reused descriptor")
	}

	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := []*loop{la, lb}[g%2]
			for fd := 100 + g; fd < 200_000; fd += 4 * 997 {
				c := &econn{l: l, fd: int32(fd)}
				tab.set(c)
				if tab.get(fd) != c {
					t.Errorf("fd %d: not found after set", fd)
					return
				}
				tab.get(fd + 1) // reads beside writes and growth
			}
		}()
	}
	wg.Wait()
	n := 0
	tab.each(la, func(c *econn) {
		if c.l != la {
			t.Errorf("each(la) gave lb's connection on %d", c.fd)
		}
		n++
	})
	if n == 0 {
		t.Error("each found none of la's connections")
	}
}
