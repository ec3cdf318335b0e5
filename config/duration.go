package config

import (
	"fmt"
	"strings"
	"time"
)

// Duration is a time.Duration written with units in a config file: "10s",
// "1m30s", "250ms" (units ns, us, ms, s, m, h, as time.ParseDuration reads
// them). A bare number other than 0 is refused, because nobody can tell
// whether 10 means seconds or milliseconds.
type Duration time.Duration

// Duration returns d as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

// ParseDuration parses a duration as written in a config file.
func ParseDuration(s string) (Duration, error) {
	text := strings.TrimSpace(s)
	if text != "" && text != "0" && strings.Trim(text, "+-0123456789") == "" {
		return 0, fmt.Errorf("%s has no unit; write %q for seconds (units: ms, s, m, h)", text, text+"s")
	}
	d, err := time.ParseDuration(text)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (write e.g. 10s, 1m30s, 250ms)", s)
	}
	return Duration(d), nil
}

// String writes d as time.Duration does: 10s, 1m30s, 250ms.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes d as String does, which ParseDuration reads back.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a duration written as ParseDuration accepts it.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
