// Package listener holds Petrel's I/O drivers. A driver accepts connections,
// moves bytes between sockets and an Endpoint, and knows nothing of MQTT:
// the broker's engine implements Endpoint, and the Server wires the two.
//
// Two drivers exist. The event-loop driver (Linux, plain TCP) uses epoll so
// an idle connection holds no goroutine; the goroutine driver serves any
// net.Listener (TLS, WebSocket, unix sockets, and TCP elsewhere) with a read
// goroutine per connection and a writer goroutine only while output is pending.
//
// Locking: no driver lock is ever held while it calls an Endpoint or a
// Handler, so an endpoint may call Flush and Close from inside Data, Open
// or Output. Each driver lock is a leaf (nothing else is taken under it).
package listener

import (
	"context"
	"net"

	"github.com/petrelmq/petrel/internal/pipebuf"
)

// Endpoint is one connection's protocol engine, as seen by a driver.
//
// The driver calls Data serially for one connection, never concurrently
// with itself, and never after Closed; bytes that arrive once Close was
// called are discarded. Output and Closed may be called from any driver
// goroutine, and Output concurrently with Data (the goroutine driver writes
// on another goroutine than it reads), so the endpoint guards its outbound
// buffer. A panic in Data or Output (or Written, see WriteWatcher) is
// recovered and logged, and closes that connection with a *PanicError.
type Endpoint interface {
	// Data hands over bytes read from the connection. b is the driver's
	// buffer: it is valid only during the call, so the endpoint copies what
	// it must keep (a partial packet).
	Data(b []byte)

	// Output takes all pending outbound bytes from the endpoint. The
	// endpoint gives up ownership of the returned slice; the driver writes
	// it and then returns it to bufpool. It returns nil when nothing is
	// pending. Called after the endpoint asked for it with Conn.Flush, and
	// before closing.
	Output() []byte

	// Closed is called exactly once when the connection is gone, for
	// whatever reason: err is nil after Conn.Close or Driver.Close (even if
	// the final flush failed), otherwise the read or write error (io.EOF
	// when the peer closed) or a *PanicError. Output is not called after it.
	Closed(err error)
}

// A PieceWriter is an Endpoint whose output may refer to what it keeps (a
// big payload that many connections send, in memory or in a pipe) instead
// of holding a copy. The event-loop driver asks for output this way and
// writes it with writev, and pipe pieces with tee and splice; the
// goroutine driver calls Output, which then copies.
type PieceWriter interface {
	// OutputPieces takes all pending output, as Output does. When some of
	// it is lent, pieces lists what to write, in order (parts of buf, the
	// lent memory and pipes), and done is called once, when all of it is
	// written or the connection is gone; the driver does not read the
	// pieces after that, and leaves the pipes' bytes where they are.
	// Otherwise pieces and done are nil and buf is written as Output's
	// result would be. buf goes back to bufpool either way. The driver
	// changes the pieces slice as it writes: each call returns a new one.
	OutputPieces() (buf []byte, pieces []Piece, done func())
}

// A WriteWatcher is an Endpoint that counts the output its driver still
// holds: for a peer that does not read, the driver keeps what Output last
// returned until the socket takes it, and that is the endpoint's to bound.
// After each write that moved bytes, the driver calls Written with their
// number. Both drivers take output again only once all they took before
// is written, so at most one batch is held at a time, and they call Output
// and Written from one goroutine at a time for a connection. (The event
// loop reports each partial write; the goroutine driver, whose Write
// returns only when done, reports each batch whole.)
type WriteWatcher interface {
	Written(n int)
}

// A DirectReader is an Endpoint that can take some input straight into a
// buffer of its own (the rest of a big packet) instead of having it copied
// out of the driver's. The event-loop driver asks before each read; the
// goroutine driver does not.
type DirectReader interface {
	// ReadBuffer returns where the next read should go, or nil for the
	// driver's buffer. The endpoint must not touch that memory until
	// DataRead.
	ReadBuffer() []byte
	// DataRead hands over the bytes read into ReadBuffer's buffer: b is
	// its first len(b) bytes.
	DataRead(b []byte)
}

