package topic

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// [MQTT-4.7.1-1] v3.1.1
// [MQTT-4.7.0-1] v5
// [MQTT-4.7.3-1] v3.1.1
// [MQTT-4.7.3-1] v5
// [MQTT-4.7.3-2] v3.1.1
// [MQTT-4.7.3-2] v5
// [MQTT-4.7.3-3] v3.1.1
// [MQTT-4.7.3-3] v5
func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		want error
	}{
		{"a", nil},
		{"/", nil},
		{"a//b", nil},
		{"/a", nil},
		{"a/", nil},
		{"$SYS/broker/uptime", nil},
		{" ", nil},
		{"sport/tennis/player1", nil},
		{strings.Repeat("a", 65535), nil},
		{"", ErrEmpty},
		{strings.Repeat("a", 65536), ErrTooLong},
		{"a/+", ErrWildcardInName},
		{"a/#", ErrWildcardInName},
		{"a+b", ErrWildcardInName},
		{"#", ErrWildcardInName},
		{"a\x00b", ErrNullCharacter},
	}
	for _, tt := range tests {
		if got := ValidateName(tt.name); !errors.Is(got, tt.want) {
			t.Errorf("ValidateName(%q) = %v, want %v", short(tt.name), got, tt.want)
		}
	}
}

// [MQTT-4.7.1-2] v3.1.1
// [MQTT-4.7.1-3] v3.1.1
// [MQTT-4.7.1-1] v5
// [MQTT-4.7.1-2] v5
// [MQTT-4.7.3-1] v3.1.1
// [MQTT-4.7.3-1] v5
// [MQTT-4.7.3-2] v3.1.1
// [MQTT-4.7.3-2] v5
// [MQTT-4.7.3-3] v3.1.1
// [MQTT-4.7.3-3] v5
func TestValidateFilter(t *testing.T) {
	tests := []struct {
		filter string
		want   error
	}{
		{"+", nil},
		{"#", nil},
		{"/", nil},
		{"a//b", nil},
		{"+/+/#", nil},
		{"a/+/b", nil},
		{"a/#", nil},
		{"/#", nil},
		{"+/", nil},
		{"/+", nil},
		{"$SYS/#", nil},
		{"$share/g/a", nil}, // a plain filter here; ParseShare checks the shared form
		{strings.Repeat("a", 65535), nil},
		{"", ErrEmpty},
		{strings.Repeat("a", 65536), ErrTooLong},
		{"a#", ErrBadMultiLevel},
		{"#a", ErrBadMultiLevel},
		{"a/#/b", ErrBadMultiLevel},
		{"#/a", ErrBadMultiLevel},
		{"#/", ErrBadMultiLevel},
		{"a/b#", ErrBadMultiLevel},
		{"##", ErrBadMultiLevel},
		{"a+", ErrBadSingleLevel},
		{"+a", ErrBadSingleLevel},
		{"a/+b/c", ErrBadSingleLevel},
		{"a/b+", ErrBadSingleLevel},
		{"++", ErrBadSingleLevel},
		{"\x00", ErrNullCharacter},
		{"a/\x00", ErrNullCharacter},
	}
	for _, tt := range tests {
		if got := ValidateFilter(tt.filter); !errors.Is(got, tt.want) {
			t.Errorf("ValidateFilter(%q) = %v, want %v", short(tt.filter), got, tt.want)
		}
	}
}

// [MQTT-4.8.2-1] v5
// [MQTT-4.8.2-2] v5
func TestParseShare(t *testing.T) {
	tests := []struct {
		in            string
		group, filter string
		err           error
	}{
		{"$share/g/a/b", "g", "a/b", nil},
		{"$share/g/#", "g", "#", nil},
		{"$share/g/+/x", "g", "+/x", nil},
		{"$share/group-1//", "group-1", "/", nil},
		{"$share/g/$SYS/#", "g", "$SYS/#", nil},
		{"$share//a", "", "", ErrEmptyShareGroup},
		{"$share/g", "", "", ErrBadShareName},
		{"$share/", "", "", ErrBadShareName},
		{"$share/g+/a", "", "", ErrBadShareName},
		{"$share/+/a", "", "", ErrBadShareName},
		{"$share/#/a", "", "", ErrBadShareName},
		{"$share/g/", "", "", ErrEmpty},
		{"$share/g/a#", "", "", ErrBadMultiLevel},
		{"$share/g/a/#/b", "", "", ErrBadMultiLevel},
		{"$share/g/a+", "", "", ErrBadSingleLevel},
		{"$share/g/a\x00", "", "", ErrNullCharacter},
		{"a/b", "", "", ErrBadShareName},
		{"$SHARE/g/a", "", "", ErrBadShareName},
		{"$shared/g/a", "", "", ErrBadShareName},
	}
	for _, tt := range tests {
		group, filter, err := ParseShare(tt.in)
		if group != tt.group || filter != tt.filter || !errors.Is(err, tt.err) {
			t.Errorf("ParseShare(%q) = %q, %q, %v; want %q, %q, %v",
				tt.in, group, filter, err, tt.group, tt.filter, tt.err)
		}
	}
}

func TestIsSharedAndHasWildcard(t *testing.T) {
	for in, want := range map[string]bool{"$share/g/a": true, "$share/": true, "$share": false, "a/$share/g/a": false} {
		if got := IsShared(in); got != want {
			t.Errorf("IsShared(%q) = %v, want %v", in, got, want)
		}
	}
	for in, want := range map[string]bool{"a/+": true, "#": true, "a/b": false, "": false, "$SYS": false} {
		if got := HasWildcard(in); got != want {
			t.Errorf("HasWildcard(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestReferenceMatchAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { Match("a/+/c/#", "a/b/c/d/e") }); n != 0 {
		t.Errorf("Match allocates %v times per call, want 0", n)
	}
}

// short keeps long test inputs out of failure messages.
func short(s string) string {
	if len(s) > 20 {
		return fmt.Sprintf("%s... (%d bytes)", s[:10], len(s))
	}
	return s
}
