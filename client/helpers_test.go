package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/testpki"
	"github.com/petrelmq/petrel/packet"
)

// startBroker runs a broker on a free loopback port and returns its address.
func startBroker(t testing.TB, opts broker.Options) string {
	t.Helper()
	if len(opts.Listeners) == 0 {
		opts.Listeners = []broker.ListenerConfig{{Address: "127.0.0.1:0"}}
	}
	s := broker.New(opts)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.Addrs()[0].String()
}

// checkGoroutines fails the test if, once the test and the cleanups
// registered after this call are done, more goroutines run than before.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("%d goroutines before the test, %d after:\n%s", before, n, buf)
		}
	})
}

// connect connects with o and closes the client when the test ends.
func connect(t testing.TB, o Options) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := Connect(ctx, o)
	if err != nil {
		t.Fatalf("connect to %s: %v", o.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// inbox collects the messages a client receives.
type inbox struct {
	mu   sync.Mutex
	msgs []*Message
	more chan struct{}
}

func newInbox() *inbox { return &inbox{more: make(chan struct{}, 1)} }

func (b *inbox) add(m *Message) {
	b.mu.Lock()
	b.msgs = append(b.msgs, m.Clone())
	b.mu.Unlock()
	select {
	case b.more <- struct{}{}:
	default:
	}
}

// wait returns the first n messages, failing the test if they do not come
// within 5 seconds.
func (b *inbox) wait(t testing.TB, n int) []*Message {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		b.mu.Lock()
		if len(b.msgs) >= n {
			msgs := b.msgs[:n:n]
			b.mu.Unlock()
			return msgs
		}
		got := len(b.msgs)
		b.mu.Unlock()
		select {
		case <-b.more:
		case <-timeout:
			t.Fatalf("received %d messages in 5s, want %d", got, n)
		}
	}
}

func (b *inbox) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.msgs)
}

// subscriber connects a client that subscribes to filter and collects what
// it receives.
func subscriber(t testing.TB, addr string, v byte, filter string, qos byte) *inbox {
	t.Helper()
	in := newInbox()
	c := connect(t, Options{Addr: addr, Version: v, CleanStart: true, ClientID: "sub-" + filter,
		OnMessage: in.add})
	codes, err := c.Subscribe(context.Background(), []packet.Subscription{{Filter: filter, QoS: qos}}, packet.Properties{})
	if err != nil || len(codes) != 1 || codes[0] != packet.ReasonCode(qos) {
		t.Fatalf("subscribe %q: codes %v, err %v", filter, codes, err)
	}
	return in
}

// pki is a test CA with a server certificate for 127.0.0.1 and localhost
// and a client certificate.
type pki struct {
	roots  *x509.CertPool
	server tls.Certificate
	client tls.Certificate
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	ca := testpki.NewCA(t, "petrel test CA")
	client := ca.Client(t, &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "test-client"}})
	return &pki{roots: ca.Pool(), server: ca.Server(t, 2).TLS, client: client.TLS}
}

// serverTLS requires and verifies a client certificate.
func (p *pki) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: p.roots}
}

func (p *pki) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: p.roots, Certificates: []tls.Certificate{p.client}}
}

// fakeConn is the server side of a connection to a scripted server.
type fakeConn struct {
	net.Conn
	dec packet.Decoder
	v   byte
}

// read returns the next packet from the client, cloned.
func (f *fakeConn) read() (packet.Packet, error) {
	var hdr []byte
	var h packet.FixedHeader
	for {
		b := make([]byte, 1)
		if _, err := io.ReadFull(f.Conn, b); err != nil {
			return nil, err
		}
		hdr = append(hdr, b[0])
		var err error
		h, _, err = packet.ParseFixedHeader(hdr, 0)
		if err == nil {
			break
		}
		if err != packet.ErrIncomplete {
			return nil, err
		}
	}
	body := make([]byte, h.Remaining)
	if _, err := io.ReadFull(f.Conn, body); err != nil {
		return nil, err
	}
	p, err := f.dec.Decode(h, body)
	if err != nil {
		return nil, err
	}
	if c, ok := p.(*packet.Connect); ok {
		f.v = c.Version
	}
	return packet.Clone(p), nil
}

func (f *fakeConn) send(p packet.Packet) error {
	b, err := packet.Append(nil, p, f.v)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	return err
}

// accept reads CONNECT and answers CONNACK with props.
func (f *fakeConn) accept(props packet.Properties) (*packet.Connect, error) {
	p, err := f.read()
	if err != nil {
		return nil, err
	}
	c, ok := p.(*packet.Connect)
	if !ok {
		return nil, errors.New("first packet is not CONNECT")
	}
	return c, f.send(&packet.Connack{Props: props})
}

// fakeServer runs script on every connection to a loopback listener and
// returns the listener's address. Connections are closed when the script
// returns and when the test ends.
func fakeServer(t testing.TB, script func(f *fakeConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				script(&fakeConn{Conn: c})
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// sink is a scripted server that accepts one client, discards what it
// publishes and acknowledges QoS 1 and 2 without allocating: the other end
// of the benchmarks that measure the client alone.
func sink(t testing.TB) string {
	return fakeServer(t, func(f *fakeConn) {
		if _, err := f.accept(packet.Properties{}); err != nil {
			return
		}
		var dec packet.Decoder
		dec.Version = f.v
		buf := make([]byte, 256<<10)
		var out []byte
		start, end := 0, 0
		for {
			n, err := f.Conn.Read(buf[end:])
			if err != nil {
				return
			}
			end += n
			out = out[:0]
			for {
				h, hn, err := packet.ParseFixedHeader(buf[start:end], 0)
				if err != nil || end-start < hn+h.Remaining {
					break
				}
				p, err := dec.Decode(h, buf[start+hn:start+hn+h.Remaining])
				start += hn + h.Remaining
				if err != nil {
					return
				}
				switch p := p.(type) {
				case *packet.Publish:
					if p.QoS > 0 {
						a := packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID}
						if p.QoS == 2 {
							a.Kind = packet.PUBREC
						}
						out, _ = packet.AppendAck(out, &a, f.v)
					}
				case *packet.Ack:
					if p.Kind == packet.PUBREL {
						a := packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID}
						out, _ = packet.AppendAck(out, &a, f.v)
					}
				case *packet.Pingreq:
					out = append(out, byte(packet.PINGRESP)<<4, 0)
				case *packet.Disconnect:
					return
				}
			}
			copy(buf, buf[start:end])
			end -= start
			start = 0
			if len(out) > 0 {
				if _, err := f.Write(out); err != nil {
					return
				}
			}
		}
	})
}
