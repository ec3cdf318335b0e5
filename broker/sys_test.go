package broker

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
	"github.com/petrelmq/petrel/store/pebblestore"
)

// sysTopics are every topic the broker publishes under $SYS/broker/, with
// Mosquitto's names: a dashboard made for Mosquitto reads these.
var sysTopics = func() []string {
	t := []string{"version", "node", "uptime",
		"clients/total", "clients/connected", "clients/disconnected", "clients/maximum", "clients/expired",
		"messages/received", "messages/sent", "messages/stored", "bytes/received", "bytes/sent",
		"publish/messages/received", "publish/messages/sent", "publish/messages/dropped",
		"subscriptions/count", "shared_subscriptions/count", "retained messages/count"}
	for _, load := range []string{"messages/received", "messages/sent", "bytes/received", "bytes/sent",
		"publish/received", "publish/sent", "publish/dropped", "connections", "sockets"} {
		for _, period := range []string{"1min", "5min", "15min"} {
			t = append(t, "load/"+load+"/"+period)
		}
	}
	return t
}()

// sysUpdateNow makes the $SYS goroutine publish now, and waits until it
// has: every message it published has been handed to its subscribers.
func sysUpdateNow(t *testing.T, srv *Server) {
	t.Helper()
	done := make(chan struct{})
	select {
	case srv.sysKick <- done:
	case <-time.After(wiretest.Timeout):
		t.Fatal("the $SYS goroutine does not take a request for an update")
	}
	select {
	case <-done:
	case <-time.After(wiretest.Timeout):
		t.Fatal("the $SYS update did not finish")
	}
}

// sysServer runs a broker whose $SYS is published at start and then only
// when the test asks (sysUpdateNow): an hour is longer than any test.
func sysServer(t *testing.T, opts Options) *Server {
	opts.SysInterval = time.Hour
	return secStart(t, opts, nil)
}

// mosquittoSub finds Mosquitto's mosquitto_sub, or skips the test (fails
// it where PETREL_INTEROP_REQUIRE=1, as CI sets).
func mosquittoSub(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("mosquitto_sub")
	if err == nil {
		return p
	}
	if os.Getenv("PETREL_INTEROP_REQUIRE") == "1" {
		t.Fatal("mosquitto_sub is not installed (apt-get install mosquitto-clients), and PETREL_INTEROP_REQUIRE=1")
	}
	t.Skip("mosquitto_sub is not installed (apt-get install mosquitto-clients): skipping the $SYS check with Mosquitto's own client")
	return ""
}

// subArgs are mosquitto_sub's arguments to reach srv, print each message
// as topic TAB payload, and subscribe to filters.
func subArgs(srv *Server, filters ...string) []string {
	_, port, _ := strings.Cut(srv.Addrs()[0].String(), "127.0.0.1:")
	args := []string{"-h", "127.0.0.1", "-p", port, "-F", `%t\t%p`}
	for _, f := range filters {
		args = append(args, "-t", f)
	}
	return args
}

// sysMessage is a message mosquitto_sub printed.
type sysMessage struct{ topic, payload string }

func parseSubLine(line string) sysMessage {
	topic, payload, _ := strings.Cut(line, "\t")
	return sysMessage{topic, payload}
}

// runSub runs mosquitto_sub with args until it exits (give it -C and -W)
// and returns the messages it printed and what it wrote to stderr.
func runSub(t *testing.T, args ...string) ([]sysMessage, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wiretest.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, mosquittoSub(t), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var msgs []sysMessage
	for line := range strings.Lines(string(out)) {
		msgs = append(msgs, parseSubLine(strings.TrimSuffix(line, "\n")))
	}
	if err != nil {
		t.Logf("mosquitto_sub %s: %v (stderr %q)", strings.Join(args, " "), err, stderr.String())
	}
	return msgs, stderr.String()
}

