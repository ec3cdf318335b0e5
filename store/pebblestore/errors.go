package pebblestore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"syscall"

	"github.com/cockroachdb/pebble/v2"

	"github.com/petrelmq/petrel/store"
)

// ioKind returns the store error an I/O failure stands for: ErrFull for a
// full disk, ErrReadOnly for a store it may not or cannot write, nil for
// anything else.
func ioKind(err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return store.ErrFull
	case errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return store.ErrReadOnly
	}
	return nil
}

// readErr gives an error from reading the store its kind: ErrCorrupt when
// pebble found damaged data.
func readErr(what string, err error) error {
	if err == nil {
		return nil
	}
	if pebble.IsCorruptionError(err) {
		return fmt.Errorf("%w: %s: %w", store.ErrCorrupt, what, err)
	}
	return fmt.Errorf("pebble store: %s: %w", what, err)
}

// fatalError is what pebble's Fatalf panics with (see logger). Pebble calls
// Fatalf where it cannot go on, for example when a commit could not be
// written to the log; errs are the errors among its arguments, so that
// errors.Is finds the cause (ENOSPC, EROFS, ...).
type fatalError struct {
	msg  string
	errs []error
}

func (e *fatalError) Error() string   { return e.msg }
func (e *fatalError) Unwrap() []error { return e.errs }

// panicError turns a recovered panic value into an error.
func panicError(r any) error {
	if err, ok := r.(error); ok {
		return err
	}
	return fmt.Errorf("pebble panicked: %v", r)
}

// logger passes pebble's log lines to slog: its chatter at debug, its errors
// at error. Fatalf logs and then panics with a *fatalError instead of exiting
// the process as pebble's default logger does: on a commit's goroutine the
// store recovers it, refuses the commit and stops taking writes (see
// Store.Commit); on one of pebble's own goroutines the panic still ends the
// process, with a stack trace.
type logger struct{ l *slog.Logger }

func (p logger) Infof(format string, args ...any) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(fmt.Sprintf(format, args...))
	}
}

func (p logger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
}

func (p logger) Fatalf(format string, args ...any) {
	e := &fatalError{msg: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if err, ok := a.(error); ok {
			e.errs = append(e.errs, err)
		}
	}
	p.l.Error("pebble cannot go on", "reason", e.msg)
	panic(e)
}

// eventListener logs the events an operator should see.
func eventListener(l *slog.Logger) *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			l.Error("store background error", "err", err)
		},
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			l.Error("store data corruption", "path", info.Path, "err", info.Details)
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			l.Warn("store disk slow", "op", info.OpType.String(), "path", info.Path, "duration", info.Duration)
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			l.Warn("store write stall", "reason", info.Reason)
		},
		WriteStallEnd: func() {
			l.Info("store write stall ended")
		},
	}
}
