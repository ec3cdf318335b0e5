package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/cluster"
	"github.com/petrelmq/petrel/internal/config"
)

// clusterOptions names the node, and, when the configuration makes the
// broker a node of a cluster, sets opts.Cluster. It reads the routes'
// password and certificate files (once: they are not reloaded on SIGHUP);
// an error names the file or the key that cannot be used, and is a
// configuration error. The cluster only joins when the Server starts.
func clusterOptions(cfg *config.File, opts *broker.Options, log *slog.Logger) error {
	opts.NodeName = nodeName(cfg.Cluster.Node)
	if !cfg.Cluster.Enabled() {
		return nil
	}
	cc, err := clusterConfig(cfg, opts.NodeName, log)
	if err != nil {
		return err
	}
	cl, err := cluster.New(cc)
	if err != nil {
		// config has checked what cluster.New checks; this is a backstop.
		return fmt.Errorf("cluster: %w", err)
	}
	opts.Cluster = cl
	return nil
}

// clusterConfig maps the cluster section onto package cluster's Config for
// the node named node, reading the files it names.
func clusterConfig(cfg *config.File, node string, log *slog.Logger) (cluster.Config, error) {
	c := cfg.Cluster
	cc := cluster.Config{
		Node:        node,
		Name:        c.Name,
		Listen:      c.Listen,
		Advertise:   c.Advertise,
		Peers:       c.Peers,
		NATSURL:     c.NATSURL,
		NodeTimeout: c.NodeTimeout.Duration,
		Username:    c.Username,
		Logger:      log,
		NoReplica:   !c.ReplicateSessions,
	}
	// The replicated retained messages go beside the store (in cluster/),
	// or, with the memory store, in memory.
	if cfg.Store.Engine == "pebble" {
		cc.DataDir = cfg.Store.Dir
	}
	if c.PasswordFile != "" {
		password, err := routePassword(c.PasswordFile)
		if err != nil {
			return cluster.Config{}, err
		}
		cc.Password = password
	}
	if c.TLS.Enabled() {
		conf, err := routeTLS(c.TLS, log)
		if err != nil {
			return cluster.Config{}, err
		}
		cc.TLS = conf
	}
	return cc, nil
}

// nodeName is cluster.node, or when it is empty the host name made a
// valid node name.
func nodeName(node string) string {
	if node != "" {
		return node
	}
	host, _ := os.Hostname() // on failure, "": cluster.NodeName gives "petrel"
	return cluster.NodeName(host)
}

// routePassword reads the routes' password: the file's content without
// surrounding white space.
func routePassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fileError(path, err)
	}
	password := strings.TrimSpace(string(b))
	if password == "" {
		return "", fmt.Errorf("%s: empty (cluster.password_file: the routes' password)", path)
	}
	return password, nil
}

// loadCAPool reads the PEM certificates in path, which the configuration
// names at key.
func loadCAPool(path, key string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fileError(path, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in it (%s)", path, key)
	}
	return pool, nil
}

// routeTLS loads the routes' mutual TLS: this node's certificate, which it
// presents both as a server and as a client, and the CA that verifies the
// other nodes', both ways.
func routeTLS(t config.ClusterTLS, log *slog.Logger) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			return nil, pathError(pe)
		}
		return nil, fmt.Errorf("%s and %s: %w", t.CertFile, t.KeyFile, err)
	}
	if leaf := cert.Leaf; leaf != nil { // Go fills it in unless GODEBUG x509keypairleaf=0
		log.Info("cluster: route certificate loaded", "cert", t.CertFile,
			"subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
		if time.Now().After(leaf.NotAfter) {
			log.Warn("cluster: the route certificate has expired", "cert", t.CertFile, "not_after", leaf.NotAfter)
		}
	}
	pool, err := loadCAPool(t.CAFile, "cluster.tls.ca_file")
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}