// sysValues runs mosquitto_sub on $SYS/broker/# until it has a message on
// every $SYS topic (the retained ones), and returns them by topic after
// $SYS/broker/.
func sysValuesOf(t *testing.T, srv *Server, extra ...string) map[string]string {
	t.Helper()
	args := append(subArgs(srv, "$SYS/broker/#"), "-C", strconv.Itoa(len(sysTopics)), "-W", "10")
	msgs, _ := runSub(t, append(args, extra...)...)
	got := make(map[string]string)
	for _, m := range msgs {
		name, ok := strings.CutPrefix(m.topic, sysPrefix)
		if !ok {
			t.Errorf("$SYS/broker/# brought %q", m.topic)
		}
		if _, dup := got[name]; dup {
			t.Errorf("%s came twice", m.topic)
		}
		got[name] = m.payload
	}
	for _, name := range sysTopics {
		if _, ok := got[name]; !ok {
			t.Errorf("no retained message on %s%s", sysPrefix, name)
		}
	}
	if len(got) != len(sysTopics) {
		t.Errorf("%d topics, want %d", len(got), len(sysTopics))
	}
	return got
}

// subProcess is a mosquitto_sub running in the background, its messages
// read as they come.
type subProcess struct {
	t    *testing.T
	msgs chan sysMessage
}

func startSub(t *testing.T, args ...string) *subProcess {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, mosquittoSub(t), args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &subProcess{t: t, msgs: make(chan sysMessage, 1000)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.msgs <- parseSubLine(sc.Text())
		}
		close(p.msgs)
	}()
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("mosquitto_sub stderr: %s", stderr.String())
		}
	})
	return p
}

// next returns the next message, failing the test after wiretest.Timeout.
func (p *subProcess) next() sysMessage {
	p.t.Helper()
	select {
	case m, ok := <-p.msgs:
		if !ok {
			p.t.Fatal("mosquitto_sub exited")
		}
		return m
	case <-time.After(wiretest.Timeout):
		p.t.Fatal("mosquitto_sub printed nothing in time")
	}
	return sysMessage{}
}

// until returns the messages before the one on topic mark with payload.
func (p *subProcess) until(mark, payload string) []sysMessage {
	p.t.Helper()
	var got []sysMessage
	for {
		m := p.next()
		if m.topic == mark && m.payload == payload {
			return got
		}
		got = append(got, m)
	}
}

