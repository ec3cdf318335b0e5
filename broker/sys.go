package broker

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/petrelmq/petrel/packet"
)

// $SYS: every Options.SysInterval the broker publishes its statistics
// (Stats) under $SYS/broker/ with Mosquitto's topic names and payload
// formats, so that dashboards and mosquitto-exporter made for Mosquitto
// read Petrel unchanged. Every message is retained, so a client that
// subscribes late has each current value at once, and a topic is
// published again only when its value changed. docs/SYS.md lists the
// topics.
//
// The messages are the broker's own. They are routed as Server.Publish
// routes the embedding program's (no client may publish to a '$' topic,
// and the authorizer decides who may read them), except that OnPublish
// does not see them and their retained copies stay in memory, never in
// the store: they describe one run. One goroutine per Server, started only
// when SysInterval is positive, takes a Stats snapshot each interval;
// nothing on the path of a message changes for it.

// sysPrefix begins every $SYS topic the broker publishes.
const sysPrefix = "$SYS/broker/"

// loadPeriods are the periods the load averages smooth their rates over,
// and their topics' last level.
var loadPeriods = [...]struct {
	name   string
	period time.Duration
}{{"1min", time.Minute}, {"5min", 5 * time.Minute}, {"15min", 15 * time.Minute}}

// sysCounters are the counters of a snapshot that $SYS publishes, with
// their topic (none for the two Mosquitto only publishes the load of) and
// the topic of their load average under load/.
var sysCounters = [...]struct {
	topic, load string
	count       func(*Stats) uint64
}{
	// Mosquitto's "messages" are MQTT packets of every type.
	{"messages/received", "messages/received", func(st *Stats) uint64 { return sumValues(st.PacketsReceived) }},
	{"messages/sent", "messages/sent", func(st *Stats) uint64 { return sumValues(st.PacketsSent) }},
	{"bytes/received", "bytes/received", func(st *Stats) uint64 { return st.BytesReceived }},
	{"bytes/sent", "bytes/sent", func(st *Stats) uint64 { return st.BytesSent }},
	{"publish/messages/received", "publish/received", func(st *Stats) uint64 { return sumQoS(st.MessagesReceived) }},
	{"publish/messages/sent", "publish/sent", func(st *Stats) uint64 { return sumQoS(st.MessagesSent) }},
	{"publish/messages/dropped", "publish/dropped", sysDropped},
	// CONNECTs accepted, and network connections accepted.
	{"", "connections", func(st *Stats) uint64 { return st.ConnacksSent["0x00"] }},
	{"", "sockets", func(st *Stats) uint64 { return st.ConnectionsAccepted }},
}

// sysDropped counts the messages given up for every reason but
// no_subscribers: Mosquitto does not call a message nobody subscribed to
// dropped.
func sysDropped(st *Stats) uint64 {
	var n uint64
	for reason, v := range st.MessagesDropped {
		if reason != "no_subscribers" {
			n += v
		}
	}
	return n
}

