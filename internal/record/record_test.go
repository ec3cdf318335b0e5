package record

import (
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	b := AppendUvarint(nil, 300)
	b = AppendString(b, "topic/a")
	b = AppendBytes(b, []byte{1, 2})
	b = append(b, 7)
	r := Reader{B: b}
	if v, s, p, c := r.Uvarint(), r.Str(), r.Bytes(), r.Byte(); r.Err != nil || v != 300 || s != "topic/a" ||
		string(p) != "\x01\x02" || c != 7 || len(r.B) != 0 {
		t.Fatalf("read %d %q %v %d (err %v, %d left)", v, s, p, c, r.Err, len(r.B))
	}
}

func TestMalformed(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":            nil,
		"length past end":  AppendUvarint(nil, 5),
		"huge length":      AppendUvarint(nil, 1<<62),
		"truncated varint": {0x80},
	} {
		r := Reader{B: b}
		_ = r.Str()
		if !errors.Is(r.Err, ErrMalformed) || r.B != nil {
			t.Errorf("%s: err %v, %d bytes left; want ErrMalformed and nothing left", name, r.Err, len(r.B))
		}
		// Nothing more is read once it failed.
		if r.Byte() != 0 || r.Uvarint() != 0 || !errors.Is(r.Err, ErrMalformed) {
			t.Errorf("%s: read on after the error", name)
		}
	}
}
