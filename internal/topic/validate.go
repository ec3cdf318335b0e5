// Package topic holds MQTT's topic rules: which names and filters are valid,
// how a filter matches a name, and the indexes the broker routes with.
// It does no I/O and knows nothing of connections or sessions.
package topic

import (
	"errors"
	"strings"
)

// Errors returned by the validators. They say which rule was broken so a
// caller can log a precise reason.
var (
	ErrEmpty           = errors.New("topic is empty")
	ErrTooLong         = errors.New("topic is longer than 65535 bytes")
	ErrWildcardInName  = errors.New("topic name contains a wildcard")
	ErrBadMultiLevel   = errors.New("'#' must be the last level and alone in it")
	ErrBadSingleLevel  = errors.New("'+' must be alone in its level")
	ErrNullCharacter   = errors.New("topic contains U+0000")
	ErrBadShareName    = errors.New("shared subscription needs $share/{group}/{filter} with a group free of wildcards and '/'")
	ErrEmptyShareGroup = errors.New("shared subscription group name is empty")
)

// SharePrefix starts a shared subscription filter: $share/{group}/{filter}.
const SharePrefix = "$share/"

// ValidateName checks a topic name as carried by PUBLISH: non-empty, no
// wildcard characters, no U+0000. [MQTT-4.7.1-1] [MQTT-4.7.3-1] [MQTT-4.7.3-2]
// UTF-8 well-formedness is the codec's job: it has already checked every string.
func ValidateName(name string) error {
	if name == "" {
		return ErrEmpty
	}
	if len(name) > 65535 {
		return ErrTooLong
	}
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '+', '#':
			return ErrWildcardInName
		case 0:
			return ErrNullCharacter
		}
	}
	return nil
}

// ValidateFilter checks a topic filter as carried by SUBSCRIBE or UNSUBSCRIBE.
// '#' must stand alone as the last level and '+' alone in its level.
// [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.3-1] [MQTT-4.7.3-2]
// A $share/ filter is checked as a plain filter here; see ParseShare for the
// shared-subscription form.
func ValidateFilter(filter string) error {
	if filter == "" {
		return ErrEmpty
	}
	if len(filter) > 65535 {
		return ErrTooLong
	}
	levelStart := 0
	for i := 0; i < len(filter); i++ {
		switch filter[i] {
		case 0:
			return ErrNullCharacter
		case '#':
			// Alone in its level and the final level.
			if i != levelStart || i != len(filter)-1 {
				return ErrBadMultiLevel
			}
		case '+':
			if i != levelStart || (i+1 < len(filter) && filter[i+1] != '/') {
				return ErrBadSingleLevel
			}
		case '/':
			levelStart = i + 1
		}
	}
	return nil
}

// IsShared reports whether filter uses the $share/ prefix.
func IsShared(filter string) bool { return strings.HasPrefix(filter, SharePrefix) }

// ParseShare splits a shared subscription filter $share/{group}/{filter}
// into its group and filter and validates both. [MQTT-4.8.2-1] [MQTT-4.8.2-2]
func ParseShare(s string) (group, filter string, err error) {
	if !IsShared(s) {
		return "", "", ErrBadShareName
	}
	rest := s[len(SharePrefix):]
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		return "", "", ErrBadShareName
	}
	group, filter = rest[:slash], rest[slash+1:]
	if group == "" {
		return "", "", ErrEmptyShareGroup
	}
	if strings.ContainsAny(group, "+#") {
		return "", "", ErrBadShareName
	}
	if err := ValidateFilter(filter); err != nil {
		return "", "", err
	}
	return group, filter, nil
}

// HasWildcard reports whether a filter contains '+' or '#'.
func HasWildcard(filter string) bool { return strings.ContainsAny(filter, "+#") }

// Match reports whether topic name matches filter under MQTT's rules,
// including that a filter starting with a wildcard does not match a name
// starting with '$' [MQTT-4.7.2-1]. Both are assumed valid. It allocates nothing.
func Match(filter, name string) bool {
	if len(name) > 0 && name[0] == '$' && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		fl, frest, fmore := cut(filter)
		if fl == "#" {
			return true // matches this level and everything below, including the parent
		}
		nl, nrest, nmore := cut(name)
		if fl != "+" && fl != nl {
			return false
		}
		if !fmore || !nmore {
			if !fmore && !nmore {
				return true
			}
			// "a/#" matches "a": the filter has one more level and it is '#'.
			return !nmore && fmore && frest == "#"
		}
		filter, name = frest, nrest
	}
}

// cut returns the first level of s, the rest after the separator, and
// whether there was a separator.
func cut(s string) (level, rest string, more bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}
