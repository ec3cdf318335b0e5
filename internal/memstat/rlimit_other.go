//go:build !unix

package memstat

// RaiseFileLimit does nothing where there is no descriptor limit to raise
// (RLIMIT_NOFILE is unix's).
func RaiseFileLimit(need uint64) error { return nil }
