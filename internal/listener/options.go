package listener

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/petrelmq/petrel/internal/pipebuf"
)

// Options tunes a driver. The zero value is ready to use; each field
// documents its default.
type Options struct {
	// Loops is the number of event loops of the event-loop driver.
	// Zero means runtime.GOMAXPROCS(0). The goroutine driver ignores it.
	Loops int

	// ReadBufferSize is the size of a read buffer. The event-loop driver
	// has one per loop (default 64 KiB); the goroutine driver takes one from
	// bufpool per connection while bytes are arriving (default 16 KiB; it
	// uses the whole capacity bufpool hands out) and gives it back when the
	// connection goes quiet.
	ReadBufferSize int

	// CloseTimeout bounds how long Conn.Close keeps writing the final
	// output to a peer that does not read. Default 2s.
	CloseTimeout time.Duration

	// DrainTimeout bounds how long Conn.Close, after shutting down the
	// write side, reads and discards input while waiting for the peer to
	// close, so the peer sees the final bytes instead of a reset.
	// Default 1s.
	DrainTimeout time.Duration

	// Pipes, when not nil, gives the event-loop driver the pipes it
	// splices output through (PieceWriter's pipe pieces); without
	// one, or when it runs out, pipe pieces are copied out and written.
	Pipes *pipebuf.Pool

	// Logger receives driver-level events: endpoint panics (error), accept
	// failures (warn), connection errors (debug). Nil discards them.
	Logger *slog.Logger
}

const (
	defaultLoopBufferSize = 64 << 10
	defaultConnBufferSize = 16 << 10
	// smallReadSize is the read buffer a goroutine-driver connection holds
	// while it waits for bytes and cannot wait without one (TLS, adapters).
	smallReadSize = 512
)

func (o Options) withDefaults(loopDriver bool) Options {
	if o.Loops <= 0 {
		o.Loops = runtime.GOMAXPROCS(0)
	}
	if o.ReadBufferSize <= 0 {
		o.ReadBufferSize = defaultConnBufferSize
		if loopDriver {
			o.ReadBufferSize = defaultLoopBufferSize
		}
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 2 * time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// PanicError is what Endpoint.Closed receives when one of the endpoint's
// own methods panicked: the driver recovers, logs the stack and closes that
// connection only.
type PanicError struct {
	Method string // "Data", "Output", "Written" and so on
	Value  any    // the value passed to panic
	Stack  []byte // the panicking goroutine's stack
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("listener: endpoint %s panicked: %v", e.Method, e.Value)
}

// recovered turns a recovered panic value into a logged *PanicError. It must
// be called from the deferred function that recovered, so the stack still
// holds the panicking frames.
func recovered(log *slog.Logger, method string, remote net.Addr, r any) *PanicError {
	stack := debug.Stack()
	log.Error("listener: endpoint panicked; closing its connection",
		"method", method, "remote", addrString(remote), "panic", r, "stack", string(stack))
	return &PanicError{Method: method, Value: r, Stack: stack}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// temporaryAccept reports whether an accept error is worth retrying after a
// pause: running out of descriptors or memory passes when connections close,
// and a connection aborted before accept is the peer's business.
func temporaryAccept(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range [...]syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS,
		syscall.ENOMEM, syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// acceptBackoff is the pause after the n-th consecutive failed accept:
// 5ms doubling up to 1s, as net/http does.
func acceptBackoff(prev time.Duration) time.Duration {
	if prev == 0 {
		return 5 * time.Millisecond
	}
	return min(2*prev, time.Second)
}

// pause waits for d, or returns false early when either channel is closed.
func pause(d time.Duration, done1, done2 <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done1:
		return false
	case <-done2:
		return false
	}
}
