package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"github.com/petrelmq/petrel/bridge"
	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/config"
	"github.com/petrelmq/petrel/packet"
)

// bridgeConfigs maps the bridges section onto package bridge's Configs,
// reading the files it names (before anything starts: a bad file is a
// configuration error). Local is set by startBridges.
func bridgeConfigs(cfg *config.File, log *slog.Logger) ([]bridge.Config, error) {
	var out []bridge.Config
	for i, b := range cfg.Bridges {
		bc := bridge.Config{Name: b.Name, Addr: b.URL, Version: packet.V5, ClientID: b.ClientID,
			Username: b.Username, CleanStart: b.CleanStart, Logger: log,
			// What the local broker would refuse from a client, the bridge
			// refuses from the remote broker.
			MaxPacketSize: int(cfg.MQTT.MaxPacketSize)}
		if b.Protocol == "3.1.1" {
			bc.Version = packet.V311
		}
		if b.PasswordFile != "" {
			pw, err := os.ReadFile(b.PasswordFile)
			if err != nil {
				return nil, fileError(b.PasswordFile, err)
			}
			bc.Password = []byte(strings.TrimSpace(string(pw)))
		}
		if strings.HasPrefix(b.URL, "mqtts://") || strings.HasPrefix(b.URL, "wss://") {
			conf, err := bridgeTLS(b.TLS, fmt.Sprintf("bridges[%d].tls", i))
			if err != nil {
				return nil, err
			}
			bc.TLS = conf
		}
		for _, t := range b.Topics {
			bc.Rules = append(bc.Rules, bridge.Rule{Pattern: t.Pattern, Direction: t.Direction, QoS: byte(t.QoS),
				LocalPrefix: t.LocalPrefix, RemotePrefix: t.RemotePrefix})
		}
		out = append(out, bc)
	}
	return out, nil
}

// bridgeTLS loads a bridge's TLS files: the CA that verifies the remote
// broker (none: the system's roots) and a client certificate.
func bridgeTLS(t config.BridgeTLS, key string) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pool, err := loadCAPool(t.CAFile, key+".ca_file")
		if err != nil {
			return nil, err
		}
		conf.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			if pe, ok := errors.AsType[*fs.PathError](err); ok {
				return nil, pathError(pe)
			}
			return nil, fmt.Errorf("%s and %s: %w (%s)", t.CertFile, t.KeyFile, err, key)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// newBridges makes the bridges of srv, not started: their local side is
// srv's internal listener, their state goes to $SYS/broker/connection/
// <name>/state ("1" up, "0" down), as Mosquitto's.
func newBridges(cfgs []bridge.Config, srv *broker.Server) ([]*bridge.Bridge, error) {
	var out []*bridge.Bridge
	for _, bc := range cfgs {
		bc.Local = srv.DialInternal
		topic := "connection/" + bc.Name + "/state"
		bc.OnState = func(up bool) {
			if up {
				srv.SetSys(topic, "1")
			} else {
				srv.SetSys(topic, "0")
			}
		}
		b, err := bridge.New(bc)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// bridgeQueueLimits gives each bridge's session on the broker the queue
// bounds its section sets (broker.Options.SessionQueueLimits); nil when
// no bridge sets any.
func bridgeQueueLimits(cfg *config.File) func(clientID string) (int, int64) {
	limits := make(map[string][2]int64)
	for _, b := range cfg.Bridges {
		if b.MaxQueuedMessages > 0 || b.MaxQueuedBytes > 0 {
			limits[bridge.SessionOf(b.Name)] = [2]int64{int64(b.MaxQueuedMessages), int64(b.MaxQueuedBytes)}
		}
	}
	if len(limits) == 0 {
		return nil
	}
	return func(clientID string) (int, int64) {
		l := limits[clientID]
		return int(l[0]), l[1]
	}
}

// startBridges runs the bridges, once their broker has started, until the
// returned function is called: before the broker closes, so that each
// bridge's local session is left in the store with what it still holds.
func startBridges(bridges []*bridge.Bridge) (stop func()) {
	stops := make([]func(), 0, len(bridges))
	for _, b := range bridges {
		stops = append(stops, b.Start())
	}
	return func() {
		for _, stop := range stops {
			stop()
		}
	}
}
