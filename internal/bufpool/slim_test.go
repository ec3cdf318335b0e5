package bufpool

import (
	"testing"
	"unsafe"
)

func TestSlimRoundTrip(t *testing.T) {
	var s Slim
	if s.Bytes() != nil || !s.IsNil() || s.Len() != 0 {
		t.Fatalf("zero Slim: %v, nil %v, len %d", s.Bytes(), s.IsNil(), s.Len())
	}
	s.Set([]byte{})
	if b := s.Bytes(); b == nil || len(b) != 0 || s.IsNil() {
		t.Fatalf("empty slice came back as %#v (nil %v)", b, s.IsNil())
	}
	buf := make([]byte, 3, 10)
	copy(buf, "abc")
	s.Set(buf)
	b := s.Bytes()
	if string(b) != "abc" || cap(b) != 10 || &b[0] != &buf[0] || s.Len() != 3 {
		t.Fatalf("got %q cap %d len %d, want abc cap 10 on the same array", b, cap(b), s.Len())
	}
	s.Set(nil)
	if s.Bytes() != nil || !s.IsNil() {
		t.Fatal("Set(nil) did not give nil back")
	}
	if sz := unsafe.Sizeof(s); sz != 16 {
		t.Fatalf("Slim is %d bytes, want 16", sz)
	}
}
