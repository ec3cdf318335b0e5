package broker

import (
	"context"
	"errors"
	"net"
	"sync"

	"github.com/petrelmq/petrel/internal/listener"
)

// The internal listener takes connections made inside the process by
// parts of the broker that act as MQTT clients of it: a bridge's local
// side (issue 20). They are ordinary MQTT connections over a pipe:
// anonymous clients are allowed, and the authorizer and the ACL hook see
// them as any other client (listener name InternalListener).

// InternalListener names the internal listener in logs, metrics and
// auth.Client.Listener.
const InternalListener = "internal"

// pipeListener is a net.Listener whose connections are pipes handed to it
// by DialInternal.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return InternalListener }

// startInternal opens the internal listener, served until ctx is done.
func (s *Server) startInternal(ctx context.Context) {
	ln := newPipeListener()
	ls := &listenerState{srv: s, name: InternalListener, cfg: ListenerConfig{Name: InternalListener, Kind: "internal"},
		allowAnonymous: true}
	ls.driver = listener.NewGoroutineDriver(ln, ls, listener.Options{Logger: s.log})
	s.internal, s.internalLn = ls, ln
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := ls.driver.Serve(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("listener stopped", "listener", InternalListener, "err", err)
		}
	}()
}

// DialInternal connects to the server from inside the process, as an
// MQTT client does over a socket: what it returns is the client's end of
// a pipe, on which the caller speaks MQTT (package client takes it). It
// fails once the server is closing, or when ctx is done first.
func (s *Server) DialInternal(ctx context.Context) (net.Conn, error) {
	ln := s.internalLn
	if ln == nil || s.shuttingDown.Load() {
		return nil, errors.New("the broker is not serving")
	}
	client, server := net.Pipe()
	select {
	case ln.conns <- server:
		return client, nil
	case <-ln.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return nil, net.ErrClosed
}
