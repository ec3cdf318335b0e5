package broker

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/petrelmq/petrel/internal/wiretest"
)

// The wire tests are scripts in testdata/wire/*.txt: a client sends these
// bytes, the broker answers those. Each script holds cases:
//
//	# [MQTT-3.1.0-2] v3.1.1          tags for the next case
//	case second CONNECT is a protocol violation
//	option connect_timeout=500ms     server options for this case
//	conn a                           open connection "a" (and make it current)
//	send 10 0c 00 04 "MQTT" 04 02 00 3c 00 00
//	recv 20 02 00 00                 the next bytes must be exactly these
//	closed                           the broker closes the connection
//	on b                             switch to connection "b"
//	close                            the client drops the connection
//
// See parseWireBytes for the byte notation. Every wait is bounded.
// A statement that something is NOT sent is checked by a PINGREQ round trip:
// the PINGRESP must be the next packet.

func TestWire(t *testing.T) {
	files, err := filepath.Glob("testdata/wire/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no wire scripts found: %v", err)
	}
	for _, file := range files {
		cases, err := parseWireScript(file)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			for _, wc := range cases {
				t.Run(wc.name, func(t *testing.T) {
					t.Parallel()
					wc.run(t)
				})
			}
		})
	}
}

type wireCase struct {
	name  string
	file  string
	opts  Options
	steps []wireStep
}

type wireStep struct {
	line int
	op   string // conn, on, send, recv, closed
	arg  string
	data []byte
}

func parseWireScript(file string) ([]*wireCase, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var cases []*wireCase
	var cur *wireCase
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		op, arg, _ := strings.Cut(text, " ")
		arg = strings.TrimSpace(arg)
		fail := func(format string, a ...any) error {
			return fmt.Errorf("%s:%d: %s", file, line, fmt.Sprintf(format, a...))
		}
		if op == "case" {
			// The scripts' CONNACKs were written for a broker that accepts
			// no topic aliases: a case that wants them sets the option.
			cur = &wireCase{name: arg, file: file, opts: Options{TopicAliasMaximum: -1}}
			cases = append(cases, cur)
			continue
		}
		if cur == nil {
			return nil, fail("%q before the first case", op)
		}
		st := wireStep{line: line, op: op, arg: arg}
		switch op {
		case "option":
			if err := setWireOption(&cur.opts, arg); err != nil {
				return nil, fail("%v", err)
			}
			continue
		case "send", "recv":
			if st.data, err = parseWireBytes(arg); err != nil {
				return nil, fail("%v", err)
			}
		case "conn", "on", "closed", "close":
		default:
			return nil, fail("unknown step %q", op)
		}
		cur.steps = append(cur.steps, st)
	}
	return cases, sc.Err()
}

func setWireOption(o *Options, kv string) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok {
		return fmt.Errorf("option %q is not key=value", kv)
	}
	var err error
	switch k {
	case "connect_timeout":
		o.ConnectTimeout, err = time.ParseDuration(v)
	case "max_packet_size":
		o.MaxPacketSize, err = strconv.Atoi(v)
	case "max_inflight":
		o.MaxInflight, err = strconv.Atoi(v)
	case "max_queued_messages":
		o.MaxQueuedMessages, err = strconv.Atoi(v)
	case "max_client_id_length":
		o.MaxClientIDLength, err = strconv.Atoi(v)
	case "disable_retain":
		o.DisableRetain, err = strconv.ParseBool(v)
	case "disable_wildcard_subscriptions":
		o.DisableWildcardSubscriptions, err = strconv.ParseBool(v)
	case "disable_subscription_identifiers":
		o.DisableSubscriptionIdentifiers, err = strconv.ParseBool(v)
	case "disable_shared_subscriptions":
		o.DisableSharedSubscriptions, err = strconv.ParseBool(v)
	case "queue_qos0":
		o.QueueQoS0, err = strconv.ParseBool(v)
	case "max_qos":
		var q int
		q, err = strconv.Atoi(v)
		qos := byte(q)
		o.MaxQoS = &qos
	case "receive_maximum":
		o.ReceiveMaximum, err = strconv.Atoi(v)
	case "topic_alias_maximum":
		o.TopicAliasMaximum, err = strconv.Atoi(v)
	case "server_keep_alive":
		o.ServerKeepAlive, err = time.ParseDuration(v)
	case "max_session_expiry":
		o.MaxSessionExpiry, err = time.ParseDuration(v)
	case "response_information":
		o.ResponseInformation = v
	case "max_queued_bytes":
		o.MaxQueuedBytes, err = strconv.ParseInt(v, 10, 64)
	default:
		return fmt.Errorf("unknown option %q", k)
	}
	return err
}

