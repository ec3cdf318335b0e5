// Package ws carries MQTT over WebSocket (MQTT 5.0 section 6): it serves
// HTTP on a net.Listener, upgrades the requests for one path, and hands out
// each upgraded connection as a net.Conn that carries a byte stream, which
// the goroutine driver serves like any other connection.
//
// Subprotocols: a client offering "mqtt" gets "mqtt" back [MQTT-6.0.0-4];
// one offering only "mqttv3.1" (old MQTT 3.1 clients) gets that. A request
// offering subprotocols but neither of these is refused with 400, since the
// client would fail the connection anyway. A request offering none at all is
// accepted without one: the spec asks the client to offer "mqtt"
// [MQTT-6.0.0-3], but what follows is MQTT whatever the header said, and
// simple tools omit it.
//
// Byte stream: packets may span WebSocket frames and messages, and one
// message may hold several packets [MQTT-6.0.0-2]; the connection's reads
// return message payloads as one stream and each write sends one binary
// message. A text message closes the connection with status 1003
// [MQTT-6.0.0-1]. Compression (permessage-deflate) is not negotiated.
//
// wss: wrap the listener with tls.NewListener before giving it to Listen.
package ws

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Options tunes a Listener. The zero value is ready to use.
type Options struct {
	// Path is the URL path upgraded to WebSocket; other paths get 404.
	// Default "/mqtt".
	Path string

	// AllowedOrigins lists the browser origins allowed to connect, as
	// host patterns ("app.example.com", "*.example.com") or, with a
	// scheme, "https://app.example.com" (path.Match syntax, any case).
	// The broker's own host is always allowed, and so are requests without
	// an Origin header (clients that are not browsers). Other origins get
	// 403.
	//
	// Empty (the default) allows any origin. Browser pages that use MQTT
	// are commonly served from another origin than the broker, and the
	// broker authenticates clients by what they send in CONNECT, not by
	// cookies, so a page of another site gains nothing from a user's
	// browser that it could not do itself. Restrict origins when the
	// listener is reachable only from inside a network and lets clients in
	// without credentials: then any web page a user opens could reach it.
	AllowedOrigins []string

	// ReadLimit bounds one WebSocket message from a client, in bytes; a
	// larger one closes the connection with status 1009. Reads stream, so
	// the limit is policy rather than memory: set it to the broker's
	// maximum packet size plus some slack. Zero means DefaultReadLimit;
	// negative means no limit.
	ReadLimit int64

	// HandshakeTimeout bounds the TLS handshake (wss), reading the HTTP
	// request and writing the response, and an idle HTTP keep-alive
	// connection that was not upgraded. Default 10s.
	HandshakeTimeout time.Duration

	// TrustProxy takes a connection's remote address from the last entry
	// of X-Forwarded-For, which the reverse proxy in front of the broker
	// appends (earlier entries come from the client and prove nothing).
	// Set it only when every connection comes through such a proxy.
	TrustProxy bool

	// Logger receives refused upgrades and HTTP errors (debug: they are
	// the client's doing). Nil discards them.
	Logger *slog.Logger
}

// DefaultReadLimit is the default Options.ReadLimit: the broker's default
// maximum packet size (1 MiB) and 64 KiB of slack.
const DefaultReadLimit = 1<<20 + 64<<10

const (
	defaultPath             = "/mqtt"
	defaultHandshakeTimeout = 10 * time.Second
	// maxHeaderBytes bounds the upgrade request's headers (net/http adds
	// 4 KiB): browsers send cookies of the broker's host with them.
	maxHeaderBytes = 32 << 10
)

// subprotocols are the ones negotiated, in order of preference.
var subprotocols = []string{"mqtt", "mqttv3.1"}

// ErrTextFrame is the read error of a connection whose client sent a text
// message: MQTT travels in binary messages only [MQTT-6.0.0-1].
var ErrTextFrame = errors.New("ws: the client sent a text message; MQTT travels in binary messages")

