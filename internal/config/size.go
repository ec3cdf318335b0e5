package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a number of bytes. In a file it is written as a whole number of
// bytes (65536) or a whole number with a unit (64KiB, 1MiB, 2GiB, 1KB); units
// are case-insensitive and may be separated from the number by a space.
// Binary units (KiB, MiB, GiB, TiB) are powers of 1024, decimal units (KB,
// MB, GB, TB) powers of 1000, as their names say.
type Size int64

// Units a Size can be written in.
const (
	Byte Size = 1

	KiB = 1024 * Byte
	MiB = 1024 * KiB
	GiB = 1024 * MiB
	TiB = 1024 * GiB

	KB = 1000 * Byte
	MB = 1000 * KB
	GB = 1000 * MB
	TB = 1000 * GB
)

// sizeUnits lists the units largest first within each family, binary first,
// which is the order String prefers them in.
var sizeUnits = []struct {
	name string
	size Size
}{
	{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB},
	{"TB", TB}, {"GB", GB}, {"MB", MB}, {"KB", KB},
	{"B", Byte},
}

const sizeExamples = "512, 64KiB, 1MiB, 2GiB, 1KB"

// ParseSize parses a size as written in a config file, and in petrel
// bench's size flags (-s, --window-bytes). Sizes are never negative.
func ParseSize(s string) (Size, error) {
	text := strings.TrimSpace(s)
	digits := len(text) - len(strings.TrimLeft(text, "0123456789"))
	number, unit := text[:digits], strings.TrimSpace(text[digits:])
	switch {
	case strings.HasPrefix(text, "-"):
		return 0, fmt.Errorf("%q is a negative size", s)
	case number == "":
		return 0, fmt.Errorf("%q is not a size (write bytes, or a whole number with a unit: %s)", s, sizeExamples)
	case strings.HasPrefix(unit, "."):
		return 0, fmt.Errorf("%q is not a whole number; use a smaller unit", s)
	}
	per, ok := sizeUnit(unit)
	if !ok {
		return 0, fmt.Errorf("%q has an unknown unit %q (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", s, unit)
	}
	n, err := strconv.ParseInt(number, 10, 64)
	if errors.Is(err, strconv.ErrRange) || n > math.MaxInt64/int64(per) {
		return 0, fmt.Errorf("%q is too large", s)
	}
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (write bytes, or a whole number with a unit: %s)", s, sizeExamples)
	}
	return Size(n) * per, nil
}

func sizeUnit(unit string) (Size, bool) {
	if unit == "" {
		return Byte, true
	}
	for _, u := range sizeUnits {
		if strings.EqualFold(unit, u.name) {
			return u.size, true
		}
	}
	return 0, false
}

// String writes s in the largest unit that holds it exactly: 1MiB, 1KB, 1500.
func (s Size) String() string {
	if s > 0 {
		for _, u := range sizeUnits[:len(sizeUnits)-1] {
			if s%u.size == 0 {
				return strconv.FormatInt(int64(s/u.size), 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// MarshalText writes s as String does, which ParseSize reads back.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a size written as ParseSize accepts it.
func (s *Size) UnmarshalText(text []byte) error {
	v, err := ParseSize(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
