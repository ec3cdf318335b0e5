package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a configuration: where it is and what is wrong.
// Load, Parse and Validate return every problem they find, joined with
// errors.Join in the order they appear in the file; errors.As finds the
// first.
type Error struct {
	File   string // the file's name as given to Load or Parse; empty when the value is not from a file
	Line   int    // 1-based; 0 when the value is not from the file (a default, or set in Go since)
	Column int    // 1-based; 0 when unknown
	Key    string // the key path, such as "listeners[1].address"; empty for a YAML syntax error
	Msg    string
}

// Error formats e as "file:line: key: message", leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// maxErrors is how many problems one report lists. A file that is wrong
// everywhere (often not a Petrel config at all) should not flood the
// terminal, and a file built to multiply errors through YAML aliases should
// not cost much to reject.
const maxErrors = 30

// joinErrors orders errs as they appear in the file (problems without a line
// last), keeps the first maxErrors and joins them; nil when there are none.
func joinErrors(file string, errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	slices.SortStableFunc(errs, func(a, b *Error) int {
		if c := compareLines(a.Line, b.Line); c != 0 {
			return c
		}
		return compareLines(a.Column, b.Column)
	})
	list := make([]error, 0, min(len(errs), maxErrors)+1)
	for _, e := range errs[:min(len(errs), maxErrors)] {
		list = append(list, e)
	}
	if len(errs) > maxErrors {
		list = append(list, &Error{File: file, Msg: "too many errors; fix these first"})
	}
	return errors.Join(list...)
}

// compareLines orders positions, with 0 (unknown) after every known one.
func compareLines(a, b int) int {
	switch {
	case a == b:
		return 0
	case a == 0:
		return 1
	case b == 0:
		return -1
	}
	return a - b
}

// unknownKeyHint suggests what the user meant by an unknown key: a known key
// at the same level that is spelled alike, else the same key where it does
// belong elsewhere in the schema, else the list of keys allowed here.
func unknownKeyHint(key string, here []string, everywhere []string) string {
	if k, ok := closestKey(key, here); ok {
		return fmt.Sprintf(" (did you mean %q?)", k)
	}
	for _, path := range everywhere {
		if normalizeKey(lastKey(path)) == normalizeKey(key) {
			return fmt.Sprintf(" (did you mean %q?)", path)
		}
	}
	return " (expected one of: " + strings.Join(here, ", ") + ")"
}

// closestKey returns the candidate that key is most likely a misspelling of:
// the same words in another case or separator (maxInflight, max-inflight),
// or one a few edits away.
func closestKey(key string, candidates []string) (string, bool) {
	for _, c := range candidates {
		if normalizeKey(c) == normalizeKey(key) {
			return c, true
		}
	}
	best, bestDist := "", max(1, len([]rune(key))/3)+1
	for _, c := range candidates {
		if d := editDistance(key, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best, best != ""
}

func normalizeKey(k string) string {
	return strings.ToLower(strings.NewReplacer("_", "", "-", "", " ", "").Replace(k))
}

// lastKey returns the last key of a path: "address" for "listeners[].address".
func lastKey(path string) string {
	return path[strings.LastIndexAny(path, ".]")+1:]
}

// editDistance counts the single-character insertions, deletions,
// substitutions and swaps of neighbours that turn a into b (the optimal
// string alignment distance), so "levle" is one edit from "level".
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	// d[i][j] is the distance between ra[:i] and rb[:j].
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// parentKey returns the path one level up: "listeners[1]" for
// "listeners[1].name", "listeners" for "listeners[1]", "" for "log".
func parentKey(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// indexKey returns the path of element i of the list at path.
func indexKey(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// childKey returns the path of key under path.
func childKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
