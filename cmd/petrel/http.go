package main

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/petrelmq/petrel/bridge"
	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/admin"
	"github.com/petrelmq/petrel/internal/config"
	"github.com/petrelmq/petrel/internal/dashboard"
	"github.com/petrelmq/petrel/internal/metrics"
)

// httpShutdownTimeout bounds how long the HTTP server waits for requests
// under way once the broker has stopped; a dashboard's stream is cut after
// it.
const httpShutdownTimeout = time.Second

// startHTTP opens the HTTP server (health, metrics, admin API, dashboard)
// when the configuration has one, before the broker starts, so that /readyz
// says 503 while the store is recovered. Its token file and certificate
// join files, for SIGHUP. The function it returns stops it, letting the
// requests under way finish for at most httpShutdownTimeout and not past
// deadline (the zero time: at once). A token or certificate that cannot be
// read is a configuration error (exit code 2).
func startHTTP(cfg *config.File, srv *broker.Server, files *reloadable, log *slog.Logger, bridges []*bridge.Bridge) (stop func(deadline time.Time), err error) {
	h := cfg.HTTP
	if h.Listen == "" {
		return func(time.Time) {}, nil
	}
	tokenFile, create := cfg.TokenPath()
	ac := admin.Config{
		Listen:       h.Listen,
		TokenFile:    tokenFile,
		CreateToken:  create,
		OpenMetrics:  !h.MetricsAuth,
		Broker:       srv,
		MaxBodyBytes: int64(cfg.MQTT.MaxPacketSize)*4/3 + 64<<10, // a largest payload, in base64
		Logger:       log,
		Dashboard:    dashboard.Handler(),
		Stats:        func() any { return srv.Stats() },
		Metrics:      metrics.Handler(srv, metrics.BuildInfo{}, metrics.Bridges(srv, bridges)),
		Bridges: func() []admin.BridgeJSON {
			out := make([]admin.BridgeJSON, 0, len(bridges))
			for _, b := range bridges {
				st := b.State()
				info, _ := srv.Client(b.Session())
				out = append(out, admin.BridgeJSON{Name: b.Name(), URL: b.Addr(), Session: b.Session(),
					Connected: st.Connected, Sent: st.Sent, Received: st.Received, Dropped: st.Dropped,
					LinkFailures: st.Failures, Queued: info.Queued + info.InFlight, QueuedBytes: info.QueuedBytes})
			}
			return out
		},
	}
	if h.TLS.Enabled() {
		cert, err := certificate("http", h.TLS.Listener(), log)
		if err != nil {
			return nil, configError{err}
		}
		ac.TLS = cert.TLSConfig()
		files.certs = append(files.certs, listenerCert{listener: "http", tls: cert})
	}
	hs, err := admin.New(ac)
	if err != nil {
		return nil, configError{tokenError(err)}
	}
	if err := hs.Start(); err != nil {
		return nil, err
	}
	files.http = hs
	var once sync.Once
	return func(deadline time.Time) {
		once.Do(func() {
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			defer cancel()
			ctx, cancel2 := context.WithTimeout(ctx, httpShutdownTimeout)
			defer cancel2()
			if err := hs.Shutdown(ctx); err != nil && !deadline.IsZero() {
				log.Warn("http: requests cut short by the shutdown", "err", err)
			}
		})
	}, nil
}

// configError is an error in what the configuration names: exit code 2.
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

// checkHTTP reads what the HTTP server reads at start, for check-config:
// its certificate, and the token file the configuration names (the one
// the server creates in the data directory may not be there yet).
func checkHTTP(cfg *config.File, log *slog.Logger) error {
	h := cfg.HTTP
	if h.Listen == "" {
		return nil
	}
	if h.TLS.Enabled() {
		if _, err := certificate("http", h.TLS.Listener(), log); err != nil {
			return err
		}
	}
	path, created := cfg.TokenPath()
	err := admin.CheckTokenFile(path)
	if err == nil || (created && errors.Is(err, fs.ErrNotExist)) {
		return nil
	}
	return tokenError(err)
}

// tokenError says which token file could not be read, as the other files'
// errors do ("path: reason").
func tokenError(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pathError(pe)
	}
	return err
}
