package topic

// subs is the set of subscribers on one filter: a slice of entries, plus a
// key→position map once there are more than subsIndexAt of them. Small sets,
// by far the most common, stay a bare slice scanned in a few nanoseconds; a
// filter with many subscribers (fan-out) adds and removes one key in O(1).
type subs[K comparable, V any] struct {
	ents []entry[K, V]
	pos  *keyPos[K]
}

type entry[K comparable, V any] struct {
	key K
	val V
}

// keyPos maps a key to its index in subs.ents.
type keyPos[K comparable] struct {
	m    map[K]int32
	peak int // largest len(m) since built; see wideKids.peak
}

const (
	subsIndexAt   = 8  // more subscribers than this get a key→position map
	subsUnindexAt = 4  // the map is dropped once the set falls to this many
	subsShrinkMin = 32 // capacity below which a slice is not worth shrinking
)

func (s *subs[K, V]) find(key K) int {
	if s.pos != nil {
		if i, ok := s.pos.m[key]; ok {
			return int(i)
		}
		return -1
	}
	for i := range s.ents {
		if s.ents[i].key == key {
			return i
		}
	}
	return -1
}

// set stores v for key and reports whether key was already there.
func (s *subs[K, V]) set(key K, v V) (replaced bool) {
	if i := s.find(key); i >= 0 {
		s.ents[i].val = v
		return true
	}
	s.ents = append(s.ents, entry[K, V]{key, v})
	switch {
	case s.pos != nil:
		s.pos.m[key] = int32(len(s.ents) - 1)
		s.pos.peak = max(s.pos.peak, len(s.pos.m))
	case len(s.ents) > subsIndexAt:
		s.reindex()
	}
	return false
}

// remove drops key and reports whether it was there. The last entry moves
// into the hole, so order is not kept.
func (s *subs[K, V]) remove(key K) bool {
	i := s.find(key)
	if i < 0 {
		return false
	}
	last := len(s.ents) - 1
	if s.pos != nil {
		delete(s.pos.m, key)
		if i != last {
			s.pos.m[s.ents[last].key] = int32(i)
		}
	}
	s.ents[i] = s.ents[last]
	s.ents[last] = entry[K, V]{} // let the GC have what the key and value point to
	s.ents = s.ents[:last]
	s.shrink()
	return true
}

// shrink gives memory back after many removals.
func (s *subs[K, V]) shrink() {
	n := len(s.ents)
	if n == 0 {
		s.ents, s.pos = nil, nil
		return
	}
	if cap(s.ents) >= subsShrinkMin && n <= cap(s.ents)/4 {
		s.ents = append(make([]entry[K, V], 0, n*2), s.ents...)
	}
	switch {
	case s.pos == nil:
	case n <= subsUnindexAt:
		s.pos = nil
	case s.pos.peak >= rebuildMin && n <= s.pos.peak/4:
		s.reindex()
	}
}

func (s *subs[K, V]) reindex() {
	m := make(map[K]int32, len(s.ents))
	for i := range s.ents {
		m[s.ents[i].key] = int32(i)
	}
	s.pos = &keyPos[K]{m: m, peak: len(m)}
}

func (s *subs[K, V]) appendTo(dst []V) []V {
	for i := range s.ents {
		dst = append(dst, s.ents[i].val)
	}
	return dst
}
