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
	"github.com/petrelmq/petrel/internal/packettrace"
	"github.com/petrelmq/petrel/packet"
)

// pubFlags are petrel pub's flags: mosquitto_pub's.
type pubFlags struct {
	clientFlags
	message     *string
	file        string
	stdinFile   bool
	stdinLine   bool
	null        bool
	retain      bool
	repeat      int
	repeatDelay time.Duration
	maxInflight int
}

const pubUsage = `Usage: petrel pub {[-h host] [-p port] [--unix path] -t topic | -L URL}
                  {-m message | -f file | -s | -l | -n} [-q qos] [-r]
                  [--repeat N] [--repeat-delay seconds] [-M max_inflight] [flags]

Publish one message (-m, -f, -s, -n), or one per line of stdin (-l), and exit.

Message:
 -t, --topic TOPIC   the topic to publish to
 -m, --message MSG   the payload
 -f, --file FILE     the contents of FILE
 -s, --stdin-file    all of stdin as one message
 -l, --stdin-line    one message per line of stdin (newline removed)
 -n, --null-message  an empty message
 -q, --qos 0|1|2     (default 0)
 -r, --retain        retain the message (an empty one clears the retained message)
 --repeat N          publish -m, -f or -s N times
 --repeat-delay S    wait S seconds (may be fractional) between repeats
 -M N                QoS 1 and 2 messages in flight at once with -l (default 20)
` + commonUsage

// pub runs petrel pub until done or interrupted.
func pub(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runPub(ctx, args, stdin, stdout, stderr)
}

func runPub(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	f := &pubFlags{clientFlags: clientFlags{cmd: "pub"}, repeat: 1, maxInflight: 20}
	specs := append(f.commonSpecs(),
		flagSpec{"-m --message", 1, func(a []string) error { f.message = &a[0]; return nil }},
		flagSpec{"-f --file", 1, func(a []string) error { f.file = a[0]; return nil }},
		flagSpec{"-s --stdin-file", 0, func([]string) error { f.stdinFile = true; return nil }},
		flagSpec{"-l --stdin-line", 0, func([]string) error { f.stdinLine = true; return nil }},
		flagSpec{"-n --null-message", 0, func([]string) error { f.null = true; return nil }},
		flagSpec{"-r --retain", 0, func([]string) error { f.retain = true; return nil }},
		flagSpec{"--repeat", 1, func(a []string) error {
			n, err := strconv.Atoi(a[0])
			if err != nil || n < 1 {
				return errors.New("Invalid --repeat given: " + a[0])
			}
			f.repeat = n
			return nil
		}},
		flagSpec{"--repeat-delay", 1, func(a []string) error {
			s, err := strconv.ParseFloat(a[0], 64)
			if err != nil || s < 0 {
				return errors.New("Invalid --repeat-delay given: " + a[0])
			}
			f.repeatDelay = time.Duration(s * float64(time.Second))
			return nil
		}},
		flagSpec{"-M", 1, func(a []string) error {
			n, err := strconv.Atoi(a[0])
			if err != nil || n < 1 || n > 65535 {
				return errors.New("Invalid max inflight given: " + a[0])
			}
			f.maxInflight = n
			return nil
		}},
	)
	if err := f.parseFlags(args, specs); err != nil {
		return usageError(stderr, "pub", err)
	}
	if f.help {
		io.WriteString(stdout, pubUsage)
		return exitOK
	}
	o, urlTopic, err := f.options()
	if err != nil {
		return usageError(stderr, "pub", err)
	}
	topic := urlTopic
	if n := len(f.topics); n > 0 {
		topic = f.topics[n-1]
	}
	modes := 0
	for _, on := range []bool{f.message != nil, f.file != "", f.stdinFile, f.stdinLine, f.null} {
		if on {
			modes++
		}
	}
	switch {
	case modes > 1:
		return usageError(stderr, "pub", errors.New("Only one type of message can be sent at once."))
	case topic == "" || modes == 0:
		return usageError(stderr, "pub", errors.New("Both topic and message must be supplied."))
	case strings.ContainsAny(topic, "+#"):
		return usageError(stderr, "pub", fmt.Errorf("Invalid publish topic '%s', does it contain '+' or '#'?", topic))
	}

	m := &packet.Publish{Topic: topic, QoS: byte(f.qos), Retain: f.retain, Props: f.props.Of("PUBLISH")}
	switch {
	case f.message != nil:
		m.Payload = []byte(*f.message)
	case f.file != "":
		if m.Payload, err = os.ReadFile(f.file); err != nil {
			f.fail(stderr, "Error: Unable to read file: "+err.Error())
			return exitFail
		}
	case f.stdinFile:
		if m.Payload, err = io.ReadAll(stdin); err != nil {
			f.fail(stderr, "Error: Unable to read stdin: "+err.Error())
			return exitFail
		}
	}

	o.MaxInflight = f.maxInflight
	tr := packettrace.New(stderr, o.ClientID)
	if f.debug {
		o.Trace = tr.Trace
	}
	c, ack, code := connectClient(ctx, &f.clientFlags, o, stderr)
	if c == nil {
		return code
	}
	if id := ack.Props.AssignedClientID; id != "" {
		tr.SetClientID(id)
	}
	if f.stdinLine {
		err = publishLines(ctx, c, m, stdin)
	} else {
		err = publishRepeated(ctx, c, m, f.repeat, f.repeatDelay)
	}
	if err != nil {
		f.fail(stderr, "Error: "+strings.TrimPrefix(err.Error(), "client: "))
		c.Close()
		return exitFail
	}
	disconnect := f.props.Of("DISCONNECT")
	if err := c.Disconnect(packet.Success, &disconnect); err != nil {
		f.fail(stderr, "Error: "+strings.TrimPrefix(err.Error(), "client: "))
		return exitFail
	}
	return exitOK
}

