package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/config"
	"github.com/petrelmq/petrel/store"
	"github.com/petrelmq/petrel/store/memory"
	"github.com/petrelmq/petrel/store/pebblestore"
	"github.com/petrelmq/petrel/tlsconf"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// serve runs the broker until SIGINT or SIGTERM. SIGHUP reloads the files
// the configuration names (reload.go).
func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("petrel serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "read the configuration from this YAML `file`")
	var listen stringList
	fs.Var(&listen, "listen", "listen on this `address` (host:port); repeatable; replaces the file's listeners")
	logLevel := fs.String("log-level", "", "log `level`: debug, info, warn or error (overrides the file)")
	logFormat := fs.String("log-format", "", "log `format`: text or json (overrides the file)")
	dataDir := fs.String("data-dir", "", "keep durable state in this `directory` (default ./data; overrides the file)")
	engine := fs.String("store", "", "store `engine`: pebble (on disk, the default) or memory (overrides the file)")
	pprofAddr := fs.String("pprof", "", "serve Go's profiles (net/http/pprof) on this loopback `address`, e.g. 127.0.0.1:6060")
	shutdownTimeout := fs.Duration("shutdown-timeout", 0, "exit this long after SIGTERM at the latest (`duration`; overrides the file's shutdown_timeout)")
	httpAddr := fs.String("http", "", "serve health checks, metrics, the admin API and the dashboard on this `address`, e.g. 127.0.0.1:8080 (overrides the file)")
	var sysInterval optionalDuration
	fs.Var(&sysInterval, "sys-interval", "publish $SYS statistics this often (`duration`, e.g. 10s; 0 turns $SYS off; overrides the file)")
	node := fs.String("node", "", "this node's `name` (default the host name; overrides the file's cluster.node)")
	clusterAddr := fs.String("cluster", "", "join a cluster, with routes on this `address` (host:port; overrides the file's cluster.listen)")
	peers := fs.String("peers", "", "other nodes' route `addresses`, separated by commas (overrides the file's cluster.peers)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "petrel serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}

	cfg, err := loadConfig(*configPath, overrides{listen: listen, logLevel: *logLevel, logFormat: *logFormat, dataDir: *dataDir, engine: *engine,
		shutdownTimeout: *shutdownTimeout, http: *httpAddr, sysInterval: sysInterval.d,
		node: *node, cluster: *clusterAddr, peers: splitList(*peers)})
	if err != nil {
		fmt.Fprintln(stderr, "petrel:", err)
		return 2
	}
	log := newLogger(cfg.Log, stderr)
	restoreLimit, memLimit := setMemoryLimit(cfg.Limits, log)
	defer restoreLimit()
	// Signals are caught before anything starts, so one sent as soon as the
	// broker is listening still shuts it down cleanly.
	term := make(chan os.Signal, 2)
	signal.Notify(term, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(term)
	// SIGHUP's default action ends the process: it is caught from here on,
	// and one that arrives while the broker starts is handled once it runs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// The files the configuration names are read before the store is
	// opened or anything listens: a bad one is a configuration error.
	opts, files, err := brokerOptions(cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "petrel:", err)
		return 2
	}
	bridges, err := bridgeConfigs(cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "petrel:", err)
		return 2
	}
	st, err := openStore(cfg.Store, log)
	if err != nil {
		fmt.Fprintln(stderr, "petrel:", err)
		return 1
	}
	opts.Store = st
	opts.SessionQueueLimits = bridgeQueueLimits(cfg)
	srv := broker.New(opts)
	links, err := newBridges(bridges, srv)
	if err != nil {
		st.Close()
		fmt.Fprintln(stderr, "petrel:", err)
		return 2
	}
	stopHTTP, err := startHTTP(cfg, srv, files, log, links)
	if err != nil {
		st.Close()
		if errors.As(err, new(configError)) {
			fmt.Fprintln(stderr, "petrel:", err)
			return 2
		}
		log.Error("cannot start", "err", err)
		return 1
	}
	defer stopHTTP(time.Time{}) // on the way out without a shutdown: at once
	// A node of a cluster starts once it has joined, which waits for its
	// peers: a signal meanwhile ends the wait (and the process).
	// A single broker (its store's recovery) is let finish starting, and
	// then shut down as usual; so is a node past its join, which takes a
	// moment.
	started, up := make(chan error, 1), make(chan struct{})
	if memLimit > 0 {
		done := make(chan struct{})
		defer close(done)
		go followState(memLimit, srv, log, up, done)
	}
	trimDone := make(chan struct{})
	defer close(trimDone)
	go trimWhenIdle(log, trimDone)
	go func() {
		err := srv.Start()
		if err == nil {
			close(up)
		}
		started <- err
	}()
	select {
	case err = <-started:
	case sig := <-term:
		if opts.Cluster == nil {
			err = <-started
		} else {
			select {
			case err = <-started:
			case <-time.After(200 * time.Millisecond):
				log.Warn("stopped before the broker started: still joining the cluster", "signal", sig.String())
				return 1
			}
		}
		select {
		case term <- sig: // handled below, once started
		default:
		}
	}
	if err != nil {
		log.Error("cannot start", "err", err)
		st.Close()
		return 1
	}
	stopBridges := startBridges(links)
	if *pprofAddr != "" {
		stopProfiles, err := serveProfiles(*pprofAddr, log)
		if err != nil {
			log.Error("pprof", "err", err)
			stopBridges()
			srv.Close()
			st.Close()
			return 2
		}
		defer stopProfiles()
	}
	for {
		select {
		case sig := <-term:
			// The HTTP server stops after the broker, so that /readyz says
			// 503 while the broker stops, within the same timeout.
			deadline := time.Now().Add(cfg.ShutdownTimeout.Duration)
			stopBridges()
			code := shutdown(srv, st, sig, cfg.ShutdownTimeout.Duration, log)
			stopHTTP(deadline)
			return code
		case <-hup:
			files.reload(srv, log)
		}
	}
}

