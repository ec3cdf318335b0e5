package config

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

var (
	logLevels    = []string{"debug", "info", "warn", "error"}
	logFormats   = []string{"text", "json"}
	storeEngines = []string{"pebble", "memory"}
	syncModes    = []string{"always", "periodic"}
)

func (v *validator) store(s Store) {
	v.oneOf("store.engine", s.Engine, storeEngines)
	v.oneOf("store.sync", s.Sync, syncModes)
	if s.Engine == "pebble" && strings.TrimSpace(s.Dir) == "" {
		v.failf("store.dir", "required with the pebble engine")
	}
	if s.SyncInterval.Duration < time.Millisecond || s.SyncInterval.Duration > time.Minute {
		v.failf("store.sync_interval", "%s is out of range 1ms..1m", s.SyncInterval)
	}
}

// Validate fills in the values derived from others (a listener's default
// name) and checks f as a whole: every value in its range, every choice one
// of its options, no two listeners alike. It returns every problem, joined,
// each an *Error naming its key. When f came from Parse and the file set the
// bad value, the error also names the file and the line; a value changed
// since, as command-line flags change them, is not blamed on the file.
//
// Parse has already validated the File it returns; call Validate again after
// changing one.
func (f *File) Validate() error {
	return joinErrors(f.name, f.validate())
}

func (f *File) validate() []*Error {
	f.fillDerived()
	v := validator{f: f}
	v.log(f.Log)
	v.listeners(f.Listeners)
	v.mqtt(f.MQTT)
	v.store(f.Store)
	return v.errs
}

// fillDerived sets the values whose defaults depend on other values.
func (f *File) fillDerived() {
	for i := range f.Listeners {
		if l := &f.Listeners[i]; l.Name == "" {
			l.Name = defaultListenerName(l.Address)
		}
	}
}

type validator struct {
	f    *File
	errs []*Error
}

// failf records a problem with key. It names the file and the line when the
// file set key, or, for a key the file left out of a list entry (a
// listener's address), the entry, and only while the value there is still
// the one the file gave.
func (v *validator) failf(key, format string, args ...any) {
	e := &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
	if p, ok := v.f.place(key); ok {
		e.File, e.Line, e.Column = v.f.name, p.line, p.column
	}
	v.errs = append(v.errs, e)
}

// place returns where the file set key, or the list entry around it.
func (f *File) place(key string) (position, bool) {
	at := key
	p, ok := f.pos[at]
	for !ok && at != "" {
		if at = parentKey(at); strings.HasSuffix(at, "]") {
			p, ok = f.pos[at]
		}
	}
	if !ok || f.parsed == nil {
		return position{}, false
	}
	now, ok1 := valueAt(reflect.ValueOf(f).Elem(), at)
	then, ok2 := valueAt(reflect.ValueOf(f.parsed).Elem(), at)
	if !ok1 || !ok2 || !reflect.DeepEqual(now.Interface(), then.Interface()) {
		return position{}, false
	}
	return p, true
}

func (v *validator) oneOf(key, value string, options []string) {
	if !slices.Contains(options, value) {
		v.failf(key, "%q is not one of %s", value, strings.Join(options, ", "))
	}
}

func (v *validator) intRange(key string, value, lo, hi int) {
	if value < lo || value > hi {
		v.failf(key, "%d is out of range %d..%d", value, lo, hi)
	}
}

func (v *validator) log(l Log) {
	v.oneOf("log.level", l.Level, logLevels)
	v.oneOf("log.format", l.Format, logFormats)
}

