package broker

import (
	"net"
	"testing"
	"time"
)

// A client that sends a CONNECT with a will, then a malformed packet, and
// ends its side at once: the broker closes it and lets go of it at once.
// (Found by FuzzLiveConnection: the peer's end came with the bytes, the
// event loops' hub was not told of it again, and the connection waited for
// the drain deadline and more.)
func TestConnectionEndingWithItsBytesIsReleased(t *testing.T) {
	srv := startServer(t, Options{})
	addr := srv.Addrs()[0].String()
	input := []byte("\x10\x19\x00\x04MQTT\x04,\x14\x01\x00\x03f3w\x00\x03w/3\x00\x03bye2\b\x00\x03w/3\x00\x01x")
	for i := range 20 {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.Write(input)
		nc.(*net.TCPConn).CloseWrite()
		start := time.Now()
		nc.SetReadDeadline(start.Add(10 * time.Second))
		buf := make([]byte, 64)
		for {
			if _, err := nc.Read(buf); err != nil {
				break
			}
		}
		nc.Close()
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("round %d: the broker closed the connection %v after the client's end, want at once", i, d)
		}
		for srv.connCount.Load() != 0 {
			if time.Since(start) > 500*time.Millisecond {
				t.Fatalf("round %d: the broker still holds the connection %v after it ended", i, time.Since(start))
			}
			time.Sleep(time.Millisecond)
		}
	}
}
