package packet

import "strings"

// Clone returns a deep copy of p that shares no memory with it, for keeping a
// decoded packet past the next Decode. Empty slices become nil. It returns
// nil for a Packet of another package.
func Clone(p Packet) Packet {
	switch p := p.(type) {
	case *Connect:
		c := *p
		c.ClientID = strings.Clone(p.ClientID)
		c.Username = strings.Clone(p.Username)
		c.Password = cloneBytes(p.Password)
		c.WillTopic = strings.Clone(p.WillTopic)
		c.WillPayload = cloneBytes(p.WillPayload)
		c.WillProps = cloneProps(&p.WillProps)
		c.Props = cloneProps(&p.Props)
		return &c
	case *Connack:
		c := *p
		c.Props = cloneProps(&p.Props)
		return &c
	case *Publish:
		c := *p
		c.Topic = strings.Clone(p.Topic)
		c.Payload = cloneBytes(p.Payload)
		c.Props = cloneProps(&p.Props)
		return &c
	case *Ack:
		c := *p
		c.Props = cloneProps(&p.Props)
		return &c
	case *Subscribe:
		c := *p
		c.Props = cloneProps(&p.Props)
		c.Subs = nil
		if len(p.Subs) > 0 {
			c.Subs = make([]Subscription, len(p.Subs))
			for i, s := range p.Subs {
				s.Filter = strings.Clone(s.Filter)
				c.Subs[i] = s
			}
		}
		return &c
	case *Suback:
		c := *p
		c.Props = cloneProps(&p.Props)
		c.Codes = cloneSlice(p.Codes)
		return &c
	case *Unsubscribe:
		c := *p
		c.Props = cloneProps(&p.Props)
		c.Filters = nil
		if len(p.Filters) > 0 {
			c.Filters = make([]string, len(p.Filters))
			for i, f := range p.Filters {
				c.Filters[i] = strings.Clone(f)
			}
		}
		return &c
	case *Unsuback:
		c := *p
		c.Props = cloneProps(&p.Props)
		c.Codes = cloneSlice(p.Codes)
		return &c
	case *Pingreq:
		return &Pingreq{}
	case *Pingresp:
		return &Pingresp{}
	case *Disconnect:
		c := *p
		c.Props = cloneProps(&p.Props)
		return &c
	case *Auth:
		c := *p
		c.Props = cloneProps(&p.Props)
		return &c
	}
	return nil
}

func cloneProps(p *Properties) Properties {
	c := *p
	c.ContentType = strings.Clone(p.ContentType)
	c.ResponseTopic = strings.Clone(p.ResponseTopic)
	c.CorrelationData = cloneBytes(p.CorrelationData)
	c.SubscriptionIDs = cloneSlice(p.SubscriptionIDs)
	c.AssignedClientID = strings.Clone(p.AssignedClientID)
	c.AuthMethod = strings.Clone(p.AuthMethod)
	c.AuthData = cloneBytes(p.AuthData)
	c.ResponseInfo = strings.Clone(p.ResponseInfo)
	c.ServerReference = strings.Clone(p.ServerReference)
	c.ReasonString = strings.Clone(p.ReasonString)
	c.User = nil
	if len(p.User) > 0 {
		c.User = make([]UserProperty, len(p.User))
		for i, kv := range p.User {
			c.User[i] = UserProperty{Key: strings.Clone(kv.Key), Value: strings.Clone(kv.Value)}
		}
	}
	return c
}

func cloneBytes(b []byte) []byte { return cloneSlice(b) }

func cloneSlice[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return append([]T(nil), s...)
}