// publishRepeated publishes m n times, waiting for each acknowledgement and
// delay between them.
func publishRepeated(ctx context.Context, c *client.Client, m *packet.Publish, n int, delay time.Duration) error {
	for i := range n {
		if i > 0 && delay > 0 {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if _, err := c.Publish(ctx, m); err != nil {
			return fmt.Errorf("publish %d failed: %w", i+1, err)
		}
	}
	return nil
}

// publishLines publishes one message per line of stdin, pipelined within the
// in-flight window, and waits for the last acknowledgement. A last line
// without a newline is published too.
func publishLines(ctx context.Context, c *client.Client, m *packet.Publish, stdin io.Reader) error {
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	// Reading stdin may block past an interrupt: it gets its own goroutine.
	go func() {
		defer close(lines)
		r := bufio.NewReaderSize(stdin, 64<<10)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 && line[len(line)-1] == '\n' {
				line = line[:len(line)-1]
			} else if len(line) == 0 && err != nil {
				if err != io.EOF {
					readErr <- err
				}
				return
			}
			select {
			case lines <- line:
			case <-stop:
				return
			}
			if err != nil {
				if err != io.EOF {
					readErr <- err
				}
				return
			}
		}
	}()

	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	done := func(_ packet.ReasonCode, err error) {
		if err != nil {
			fail(err)
		}
		wg.Done()
	}
	n := 0
	for {
		var line []byte
		var ok bool
		select {
		case line, ok = <-lines:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			break
		}
		n++
		m.Payload = line
		wg.Add(1)
		if err := c.PublishAsync(ctx, m, done); err != nil {
			wg.Done()
			return fmt.Errorf("publish %d failed: %w", n, err)
		}
	}
	wg.Wait()
	select {
	case err := <-readErr:
		return fmt.Errorf("Unable to read stdin: %w", err)
	default:
	}
	mu.Lock()
	defer mu.Unlock()
	return first
}