// Listener accepts MQTT-over-WebSocket connections. It implements
// net.Listener, for listener.NewGoroutineDriver.
type Listener struct {
	ln        net.Listener
	srv       *http.Server
	opts      Options
	accept    websocket.AcceptOptions
	readLimit int64
	log       *slog.Logger

	conns    chan *Conn    // upgraded connections waiting for Accept
	done     chan struct{} // closed by Close
	served   chan struct{} // closed when http.Server.Serve returned
	serveErr error         // why it returned, when not because of Close

	// mu guards closing; handlers counts the requests being upgraded, so
	// Close can wait for them.
	mu       sync.Mutex
	closing  bool
	handlers sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Listen starts serving HTTP on ln and returns the listener of the
// connections it upgrades. Close stops it and closes ln. An error means
// opts is invalid; ln is then left open, to the caller.
func Listen(ln net.Listener, opts Options) (*Listener, error) {
	if opts.Path == "" {
		opts.Path = defaultPath
	}
	if !strings.HasPrefix(opts.Path, "/") {
		return nil, fmt.Errorf("ws: path %q does not start with /", opts.Path)
	}
	for _, p := range opts.AllowedOrigins {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("ws: allowed origin %q: %w", p, err)
		}
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = defaultHandshakeTimeout
	}
	l := &Listener{
		ln:   ln,
		opts: opts,
		accept: websocket.AcceptOptions{
			Subprotocols:       subprotocols,
			InsecureSkipVerify: len(opts.AllowedOrigins) == 0, // see AllowedOrigins
			OriginPatterns:     opts.AllowedOrigins,
		},
		readLimit: opts.ReadLimit,
		log:       opts.Logger,
		conns:     make(chan *Conn),
		done:      make(chan struct{}),
		served:    make(chan struct{}),
	}
	switch {
	case l.readLimit == 0:
		l.readLimit = DefaultReadLimit
	case l.readLimit < 0:
		l.readLimit = -1
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	t := opts.HandshakeTimeout
	l.srv = &http.Server{
		Handler:           l,
		ReadHeaderTimeout: t,
		ReadTimeout:       t,
		WriteTimeout:      t, // also bounds the TLS handshake, with the two above
		IdleTimeout:       t,
		MaxHeaderBytes:    maxHeaderBytes,
		// A non-nil empty map keeps HTTP/2 off even if the TLS
		// configuration offers h2: the upgrade needs HTTP/1.1.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:     slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
	}
	go l.serve()
	return l, nil
}

func (l *Listener) serve() {
	err := l.srv.Serve(l.ln)
	if !errors.Is(err, http.ErrServerClosed) {
		l.serveErr = fmt.Errorf("ws: serving HTTP: %w", err)
	}
	close(l.served)
}

// Accept waits for the next upgraded connection; it returns a *Conn.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, l.closedError()
	case <-l.served:
		if l.serveErr != nil {
			return nil, l.serveErr
		}
		return nil, l.closedError()
	}
}

func (l *Listener) closedError() error {
	return &net.OpError{Op: "accept", Net: l.ln.Addr().Network(), Addr: l.ln.Addr(), Err: net.ErrClosed}
}

// Addr is the address of the underlying listener.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting: it closes the underlying listener and every HTTP
// connection not upgraded yet, and waits until the HTTP server stopped.
// Connections already returned by Accept are their owner's to close.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closing = true
		close(l.done)
		l.mu.Unlock()
		err := l.srv.Close()
		<-l.served
		l.handlers.Wait()
		if err != nil && !errors.Is(err, net.ErrClosed) {
			l.closeErr = err
		}
	})
	return l.closeErr
}

// enter counts a request being upgraded, unless the listener is closing.
func (l *Listener) enter() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing {
		return false
	}
	l.handlers.Add(1)
	return true
}

// ServeHTTP upgrades a request and queues the connection for Accept.
func (l *Listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != l.opts.Path {
		http.NotFound(w, r)
		return
	}
	if !l.enter() {
		http.Error(w, "the listener is closing", http.StatusServiceUnavailable)
		return
	}
	defer l.handlers.Done()
	if offered, ok := offersMQTT(r.Header); offered && !ok {
		l.refused(r, "no MQTT subprotocol offered", r.Header.Values("Sec-WebSocket-Protocol"))
		http.Error(w, `the Sec-WebSocket-Protocol header must offer "mqtt"`, http.StatusBadRequest)
		return
	}
	remote := l.remoteAddr(r)
	hw := &hijackCapture{ResponseWriter: w}
	wc, err := websocket.Accept(hw, r, &l.accept) // it answers refusals itself
	if err != nil {
		l.refused(r, err.Error(), nil)
		return
	}
	if hw.conn == nil { // cannot happen: Accept succeeds only by hijacking
		wc.CloseNow()
		return
	}
	wc.SetReadLimit(l.readLimit)
	c := &Conn{ws: wc, raw: hw.conn, remote: remote}
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *Listener) refused(r *http.Request, reason string, offered []string) {
	if !l.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	args := []any{"remote", r.RemoteAddr, "reason", reason}
	if offered != nil {
		args = append(args, "offered", offered)
	}
	l.log.Debug("ws: upgrade refused", args...)
}

// offersMQTT reports whether the request offers subprotocols at all, and
// whether one of them is one we speak.
func offersMQTT(h http.Header) (offered, ok bool) {
	for _, v := range h.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			offered = true
			for _, s := range subprotocols {
				if strings.EqualFold(p, s) {
					return true, true
				}
			}
		}
	}
	return offered, false
}

// remoteAddr is, with TrustProxy, the client address the proxy appended
// to X-Forwarded-For (port 0: the header has none); nil means the TCP peer.
func (l *Listener) remoteAddr(r *http.Request) net.Addr {
	if !l.opts.TrustProxy {
		return nil
	}
	if a, ok := forwardedFor(r.Header); ok {
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0))
	}
	return nil
}

// forwardedFor returns the last address of X-Forwarded-For.
func forwardedFor(h http.Header) (netip.Addr, bool) {
	vals := h.Values("X-Forwarded-For")
	if len(vals) == 0 {
		return netip.Addr{}, false
	}
	last := vals[len(vals)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	last = strings.TrimSpace(last)
	if a, err := netip.ParseAddr(last); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(last); err == nil { // some proxies add the port
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}
