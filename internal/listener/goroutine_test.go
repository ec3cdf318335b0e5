package listener

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/testpki"
)

// The goroutine driver exists for TLS: echo, then final bytes after Close
// through tls.Conn's half-close (close_notify, then FIN) with input the
// server never reads.
func TestGoroutineDriverOverTLS(t *testing.T) {
	serverConf, clientConf := tlsConfigs(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	final := pattern(1<<20, 11)
	h := newTestHandler(t)
	h.onData = func(e *testEndpoint, b []byte) {
		if string(b) == "bye" {
			e.write(final)
			e.conn.Close()
			return
		}
		e.write(b)
	}
	d := NewGoroutineDriver(tls.NewListener(ln, serverConf), h, Options{})
	served := make(chan error, 1)
	go func() { served <- d.Serve(context.Background()) }()
	t.Cleanup(h.verify)
	defer func() {
		d.Close()
		if err := receive(t, served, "Serve to return"); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	c, err := tls.Dial("tcp", ln.Addr().String(), clientConf)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	e := receive(t, h.opened, "Open")

	want := pattern(256<<10, 12)
	wrote := make(chan error, 1)
	go func() { wrote <- writeChunks(c, want, 12) }()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "TLS echo", got, want)

	if _, err := c.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	go func() { // input the server discards while it drains
		junk := make([]byte, 16<<10)
		for range 64 {
			if _, err := c.Write(junk); err != nil {
				return
			}
		}
	}()
	got = readAll(t, c, "TLS client")
	sameBytes(t, "TLS final bytes", got, final)
	c.Close()
	if err := closedWith(t, e); err != nil {
		t.Errorf("Closed(%v) after Conn.Close, want nil", err)
	}
}

func tlsConfigs(t *testing.T) (server, client *tls.Config) {
	cert := testpki.SelfSigned(t, "petrel test")
	roots := x509.NewCertPool()
	roots.AddCert(cert.Cert)
	server = &tls.Config{Certificates: []tls.Certificate{cert.TLS}}
	client = &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	return server, client
}

// failingListener fails its first Accept calls with a temporary error.
type failingListener struct {
	net.Listener
	failures atomic.Int32
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.failures.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// Running out of descriptors is logged and retried after a pause; the
// driver goes on accepting.
func TestGoroutineDriverRetriesTemporaryAcceptErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &failingListener{Listener: ln}
	fl.failures.Store(3)
	var logs logBuffer
	h := newTestHandler(t)
	d := NewGoroutineDriver(fl, h, Options{Logger: logs.logger()})
	served := make(chan error, 1)
	go func() { served <- d.Serve(context.Background()) }()
	t.Cleanup(h.verify)
	c := dial(t, ln.Addr().String())
	e := receive(t, h.opened, "Open after accept errors")
	c.Close()
	closedWith(t, e)
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := receive(t, served, "Serve to return"); err != nil {
		t.Errorf("Serve: %v", err)
	}
	if l := logs.String(); strings.Count(l, "accept failed") != 3 {
		t.Errorf("want 3 logged accept failures; log:\n%s", l)
	}
}
