package broker

import (
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"testing"
)

// walkAll pages through the directory, at most per sessions a call, and
// returns the client ids in the order given.
func walkAll(t *testing.T, d *directory, prefix string, per int) []string {
	t.Helper()
	var got []string
	var pos dirPosition
	for calls := 0; ; calls++ {
		if calls > 100000 {
			t.Fatal("the walk does not end")
		}
		end, complete := d.walk(pos, prefix, per, func(ss *session, _ dirPosition) bool {
			got = append(got, ss.clientID)
			return true
		})
		if complete {
			return got
		}
		pos = end
	}
}

// Every session comes exactly once, whatever the page size; a prefix
// keeps exactly the ids that start with it; sessions added and removed
// between pages leave the others alone.
func TestDirectoryWalk(t *testing.T) {
	d := directory{seed: maphash.MakeSeed()}
	d.on.Store(true)
	var ids []string
	byID := map[string]*session{}
	for i := range 700 {
		id := fmt.Sprintf("%c-%04d", 'a'+i%3, i)
		ids = append(ids, id)
		ss := &session{clientID: id}
		byID[id] = ss
		d.add(ss)
	}
	slices.Sort(ids)
	for _, per := range []int{1, 7, 100, 10000} {
		got := walkAll(t, &d, "", per)
		slices.Sort(got)
		if !slices.Equal(got, ids) {
			t.Fatalf("a walk in pages of %d gave %d ids (%d distinct), want each of %d once", per, len(got), len(slices.Compact(got)), len(ids))
		}
		got = walkAll(t, &d, "b-", per)
		slices.Sort(got)
		var want []string
		for _, id := range ids {
			if strings.HasPrefix(id, "b-") {
				want = append(want, id)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("a walk with prefix b- in pages of %d gave %q, want %q", per, got, want)
		}
	}

	// Change the directory between pages.
	var got []string
	var pos dirPosition
	for i := 0; ; i++ {
		extra := &session{clientID: fmt.Sprintf("z-%04d", i)}
		d.add(extra)
		if i%2 == 0 {
			d.remove(extra)
		}
		end, complete := d.walk(pos, "", 13, func(ss *session, _ dirPosition) bool {
			if !strings.HasPrefix(ss.clientID, "z-") {
				got = append(got, ss.clientID)
			}
			return true
		})
		if complete {
			break
		}
		pos = end
	}
	slices.Sort(got)
	if !slices.Equal(got, ids) {
		t.Fatalf("a walk while sessions come and go gave %d ids, want each of %d once", len(got), len(ids))
	}
}

// Cursors survive their round trip, and a cursor of another kind or a
// damaged one is refused.
func TestAdminCursors(t *testing.T) {
	pos := dirPosition{shard: 17, after: "client/é", started: true}
	c := encodeDirCursor(cursorSubscriptions, pos, "$share/g/a/#")
	got, key, err := decodeDirCursor(c, cursorSubscriptions)
	if err != nil || got != pos || key != "$share/g/a/#" {
		t.Fatalf("decode(encode(%+v)) = %+v, %q, %v", pos, got, key, err)
	}
	for _, bad := range []string{"!", c[:len(c)-2], encodeDirCursor(cursorClients, pos, "")} {
		if _, _, err := decodeDirCursor(bad, cursorSubscriptions); err != ErrBadCursor {
			t.Errorf("decode(%q) = %v, want ErrBadCursor", bad, err)
		}
	}
	levels := []string{"", "a", "b/c"}
	back, err := decodeRetainedCursor(encodeRetainedCursor(levels))
	if err != nil || !slices.Equal(back, levels) {
		t.Fatalf("retained cursor round trip: %q, %v", back, err)
	}
	if _, err := decodeRetainedCursor(c); err != ErrBadCursor {
		t.Errorf("a subscriptions cursor as a retained one: %v, want ErrBadCursor", err)
	}
}
