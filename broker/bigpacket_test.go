package broker

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/petrelmq/petrel/internal/testlog"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// Packets larger than a read assemble in a buffer of their own, which the
// message keeps. Big PUBLISHes written back to back with small ones, in
// pieces, must come out whole, in order, and a retained one must still be
// intact after more traffic went through the connection.
func TestBigPacketsInPieces(t *testing.T) {
	for _, goroutines := range []bool{false, true} {
		t.Run(map[bool]string{false: "event-loop", true: "goroutine"}[goroutines], func(t *testing.T) {
			srv := New(Options{Logger: testlog.New(t),
				Listeners: []ListenerConfig{{Address: "127.0.0.1:0", goroutineDriver: goroutines}}})
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			addr := srv.Addrs()[0].String()
			sub, _ := wiretest.MustConnect(t, addr, "sub", true)
			sub.Subscribe("big/#", 1)
			pub, _ := wiretest.MustConnect(t, addr, "pub", true)

			pattern := func(seed byte, n int) []byte {
				b := make([]byte, n)
				for i := range b {
					b[i] = seed + byte(i%251)
				}
				return b
			}
			msgs := []*packet.Publish{
				{Topic: "big/retained", Payload: pattern(1, 300<<10), QoS: 1, PacketID: 1, Retain: true},
				{Topic: "big/q0", Payload: pattern(2, 200<<10)},
				{Topic: "big/small", Payload: []byte("small"), QoS: 1, PacketID: 2},
				{Topic: "big/q1", Payload: pattern(3, 100<<10), QoS: 1, PacketID: 3},
				{Topic: "big/exact", Payload: pattern(4, bigPacket), QoS: 1, PacketID: 4},
			}
			var stream []byte
			for _, m := range msgs {
				b, err := packet.Append(nil, m, packet.V311)
				if err != nil {
					t.Fatal(err)
				}
				stream = append(stream, b...)
			}
			// Irregular pieces, so packets start and end mid-write.
			for i, sizes := 0, []int{3, 70000, 1, 9000, 131072, 17}; len(stream) > 0; i++ {
				n := min(sizes[i%len(sizes)], len(stream))
				if _, err := pub.Conn.Write(stream[:n]); err != nil {
					t.Fatal(err)
				}
				stream = stream[n:]
			}
			for _, pid := range []uint16{1, 2, 3, 4} {
				pub.ExpectAck(packet.PUBACK, pid)
			}
			for _, want := range msgs {
				got, ok := sub.Next().(*packet.Publish)
				if !ok {
					t.Fatalf("want PUBLISH %s, got %+v", want.Topic, got)
				}
				if got.Topic != want.Topic || !bytes.Equal(got.Payload, want.Payload) {
					t.Fatalf("got %s with %d bytes, want %s with %d bytes (equal payloads: %v)",
						got.Topic, len(got.Payload), want.Topic, len(want.Payload), bytes.Equal(got.Payload, want.Payload))
				}
				if got.QoS > 0 {
					sub.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: got.PacketID})
				}
			}
			// More big traffic on the same connection, then the retained
			// message must be as it was published.
			for i := range 4 {
				pub.Send(&packet.Publish{Topic: fmt.Sprint("other/", i), Payload: pattern(byte(50+i), 150<<10), QoS: 1, PacketID: uint16(10 + i)})
				pub.ExpectAck(packet.PUBACK, uint16(10+i))
			}
			late, _ := wiretest.MustConnect(t, addr, "late", true)
			late.Subscribe("big/retained", 0)
			got, ok := late.Next().(*packet.Publish)
			if !ok || !got.Retain || !bytes.Equal(got.Payload, msgs[0].Payload) {
				t.Fatalf("retained big message: %v, intact %v", ok, ok && bytes.Equal(got.Payload, msgs[0].Payload))
			}
			sub.Ping()
		})
	}
}

// bigBuffer reserves a big packet's size only once an eighth of it came.
func TestBigBufferReservesInProportion(t *testing.T) {
	header := func(total int) []byte {
		b, _ := packet.Append(nil, &packet.Publish{Topic: "t", Payload: make([]byte, total)}, packet.V311)
		return b
	}
	whole := header(800 << 10)
	if b, _ := bigBuffer(whole[:100<<10-1], 1<<20); b != nil {
		t.Errorf("less than an eighth arrived: reserved %d bytes", cap(b))
	}
	if b, _ := bigBuffer(whole[:100<<10+10], 1<<20); b == nil || cap(b) != len(whole) || !bytes.Equal(b, whole[:100<<10+10]) {
		t.Errorf("an eighth arrived: want a buffer of %d holding what came", len(whole))
	}
	if b, _ := bigBuffer(header(1000)[:500], 1<<20); b != nil {
		t.Errorf("small packet: reserved %d bytes", cap(b))
	}
	if b, _ := bigBuffer(whole[:200<<10], 512<<10); b != nil {
		t.Errorf("packet over the maximum size: reserved %d bytes", cap(b))
	}
}