// Every $SYS topic, read with mosquitto_sub after known traffic: the
// clients, sessions, subscriptions, retained messages and drops are the
// numbers that traffic makes; the packet and byte counters are what Stats
// says (whose own tests check them against the wire).
func TestSysTopicsWithMosquittoSub(t *testing.T) {
	mosquittoSub(t)
	srv := sysServer(t, Options{MaxQueuedMessages: 1, NodeName: "node-a"})
	addr := srv.Addrs()[0].String()

	// Three clients stay connected; a persistent session goes offline with
	// a queue, and another session expires: four connected at most.
	c1 := secMustConnect(t, addr, connectPacket(packet.V311, "c1"))
	c1.mustSubscribe(1, 0, "a/#", "b")
	c2 := secMustConnect(t, addr, connectPacket(packet.V311, "c2"))
	c2.mustSubscribe(1, 0, "$share/g/b")
	c3 := secMustConnect(t, addr, connectPacket(packet.V311, "c3"))
	gp := connectPacket(packet.V311, "gone")
	gp.CleanStart = false
	gone := secMustConnect(t, addr, gp)
	gone.mustSubscribe(1, 1, "q/#")
	gone.Disconnect()
	wiretest.Eventually(t, "gone offline", func() bool { return srv.Stats().ClientsConnected == 3 })
	brief := wiretest.Dial(t, "tcp", addr, "brief", packet.V5)
	bp := &packet.Connect{Version: packet.V5, ClientID: "brief", CleanStart: true}
	bp.Props.SessionExpiry = 1
	bp.Props.Mark(packet.PropSessionExpiry)
	brief.SendConnect(bp)
	brief.Disconnect()

	// Five PUBLISHes: one retained, one to a shared group and a
	// subscriber, one queued and one dropped for the offline session (its
	// queue holds one), one that nobody subscribed to (not a drop to
	// Mosquitto).
	c3.publish(0, 0, "a/1", "r", true)
	c3.publish(0, 0, "b", "x", false)
	c3.publish(1, 1, "q/1", "kept", false)
	c3.publish(2, 1, "q/2", "dropped", false)
	c3.publish(0, 0, "nobody/x", "-", false)
	c3.ping()
	if got := c1.until("b"); !slices.Equal(got, []string{"a/1=r"}) {
		t.Fatalf("c1 got %q before b", got)
	}
	if m := c2.nextPublish(); m.Topic != "b" {
		t.Fatalf("c2 got %s, want b", m.Topic)
	}
	wiretest.Eventually(t, "brief's session expired", func() bool { return srv.Stats().SessionsExpired == 1 })

	st := srv.Stats()
	sysUpdateNow(t, srv)
	got := sysValuesOf(t, srv)

	n := strconv.Itoa
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	want := map[string]string{
		"version":              "petrel version " + st.Version,
		"node":                 "node-a",
		"clients/total":        "4",
		"clients/connected":    "3",
		"clients/disconnected": "1",
		"clients/maximum":      "4",
		"clients/expired":      "1",
		// Retained: a/1 and every $SYS topic (published at start); queued:
		// q/1.
		"messages/stored":            n(1 + len(sysTopics) + 1),
		"messages/received":          u(sumValues(st.PacketsReceived)),
		"messages/sent":              u(sumValues(st.PacketsSent)),
		"bytes/received":             u(st.BytesReceived),
		"bytes/sent":                 u(st.BytesSent),
		"publish/messages/received":  "5",
		"publish/messages/sent":      "3", // a/1 and b to c1, b to c2
		"publish/messages/dropped":   "1",
		"subscriptions/count":        "4", // a/#, b, $share/g/b, q/#
		"shared_subscriptions/count": "1",
		"retained messages/count":    n(1 + len(sysTopics)),
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s%s = %q, want %q", sysPrefix, name, got[name], w)
		}
	}
	if st.MessagesDropped["no_subscribers"] != 1 {
		t.Errorf("Stats counts %d messages without subscribers, want 1", st.MessagesDropped["no_subscribers"])
	}
	if !regexp.MustCompile(`^\d+ seconds$`).MatchString(got["uptime"]) {
		t.Errorf("uptime %q, want N seconds", got["uptime"])
	}
	load := regexp.MustCompile(`^\d+\.\d\d$`)
	for _, name := range sysTopics {
		if strings.HasPrefix(name, "load/") && !load.MatchString(got[name]) {
			t.Errorf("%s = %q, want a rate with two decimals", name, got[name])
		}
	}
}

