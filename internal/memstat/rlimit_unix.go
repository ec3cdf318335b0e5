//go:build unix

package memstat

import (
	"fmt"
	"syscall"
)

// RaiseFileLimit lifts the soft descriptor limit to the hard one and reports
// an error when that is still below need.
func RaiseFileLimit(need uint64) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return err
		}
	}
	if uint64(rl.Cur) < need { // int64 on some systems (FreeBSD)
		return fmt.Errorf("need %d descriptors, the limit is %d (ulimit -n)", need, rl.Cur)
	}
	return nil
}
