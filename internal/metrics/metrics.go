// Package metrics serves a broker's statistics as Prometheus metrics, in
// Prometheus' text format. Every value is computed from broker.Server's
// Stats when scraped: nothing is counted twice, and a broker nobody
// scrapes pays nothing here. Each handler has a registry of its own (never
// the global default), so that one process may serve many brokers. Every
// metric, the Go runtime's and the process's too, carries the constant
// label node, the broker's node name (broker.Server.NodeName), so that
// the metrics of a cluster's nodes tell which node they are of.
// docs/METRICS.md lists every metric.
package metrics

import (
	"net/http"
	"runtime"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/petrelmq/petrel/broker"
)

// BuildInfo is what petrel_build_info says about the binary.
type BuildInfo struct {
	// Version is Petrel's version; empty for the one the broker reports
	// (broker.Stats.Version).
	Version string
	// GoVersion is the Go release the binary was built with; empty for
	// runtime.Version().
	GoVersion string
}

// Handler serves srv's metrics, with the Go runtime's and the process's,
// and extra's (the bridges'), at whatever path it is mounted on.
func Handler(srv *broker.Server, build BuildInfo, extra ...prometheus.Collector) http.Handler {
	reg := NewRegistry(srv, build)
	Registerer(reg, srv).MustRegister(extra...)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// A collector that fails (the process collector without /proc, say)
		// leaves its metrics out rather than failing the scrape.
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// NodeLabel is the constant label every metric carries: the node's name.
const NodeLabel = "node"

// NewRegistry returns a registry holding srv's metrics and the Go runtime
// and process collectors, each labelled with the node's name (NodeLabel),
// for a caller that adds metrics of its own (through Registerer to have
// them labelled too).
func NewRegistry(srv *broker.Server, build BuildInfo) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	Registerer(reg, srv).MustRegister(newCollector(srv, build), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Registerer wraps reg so that every collector registered through it
// carries srv's node label (NodeLabel).
func Registerer(reg prometheus.Registerer, srv *broker.Server) prometheus.Registerer {
	return prometheus.WrapRegistererWith(prometheus.Labels{NodeLabel: srv.NodeName()}, reg)
}

// collector computes the broker's metrics from one Stats per scrape.
type collector struct {
	srv   *broker.Server
	build BuildInfo

	buildInfo, startTime                                                *prometheus.Desc
	clients, sessions, subscriptions, shared, retained                  *prometheus.Desc
	queued, queuedBytes, inflight, heldBack                             *prometheus.Desc
	accepted, connacks, disconnects, packetsIn, packetsOut              *prometheus.Desc
	bytesIn, bytesOut, messagesIn, messagesOut, dropped                 *prometheus.Desc
	authn, authz, sessionsExpired, takenOver, commitDuration, storeSize *prometheus.Desc
	sessionsMoved                                                       *prometheus.Desc
}

func newCollector(srv *broker.Server, build BuildInfo) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("petrel_"+name, help, labels, nil)
	}
	return &collector{
		srv:   srv,
		build: build,

		buildInfo: d("build_info", "Always 1; the labels name the build.", "version", "goversion"),
		startTime: d("start_time_seconds", "When the broker started, in seconds since the Unix epoch."),

		clients:       d("clients_connected", "Clients whose CONNECT was accepted and that hold their session."),
		sessions:      d("sessions", "Sessions, of connected clients and offline."),
		subscriptions: d("subscriptions", "Subscriptions of every session, shared ones included."),
		shared:        d("shared_subscriptions", "Shared subscriptions ($share/...), one per member session."),
		retained:      d("retained_messages", "Retained messages."),
		queued:        d("queued_messages", "Deliveries waiting for their turn (client offline or its in-flight window full), in memory or in the store."),
		queuedBytes:   d("queued_bytes", "Payload bytes of the queued deliveries."),
		inflight:      d("inflight_messages", "QoS 1 and 2 deliveries sent and not yet acknowledged."),
		heldBack:      d("held_back_connections", "Publishers not read at the moment because a subscriber of theirs is behind."),

		accepted:    d("connections_accepted_total", "Network connections the listeners accepted."),
		connacks:    d("connack_sent_total", "CONNACK packets sent, by the MQTT 5 reason code the broker decided.", "reason_code"),
		disconnects: d("disconnects_total", "Ends of connected clients' connections, by reason.", "reason"),
		packetsIn:   d("packets_received_total", "MQTT control packets received and decoded, by type.", "type"),
		packetsOut:  d("packets_sent_total", "MQTT control packets sent, by type.", "type"),
		bytesIn:     d("bytes_received_total", "Bytes read from clients."),
		bytesOut:    d("bytes_sent_total", "Bytes written to clients."),
		messagesIn:  d("messages_received_total", "PUBLISH packets received, by QoS.", "qos"),
		messagesOut: d("messages_sent_total", "PUBLISH packets sent, by QoS.", "qos"),
		dropped:     d("messages_dropped_total", "Messages given up, by reason.", "reason"),

		authn:           d("authentication_total", "Authentications (logins and MQTT 5 re-authentications), by result.", "result"),
		authz:           d("authorization_total", "Access decisions on publishing, subscribing and delivering, by result.", "result"),
		sessionsExpired: d("sessions_expired_total", "Sessions ended by their expiry interval."),
		takenOver:       d("sessions_taken_over_total", "Connections replaced by a new one with the same client id."),
		sessionsMoved:   d("sessions_moved_total", "Sessions that moved between cluster nodes: in, from another node for a client connecting here (or adopted from a node shutting down); out, to another node.", "direction"),
		commitDuration:  d("store_commit_duration_seconds", "Time each store commit group took to write (one batch, and its fsync when durable)."),
		storeSize:       d("store_size_bytes", "What the store occupies: the files of the disk store, the keys and values of the memory store."),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.buildInfo, c.startTime, c.clients, c.sessions, c.subscriptions,
		c.shared, c.retained, c.queued, c.queuedBytes, c.inflight, c.heldBack, c.accepted, c.connacks,
		c.disconnects, c.packetsIn, c.packetsOut, c.bytesIn, c.bytesOut, c.messagesIn, c.messagesOut,
		c.dropped, c.authn, c.authz, c.sessionsExpired, c.takenOver, c.commitDuration, c.storeSize, c.sessionsMoved} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.Stats()
	version, goVersion := c.build.Version, c.build.GoVersion
	if version == "" {
		version = st.Version
	}
	if goVersion == "" {
		goVersion = runtime.Version()
	}
	ch <- prometheus.MustNewConstMetric(c.buildInfo, prometheus.GaugeValue, 1, version, goVersion)
	if !st.StartTime.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.startTime, prometheus.GaugeValue,
			float64(st.StartTime.UnixNano())/1e9)
	}

	gauge := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	gauge(c.clients, st.ClientsConnected)
	gauge(c.sessions, st.Sessions)
	gauge(c.subscriptions, st.Subscriptions)
	gauge(c.shared, st.SharedSubscriptions)
	gauge(c.retained, st.RetainedMessages)
	gauge(c.queued, st.QueuedMessages)
	gauge(c.queuedBytes, st.QueuedBytes)
	gauge(c.inflight, st.InflightMessages)
	gauge(c.heldBack, st.HeldBackConnections)
	gauge(c.storeSize, st.Store.SizeBytes)

	counter := func(d *prometheus.Desc, v uint64, label ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), label...)
	}
	byLabel := func(d *prometheus.Desc, m map[string]uint64) {
		for label, v := range m {
			counter(d, v, label)
		}
	}
	byQoS := func(d *prometheus.Desc, v [3]uint64) {
		for qos, n := range v {
			counter(d, n, strconv.Itoa(qos))
		}
	}
	counter(c.accepted, st.ConnectionsAccepted)
	byLabel(c.connacks, st.ConnacksSent)
	byLabel(c.disconnects, st.Disconnects)
	byLabel(c.packetsIn, st.PacketsReceived)
	byLabel(c.packetsOut, st.PacketsSent)
	counter(c.bytesIn, st.BytesReceived)
	counter(c.bytesOut, st.BytesSent)
	byQoS(c.messagesIn, st.MessagesReceived)
	byQoS(c.messagesOut, st.MessagesSent)
	byLabel(c.dropped, st.MessagesDropped)
	byLabel(c.authn, st.Authentication)
	byLabel(c.authz, st.Authorization)
	counter(c.sessionsExpired, st.SessionsExpired)
	counter(c.takenOver, st.SessionsTakenOver)
	if st.SessionsMovedIn > 0 || st.SessionsMovedOut > 0 {
		byLabel(c.sessionsMoved, map[string]uint64{"in": st.SessionsMovedIn, "out": st.SessionsMovedOut})
	}

	h := st.Store.CommitDuration
	buckets := make(map[float64]uint64, len(h.Buckets))
	for _, b := range h.Buckets {
		buckets[b.UpperBound] = b.Count
	}
	ch <- prometheus.MustNewConstHistogram(c.commitDuration, h.Count, h.Sum, buckets)
}
