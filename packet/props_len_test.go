package packet

import (
	"encoding/binary"
	"testing"
)

// FuzzPropsLen keeps the two halves of the property encoder in step:
// propsLen (the size that goes into the remaining length) must equal what
// appendProps writes, for every packet's mask and any set of properties.
// They are written out twice because a shared walk that computed both
// would not inline on the hot path; this is what keeps them equal.
func FuzzPropsLen(f *testing.F) {
	f.Add(^uint64(0), byte(1), uint16(10), uint32(60), "text/plain", uint8(2), []byte{1, 2, 0xff, 0xff, 0xff, 0x7f})
	f.Add(uint64(1)<<PropReasonString|1<<PropUser, byte(0), uint16(0), uint32(0), "", uint8(1), []byte{})
	f.Add(uint64(1)<<PropSubscriptionID, byte(0), uint16(0), uint32(0), "", uint8(0), []byte{0, 0, 0, 1, 0x10, 0, 0, 0})
	masks := []uint64{connectProps, willPropsMask, connackProps, publishProps, publishProps | allowSubIDRepeat,
		ackProps, subscribeProps, unsubscribeProps, disconnectProps, authProps, ^allowSubIDRepeat, ^uint64(0)}
	f.Fuzz(func(t *testing.T, present uint64, b byte, u16 uint16, u32 uint32, s string, users uint8, ids []byte) {
		p := Properties{
			Present:       present,
			PayloadFormat: b, RequestProblemInfo: b, RequestResponseInfo: b, MaximumQoS: b,
			RetainAvailable: b, WildcardSubAvailable: b, SubIDAvailable: b, SharedSubAvailable: b,
			ServerKeepAlive: u16, TopicAliasMaximum: u16, ReceiveMaximum: u16, TopicAlias: u16,
			MessageExpiry: u32, SessionExpiry: u32, WillDelay: u32, MaximumPacketSize: u32,
			ContentType: s, ResponseTopic: s, CorrelationData: []byte(s), AssignedClientID: s,
			AuthMethod: s, AuthData: []byte(s), ResponseInfo: s, ServerReference: s, ReasonString: s,
		}
		for i := range int(users % 8) {
			p.User = append(p.User, UserProperty{Key: s[:len(s)*i/8], Value: s})
		}
		for len(ids) >= 4 {
			p.SubscriptionIDs = append(p.SubscriptionIDs, binary.BigEndian.Uint32(ids))
			ids = ids[4:]
		}
		for _, mask := range masks {
			n, err := propsLen(&p, mask)
			if err != nil {
				continue // refused before anything is written
			}
			got := appendProps(nil, &p, mask, n)
			if want := varIntLen(uint32(n)) + n; len(got) != want {
				t.Fatalf("mask %#x: propsLen says %d bytes (%d with the length), appendProps wrote %d", mask, n, want, len(got))
			}
		}
	})
}