// parseWireBytes reads the byte notation of the scripts:
//
//	0a ff        hex bytes
//	"abc"        raw ASCII
//	s"abc"       an MQTT string: two-byte length, then the bytes
//	[ ... ]      a remaining length (variable byte integer) followed by the bytes inside
func parseWireBytes(s string) ([]byte, error) {
	out, rest, err := parseWireSeq(strings.TrimSpace(s))
	if err != nil {
		return nil, err
	}
	if rest != "" {
		return nil, fmt.Errorf("unbalanced ] at %q", rest)
	}
	return out, nil
}

func parseWireSeq(s string) (out []byte, rest string, err error) {
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		switch {
		case s[0] == ']':
			return out, s, nil
		case s[0] == '[':
			inner, r, err := parseWireSeq(s[1:])
			if err != nil {
				return nil, "", err
			}
			if r == "" || r[0] != ']' {
				return nil, "", errors.New("unterminated [")
			}
			n := len(inner)
			for {
				b := byte(n % 128)
				n /= 128
				if n > 0 {
					b |= 0x80
				}
				out = append(out, b)
				if n == 0 {
					break
				}
			}
			out = append(out, inner...)
			s = r[1:]
		case s[0] == '"' || strings.HasPrefix(s, `s"`):
			prefixed := s[0] == 's'
			if prefixed {
				s = s[1:]
			}
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return nil, "", errors.New("unterminated string")
			}
			str := s[1 : 1+end]
			if prefixed {
				out = append(out, byte(len(str)>>8), byte(len(str)))
			}
			out = append(out, str...)
			s = s[end+2:]
		default:
			tok := s
			if i := strings.IndexAny(s, " []\""); i >= 0 {
				tok = s[:i]
			}
			b, err := hex.DecodeString(tok)
			if err != nil {
				return nil, "", fmt.Errorf("bad hex %q", tok)
			}
			out = append(out, b...)
			s = s[len(tok):]
		}
	}
	return out, "", nil
}

func (wc *wireCase) run(t *testing.T) {
	opts := wc.opts
	srv := startServer(t, opts)
	conns := map[string]net.Conn{}
	var cur net.Conn
	for _, st := range wc.steps {
		where := fmt.Sprintf("%s:%d", wc.file, st.line)
		switch st.op {
		case "conn":
			c, err := net.Dial("tcp", srv.Addrs()[0].String())
			if err != nil {
				t.Fatalf("%s: dial: %v", where, err)
			}
			t.Cleanup(func() { c.Close() })
			conns[st.arg] = c
			cur = c
		case "on":
			if cur = conns[st.arg]; cur == nil {
				t.Fatalf("%s: no connection %q", where, st.arg)
			}
		case "close":
			cur.Close()
		case "send":
			if _, err := cur.Write(st.data); err != nil {
				t.Fatalf("%s: send: %v", where, err)
			}
		case "recv":
			got := make([]byte, len(st.data))
			cur.SetReadDeadline(time.Now().Add(wiretest.Timeout))
			n, err := io.ReadFull(cur, got)
			if err != nil || !bytes.Equal(got, st.data) {
				t.Fatalf("%s: want % x\n got % x (err %v)", where, st.data, got[:n], err)
			}
		case "closed":
			cur.SetReadDeadline(time.Now().Add(wiretest.Timeout))
			var extra []byte
			buf := make([]byte, 256)
			for {
				n, err := cur.Read(buf)
				extra = append(extra, buf[:n]...)
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Fatalf("%s: connection still open after %v", where, wiretest.Timeout)
					}
					break
				}
			}
			if len(extra) > 0 {
				t.Fatalf("%s: want the connection closed, got more bytes first: % x", where, extra)
			}
		}
	}
}
