package main

//lint:file-ignore ST1005 these errors are printed to a person after "Error: " as whole sentences, worded as mosquitto_pub's and mosquitto_sub's are; none is wrapped into another message.

import (
	"bufio"
	"context"
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

	"github.com/petrelmq/petrel/client"
	"github.com/petrelmq/petrel/internal/msgformat"
	"github.com/petrelmq/petrel/internal/packettrace"
	"github.com/petrelmq/petrel/internal/topic"
	"github.com/petrelmq/petrel/packet"
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
	disconnect := f.props.Of("DISCONNECT")
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
		codes, err := c.Subscribe(ctx, subs, f.props.Of("SUBSCRIBE"))
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
		if _, err := c.Unsubscribe(ctx, f.unsub, f.props.Of("UNSUBSCRIBE")); err != nil {
			return end(err)
		}
	}
	if f.exitAfterSub || len(f.topics) == 0 {
		disconnect := f.props.Of("DISCONNECT")
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
		return msgformat.AppendFormat(dst, f.format, m, now, f.pretty)
	case f.json:
		return msgformat.AppendJSON(dst, m, now, f.pretty)
	case f.verbose:
		dst = append(append(dst, m.Topic...), ' ')
		if len(m.Payload) == 0 {
			return append(dst, "(null)"...), nil
		}
		return append(dst, m.Payload...), nil
	}
	return append(dst, m.Payload...), nil
}
