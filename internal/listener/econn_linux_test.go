//go:build linux

package listener

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// An econn keeps the remote address raw; RemoteAddr gives it back as the
// kernel reported it: IPv4 (also when it came IPv4-mapped, on a dual-stack
// socket), IPv6, and a link-local IPv6 peer with its zone.
func TestRemoteAddrRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		family uint16
		ip     string
		scope  uint32
		port   uint16
		want   string
	}{
		{unix.AF_INET, "192.0.2.7", 0, 1883, "192.0.2.7:1883"},
		{unix.AF_INET, "0.0.0.0", 0, 1, "0.0.0.0:1"},
		{unix.AF_INET6, "2001:db8::1", 0, 8883, "[2001:db8::1]:8883"},
		{unix.AF_INET6, "::ffff:192.0.2.7", 0, 65535, "192.0.2.7:65535"},
		{unix.AF_INET6, "fe80::1", 3, 1883, "[fe80::1%3]:1883"},
		{unix.AF_INET6, "::1", 0, 0, "[::1]:0"},
	} {
		var rsa unix.RawSockaddrAny
		ip := netip.MustParseAddr(tc.ip)
		switch tc.family {
		case unix.AF_INET:
			a := (*unix.RawSockaddrInet4)(unsafe.Pointer(&rsa))
			a.Family, a.Addr = unix.AF_INET, ip.As4()
			binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&a.Port))[:], tc.port)
		case unix.AF_INET6:
			a := (*unix.RawSockaddrInet6)(unsafe.Pointer(&rsa))
			a.Family, a.Addr, a.Scope_id = unix.AF_INET6, ip.As16(), tc.scope
			binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&a.Port))[:], tc.port)
		}
		p := peerOf(&rsa)
		c := &econn{ip: p.ip, scope: p.scope, port: p.port}
		if got := c.RemoteAddr().String(); got != tc.want {
			t.Errorf("%s port %d scope %d: RemoteAddr %s, want %s", tc.ip, tc.port, tc.scope, got, tc.want)
		}
	}
}

// An econn is most of what the driver keeps per idle connection (besides
// its 8 bytes in the fdTable), and the allocator rounds it up to a size
// class: growing past this one costs every idle connection 16 bytes more.
// Fields that are added must find room (or another one leave).
func TestEconnSizeClass(t *testing.T) {
	const sizeClass = 80
	if got := unsafe.Sizeof(econn{}); got > sizeClass {
		t.Errorf("econn is %d bytes, past the %d-byte size class", got, sizeClass)
	}
}
