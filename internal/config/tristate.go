package config

import (
	"fmt"
	"strings"
)

// Tristate is a yes-or-no setting that may also be left to a rule that
// depends on other settings: written true, false or auto in a file. The
// zero value is Auto; the key that has the type says what auto decides.
type Tristate int8

// The values of a Tristate.
const (
	Auto Tristate = iota
	True
	False
)

// Bool returns the setting, and false for set when it is Auto.
func (t Tristate) Bool() (value, set bool) {
	return t == True, t != Auto
}

// String writes t as a file does: true, false or auto.
func (t Tristate) String() string {
	switch t {
	case True:
		return "true"
	case False:
		return "false"
	}
	return "auto"
}

// MarshalText writes t as String does, which UnmarshalText reads back.
func (t Tristate) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText reads true, false or auto, in any case, as the decoder reads
// booleans.
func (t *Tristate) UnmarshalText(text []byte) error {
	switch strings.ToLower(string(text)) {
	case "true":
		*t = True
	case "false":
		*t = False
	case "auto":
		*t = Auto
	default:
		return fmt.Errorf("%q is not true, false or auto", text)
	}
	return nil
}
