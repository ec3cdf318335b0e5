package broker

import "testing"

// inlineClass's lookup gives the smallest inline size that holds n, as a
// search through inlineSizes would.
func TestInlineClass(t *testing.T) {
	for n := 0; n <= maxInline+64; n++ {
		want := -1
		for i, size := range inlineSizes {
			if n <= size {
				want = i
				break
			}
		}
		if got := inlineClass(n); got != want {
			t.Fatalf("inlineClass(%d) = %d, want %d", n, got, want)
		}
	}
	if got := inlineClass(-1); got != -1 {
		t.Fatalf("inlineClass(-1) = %d, want -1", got)
	}
}