func (v *validator) listeners(ls []Listener) {
	if len(ls) == 0 {
		v.failf("listeners", "at least one listener is required")
		return
	}
	addresses := make(map[string]int, len(ls))
	names := make(map[string]int, len(ls))
	for i := range ls {
		l := &ls[i]
		key := indexKey("listeners", i)
		derived := l.Name == defaultListenerName(l.Address)
		if !v.address(key+".address", l.Address) {
			continue
		}
		// Two listeners on port 0 get different ports; any other repeat
		// would fail to bind.
		if addr, port := normalizeAddress(l.Address); port != 0 {
			if first, dup := addresses[addr]; dup {
				v.failf(key+".address", "%q is already the address of listeners[%d]", l.Address, first)
				if derived {
					continue // and so is its default name: one report is enough
				}
			} else {
				addresses[addr] = i
			}
		}
		first, dup := names[l.Name]
		switch {
		case dup && derived:
			v.failf(key+".name", "%q (the default name) is already the name of listeners[%d]; give one of them a name", l.Name, first)
		case dup:
			v.failf(key+".name", "%q is already the name of listeners[%d]", l.Name, first)
		default:
			names[l.Name] = i
		}
	}
}

// address checks a listen address, reporting whether it is usable.
func (v *validator) address(key, addr string) bool {
	if addr == "" {
		v.failf(key, "required (host:port, such as %q or \":1883\")", DefaultListenAddress)
		return false
	}
	_, portText, err := net.SplitHostPort(addr)
	if err != nil {
		reason := err.Error()
		if ae, ok := errors.AsType[*net.AddrError](err); ok {
			reason = ae.Err
		}
		v.failf(key, "%q is not host:port (%s)", addr, reason)
		return false
	}
	port, err := strconv.Atoi(portText)
	switch {
	case portText == "":
		v.failf(key, "%q has no port number", addr)
	case err != nil:
		v.failf(key, "%q: port %q is not a number", addr, portText)
	case port < 0 || port > 65535:
		v.failf(key, "%q: port %d is out of range 0..65535", addr, port)
	default:
		return true
	}
	return false
}

// normalizeAddress returns addr in one spelling per address ("[::1]:1883"
// and "[::1]:01883" alike) and its port. addr has passed address.
func normalizeAddress(addr string) (string, int) {
	host, portText, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portText)
	return net.JoinHostPort(host, strconv.Itoa(port)), port
}

func (v *validator) mqtt(m MQTT) {
	if m.MaxPacketSize < MinPacketSize || m.MaxPacketSize > MaxPacketSize {
		v.failf("mqtt.max_packet_size", "%s is out of range %s..%s", m.MaxPacketSize, MinPacketSize, MaxPacketSize)
	}
	if m.ConnectTimeout.Duration <= 0 {
		v.failf("mqtt.connect_timeout", "%s must be greater than 0", m.ConnectTimeout)
	}
	v.intRange("mqtt.max_inflight", m.MaxInflight, 1, 65535)
	if m.MaxQueuedMessages < 0 {
		v.failf("mqtt.max_queued_messages", "%d is negative (0 means unlimited)", m.MaxQueuedMessages)
	}
	if m.MaxQueuedBytes < 0 {
		v.failf("mqtt.max_queued_bytes", "%s is negative (0 means unlimited)", m.MaxQueuedBytes)
	}
	v.intRange("mqtt.max_client_id_length", m.MaxClientIDLength, MinClientIDLength, 65535)
	v.intRange("mqtt.max_qos", m.MaxQoS, 0, 2)
	v.intRange("mqtt.receive_maximum", m.ReceiveMaximum, 1, 65535)
	v.intRange("mqtt.topic_alias_maximum", m.TopicAliasMaximum, 0, 65535)
	if m.ServerKeepAlive.Duration < 0 || m.ServerKeepAlive.Duration > 65535*time.Second {
		v.failf("mqtt.server_keep_alive", "%s is out of range 0s..18h12m15s (0 keeps the client's)", m.ServerKeepAlive)
	} else if m.ServerKeepAlive.Duration%time.Second != 0 {
		v.failf("mqtt.server_keep_alive", "%s is not a whole number of seconds", m.ServerKeepAlive)
	}
	if m.MaxSessionExpiry.Duration < 0 {
		v.failf("mqtt.max_session_expiry", "%s is negative (0 means no cap)", m.MaxSessionExpiry)
	}
}
