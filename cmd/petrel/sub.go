package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/petrelmq/petrel/client"
	"github.com/petrelmq/petrel/internal/packettrace"
	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/topic"
)

// subFlags are petrel sub's flags: mosquitto_sub's, and -j.
type subFlags struct {
	clientFlags
	count             int
	timeout           time.Duration
	verbose           bool
	format            string
	noEOL             bool
	pretty            bool
	json              bool
	noRetained        bool
	retainedOnly      bool
	removeRetained    bool
	retainAsPublished bool
	exitAfterSub      bool
	unsub             []string
	filterOut         []string
}

const subUsage = `Usage: petrel sub {[-h host] [-p port] [--unix path] -t topic... | -L URL [-t topic...]}
                  [-q qos] [-C count] [-W seconds] [-v | -F format | -j] [-N] [flags]

Subscribe to topics and print the messages received.

Subscription:
 -t, --topic FILTER  subscribe to FILTER (repeatable)
 -q, --qos 0|1|2     the subscriptions' maximum QoS (default 0)
 -U, --unsubscribe FILTER   unsubscribe (after subscribing to -t; repeatable);
                     alone, exit once the server has answered
 -T, --filter-out FILTER    do not print (or count) topics matching FILTER
 -R                  do not print retained messages
 --retained-only     print only retained messages; exit at the first that is not
 --remove-retained   clear each retained message received (publish an empty one)
 --retain-as-published      subscription option (MQTT 5)
 -E                  exit once the subscriptions are acknowledged
 -C, --count N       exit after N messages
 -W SECONDS          exit after SECONDS, with code 27 ("Timed out")
Output (a newline follows each message unless -N):
 (default)           the payload
 -v, --verbose       the topic, a space, the payload ("(null)" when empty)
 -j, --json          one JSON object per line: tst, topic, qos, retain,
                     payloadlen, properties (MQTT 5), payload (a string; base64
                     with "base64":true when it is not UTF-8)
 --pretty            indented JSON (with -j, %j and %J)
 -F FORMAT           printf-like: %t topic  %p payload  %q QoS  %r retain
                     %m message id  %l length  %x %X payload in hex
                     %P user properties (key:value ...)  %C content type
                     %D correlation data  %E message expiry  %F payload format
                     %R response topic  %S subscription ids  %A topic alias
                     %I ISO 8601 time  %U unix time with nanoseconds
                     %j JSON as -j  %J JSON with the payload as JSON  %% a %;
                     flags - and 0, a width and a .precision as in printf;
                     @X is strftime's %X (Y m d H M S y j a A b B e p Z z s F T),
                     @N nanoseconds, @@ an @; \n \t \r \v \a \e \0 \\ escapes
 -N                  no newline after each message
` + commonUsage

// sub runs petrel sub until done or interrupted.
func sub(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runSub(ctx, args, stdout, stderr)
}

func runSub(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := &subFlags{clientFlags: clientFlags{cmd: "sub"}}
	boolean := func(p *bool) func([]string) error { return func([]string) error { *p = true; return nil } }
	specs := append(f.commonSpecs(),
		flagSpec{"-C --count", 1, func(a []string) error {
			n, err := strconv.Atoi(a[0])
			if err != nil || n < 1 {
				return errors.New("Invalid message count given: " + a[0])
			}
			f.count = n
			return nil
		}},
		flagSpec{"-W --timeout", 1, func(a []string) error {
			n, err := strconv.Atoi(a[0])
			if err != nil || n < 1 {
				return errors.New("Invalid timeout given: " + a[0])
			}
			f.timeout = time.Duration(n) * time.Second
			return nil
		}},
		flagSpec{"-v --verbose", 0, boolean(&f.verbose)},
		flagSpec{"-F", 1, func(a []string) error { f.format = a[0]; return nil }},
		flagSpec{"-N", 0, boolean(&f.noEOL)},
		flagSpec{"--pretty", 0, boolean(&f.pretty)},
		flagSpec{"-j --json", 0, boolean(&f.json)},
		flagSpec{"-R --no-retained", 0, boolean(&f.noRetained)},
		flagSpec{"--retained-only", 0, boolean(&f.retainedOnly)},
		flagSpec{"--remove-retained", 0, boolean(&f.removeRetained)},
		flagSpec{"--retain-as-published", 0, boolean(&f.retainAsPublished)},
		flagSpec{"-E", 0, boolean(&f.exitAfterSub)},
		flagSpec{"-U --unsubscribe", 1, func(a []string) error { f.unsub = append(f.unsub, a[0]); return nil }},
		flagSpec{"-T --filter-out", 1, func(a []string) error { f.filterOut = append(f.filterOut, a[0]); return nil }},
	)
	if err := f.parseFlags(args, specs); err != nil {
		return usageError(stderr, "sub", err)
	}
	if f.help {
		io.WriteString(stdout, subUsage)
		return exitOK
	}
	o, urlTopic, err := f.options()
	if err != nil {
		return usageError(stderr, "sub", err)
	}
	if urlTopic != "" {
		f.topics = append(f.topics, urlTopic)
	}
	switch {
	case len(f.topics) == 0 && len(f.unsub) == 0:
		return usageError(stderr, "sub", errors.New("You must specify a topic to subscribe to."))
	case f.retainAsPublished && f.version != packet.V5:
		return usageError(stderr, "sub", errors.New("--retain-as-published needs MQTT v5 (-V 5)."))
	case f.noRetained && f.retainedOnly:
		return usageError(stderr, "sub", errors.New("-R and --retained-only cannot be used together."))
	}
	for _, t := range append(append([]string(nil), f.topics...), f.unsub...) {
		if err := topic.ValidateFilter(t); err != nil {
			return usageError(stderr, "sub", fmt.Errorf("Invalid subscription topic '%s', are all '+' and '#' wildcards correct?", t))
		}
	}

	p := &printer{f: f, out: bufio.NewWriter(stdout), stderr: stderr, finished: make(chan struct{})}
	tr := packettrace.New(stderr, o.ClientID)
	if f.debug {
		o.Trace = tr.Trace
	}
	var c *client.Client
	var ready sync.WaitGroup // OnMessage may run before Connect returns
	ready.Add(1)
	o.OnMessage = func(m *client.Message) {
		ready.Wait()
		p.message(c, m)
	}
	c, ack, code := connectClient(ctx, &f.clientFlags, o, stderr)
	ready.Done()
	if c == nil {
		return code
	}
	if id := ack.Props.AssignedClientID; id != "" {
		tr.SetClientID(id)
	}
	if code := f.subscribe(ctx, c, stderr); code >= 0 {
		return code
	}

	var timeout <-chan time.Time
	if f.timeout > 0 {
		t := time.NewTimer(f.timeout)
		defer t.Stop()
		timeout = t.C
	}
	code = exitOK
	select {
	case <-p.finished:
	case <-ctx.Done():
	case <-timeout:
		f.fail(stderr, "Timed out")
		code = exitTimeout
	case <-c.Done():
		f.fail(stderr, "Error: "+strings.TrimPrefix(c.Err().Error(), "client: "))
		return exitFail
	}
	disconnect := f.prop("DISCONNECT")
	if err := c.Disconnect(packet.Success, &disconnect); err != nil && code == exitOK {
		f.fail(stderr, "Error: "+strings.TrimPrefix(err.Error(), "client: "))
		return exitFail
	}
	return code
}

