package topic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// matchCase is one filter, one name, and whether the filter matches it.
// Index, Retained and the reference Match are all checked against this table.
type matchCase struct {
	filter, name string
	want         bool
}

var matchCases = []matchCase{
	// Literal levels match themselves only, as raw strings. [MQTT-4.7.3-4]
	{"a", "a", true},
	{"a", "b", false},
	{"a", "A", false},
	{"a", "a/b", false},
	{"a/b", "a", false},
	{"a/b", "a/b", true},
	{"a/b", "a/b/c", false},
	{"a b", "a b", true},
	{"ä/ß", "ä/ß", true},
	{"ä", "a", false},

	// Empty levels are real levels.
	{"/", "/", true},
	{"/", "", false},
	{"a//b", "a//b", true},
	{"a//b", "a/b", false},
	{"a/b", "a//b", false},
	{"/a", "/a", true},
	{"/a", "a", false},
	{"a/", "a/", true},
	{"a/", "a", false},
	{"a", "a/", false},

	// '+' matches exactly one level, empty ones included.
	{"+", "a", true},
	{"+", "", true},
	{"+", "/", false},
	{"+", "a/b", false},
	{"+/+", "a/b", true},
	{"+/+", "/", true},
	{"+/+", "a", false},
	{"+/+", "a/b/c", false},
	{"/+", "/a", true},
	{"/+", "/", true},
	{"/+", "a", false},
	{"/+", "a/b", false},
	{"+/", "a/", true},
	{"+/", "a", false},
	{"a/+", "a/b", true},
	{"a/+", "a/", true},
	{"a/+", "a", false},
	{"a/+", "a/b/c", false},
	{"a/+/c", "a/b/c", true},
	{"a/+/c", "a//c", true},
	{"a/+/c", "a/b/d", false},
	{"+/monitor", "sensor/monitor", true},
	{"+/monitor", "/monitor", true},
	{"+/monitor", "monitor", false},
	{"+/monitor", "a/b/monitor", false},

	// '#' matches any number of levels, including none: its parent too.
	{"#", "a", true},
	{"#", "a/b/c", true},
	{"#", "/", true},
	{"#", "", true},
	{"a/#", "a", true},
	{"a/#", "a/", true},
	{"a/#", "a/b", true},
	{"a/#", "a/b/c", true},
	{"a/#", "ab", false},
	{"a/#", "b/a", false},
	{"/#", "/", true},
	{"/#", "/a/b", true},
	{"/#", "a", false},
	{"/#", "", true}, // "" is one empty level, and '#' matches its parent
	{"a/+/#", "a/b", true},
	{"a/+/#", "a/b/c/d", true},
	{"a/+/#", "a//", true},
	{"a/+/#", "a", false},
	{"+/#", "a", true},
	{"+/#", "", true},
	{"+/+/#", "a", false},
	{"+/+/#", "a/b", true},
	{"a/b/#", "a", false},
	{"a//#", "a/", true},
	{"a//#", "a", false},

	// Wildcards at the first level do not match '$' names. [MQTT-4.7.2-1]
	{"#", "$SYS", false},
	{"#", "$SYS/broker", false},
	{"+", "$SYS", false},
	{"+/#", "$SYS/x", false},
	{"+/+", "$SYS/x", false},
	{"+/broker", "$SYS/broker", false},
	{"$SYS/#", "$SYS/x", true},
	{"$SYS/#", "$SYS", true},
	{"$SYS/#", "$SYS/a/b", true},
	{"$SYS/+", "$SYS/x", true},
	{"$SYS/+/c", "$SYS/b/c", true},
	{"$SYS", "$SYS", true},
	{"$SYS/#", "SYS/x", false},
	{"$", "$", true},
	{"#", "$", false},
	{"#", "a/$SYS", true}, // only the first level counts
	{"a/+", "a/$x", true}, // only the first level counts
	{"a/#", "a/$x/y", true},
	{"#", "/$SYS", true}, // the first level is empty, not '$'

	// "$share/..." is not special in the index: the broker strips it first.
	{"$share/g/a", "$share/g/a", true},
	{"$share/g/a", "a", false},
	{"+/g/a", "$share/g/a", false},
}

// [MQTT-4.7.1-2] v3.1.1
// [MQTT-4.7.1-3] v3.1.1
// [MQTT-4.7.2-1] v3.1.1
// [MQTT-4.7.3-4] v3.1.1
// [MQTT-4.7.1-1] v5
// [MQTT-4.7.1-2] v5
// [MQTT-4.7.2-1] v5
// [MQTT-4.7.3-4] v5
func TestReferenceMatch(t *testing.T) {
	for _, c := range matchCases {
		if got := Match(c.filter, c.name); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.filter, c.name, got, c.want)
		}
	}
}

// randomLevels draws topic levels for property tests. A small alphabet makes
// filters and names collide often; the empty level and "$x" are in it so
// those rules get exercised.
type randomLevels struct {
	rng      *rand.Rand
	alphabet []string
}

func newRandomLevels(seed uint64, literals int) *randomLevels {
	alphabet := []string{"", "$x"}
	for i := range literals {
		alphabet = append(alphabet, fmt.Sprintf("l%d", i))
	}
	return &randomLevels{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), alphabet: alphabet}
}

func (r *randomLevels) literal() string { return r.alphabet[r.rng.IntN(len(r.alphabet))] }

func (r *randomLevels) name() string {
	levels := make([]string, 1+r.rng.IntN(4))
	for i := range levels {
		levels[i] = r.literal()
	}
	return strings.Join(levels, "/")
}

func (r *randomLevels) filter() string {
	levels := make([]string, 1+r.rng.IntN(4))
	for i := range levels {
		if r.rng.IntN(4) == 0 {
			levels[i] = "+"
		} else {
			levels[i] = r.literal()
		}
	}
	if r.rng.IntN(4) == 0 {
		levels[len(levels)-1] = "#"
	}
	return strings.Join(levels, "/")
}

// sorted returns a sorted copy, to compare results as multisets.
func sorted[T interface{ ~int | ~string }](s []T) []T {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