// openStore opens the configured store engine. Its errors say what is wrong
// with the data directory and what to do; the broker never wipes it.
func openStore(sc config.Store, log *slog.Logger) (store.Store, error) {
	if sc.Engine == "memory" {
		log.Warn("store: memory: sessions, queued and retained messages are lost on restart")
		return memory.New(), nil
	}
	st, err := pebblestore.Open(sc.Dir, pebblestore.Options{Logger: log})
	if err != nil {
		hint := ""
		switch {
		case errors.Is(err, store.ErrLocked):
			hint = " (is another petrel running with this data directory?)"
		case errors.Is(err, store.ErrNewerFormat):
			hint = " (it was written by a newer petrel: run that version, or point --data-dir elsewhere)"
		case errors.Is(err, store.ErrCorrupt):
			hint = " (nothing was changed in it: restore it from a backup, or point --data-dir elsewhere)"
		case errors.Is(err, store.ErrReadOnly):
			hint = " (check the directory's permissions and the filesystem)"
		case errors.Is(err, store.ErrFull):
			hint = " (free some space on its filesystem)"
		}
		return nil, fmt.Errorf("cannot open the store: %w%s", err, hint)
	}
	return st, nil
}

// overrides are the command-line flags that replace settings of the file.
type overrides struct {
	listen                                     []string
	logLevel, logFormat, dataDir, engine, http string
	shutdownTimeout                            time.Duration
	sysInterval                                *time.Duration // nil: not given
	node, cluster                              string
	peers                                      []string
}

// splitList splits a comma-separated flag; empty gives nil.
func splitList(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	items := strings.Split(s, ",")
	for i := range items {
		items[i] = strings.TrimSpace(items[i])
	}
	return items
}

// optionalDuration is a duration flag that knows whether it was given, for
// a setting whose 0 means something (off). It reads durations as the
// configuration file does.
type optionalDuration struct{ d *time.Duration }

func (o *optionalDuration) String() string {
	if o.d == nil {
		return ""
	}
	return o.d.String()
}