// A topic is published again only when its value changed: an update after
// which nothing changed but the output and the clock brings only those,
// each with a new value; a new client brings the clients' counts.
func TestSysPublishesOnlyChanges(t *testing.T) {
	mosquittoSub(t)
	srv := sysServer(t, Options{})
	const mark = "sys-test/mark"
	sub := startSub(t, subArgs(srv, "$SYS/#", mark)...)
	last := make(map[string]string)
	for range sysTopics { // the retained values first
		m := sub.next()
		last[m.topic] = m.payload
	}
	if len(last) != len(sysTopics) {
		t.Fatalf("%d retained $SYS topics, want %d", len(last), len(sysTopics))
	}
	// update publishes, then marks the end of what it published: the
	// subscriber gets its messages in the order they were routed.
	update := func(step string) map[string]string {
		t.Helper()
		sysUpdateNow(t, srv)
		if err := srv.Publish(mark, []byte(step), 0, false); err != nil {
			t.Fatal(err)
		}
		changed := make(map[string]string)
		for _, m := range sub.until(mark, step) {
			if m.payload == last[m.topic] {
				t.Errorf("%s: %s published again with the same value %q", step, m.topic, m.payload)
			}
			if _, dup := changed[m.topic]; dup {
				t.Errorf("%s: %s published twice", step, m.topic)
			}
			changed[m.topic], last[m.topic] = m.payload, m.payload
		}
		return changed
	}

	// mosquitto_sub itself connected, subscribed and was sent messages.
	changed := update("1")
	for name, want := range map[string]string{"clients/connected": "1", "clients/total": "1",
		"clients/maximum": "1", "subscriptions/count": "2"} {
		if got := changed[sysPrefix+name]; got != want {
			t.Errorf("after mosquitto_sub connected: %s = %q, want %q", name, got, want)
		}
	}

	// Since then only the broker sent something: the $SYS messages and
	// the mark. What it received, and the clients, did not change.
	mayChange := []string{"uptime", "messages/sent", "bytes/sent", "publish/messages/sent"}
	changed = update("2")
	for topic := range changed {
		name := strings.TrimPrefix(topic, sysPrefix)
		if !slices.Contains(mayChange, name) && !strings.HasPrefix(name, "load/") {
			t.Errorf("with nothing received: %s published (%q), though it did not change", topic, changed[topic])
		}
	}
	if _, ok := changed[sysPrefix+"messages/sent"]; !ok {
		t.Errorf("messages/sent was not published, though the broker sent the $SYS messages since")
	}

	c := secMustConnect(t, srv.Addrs()[0].String(), connectPacket(packet.V5, "another"))
	changed = update("3")
	for name, want := range map[string]string{"clients/connected": "2", "clients/total": "2", "clients/maximum": "2"} {
		if got := changed[sysPrefix+name]; got != want {
			t.Errorf("after a client connected: %s = %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"version", "node", "clients/disconnected", "clients/expired", "subscriptions/count",
		"retained messages/count", "publish/messages/received", "publish/messages/dropped"} {
		if v, ok := changed[sysPrefix+name]; ok {
			t.Errorf("after a client connected: %s published (%q), though it did not change", name, v)
		}
	}
	c.ping()
}

// After a burst of PUBLISHes in one short interval, the load averages of
// what was received rise by about the burst's size times one minute over
// their period: the 1-minute average by the burst, the 5-minute by a
// fifth of it, the 15-minute by a fifteenth.
func TestSysLoadAveragesMoveAfterABurst(t *testing.T) {
	mosquittoSub(t)
	srv := sysServer(t, Options{})
	pub := secMustConnect(t, srv.Addrs()[0].String(), connectPacket(packet.V311, "burst"))
	before := time.Now() // the updates' own times are between before and elapsed
	sysUpdateNow(t, srv)
	const burst = 600
	for range burst {
		pub.publish(0, 0, "burst/x", "0123456789", false)
	}
	pub.ping()
	sysUpdateNow(t, srv)
	elapsed := time.Since(before)

	got := sysValuesOf(t, srv)
	rate := func(name string) float64 {
		v, err := strconv.ParseFloat(got[name], 64)
		if err != nil {
			t.Fatalf("%s = %q: %v", name, got[name], err)
		}
		return v
	}
	for _, p := range loadPeriods {
		name := "load/publish/received/" + p.name
		// The most it can be, and the least it can be had the burst come
		// in the longest interval it may have had.
		most := burst * time.Minute.Seconds() / p.period.Seconds()
		x := elapsed.Seconds() / p.period.Seconds()
		least := most * (1 - math.Exp(-x)) / x
		if v := rate(name); v < least-0.01 || v > most+0.01 {
			t.Errorf("%s = %v after %d PUBLISHes in %v, want %.2f..%.2f", name, v, burst, elapsed, least, most)
		}
	}
	for _, name := range []string{"load/messages/received/1min", "load/bytes/received/1min"} {
		if v := rate(name); v < burst*0.9 {
			t.Errorf("%s = %v after %d PUBLISHes, want more than %d", name, v, burst, burst*9/10)
		}
	}
	if a, b, c := rate("load/publish/received/1min"), rate("load/publish/received/5min"),
		rate("load/publish/received/15min"); !(a > b && b > c && c > 0) {
		t.Errorf("publish/received loads 1, 5, 15 min: %v, %v, %v; want decreasing and above 0", a, b, c)
	}
}

// $SYS/broker/node names the node (Options.NodeName), retained from the
// start and published once: later updates leave it be. Without a name
// given, it is the host's.
func TestSysNode(t *testing.T) {
	srv := sysServer(t, Options{NodeName: "node-b"})
	m, ok := srv.Retained(sysPrefix + "node")
	if !ok || string(m.Payload) != "node-b" {
		t.Fatalf("%snode retained: %v %q, want \"node-b\"", sysPrefix, ok, m.Payload)
	}
	c := secMustConnect(t, srv.Addrs()[0].String(), connectPacket(packet.V5, "watch"))
	c.mustSubscribe(1, 0, sysPrefix+"node", "sys-test/mark")
	if p := c.nextPublish(); p.Topic != sysPrefix+"node" || string(p.Payload) != "node-b" || !p.Retain {
		t.Fatalf("subscribing to %snode brought %s %q (retain %v), want the retained node-b", sysPrefix,
			p.Topic, p.Payload, p.Retain)
	}
	sysUpdateNow(t, srv) // the client's connection changed other topics, not this one
	if err := srv.Publish("sys-test/mark", nil, 0, false); err != nil {
		t.Fatal(err)
	}
	if got := c.UntilTopic("sys-test/mark", false); len(got) != 0 {
		t.Errorf("%snode published again after the start: %d messages", sysPrefix, len(got))
	}

	host, err := os.Hostname()
	if err != nil || host == "" {
		t.Skipf("no host name (%v): the default node name is unknown", err)
	}
	def := sysServer(t, Options{})
	if m, ok := def.Retained(sysPrefix + "node"); !ok || string(m.Payload) != host {
		t.Errorf("without Options.NodeName, %snode: %v %q, want the host name %q", sysPrefix, ok, m.Payload, host)
	}
}

// SysInterval off: no $SYS message at all, and no goroutine to send one.
func TestSysDisabled(t *testing.T) {
	mosquittoSub(t)
	srv := secStart(t, Options{SysInterval: -1}, nil)
	if srv.sysKick != nil {
		t.Error("the $SYS goroutine's channel exists with $SYS off")
	}
	const mark = "sys-test/mark"
	if err := srv.Publish(mark, []byte("only"), 0, true); err != nil {
		t.Fatal(err)
	}
	// The subscriber's retained messages come filter by filter: any $SYS
	// one would come before the mark.
	msgs, _ := runSub(t, append(subArgs(srv, "$SYS/#", mark), "-C", "1", "-W", "10")...)
	if len(msgs) != 1 || msgs[0].topic != mark {
		t.Errorf("$SYS/# and %s brought %q, want only the mark", mark, msgs)
	}
	if n := srv.Stats().RetainedMessages; n != 1 {
		t.Errorf("%d retained messages, want 1 (the mark)", n)
	}
}

// Who may read $SYS is the authorizer's decision: under an ACL granting
// $SYS/# to alice and # to bob, alice reads every topic, bob's $SYS/# is
// refused, and bob's # never brings a $SYS message, retained or live.
// [MQTT-4.7.2-1] v3.1.1
func TestSysReadableOnlyWhereTheACLAllows(t *testing.T) {
	mosquittoSub(t)
	aclFile := filepath.Join(t.TempDir(), "acl")
	rules := "user alice\ntopic read $SYS/#\n\nuser bob\ntopic read #\ntopic readwrite bob/#\n"
	if err := os.WriteFile(aclFile, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	acl, err := auth.LoadACLFile(aclFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := sysServer(t, Options{Authorizer: acl})

	if got := sysValuesOf(t, srv, "-u", "alice"); got["clients/connected"] != "0" {
		t.Errorf("alice reads clients/connected %q, want 0", got["clients/connected"])
	}

	msgs, stderr := runSub(t, append(subArgs(srv, "$SYS/#"), "-u", "bob", "-C", "1", "-W", "10")...)
	if len(msgs) != 0 || !strings.Contains(stderr, "denied") {
		t.Errorf("bob's $SYS/#: got %q, stderr %q; want the subscription denied", msgs, stderr)
	}

	if err := srv.Publish("bob/first", []byte("1"), 0, true); err != nil {
		t.Fatal(err)
	}
	bob := startSub(t, append(subArgs(srv, "#"), "-u", "bob")...)
	if m := bob.next(); m.topic != "bob/first" {
		t.Fatalf("bob's # brought %s first, want the retained bob/first", m.topic)
	}
	sysUpdateNow(t, srv) // bob's connection changed clients/connected: published now
	if err := srv.Publish("bob/last", []byte("2"), 0, false); err != nil {
		t.Fatal(err)
	}
	if got := bob.until("bob/last", "2"); len(got) > 0 {
		t.Errorf("bob's # brought %q", got)
	}
}

// With retained messages off, $SYS messages are not retained, and every
// topic is published every interval: a subscriber could not otherwise
// learn a value that does not change.
func TestSysWithoutRetain(t *testing.T) {
	srv := sysServer(t, Options{DisableRetain: true})
	c := secMustConnect(t, srv.Addrs()[0].String(), connectPacket(packet.V5, "watch"))
	c.mustSubscribe(1, 0, "$SYS/#", "sys-test/mark")
	c.ping() // no retained message
	for step := range 2 {
		sysUpdateNow(t, srv)
		if err := srv.Publish("sys-test/mark", nil, 0, false); err != nil {
			t.Fatal(err)
		}
		var topics []string
		for _, p := range c.UntilTopic("sys-test/mark", false) {
			if p.Retain {
				t.Errorf("update %d: %s retained", step, p.Topic)
			}
			topics = append(topics, strings.TrimPrefix(p.Topic, sysPrefix))
		}
		slices.Sort(topics)
		if want := slices.Sorted(slices.Values(sysTopics)); !slices.Equal(topics, want) {
			t.Errorf("update %d published %q, want every topic %q", step, topics, want)
		}
	}
}

// The broker's own $SYS messages are retained in memory, not in the
// store: they describe one run, and a restart must not bring back the
// last one's. A retained message of the embedding program is stored.
func TestSysNotStored(t *testing.T) {
	st := openPebble(t, t.TempDir(), pebblestore.Options{})
	srv := secStart(t, Options{Store: st, SysInterval: time.Hour}, nil)
	if err := srv.Publish("kept/x", []byte("1"), 1, true); err != nil {
		t.Fatal(err)
	}
	sysUpdateNow(t, srv)
	if got := srv.Stats().RetainedMessages; got != int64(1+len(sysTopics)) {
		t.Errorf("%d retained messages, want kept/x and the %d $SYS topics", got, len(sysTopics))
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	var stored []string
	if err := st.LoadRetained(func(topic string, _ []byte) error {
		stored = append(stored, topic)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(stored, []string{"kept/x"}) {
		t.Errorf("the store holds the retained messages %q, want only kept/x", stored)
	}
}

// The load average is Mosquitto's: a steady rate r per minute, updated
// every interval i, brings the average to r·(1 - exp(-k·i/period)) after
// k updates, and an idle broker's average decays by exp(-i/period) each.
func TestSysLoadAverage(t *testing.T) {
	const perMinute = 120.0
	for _, p := range loadPeriods {
		load := 0.0
		for k := 1; k <= 30; k++ {
			load = smoothLoad(load, perMinute, 10*time.Second, p.period)
			want := perMinute * (1 - math.Exp(-float64(k)*10/p.period.Seconds()))
			if math.Abs(load-want) > 1e-9 {
				t.Fatalf("%s after %d updates of 10s: %v, want %v", p.name, k, load, want)
			}
		}
		decayed := smoothLoad(load, 0, 10*time.Second, p.period)
		if want := load * math.Exp(-10/p.period.Seconds()); math.Abs(decayed-want) > 1e-9 {
			t.Errorf("%s idle for 10s: %v, want %v", p.name, decayed, want)
		}
	}
}

// sysTree publishes every topic the first time, then only those whose
// printed value changed; a load that decays below 0.005 prints 0.00 and
// stops being published.
func TestSysTreePublishesOnlyChanges(t *testing.T) {
	start := time.Now()
	tree := newSysTree(start)
	st := Stats{Version: "v1.2.3", Node: "n1", PacketsReceived: map[string]uint64{}, PacketsSent: map[string]uint64{},
		ConnacksSent: map[string]uint64{"0x00": 0}}
	topics := func(vals []sysValue) map[string]string {
		m := make(map[string]string)
		for _, v := range vals {
			m[v.topic] = v.payload
		}
		return m
	}
	first := topics(tree.update(&st, start, false))
	if len(first) != len(sysTopics) || first["version"] != "petrel version v1.2.3" || first["node"] != "n1" ||
		first["uptime"] != "0 seconds" {
		t.Fatalf("first update: %d topics, version %q, node %q, uptime %q", len(first), first["version"],
			first["node"], first["uptime"])
	}
	if got := topics(tree.update(&st, start.Add(500*time.Millisecond), false)); len(got) != 0 {
		t.Errorf("nothing changed, yet %v published", got)
	}

	st.PacketsReceived["publish"] = 60
	st.MessagesReceived[0] = 60
	got := topics(tree.update(&st, start.Add(1500*time.Millisecond), false))
	wantTopics := []string{"uptime", "messages/received", "publish/messages/received"}
	for _, load := range []string{"messages/received", "publish/received"} {
		for _, p := range loadPeriods {
			wantTopics = append(wantTopics, "load/"+load+"/"+p.name)
		}
	}
	if keys := slices.Sorted(func(yield func(string) bool) {
		for k := range got {
			if !yield(k) {
				return
			}
		}
	}); !slices.Equal(keys, slices.Sorted(slices.Values(wantTopics))) {
		t.Errorf("after 60 PUBLISHes in a second: published %q, want %q", keys, slices.Sorted(slices.Values(wantTopics)))
	}
	// 60 in one second is 3600 a minute, one second of which is in the
	// average: 3600·(1-exp(-1/60)).
	if want := fmt.Sprintf("%.2f", 3600*(1-math.Exp(-1.0/60))); got["load/publish/received/1min"] != want {
		t.Errorf("load/publish/received/1min = %q, want %q", got["load/publish/received/1min"], want)
	}

	// Idle for long enough, every average prints 0.00 and is published one
	// last time; then nothing is.
	at := start.Add(1500 * time.Millisecond)
	for range 200 {
		at = at.Add(time.Minute)
		tree.update(&st, at, false)
	}
	for name, v := range tree.last {
		if strings.HasPrefix(name, "load/") && v != "0.00" {
			t.Errorf("%s = %q after 200 idle minutes, want 0.00", name, v)
		}
	}
	at = at.Add(time.Minute)
	if got := topics(tree.update(&st, at, false)); len(got) != 1 || got["uptime"] == "" {
		t.Errorf("idle: published %v, want only uptime", got)
	}
	if got := tree.update(&st, at, true); len(got) != len(sysTopics) {
		t.Errorf("every: %d topics published, want %d", len(got), len(sysTopics))
	}
}
