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
//
// It wraps time.Duration, whose methods it has: cfg.MQTT.ConnectTimeout.Duration
// is the time.Duration itself.
type Duration struct {
	time.Duration
}

// ParseDuration parses a duration as written in a config file; petrel
// bench's duration flags take the same, or a bare number in their unit.
func ParseDuration(s string) (Duration, error) {
	text := strings.TrimSpace(s)
	if text != "" && text != "0" && strings.Trim(text, "+-0123456789") == "" {
		return Duration{}, fmt.Errorf("%s has no unit; write %q for seconds (units: ms, s, m, h)", text, text+"s")
	}
	d, err := time.ParseDuration(text)
	if err != nil {
		return Duration{}, fmt.Errorf("%q is not a duration (write e.g. 10s, 1m30s, 250ms)", s)
	}
	return Duration{d}, nil
}

// MarshalText writes d as time.Duration's String does (10s, 1m30s, 250ms),
// which ParseDuration reads back.
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
