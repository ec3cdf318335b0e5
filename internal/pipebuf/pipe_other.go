//go:build !linux

package pipebuf

import "errors"

// Pipe is a kernel pipe; there are none here (see Pool.Get).
type Pipe struct {
	pool *Pool
}

var (
	errRefused   = errors.New("pipebuf: no pipes on this system")
	errNoSupport = errors.New("pipebuf: no splice on this system")
)

// Limit is 0: there are no pipes to keep.
func Limit(max int) int { return 0 }

func newPipe() (*Pipe, error)       { return nil, errRefused }
func (pp *Pipe) close()             {}
func (pp *Pipe) discard(n int) bool { return false }

// SpliceFrom, SpliceTo, TeeTo, Write, ReadFull and CopyOut: see the Linux
// file. Never called, as no Pipe exists here.
func (pp *Pipe) SpliceFrom(fd, n int) (int, error) { return 0, errNoSupport }
func (pp *Pipe) SpliceTo(fd, n int) (int, error)   { return 0, errNoSupport }
func (pp *Pipe) TeeTo(dst *Pipe, n int) error      { return errNoSupport }
func (pp *Pipe) Write(b []byte) (int, error)       { return 0, errNoSupport }
func (pp *Pipe) ReadFull(b []byte) error           { return errNoSupport }
func (pp *Pipe) CopyOut(b []byte) error            { return errNoSupport }
