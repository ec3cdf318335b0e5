package main

import (
	"log/slog"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/internal/admin"
	"github.com/petrelmq/petrel/tlsconf"
)

// reloadable are the files the configuration names, loaded at start and
// loaded again on SIGHUP. The configuration file itself is not read again.
type reloadable struct {
	certs        []listenerCert
	passwords    *auth.PasswordFile
	passwordFile string
	acl          *auth.ACLFile
	aclFile      string
	// http is the HTTP server, whose token file is read again.
	http *admin.Server
}

// listenerCert is the certificate of one tls or wss listener.
type listenerCert struct {
	listener string
	tls      *tlsconf.Reloader
}

// authorizationWatcher is told when the authorizer's rules have changed
// (*broker.Server), so that it stops trusting what it decided by the old
// ones.
type authorizationWatcher interface{ AuthorizationChanged() }

// reload loads every file again, each on its own. Each is replaced in one
// step once it has been read and parsed completely; one that fails is
// logged and keeps what it had, and the others go ahead. Connections stay
// up: new logins see the new passwords, every later access decision the new
// rules, every later handshake the new certificate.
func (r *reloadable) reload(srv authorizationWatcher, log *slog.Logger) {
	if len(r.certs) == 0 && r.passwords == nil && r.acl == nil && r.http == nil {
		log.Info("SIGHUP: no certificate, password, ACL or token file to reload")
		return
	}
	log.Info("SIGHUP: reloading files")
	for _, c := range r.certs {
		// tlsconf logs the certificate it loaded.
		if err := c.tls.Reload(); err != nil {
			log.Error("reload failed; the listener keeps its previous certificate", "listener", c.listener, "err", err)
		}
	}
	if r.passwords != nil {
		if err := r.passwords.Reload(); err != nil {
			log.Error("reload failed; the previous password file stays in force", "file", r.passwordFile, "err", err)
		} else {
			log.Info("password file reloaded", "file", r.passwordFile, "users", r.passwords.Len())
		}
	}
	if r.acl != nil {
		if err := r.acl.Reload(); err != nil {
			log.Error("reload failed; the previous ACL file stays in force", "file", r.aclFile, "err", err)
		} else {
			log.Info("ACL file reloaded", "file", r.aclFile, "rules", r.acl.Len())
			srv.AuthorizationChanged()
		}
	}
	if r.http != nil {
		if err := r.http.Reload(); err != nil {
			log.Error("reload failed; the previous admin API token stays in force", "err", err)
		} else {
			log.Info("admin API token reloaded")
		}
	}
}
