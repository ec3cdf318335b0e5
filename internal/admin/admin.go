// Package admin is Petrel's HTTP server for the people and programs that
// run the broker, on one address: /healthz and /readyz for health checks,
// /metrics for Prometheus, the admin API under /api/v1 (docs/API.md,
// docs/openapi.yaml) and the dashboard at /.
//
// Every request but the health checks and the dashboard's own files must
// carry the bearer token (auth.go); /metrics too unless Config.OpenMetrics.
// The package only serves: the statistics, the metrics handler and the
// dashboard are given to it (Config.Stats, Metrics, Dashboard), and what
// the API reports and does is the broker's (broker/admin.go).
package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/throttle"
)

// Config configures a Server. The zero value of each optional field is a
// useful default.
type Config struct {
	// Listen is host:port. Required.
	Listen string
	// TLS, when set, serves HTTPS only, with this configuration (a
	// tlsconf.Reloader's, so that certificates are reloaded).
	TLS *tls.Config

	// TokenFile holds the bearer token. Required.
	TokenFile string
	// CreateToken makes TokenFile, with a new random token and mode 0600,
	// when it does not exist (and its directory, mode 0700).
	CreateToken bool
	// OpenMetrics serves /metrics without the token, for a scraper.
	OpenMetrics bool
	// Throttle sets the delay of failed authentications, per source
	// address; the zero value is the MQTT login throttle's defaults.
	Throttle throttle.Config

	// Broker is what the API reports on and acts on. Required.
	Broker *broker.Server
	// Stats returns the statistics GET /api/v1/stats shows, as JSON
	// encodes them; nil answers 501.
	Stats func() any
	// Bridges lists the bridges GET /api/v1/bridges shows, each one a
	// JSON object (BridgeJSON); nil: none.
	Bridges func() []BridgeJSON
	// Metrics serves /metrics; nil answers 501.
	Metrics http.Handler
	// Dashboard serves every path outside /api/ and the fixed ones, from
	// /; nil answers 404. Its files are served without the token: the
	// page asks the API with it.
	Dashboard http.Handler

	// MaxBodyBytes bounds a request body (a message to publish); 0 means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Logger receives failed authentications and what the API changed;
	// nil means slog.Default().
	Logger *slog.Logger
}

// DefaultMaxBodyBytes is Config.MaxBodyBytes's default: a 1 MiB payload
// in base64 and what goes with it.
const DefaultMaxBodyBytes = 1<<20*4/3 + 64<<10

// Server is the HTTP server. New makes it, Start opens it, Shutdown closes it.
type Server struct {
	cfg    Config
	log    *slog.Logger
	logins *throttle.Logins
	// token is the SHA-256 of the token: requests compare hashes, so that
	// neither the time taken nor anything else tells how much of a guess
	// was right, or how long the token is.
	token atomic.Pointer[[32]byte]

	http     *http.Server
	ln       net.Listener
	served   chan struct{}
	draining atomic.Bool
}

// New reads (or creates) the token and makes the server, without
// listening yet.
func New(cfg Config) (*Server, error) {
	if cfg.Listen == "" || cfg.TokenFile == "" || cfg.Broker == nil {
		return nil, errors.New("admin: Listen, TokenFile and Broker are required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	s := &Server{cfg: cfg, log: cfg.Logger, logins: throttle.New(cfg.Throttle), served: make(chan struct{})}
	if s.log == nil {
		s.log = slog.Default()
	}
	if err := s.loadToken(cfg.CreateToken); err != nil {
		return nil, err
	}
	// HTTP/1.1 only: the API needs nothing more, and HTTP/2's framing is
	// more to defend before a request is even authenticated.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	s.http = &http.Server{
		Handler:           s,
		Protocols:         &protocols,
		TLSConfig:         cfg.TLS,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		// No WriteTimeout: the dashboard may hold a stream of events open.
		// The server's own complaints (a failed TLS handshake) are a
		// client's business: debug.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Start listens and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	s.ln = ln
	scheme := "http"
	if s.cfg.TLS != nil {
		scheme = "https"
	}
	s.log.Info("http: listening", "addr", ln.Addr().String(), "scheme", scheme, "token_file", s.cfg.TokenFile)
	go func() {
		defer close(s.served)
		var err error
		if s.cfg.TLS != nil {
			err = s.http.ServeTLS(ln, "", "")
		} else {
			err = s.http.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http: server stopped", "err", err)
		}
	}()
	return nil
}

// Addr is the address the server listens on, once started.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops accepting, lets the requests under way finish until ctx
// ends, then closes what is left (a dashboard's stream of events). From
// its start /readyz answers 503.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	if s.ln == nil {
		return nil
	}
	err := s.http.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.http.Close())
	}
	<-s.served
	return err
}

// Reload reads the token file again. On an error the token in force
// stays.
func (s *Server) Reload() error { return s.loadToken(false) }