func sumValues(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

func sumQoS(byQoS [3]uint64) uint64 { return byQoS[0] + byQoS[1] + byQoS[2] }

// smoothLoad is Mosquitto's load average: an exponential moving average of
// a rate per minute, updated every interval. perMinute is the rate over
// the elapsed time since the last update, and the old average still
// weighs exp(-elapsed/period), so a steady rate is approached within
// about three periods, and a burst of n in one short interval raises the
// average by about n·(1 min/period).
func smoothLoad(old, perMinute float64, elapsed, period time.Duration) float64 {
	return perMinute + math.Exp(-elapsed.Seconds()/period.Seconds())*(old-perMinute)
}

// sysValue is a $SYS topic (after sysPrefix) and its payload.
type sysValue struct{ topic, payload string }

// sysTree is what the $SYS publisher keeps between updates: the payload it
// last published on each topic, and the counts and load averages of the
// last update. Only its goroutine uses it.
type sysTree struct {
	start  time.Time // of the broker
	at     time.Time // of the last update; zero before the first
	last   map[string]string
	counts [len(sysCounters)]uint64
	loads  [len(sysCounters)][len(loadPeriods)]float64
}

func newSysTree(start time.Time) *sysTree {
	return &sysTree{start: start, last: make(map[string]string)}
}

// update takes in a snapshot made at now and returns what to publish: the
// topics whose payload changed since the last update (the first update,
// all of them), or all of them when every is set.
func (t *sysTree) update(st *Stats, now time.Time, every bool) []sysValue {
	t.updateLoads(st, now)
	var out []sysValue
	for _, v := range t.values(st, now) {
		if old, ok := t.last[v.topic]; ok && old == v.payload && !every {
			continue
		}
		t.last[v.topic] = v.payload
		out = append(out, v)
	}
	return out
}

// updateLoads moves each load average by the rate of its counter since the
// last update. The first update has no rate to go by: the averages start
// at 0, as Mosquitto's do.
func (t *sysTree) updateLoads(st *Stats, now time.Time) {
	first := t.at.IsZero()
	elapsed := now.Sub(t.at)
	if !first && elapsed <= 0 {
		return // no time to measure a rate over: the next update has it
	}
	for i, c := range sysCounters {
		n := c.count(st)
		if !first {
			perMinute := float64(n-min(t.counts[i], n)) * float64(time.Minute) / float64(elapsed)
			for j, p := range loadPeriods {
				t.loads[i][j] = smoothLoad(t.loads[i][j], perMinute, elapsed, p.period)
			}
		}
		t.counts[i] = n
	}
	t.at = now
}

// values lists every topic and its payload, in the order they are
// published.
func (t *sysTree) values(st *Stats, now time.Time) []sysValue {
	vals := make([]sysValue, 0, 64)
	add := func(topic string, n int64) {
		vals = append(vals, sysValue{topic, strconv.FormatInt(n, 10)})
	}
	vals = append(vals,
		sysValue{"version", "petrel version " + st.Version})
	if st.Node != "" { // an empty retained payload would be no message at all
		vals = append(vals, sysValue{"node", st.Node})
	}
	vals = append(vals,
		sysValue{"uptime", strconv.FormatInt(int64(now.Sub(t.start)/time.Second), 10) + " seconds"})
	add("clients/total", st.Sessions)
	add("clients/connected", st.ClientsConnected)
	add("clients/disconnected", st.SessionsOffline)
	add("clients/maximum", st.ClientsMaximum)
	add("clients/expired", int64(st.SessionsExpired))
	// Mosquitto counts the messages in its store once each; Petrel has no
	// such store, and counts what it holds: retained messages, and the
	// deliveries queued or in flight (one per session).
	add("messages/stored", st.RetainedMessages+st.QueuedMessages+st.InflightMessages)
	add("subscriptions/count", st.Subscriptions)
	add("shared_subscriptions/count", st.SharedSubscriptions)
	add("retained messages/count", st.RetainedMessages) // with the space, as Mosquitto's
	for _, c := range sysCounters {
		if c.topic != "" {
			vals = append(vals, sysValue{c.topic, strconv.FormatUint(c.count(st), 10)})
		}
	}
	for i, c := range sysCounters {
		for j, p := range loadPeriods {
			vals = append(vals, sysValue{"load/" + c.load + "/" + p.name, strconv.FormatFloat(t.loads[i][j], 'f', 2, 64)})
		}
	}
	return vals
}

// runSys publishes $SYS every SysInterval until ctx ends (Start has
// published the first values). A request on s.sysKick (the tests') makes
// it publish at once, and is answered by closing the channel sent.
func (s *Server) runSys(ctx context.Context, tree *sysTree) {
	tick := time.NewTicker(s.opts.SysInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			s.updateSys(tree, now)
		case done := <-s.sysKick:
			s.updateSys(tree, time.Now())
			close(done)
		}
	}
}

// updateSys publishes the values that changed. With retained messages
// turned off, a value published once could not wait for a client that
// subscribes later: every value is published every time, not retained.
func (s *Server) updateSys(tree *sysTree, now time.Time) {
	st := s.Stats()
	retain := !s.opts.DisableRetain
	vals := tree.update(&st, now, !retain)
	// As Publish: Close waits for routings under way before it stops the
	// committer, and none starts once it has begun.
	s.pubMu.RLock()
	defer s.pubMu.RUnlock()
	if !s.running.Load() || s.shuttingDown.Load() {
		return
	}
	for _, v := range vals {
		s.publishSys(sysPrefix+v.topic, v.payload, retain)
	}
}

// SetSys publishes payload, retained, on $SYS/broker/<topic>, for a part
// of the program with a state of its own to show there: a bridge's
// connection/<name>/state, as Mosquitto's. Nothing is published before
// Start or once the server is closing.
func (s *Server) SetSys(topic, payload string) {
	s.pubMu.RLock()
	defer s.pubMu.RUnlock()
	if !s.running.Load() || s.shuttingDown.Load() {
		return
	}
	s.publishSys(sysPrefix+topic, payload, !s.opts.DisableRetain)
}

// publishSys routes one $SYS message at QoS 0, as PublishWith routes a
// message of the embedding program but without OnPublish, kept as
// retained in memory only (ephemeral). s.pubMu is held (read).
func (s *Server) publishSys(topic, payload string, retain bool) {
	p := packet.Publish{Topic: topic, Payload: []byte(payload), Retain: retain}
	m := makeMessage(&p, 0, false, nil)
	m.ephemeral = true
	tx := txPool.Get().(*routeTx)
	s.publish(m, tx)
	m.unref()
	tx.finish(s, nil) // a persistent session may queue it (Options.QueueQoS0)
	putTx(tx)
}