// subscribe sends the subscriptions, then the unsubscriptions. It returns
// the exit code when sub is done (or failed), -1 when it goes on.
func (f *subFlags) subscribe(ctx context.Context, c *client.Client, stderr io.Writer) int {
	end := func(err error) int {
		f.fail(stderr, "Error: "+strings.TrimPrefix(err.Error(), "client: "))
		c.Close()
		return exitFail
	}
	if len(f.topics) > 0 {
		subs := make([]packet.Subscription, len(f.topics))
		for i, t := range f.topics {
			subs[i] = packet.Subscription{Filter: t, QoS: byte(f.qos), RetainAsPublished: f.retainAsPublished}
		}
		codes, err := c.Subscribe(ctx, subs, f.prop("SUBSCRIBE"))
		if err != nil {
			return end(err)
		}
		refused := 0
		for i, code := range codes {
			if code.IsError() {
				refused++
				f.fail(stderr, fmt.Sprintf("Warning: subscription to %s refused: %v", f.topics[i], code))
			}
		}
		if refused == len(codes) {
			return end(errors.New("All subscription requests were denied."))
		}
	}
	if len(f.unsub) > 0 {
		if _, err := c.Unsubscribe(ctx, f.unsub, f.prop("UNSUBSCRIBE")); err != nil {
			return end(err)
		}
	}
	if f.exitAfterSub || len(f.topics) == 0 {
		disconnect := f.prop("DISCONNECT")
		if err := c.Disconnect(packet.Success, &disconnect); err != nil {
			return end(err)
		}
		return exitOK
	}
	return -1
}

// printer writes the messages received, on the client's read goroutine.
type printer struct {
	f        *subFlags
	out      *bufio.Writer
	stderr   io.Writer
	buf      []byte
	printed  int
	finished chan struct{} // closed when sub is to exit: -C reached, or --retained-only saw a fresh message
	once     sync.Once
}

func (p *printer) finish() { p.once.Do(func() { close(p.finished) }) }

func (p *printer) message(c *client.Client, m *client.Message) {
	f := p.f
	for _, filter := range f.filterOut {
		if topic.Match(filter, m.Topic) {
			return
		}
	}
	if f.removeRetained && m.Retain {
		c.PublishAsync(context.Background(), &packet.Publish{Topic: m.Topic, Retain: true}, nil)
	}
	switch {
	case f.count > 0 && p.printed >= f.count:
		return
	case f.retainedOnly && !m.Retain:
		p.finish()
		return
	case f.noRetained && m.Retain:
		return
	}
	var err error
	p.buf, err = p.render(p.buf[:0], m, time.Now())
	if err != nil {
		p.f.fail(p.stderr, "Error: "+err.Error())
		return
	}
	if !f.noEOL {
		p.buf = append(p.buf, '\n')
	}
	p.out.Write(p.buf)
	p.out.Flush()
	p.printed++
	if f.count > 0 && p.printed == f.count {
		p.finish()
	}
}

// render appends m as the flags ask.
func (p *printer) render(dst []byte, m *client.Message, now time.Time) ([]byte, error) {
	f := p.f
	switch {
	case f.format != "":
		return appendFormat(dst, f.format, m, now, f.pretty)
	case f.json:
		return appendJSON(dst, m, now, f.pretty, false)
	case f.verbose:
		dst = append(append(dst, m.Topic...), ' ')
		if len(m.Payload) == 0 {
			return append(dst, "(null)"...), nil
		}
		return append(dst, m.Payload...), nil
	}
	return append(dst, m.Payload...), nil
}

// appendFormat renders m through a -F format: see subUsage for the
// sequences.
func appendFormat(dst []byte, format string, m *client.Message, now time.Time, pretty bool) ([]byte, error) {
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
