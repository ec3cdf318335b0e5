// Package msgformat renders a received message as petrel sub prints it:
// through a -F format string, as mosquitto_sub's -F does, or as one JSON
// object (-j).
//
// A format string's sequences:
//
//	%t topic  %p payload  %q QoS  %r retain  %m message id  %l length
//	%x %X payload in hex  %P user properties (key:value ...)  %C content type
//	%D correlation data  %E message expiry  %F payload format
//	%R response topic  %S subscription ids  %A topic alias
//	%I ISO 8601 time  %U unix time with nanoseconds
//	%j JSON as -j  %J JSON with the payload as JSON  %% a %
//
// with the flags - and 0, a width and a .precision as in printf; @X is
// strftime's %X (Y m d H M S y j a A b B e p Z z s F T), @N nanoseconds, @@
// an @; and the escapes \n \t \r \v \a \e \0 \\.
package msgformat

//lint:file-ignore ST1005 these errors reach a person after "Error: " as whole sentences, in the voice of petrel pub, sub and bench (mosquitto_pub's wording), and tests check them.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/petrelmq/petrel/client"
	"github.com/petrelmq/petrel/packet"
)

// AppendFormat appends m rendered through a -F format string; now is the
// time of its arrival. See the package comment for the sequences; pretty
// indents the JSON of %j and %J. It fails only where %J meets a payload
// that is not JSON.
func AppendFormat(dst []byte, format string, m *client.Message, now time.Time, pretty bool) ([]byte, error) {
	for i := 0; i < len(format); i++ {
		ch := format[i]
		switch {
		case ch == '%' && i+1 < len(format):
			// Flags, width, precision, conversion.
			j := i + 1
			left, zero := false, false
			for ; j < len(format) && (format[j] == '-' || format[j] == '0'); j++ {
				left, zero = left || format[j] == '-', zero || format[j] == '0'
			}
			width, prec := 0, -1
			for ; j < len(format) && format[j] >= '0' && format[j] <= '9'; j++ {
				width = width*10 + int(format[j]-'0')
			}
			if j < len(format) && format[j] == '.' {
				prec = 0
				for j++; j < len(format) && format[j] >= '0' && format[j] <= '9'; j++ {
					prec = prec*10 + int(format[j]-'0')
				}
			}
			if j >= len(format) {
				return append(dst, format[i:]...), nil
			}
			var field []byte
			var err error
			numeric := strings.IndexByte("AEFlmSxX", format[j]) >= 0
			field, err = appendField(nil, format[j], m, now, pretty)
			if err != nil {
				return dst, err
			}
			if prec >= 0 {
				field = truncateRunes(field, prec)
			}
			if pad := width - utf8.RuneCount(field); pad > 0 {
				fill := byte(' ')
				if zero && !left && numeric {
					fill = '0'
				}
				if left {
					field = append(field, bytes.Repeat([]byte{' '}, pad)...)
				} else {
					field = append(bytes.Repeat([]byte{fill}, pad), field...)
				}
			}
			dst = append(dst, field...)
			i = j
		case ch == '@' && i+1 < len(format):
			i++
			dst = appendTime(dst, format[i], now)
		case ch == '\\' && i+1 < len(format):
			i++
			if e := strings.IndexByte(`\0aenrtv`, format[i]); e >= 0 {
				dst = append(dst, "\\\x00\a\x1b\n\r\t\v"[e])
			} else {
				dst = append(dst, '\\', format[i])
			}
		default:
			dst = append(dst, ch)
		}
	}
	return dst, nil
}

// truncateRunes cuts b to at most n characters (bytes where b is not
// UTF-8).
func truncateRunes(b []byte, n int) []byte {
	for i := range b {
		if utf8.RuneStart(b[i]) {
			if n == 0 {
				return b[:i]
			}
			n--
		}
	}
	return b
}

// appendField renders one -F conversion. Absent properties render as
// nothing.
func appendField(dst []byte, conv byte, m *client.Message, now time.Time, pretty bool) ([]byte, error) {
	pr := &m.Props
	num := func(v uint64) []byte { return strconv.AppendUint(dst, v, 10) }
	switch conv {
	case '%':
		return append(dst, '%'), nil
	case 't':
		return append(dst, m.Topic...), nil
	case 'p':
		return append(dst, m.Payload...), nil
	case 'q':
		return num(uint64(m.QoS)), nil
	case 'r':
		return num(uint64(b2i(m.Retain))), nil
	case 'm':
		return num(uint64(m.PacketID)), nil
	case 'l':
		return num(uint64(len(m.Payload))), nil
	case 'x':
		return fmt.Appendf(dst, "%x", m.Payload), nil
	case 'X':
		return fmt.Appendf(dst, "%X", m.Payload), nil
	case 'P':
		for i, u := range pr.User {
			if i > 0 {
				dst = append(dst, ' ')
			}
			dst = append(append(append(dst, u.Key...), ':'), u.Value...)
		}
		return dst, nil
	case 'C':
		return append(dst, pr.ContentType...), nil
	case 'D':
		return append(dst, pr.CorrelationData...), nil
	case 'R':
		return append(dst, pr.ResponseTopic...), nil
	case 'E':
		if pr.Has(packet.PropMessageExpiry) {
			return num(uint64(pr.MessageExpiry)), nil
		}
	case 'F':
		if pr.Has(packet.PropPayloadFormat) {
			return num(uint64(pr.PayloadFormat)), nil
		}
	case 'A':
		if pr.Has(packet.PropTopicAlias) {
			return num(uint64(pr.TopicAlias)), nil
		}
	case 'S':
		for i, id := range pr.SubscriptionIDs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendUint(dst, uint64(id), 10)
		}
		return dst, nil
	case 'I':
		return now.AppendFormat(dst, "2006-01-02T15:04:05-0700"), nil
	case 'U':
		return fmt.Appendf(dst, "%d.%09d", now.Unix(), now.Nanosecond()), nil
	case 'j':
		return appendJSON(dst, m, now, pretty, false)
	case 'J':
		return appendJSON(dst, m, now, pretty, true)
	default:
		return append(dst, '%', conv), nil
	}
	return dst, nil
}