func (o *optionalDuration) Set(s string) error {
	d, err := config.ParseDuration(s)
	if err != nil {
		return err
	}
	o.d = &d.Duration
	return nil
}

// loadConfig reads the file (or takes the defaults) and applies the
// command-line overrides, validating the result.
func loadConfig(path string, ov overrides) (*config.File, error) {
	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return nil, err
		}
	}
	if len(ov.listen) > 0 {
		cfg.Listeners = cfg.Listeners[:0]
		for _, addr := range ov.listen {
			// A tcp listener; Validate gives it the other defaults.
			cfg.Listeners = append(cfg.Listeners, config.Listener{Address: addr})
		}
	}
	if ov.logLevel != "" {
		cfg.Log.Level = ov.logLevel
	}
	if ov.logFormat != "" {
		cfg.Log.Format = ov.logFormat
	}
	if ov.dataDir != "" {
		cfg.Store.Dir = ov.dataDir
	}
	if ov.engine != "" {
		cfg.Store.Engine = ov.engine
	}
	if ov.shutdownTimeout != 0 {
		cfg.ShutdownTimeout.Duration = ov.shutdownTimeout
	}
	if ov.http != "" {
		cfg.HTTP.Listen = ov.http
	}
	if ov.sysInterval != nil {
		cfg.Sys.Interval.Duration = *ov.sysInterval
	}
	if ov.node != "" {
		cfg.Cluster.Node = ov.node
	}
	if ov.cluster != "" {
		cfg.Cluster.Listen = ov.cluster
	}
	if len(ov.peers) > 0 {
		cfg.Cluster.Peers = ov.peers
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func newLogger(lc config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(lc.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if lc.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// brokerOptions maps the configuration file's schema onto the broker's
// options. It loads the files the configuration names (certificates, the
// password and ACL files) and returns them for SIGHUP; an error names the
// file that cannot be used. It also reads the cluster's files
// (clusterOptions), which SIGHUP does not reload.
func brokerOptions(cfg *config.File, log *slog.Logger) (broker.Options, *reloadable, error) {
	maxQoS := byte(cfg.MQTT.MaxQoS)
	o := broker.Options{
		Logger:            log,
		MaxPacketSize:     int(cfg.MQTT.MaxPacketSize),
		ConnectTimeout:    cfg.MQTT.ConnectTimeout.Duration,
		MaxInflight:       cfg.MQTT.MaxInflight,
		MaxQueuedMessages: cfg.MQTT.MaxQueuedMessages,
		MaxQueuedBytes:    int64(cfg.MQTT.MaxQueuedBytes),
		BacklogMessages:   cfg.MQTT.BacklogMessages,
		BacklogBytes:      int64(cfg.MQTT.BacklogBytes),
		StallTimeout:      cfg.MQTT.StallTimeout.Duration,
		QueueQoS0:         cfg.MQTT.QueueQoS0,
		DisableSplice:     !cfg.MQTT.SplicePayloads,
		DisableRetain:     !cfg.MQTT.RetainAvailable,
		MaxClientIDLength: cfg.MQTT.MaxClientIDLength,

		MaxQoS:                         &maxQoS,
		ReceiveMaximum:                 cfg.MQTT.ReceiveMaximum,
		DisableWildcardSubscriptions:   !cfg.MQTT.WildcardSubscriptions,
		DisableSubscriptionIdentifiers: !cfg.MQTT.SubscriptionIdentifiers,
		DisableSharedSubscriptions:     !cfg.MQTT.SharedSubscriptions,
		TopicAliasMaximum:              cfg.MQTT.TopicAliasMaximum,
		ServerKeepAlive:                cfg.MQTT.ServerKeepAlive.Duration,
		MaxSessionExpiry:               cfg.MQTT.MaxSessionExpiry.Duration,
		ResponseInformation:            cfg.MQTT.ResponseInformation,

		AuthTimeout: cfg.Auth.Timeout.Duration,
		Limits:      brokerLimits(cfg.Limits),
		SysInterval: cfg.Sys.Interval.Duration,
	}
	// The file's 0 means unlimited (none, for topic aliases); the broker's
	// zero is its default.
	if o.MaxQueuedMessages == 0 {
		o.MaxQueuedMessages = broker.Unlimited
	}
	if o.MaxQueuedBytes == 0 {
		o.MaxQueuedBytes = broker.Unlimited
	}
	if o.TopicAliasMaximum == 0 {
		o.TopicAliasMaximum = -1
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = -1 // off
	}
	if o.SysInterval == 0 {
		o.SysInterval = -1 // off
	}
	if cfg.Store.Sync == "periodic" {
		o.SyncPeriod = cfg.Store.SyncInterval.Duration
	}
	files := &reloadable{}
	for _, l := range cfg.Listeners {
		lc, cert, err := listenerConfig(l, log)
		if err != nil {
			return broker.Options{}, nil, err
		}
		o.Listeners = append(o.Listeners, lc)
		if cert != nil {
			files.certs = append(files.certs, listenerCert{listener: l.Name, tls: cert})
		}
	}
	if err := authBackends(cfg.Auth, &o, files, log); err != nil {
		return broker.Options{}, nil, err
	}
	if err := clusterOptions(cfg, &o, log); err != nil {
		return broker.Options{}, nil, err
	}
	return o, files, nil
}

// brokerLimits maps the limits. In the file 0 means unlimited, as it does
// for mqtt.max_queued_messages; to the broker 0 means its default and
// broker.Unlimited lifts the limit.
func brokerLimits(l config.Limits) broker.Limits {
	unlimited := func(v int) int {
		if v == 0 {
			return broker.Unlimited
		}
		return v
	}
	unlimitedRate := func(v float64) float64 {
		if v == 0 {
			return broker.Unlimited
		}
		return v
	}
	b := broker.Limits{
		MaxConnections:          unlimited(l.MaxConnections),
		ConnectionRate:          unlimitedRate(l.ConnectionRate),
		ConnectionBurst:         l.ConnectionBurst,
		MaxTopicLength:          unlimited(l.MaxTopicLength),
		MaxTopicLevels:          unlimited(l.MaxTopicLevels),
		MaxSubscriptions:        unlimited(l.MaxSubscriptions),
		PublishRate:             unlimitedRate(l.PublishRate),
		PublishBytesRate:        unlimitedRate(float64(l.PublishBytesRate)),
		ControlRate:             unlimitedRate(l.ControlRate),
		QueuedMemory:            int64(l.QueuedMemory),
		IncompletePacketTimeout: l.IncompletePacketTimeout.Duration,
		MaxOutboundBytes:        unlimited(int(l.MaxOutboundBytes)),
	}
	if b.QueuedMemory == 0 {
		b.QueuedMemory = broker.Unlimited
	}
	return b
}

// listenerConfig maps one listener, loading its certificate when it has
// one.
func listenerConfig(l config.Listener, log *slog.Logger) (broker.ListenerConfig, *tlsconf.Reloader, error) {
	lc := broker.ListenerConfig{
		Name:           l.Name,
		Kind:           l.Kind,
		Address:        l.Address,
		MaxConnections: l.MaxConnections, // 0 is unlimited to both
	}
	if allow, set := l.AllowAnonymous.Bool(); set {
		lc.AllowAnonymous = &allow
	}
	if l.Kind == "ws" || l.Kind == "wss" {
		lc.WebSocketPath = l.WebSocket.Path
		lc.AllowedOrigins = l.WebSocket.AllowedOrigins
		lc.TrustProxy = l.WebSocket.TrustProxy
	}
	if l.Kind != "tls" && l.Kind != "wss" {
		return lc, nil, nil
	}
	cert, err := certificate(l.Name, l.TLS, log)
	if err != nil {
		return lc, nil, err
	}
	lc.TLS = cert.TLSConfig()
	lc.UsernameFrom = l.TLS.UsernameFrom
	return lc, cert, nil
}

// certificate loads the certificate of a listener (or of the HTTP server,
// named "http"), to be reloaded on SIGHUP and when its files change.
func certificate(name string, t config.ListenerTLS, log *slog.Logger) (*tlsconf.Reloader, error) {
	minVersion, err := tlsconf.ParseVersion(t.MinVersion)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", name, err) // config validated it
	}
	cert, err := tlsconf.New(tlsconf.Config{
		CertFile:     t.CertFile,
		KeyFile:      t.KeyFile,
		ClientCAFile: t.ClientCAFile,
		ClientAuth:   tlsconf.ClientAuth(t.ClientAuth),
		MinVersion:   minVersion,
		Logger:       log,
	})
	if err != nil {
		return nil, tlsFileError(t, err)
	}
	// tlsconf logs the certificates it reloads; this is the first.
	leaf := cert.Certificate()
	log.Info("tls: certificate loaded", "listener", name, "cert", t.CertFile,
		"subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
	if time.Now().After(leaf.NotAfter) {
		log.Warn("tls: the certificate has expired", "listener", name, "cert", t.CertFile, "not_after", leaf.NotAfter)
	}
	return cert, nil
}

// authBackends loads the authenticator and the authorizer into o, and the
// files among them into files.
func authBackends(a config.Auth, o *broker.Options, files *reloadable, log *slog.Logger) error {
	if a.PasswordFile != "" {
		pw, err := auth.LoadPasswordFile(a.PasswordFile)
		if err != nil {
			return fileError(a.PasswordFile, err)
		}
		log.Info("password file loaded", "file", a.PasswordFile, "users", pw.Len())
		o.Authenticator = pw
		files.passwords, files.passwordFile = pw, a.PasswordFile
	}
	if a.ACLFile != "" {
		acl, err := auth.LoadACLFile(a.ACLFile)
		if err != nil {
			return fileError(a.ACLFile, err)
		}
		log.Info("ACL file loaded", "file", a.ACLFile, "rules", acl.Len())
		o.Authorizer = acl
		files.acl, files.aclFile = acl, a.ACLFile
	}
	h := a.HTTP
	if h.AuthURL == "" && h.ACLURL == "" {
		return nil
	}
	service, err := auth.NewHTTP(auth.HTTPConfig{
		AuthURL:     h.AuthURL,
		ACLURL:      h.ACLURL,
		Timeout:     h.Timeout.Duration,
		CacheTTL:    h.CacheTTL.Duration,
		NegativeTTL: h.NegativeTTL.Duration,
	})
	if err != nil {
		return err // config validated the URLs
	}
	// config refuses a file and a URL for the same role.
	if h.AuthURL != "" {
		o.Authenticator = service
	}
	if h.ACLURL != "" {
		o.Authorizer = service
	}
	return nil
}

// fileError says which file could not be loaded and why, as
// "path: reason" (or "path:line: reason" for a file that does not parse).
func fileError(path string, err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pathError(pe)
	}
	if strings.HasPrefix(err.Error(), path+":") {
		return err
	}
	return fmt.Errorf("%s: %w", path, err)
}

// tlsFileError says which of a listener's TLS files could not be loaded.
// A certificate and its key are loaded as a pair: when they do not make
// one (a file without PEM data, a key of another certificate), both are
// named.
func tlsFileError(t config.ListenerTLS, err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pathError(pe)
	}
	if t.ClientCAFile != "" && strings.Contains(err.Error(), t.ClientCAFile) {
		return fmt.Errorf("%s: %w", t.ClientCAFile, err)
	}
	if inner := errors.Unwrap(err); inner != nil {
		err = inner // without tlsconf's "loading CERT and KEY"
	}
	return fmt.Errorf("%s and %s: %w", t.CertFile, t.KeyFile, err)
}

// pathError is "path: reason", without the operation that failed.
func pathError(pe *fs.PathError) error {
	return fmt.Errorf("%s: %w", pe.Path, pe.Err)
}
