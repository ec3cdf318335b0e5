package config

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"10s", 10 * time.Second},
		{"1m30s", 90 * time.Second},
		{"250ms", 250 * time.Millisecond},
		{"1h", time.Hour},
		{"1.5s", 1500 * time.Millisecond},
		{"100us", 100 * time.Microsecond},
		{"-5s", -5 * time.Second}, // the key decides whether negative makes sense
		{"0", 0},                  // zero is zero in any unit
		{" 10s ", 10 * time.Second},
	} {
		got, err := ParseDuration(tc.in)
		if err != nil || got.Duration != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseDurationErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10", `10 has no unit; write "10s" for seconds (units: ms, s, m, h)`},
		{"-3", `-3 has no unit; write "-3s" for seconds (units: ms, s, m, h)`},
		{"", `"" is not a duration (write e.g. 10s, 1m30s, 250ms)`},
		{"soon", `"soon" is not a duration (write e.g. 10s, 1m30s, 250ms)`},
		{"1d", `"1d" is not a duration (write e.g. 10s, 1m30s, 250ms)`},
		{"10 s", `"10 s" is not a duration (write e.g. 10s, 1m30s, 250ms)`},
	} {
		_, err := ParseDuration(tc.in)
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParseDuration(%q) error = %v, want %s", tc.in, err, tc.want)
		}
	}
}

func TestDurationText(t *testing.T) {
	d := Duration{90 * time.Second}
	text, err := d.MarshalText()
	if err != nil || string(text) != "1m30s" {
		t.Fatalf("MarshalText = %q, %v; want 1m30s", text, err)
	}
	var back Duration
	if err := back.UnmarshalText(text); err != nil || back != d {
		t.Errorf("UnmarshalText(%q) = %v, %v; want %v", text, back, err, d)
	}
	if got := d.String(); got != "1m30s" {
		t.Errorf("String() = %q, want 1m30s", got)
	}
}