// appendTime renders @X: strftime's %X for the common conversions.
func appendTime(dst []byte, conv byte, now time.Time) []byte {
	layouts := map[byte]string{'Y': "2006", 'y': "06", 'm': "01", 'd': "02", 'e': "_2", 'H': "15", 'I': "03",
		'M': "04", 'S': "05", 'p': "PM", 'a': "Mon", 'A': "Monday", 'b': "Jan", 'B': "January", 'Z': "MST",
		'z': "-0700", 'F': "2006-01-02", 'T': "15:04:05"}
	switch conv {
	case '@':
		return append(dst, '@')
	case 'N':
		return fmt.Appendf(dst, "%09d", now.Nanosecond())
	case 's':
		return strconv.AppendInt(dst, now.Unix(), 10)
	case 'j':
		return fmt.Appendf(dst, "%03d", now.YearDay())
	}
	if l, ok := layouts[conv]; ok {
		return now.AppendFormat(dst, l)
	}
	return append(dst, '@', conv)
}

// AppendJSON appends m as one JSON object, -j's output; pretty indents it.
func AppendJSON(dst []byte, m *client.Message, now time.Time, pretty bool) ([]byte, error) {
	return appendJSON(dst, m, now, pretty, false)
}

// appendJSON renders m as one JSON object, with mosquitto_sub's keys (its
// %j): tst, topic, qos, retain, payloadlen, properties, payload. A payload
// that is not UTF-8 is base64, flagged by "base64":true. rawPayload (%J)
// embeds the payload itself, which must be JSON.
func appendJSON(dst []byte, m *client.Message, now time.Time, pretty, rawPayload bool) ([]byte, error) {
	if rawPayload && !json.Valid(m.Payload) {
		return dst, fmt.Errorf("Message payload is not valid JSON on topic %s", m.Topic)
	}
	start := len(dst)
	dst = append(dst, `{"tst":`...)
	dst = appendJSONString(dst, now.Format("2006-01-02T15:04:05.000000Z07:00"))
	dst = append(dst, `,"topic":`...)
	dst = appendJSONString(dst, m.Topic)
	dst = fmt.Appendf(dst, `,"qos":%d,"retain":%d,"payloadlen":%d`, m.QoS, b2i(m.Retain), len(m.Payload))
	if props := appendJSONProps(nil, &m.Props); props != nil {
		dst = append(append(dst, `,"properties":`...), props...)
	}
	switch {
	case rawPayload:
		dst = append(append(dst, `,"payload":`...), m.Payload...)
	case utf8.Valid(m.Payload):
		dst = appendJSONString(append(dst, `,"payload":`...), string(m.Payload))
	default:
		dst = append(dst, `,"base64":true,"payload":`...)
		dst = appendJSONString(dst, base64.StdEncoding.EncodeToString(m.Payload))
	}
	dst = append(dst, '}')
	if !pretty {
		return dst, nil
	}
	var b bytes.Buffer
	if err := json.Indent(&b, dst[start:], "", "\t"); err != nil {
		return dst, err
	}
	return append(dst[:start], b.Bytes()...), nil
}

// appendJSONProps renders the MQTT 5 properties of a message, nil when it
// has none. User properties are an object in order, repeated keys
// included, as mosquitto_sub prints them.
func appendJSONProps(dst []byte, p *packet.Properties) []byte {
	if p.Empty() {
		return nil
	}
	dst = append(dst, '{')
	field := func(name string) {
		if len(dst) > 1 {
			dst = append(dst, ',')
		}
		dst = append(appendJSONString(dst, name), ':')
	}
	if p.Has(packet.PropPayloadFormat) {
		field("payload-format-indicator")
		dst = strconv.AppendUint(dst, uint64(p.PayloadFormat), 10)
	}
	if p.Has(packet.PropMessageExpiry) {
		field("message-expiry-interval")
		dst = strconv.AppendUint(dst, uint64(p.MessageExpiry), 10)
	}
	if p.Has(packet.PropContentType) {
		field("content-type")
		dst = appendJSONString(dst, p.ContentType)
	}
	if p.Has(packet.PropResponseTopic) {
		field("response-topic")
		dst = appendJSONString(dst, p.ResponseTopic)
	}
	if p.Has(packet.PropCorrelationData) {
		if utf8.Valid(p.CorrelationData) {
			field("correlation-data")
			dst = appendJSONString(dst, string(p.CorrelationData))
		} else {
			field("correlation-data-base64")
			dst = appendJSONString(dst, base64.StdEncoding.EncodeToString(p.CorrelationData))
		}
	}
	for _, id := range p.SubscriptionIDs {
		field("subscription-identifier")
		dst = strconv.AppendUint(dst, uint64(id), 10)
	}
	if p.Has(packet.PropTopicAlias) {
		field("topic-alias")
		dst = strconv.AppendUint(dst, uint64(p.TopicAlias), 10)
	}
	if len(p.User) > 0 {
		field("user-properties")
		dst = append(dst, '{')
		for i, u := range p.User {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(appendJSONString(dst, u.Key), ':')
			dst = appendJSONString(dst, u.Value)
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// appendJSONString appends s, valid UTF-8, as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, `\n`...)
		case c == '\r':
			dst = append(dst, `\r`...)
		case c == '\t':
			dst = append(dst, `\t`...)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
