package bench

import (
	"errors"
	"strconv"
	"strings"
)

// ParseCPUList reads taskset's CPU list: 1, 0-3,6.
func ParseCPUList(s string) ([]int, error) {
	bad := errors.New("Invalid CPU list given: " + s)
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, bad
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, bad
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) == 0 || len(cpus) > 4096 {
		return nil, bad
	}
	return cpus, nil
}

// pin pins this process to cpus, if any.
func pin(cpus []int) error {
	if len(cpus) == 0 {
		return nil
	}
	return PinCPUs(cpus)
}
