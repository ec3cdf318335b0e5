package config

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
	}{
		{"0", 0},
		{"512", 512},
		{"1048576", 1 << 20},
		{"512B", 512},
		{"64KiB", 64 << 10},
		{"1MiB", 1 << 20},
		{"2GiB", 2 << 30},
		{"1TiB", 1 << 40},
		{"1KB", 1000},
		{"1MB", 1000000},
		{"3GB", 3000000000},
		{"2TB", 2000000000000},
		{"64kib", 64 << 10},
		{"64KIB", 64 << 10},
		{"1mb", 1000000},
		{"64 KiB", 64 << 10},
		{" 7 ", 7},
		{"007", 7},
		{"8388607TiB", 8388607 << 40},
		{"9223372036854775807", 1<<63 - 1},
	} {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestParseSizeErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `"" is not a size (write bytes, or a whole number with a unit: 512, 64KiB, 1MiB, 2GiB, 1KB)`},
		{"KiB", `"KiB" is not a size (write bytes, or a whole number with a unit: 512, 64KiB, 1MiB, 2GiB, 1KB)`},
		{"-1", `"-1" is a negative size`},
		{"-1MiB", `"-1MiB" is a negative size`},
		{"1.5MiB", `"1.5MiB" is not a whole number; use a smaller unit`},
		{"1K", `"1K" has an unknown unit "K" (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)`},
		{"1 MiB s", `"1 MiB s" has an unknown unit "MiB s" (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)`},
		{"8388608TiB", `"8388608TiB" is too large`},
		{"9223372036854775808", `"9223372036854775808" is too large`},
	} {
		_, err := ParseSize(tc.in)
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParseSize(%q) error = %v, want %s", tc.in, err, tc.want)
		}
	}
}

func TestSizeString(t *testing.T) {
	for _, tc := range []struct {
		in   Size
		want string
	}{
		{0, "0"},
		{1, "1"},
		{1023, "1023"},
		{KiB, "1KiB"},
		{1536, "1536"},
		{3 * KiB / 2 * 1024, "1536KiB"},
		{MiB, "1MiB"},
		{2 * GiB, "2GiB"},
		{TiB, "1TiB"},
		{KB, "1KB"},
		{1500 * KB, "1500KB"},
		{MB, "1MB"},
		{MaxPacketSize, "268435460"},
		{-5, "-5"},
	} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(tc.in), got, tc.want)
		}
		if tc.in < 0 {
			continue
		}
		back, err := ParseSize(tc.want)
		if err != nil || back != tc.in {
			t.Errorf("ParseSize(%q) = %d, %v; want %d back", tc.want, back, err, tc.in)
		}
	}
}

func TestSizeText(t *testing.T) {
	text, err := (64 * KiB).MarshalText()
	if err != nil || string(text) != "64KiB" {
		t.Fatalf("MarshalText = %q, %v; want 64KiB", text, err)
	}
	var s Size
	if err := s.UnmarshalText(text); err != nil || s != 64*KiB {
		t.Errorf("UnmarshalText(%q) = %d, %v; want %d", text, s, err, 64*KiB)
	}
	s = 7
	if err := s.UnmarshalText([]byte("lots")); err == nil || s != 7 {
		t.Errorf("UnmarshalText(lots) = %d, %v; want an error and the value unchanged", s, err)
	}
}
