package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrelmq/petrel/bridge"
	"github.com/petrelmq/petrel/broker"
)

// Bridges returns a collector of the bridges' metrics (package bridge),
// read at each scrape, each labelled with its bridge's name; what waits
// to go out is read from their sessions on srv.
func Bridges(srv *broker.Server, bridges []*bridge.Bridge) prometheus.Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("petrel_bridge_"+name, help, []string{"bridge"}, nil)
	}
	return &bridgeCollector{srv: srv, bridges: bridges,
		queued:      d("queued_messages", "Messages waiting to go out: the bridge's session's queue and what is in flight to the bridge."),
		queuedBytes: d("queued_bytes", "Payload bytes of the messages in the bridge's session's queue."),
		connected:   d("connected", "1 while the bridge's link to its remote broker is up."),
		sent:        d("messages_sent_total", "Messages the bridge sent to its remote broker, acknowledged there."),
		received:    d("messages_received_total", "Messages the bridge brought from its remote broker, acknowledged here."),
		dropped:     d("messages_dropped_total", "QoS 0 messages the bridge dropped, come faster than it could forward them."),
		failures:    d("link_failures_total", "Links to the remote broker that failed or could not be made."),
	}
}

type bridgeCollector struct {
	srv                                                               *broker.Server
	bridges                                                           []*bridge.Bridge
	connected, sent, received, dropped, failures, queued, queuedBytes *prometheus.Desc
}

func (c *bridgeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connected, c.sent, c.received, c.dropped, c.failures, c.queued, c.queuedBytes} {
		ch <- d
	}
}

func (c *bridgeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, b := range c.bridges {
		st, name := b.State(), b.Name()
		up := 0.0
		if st.Connected {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, up, name)
		ch <- prometheus.MustNewConstMetric(c.sent, prometheus.CounterValue, float64(st.Sent), name)
		ch <- prometheus.MustNewConstMetric(c.received, prometheus.CounterValue, float64(st.Received), name)
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(st.Dropped), name)
		ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(st.Failures), name)
		info, _ := c.srv.Client(b.Session())
		ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(info.Queued+info.InFlight), name)
		ch <- prometheus.MustNewConstMetric(c.queuedBytes, prometheus.GaugeValue, float64(info.QueuedBytes), name)
	}
}
