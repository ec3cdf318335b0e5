package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/config"
	"github.com/petrelmq/petrel/store"
	"github.com/petrelmq/petrel/store/memory"
	pebblestore "github.com/petrelmq/petrel/store/pebble"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// serve runs the broker until SIGINT or SIGTERM.
func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("petrel serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "read the configuration from this YAML `file`")
	var listen stringList
	fs.Var(&listen, "listen", "listen on this `address` (host:port); repeatable; replaces the file's listeners")
	logLevel := fs.String("log-level", "", "log `level`: debug, info, warn or error (overrides the file)")
	dataDir := fs.String("data-dir", "", "keep durable state in this `directory` (default ./data; overrides the file)")
	engine := fs.String("store", "", "store `engine`: pebble (on disk, the default) or memory (overrides the file)")
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

	cfg, err := loadConfig(*configPath, overrides{listen: listen, logLevel: *logLevel, dataDir: *dataDir, engine: *engine})
	if err != nil {
		fmt.Fprintln(stderr, "petrel:", err)
		return 2
	}
	log := newLogger(cfg.Log, stderr)
	// Signals are caught before anything starts, so one sent as soon as the
	// broker is listening still shuts it down cleanly.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := openStore(cfg.Store, log)
	if err != nil {
		fmt.Fprintln(stderr, "petrel:", err)
		return 1
	}
	opts := brokerOptions(cfg, log)
	opts.Store = st
	srv := broker.New(opts)
	if err := srv.Start(); err != nil {
		log.Error("cannot start", "err", err)
		st.Close()
		return 1
	}
	<-ctx.Done()
	log.Info("shutting down")
	code := 0
	if err := srv.Close(); err != nil {
		log.Error("shutdown", "err", err)
		code = 1
	}
	if err := st.Close(); err != nil {
		log.Error("closing the store", "err", err)
		code = 1
	}
	return code
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
	listen                    []string
	logLevel, dataDir, engine string
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
			cfg.Listeners = append(cfg.Listeners, config.Listener{Address: addr})
		}
	}
	if ov.logLevel != "" {
		cfg.Log.Level = ov.logLevel
	}
	if ov.dataDir != "" {
		cfg.Store.Dir = ov.dataDir
	}
	if ov.engine != "" {
		cfg.Store.Engine = ov.engine
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

// brokerOptions maps the configuration file's schema onto the broker's options.
func brokerOptions(cfg *config.File, log *slog.Logger) broker.Options {
	maxQoS := byte(cfg.MQTT.MaxQoS)
	o := broker.Options{
		Logger:            log,
		MaxPacketSize:     int(cfg.MQTT.MaxPacketSize),
		ConnectTimeout:    cfg.MQTT.ConnectTimeout.Duration,
		MaxInflight:       cfg.MQTT.MaxInflight,
		MaxQueuedMessages: cfg.MQTT.MaxQueuedMessages,
		MaxQueuedBytes:    int64(cfg.MQTT.MaxQueuedBytes),
		QueueQoS0:         cfg.MQTT.QueueQoS0,
		DisableRetain:     !cfg.MQTT.RetainAvailable,
		MaxClientIDLength: cfg.MQTT.MaxClientIDLength,

		MaxQoS:                         &maxQoS,
		ReceiveMaximum:                 cfg.MQTT.ReceiveMaximum,
		DisableWildcardSubscriptions:   !cfg.MQTT.WildcardSubscriptions,
		DisableSubscriptionIdentifiers: !cfg.MQTT.SubscriptionIdentifiers,
		DisableSharedSubscriptions:     !cfg.MQTT.SharedSubscriptions,
		TopicAliasMaximum:              uint16(cfg.MQTT.TopicAliasMaximum),
		ServerKeepAlive:                cfg.MQTT.ServerKeepAlive.Duration,
		MaxSessionExpiry:               cfg.MQTT.MaxSessionExpiry.Duration,
		ResponseInformation:            cfg.MQTT.ResponseInformation,
	}
	if o.MaxQueuedMessages == 0 {
		o.MaxQueuedMessages = -1 // the file's 0 means unlimited
	}
	if o.MaxQueuedBytes == 0 {
		o.MaxQueuedBytes = -1
	}
	if cfg.Store.Sync == "periodic" {
		o.SyncPeriod = cfg.Store.SyncInterval.Duration
	}
	for _, l := range cfg.Listeners {
		o.Listeners = append(o.Listeners, broker.ListenerConfig{Name: l.Name, Address: l.Address})
	}
	return o
}
