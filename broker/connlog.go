package broker

import (
	"context"
	"log/slog"
	"time"

	"github.com/petrelmq/petrel/packet"
)

// The two info lines of a connection's life: "client connected" once its
// CONNECT is accepted, and "client disconnected" once the connection that
// was accepted is gone, with why in one word of a fixed set (closeReason),
// so that an operator can count and grep them. Neither carries anything a
// client published.

// closeReason is why a connection ended, as its log line says it. The words
// are part of the log's interface: add new ones, never rename one.
type closeReason uint8

const (
	closeUnknown closeReason = iota
	// closeClientDisconnect: the client sent DISCONNECT (its code says
	// which; 0x04 asks for the will).
	closeClientDisconnect
	// closeConnectionLost: the network connection ended without a
	// DISCONNECT from either side.
	closeConnectionLost
	closeKeepAliveTimeout
	// closeTakenOver: another connection took the session over.
	closeTakenOver
	// closeProtocolError: the client broke the protocol (a malformed
	// packet, a forbidden flag, a limit).
	closeProtocolError
	closeServerShutdown
	// closeStalled: the client's in-flight window stayed full with no
	// acknowledgement for the stall timeout (stall.go).
	closeStalled
	// closeAuthFailed: re-authentication failed or changed the user.
	closeAuthFailed
	// closeStoreError: the broker could not store what the client sent.
	closeStoreError
	// closeInternalError: a hook panicked.
	closeInternalError
	// closeKicked: an administrator ended the connection (0x98).
	closeKicked
	// closeServerDisconnect: the broker closed it for another reason, in
	// its code.
	closeServerDisconnect
)

var closeReasonWords = [...]string{
	closeUnknown:          "unknown",
	closeClientDisconnect: "client_disconnect",
	closeConnectionLost:   "connection_lost",
	closeKeepAliveTimeout: "keep_alive_timeout",
	closeTakenOver:        "taken_over",
	closeProtocolError:    "protocol_error",
	closeServerShutdown:   "server_shutdown",
	closeStalled:          "stalled",
	closeAuthFailed:       "auth_failed",
	closeStoreError:       "store_error",
	closeInternalError:    "internal_error",
	closeKicked:           "kicked",
	closeServerDisconnect: "server_disconnect",
}

func (r closeReason) String() string {
	if int(r) < len(closeReasonWords) {
		return closeReasonWords[r]
	}
	return "unknown"
}

// closeReasonOf is the reason the broker closes with code, for the
// callers of disconnect that do not say.
func closeReasonOf(code packet.ReasonCode) closeReason {
	switch code {
	case packet.KeepAliveTimeout:
		return closeKeepAliveTimeout
	case packet.SessionTakenOver:
		return closeTakenOver
	case packet.ServerShuttingDown:
		return closeServerShutdown
	case packet.AdministrativeAction:
		return closeKicked
	}
	return closeServerDisconnect
}

// A connection's end is kept in the high bits of conn.flags rather than in
// a field: a conn is most of an idle connection's cost. The reason sits in
// bits 16-23 and the reason code in bits 24-31; flags use the low bits.
const (
	endReasonShift = 16
	endCodeShift   = 24
	endReasonMask  = 0xff << endReasonShift
)

// noteEnd records why the connection ends. The first reason given wins:
// a takeover's DISCONNECT is followed by the network closing, and the log
// says "taken_over", not "connection_lost". Safe from any goroutine.
func (c *conn) noteEnd(why closeReason, code packet.ReasonCode) {
	for {
		f := c.flags.Load()
		if f&endReasonMask != 0 {
			return
		}
		if c.flags.CompareAndSwap(f, f|uint32(why)<<endReasonShift|uint32(code)<<endCodeShift) {
			// Counted once, for clients that got their session: a refused
			// CONNECT is counted by its CONNACK.
			if c.sess.Load() != nil {
				c.ln.srv.stats.ends[why].Add(1)
			}
			return
		}
	}
}

// end returns what noteEnd recorded.
func (c *conn) end() (closeReason, packet.ReasonCode) {
	f := c.flags.Load()
	return closeReason(f >> endReasonShift), packet.ReasonCode(f >> endCodeShift)
}

// logConnected writes the line of an accepted CONNECT. c.mu is held.
func (c *conn) logConnected(cp *connectParams, keepAlive time.Duration) {
	log := c.ln.srv.log
	if !log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	attrs := make([]slog.Attr, 0, 7)
	attrs = append(attrs,
		slog.String("client", cp.clientID),
		slog.String("remote", c.nc.RemoteAddr().String()),
		slog.String("listener", c.ln.name))
	if cp.hasUsername {
		attrs = append(attrs, slog.String("user", cp.username))
	}
	attrs = append(attrs,
		slog.String("protocol", protocolName(c.version)),
		slog.Duration("keep_alive", keepAlive),
		slog.Bool("clean_start", cp.cleanStart))
	log.LogAttrs(context.Background(), slog.LevelInfo, "client connected", attrs...)
}

// logDisconnected writes the line of a connection that had been accepted,
// once it is gone. err is the network's error, if any. c.mu is held.
func (c *conn) logDisconnected(err error) {
	log := c.ln.srv.log
	if !log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	why, code := c.end()
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs,
		slog.String("client", c.clientID()),
		slog.String("remote", c.nc.RemoteAddr().String()),
		slog.String("reason", why.String()))
	if why != closeConnectionLost {
		attrs = append(attrs, slog.Int("code", int(code)))
	} else if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	attrs = append(attrs, slog.Duration("duration", time.Since(time.Unix(0, c.connectedAt)).Round(time.Microsecond)))
	log.LogAttrs(context.Background(), slog.LevelInfo, "client disconnected", attrs...)
}

// protocolName is how the specifications name a protocol level.
func protocolName(v byte) string {
	switch v {
	case packet.V31:
		return "3.1"
	case packet.V311:
		return "3.1.1"
	case packet.V5:
		return "5.0"
	}
	return "unknown"
}