// A SpliceReader is a DirectReader that can take the rest of a big packet
// into a kernel pipe instead of memory, so that its bytes need never be
// copied (see PieceWriter's pipe pieces). The event-loop driver asks before
// ReadBuffer; the goroutine driver does not.
type SpliceReader interface {
	// ReadPipe returns the pipe the next read should go into and how many
	// bytes it is to take at most, or nil.
	ReadPipe() (p *pipebuf.Pipe, n int)
	// DataSpliced hands over the n bytes the read put into the pipe. An n
	// of 0 says the pipe took none while the socket had bytes for it: it
	// is full (a pipe counts buffers, not bytes), and the endpoint is to
	// take the rest some other way.
	DataSpliced(n int)
}

// Piece is a part of output given as pieces (PieceWriter): Bytes, or when
// Pipe is not nil the first N bytes in Pipe, which the driver leaves there
// (it tees its own copy, so that several connections can send one pipe's
// bytes).
type Piece struct {
	Bytes []byte
	Pipe  *pipebuf.Pipe
	N     int
}

// A Pauser is an Endpoint that can ask its driver to stop reading for a
// while, when what the peer sends has nowhere to go yet (backpressure:
// TCP's window then slows the peer). The driver asks ReadPaused after each
// Data and DataRead; once it says true, the driver reads nothing more from
// the connection until the endpoint calls Conn.Resume and ReadPaused says
// false; it then calls Data with no bytes, for the endpoint to take up
// input it set aside when it paused. Closing the connection ends a pause.
type Pauser interface {
	ReadPaused() bool
}

// Conn is what an Endpoint may ask of its driver. Every method is safe to call
// from any goroutine, at any time, including after the connection closed.
type Conn interface {
	// Flush asks the driver to call Output soon and write what it returns.
	// It never blocks and is cheap when a flush is already pending: call it
	// after every append; the driver batches.
	Flush()

	// Close writes whatever Output still returns (bounded by a short
	// deadline so a peer that does not read cannot hold it), closes the
	// write side, drains input briefly so the peer sees the final bytes
	// rather than a reset, then closes the socket and calls Closed(nil).
	Close()

	// Resume tells the driver that a Pauser's ReadPaused may have turned
	// false: if it has, reading starts again. It never blocks, and does
	// nothing when the connection is not paused.
	Resume()

	// RemoteAddr is the peer's address.
	RemoteAddr() net.Addr
	// LocalAddr is the address the connection was accepted on.
	LocalAddr() net.Addr
}

// Underlying is implemented by Conns that wrap a net.Conn (the goroutine
// driver's): an endpoint can reach, say, the TLS state of the connection.
// The event-loop driver serves plain TCP and has nothing more to offer.
type Underlying interface {
	NetConn() net.Conn
}

// Handler creates the Endpoint for each accepted connection.
type Handler interface {
	// Open is called once per accepted connection, before any Data.
	Open(c Conn) Endpoint
}

// Driver serves one listener until its context is cancelled or Close is called.
type Driver interface {
	// Serve accepts connections until ctx is done, Close is called, or the
	// listener fails; it returns nil in the first two cases. It closes the
	// listener when ctx is done. It returns after the accept loop stopped;
	// connections already accepted keep running until closed.
	Serve(ctx context.Context) error
	// Addr is the listening address (useful with port 0).
	Addr() net.Addr
	// Close stops accepting and closes every open connection as Conn.Close
	// does (final output still goes out, within Options.CloseTimeout and
	// DrainTimeout). It returns once Closed has returned for every
	// connection, so it must not be called from inside an Endpoint method.
	// Calling it again waits the same way and returns the same result.
	Close() error
}
