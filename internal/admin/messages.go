package admin

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/packet"
)

// A message in JSON, in and out: the payload as text ("payload") or as
// base64 ("payload_base64"), and MQTT 5 properties.

// propertiesJSON are a message's MQTT 5 properties. Correlation data is
// binary: text or base64, as the payload.
type propertiesJSON struct {
	PayloadFormat         *byte      `json:"payload_format,omitempty"`
	MessageExpiry         *uint32    `json:"message_expiry,omitempty"`
	ContentType           string     `json:"content_type,omitempty"`
	ResponseTopic         string     `json:"response_topic,omitempty"`
	CorrelationData       *string    `json:"correlation_data,omitempty"`
	CorrelationDataBase64 *string    `json:"correlation_data_base64,omitempty"`
	UserProperties        []userJSON `json:"user_properties,omitempty"`
}

type userJSON struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// messageIn is the body of PUT /api/v1/retained/{topic} and, with topic
// and retain, of POST /api/v1/publish.
type messageIn struct {
	Topic         string          `json:"topic"`
	Payload       *string         `json:"payload"`
	PayloadBase64 *string         `json:"payload_base64"`
	QoS           byte            `json:"qos"`
	Retain        bool            `json:"retain"`
	Properties    *propertiesJSON `json:"properties"`
}

// options returns the payload and the broker's options for m.
func (m *messageIn) options() ([]byte, broker.PublishOptions, error) {
	payload, err := textOrBase64("payload", m.Payload, m.PayloadBase64)
	if err != nil {
		return nil, broker.PublishOptions{}, err
	}
	o := broker.PublishOptions{QoS: m.QoS, Retain: m.Retain}
	if m.QoS > 2 {
		return nil, o, fmt.Errorf("qos %d is not 0, 1 or 2", m.QoS)
	}
	if m.Properties != nil {
		if o.Properties, err = m.Properties.packet(); err != nil {
			return nil, o, err
		}
	}
	return payload, o, nil
}

// textOrBase64 decodes a value given as text or as base64, not both.
func textOrBase64(name string, text, b64 *string) ([]byte, error) {
	switch {
	case text != nil && b64 != nil:
		return nil, fmt.Errorf("%s and %s_base64 are both set; give one", name, name)
	case b64 != nil:
		b, err := base64.StdEncoding.DecodeString(*b64)
		if err != nil {
			return nil, fmt.Errorf("%s_base64: %w", name, err)
		}
		return b, nil
	case text != nil:
		return []byte(*text), nil
	}
	return nil, nil
}

func (p *propertiesJSON) packet() (*packet.Properties, error) {
	var out packet.Properties
	if p.PayloadFormat != nil {
		if *p.PayloadFormat > 1 {
			return nil, fmt.Errorf("properties.payload_format %d is not 0 (bytes) or 1 (UTF-8)", *p.PayloadFormat)
		}
		out.PayloadFormat = *p.PayloadFormat
		out.Mark(packet.PropPayloadFormat)
	}
	if p.MessageExpiry != nil {
		out.MessageExpiry = *p.MessageExpiry
		out.Mark(packet.PropMessageExpiry)
	}
	if p.ContentType != "" {
		out.ContentType = p.ContentType
		out.Mark(packet.PropContentType)
	}
	if p.ResponseTopic != "" {
		out.ResponseTopic = p.ResponseTopic
		out.Mark(packet.PropResponseTopic)
	}
	corr, err := textOrBase64("properties.correlation_data", p.CorrelationData, p.CorrelationDataBase64)
	if err != nil {
		return nil, err
	}
	if corr != nil {
		out.CorrelationData = corr
		out.Mark(packet.PropCorrelationData)
	}
	for _, u := range p.UserProperties {
		out.User = append(out.User, packet.UserProperty{Key: u.Key, Value: u.Value})
	}
	return &out, nil
}

// messageOut is a retained message as the API shows it: its payload in
// base64, and as text too when it is UTF-8.
type messageOut struct {
	Topic         string          `json:"topic"`
	Payload       *string         `json:"payload,omitempty"`
	PayloadBase64 string          `json:"payload_base64"`
	QoS           byte            `json:"qos"`
	Properties    *propertiesJSON `json:"properties,omitempty"`
	ExpiresAt     *time.Time      `json:"expires_at,omitempty"`
}

func messageOf(m *broker.RetainedMessage) messageOut {
	out := messageOut{Topic: m.Topic, Payload: textOf(m.Payload), PayloadBase64: base64.StdEncoding.EncodeToString(m.Payload),
		QoS: m.QoS, ExpiresAt: timeOrNil(m.Expiry)}
	if !m.Expiry.IsZero() {
		left := uint32(max(time.Until(m.Expiry)+time.Second-1, 0) / time.Second)
		out.Properties = &propertiesJSON{MessageExpiry: &left}
	}
	p := m.Properties
	if p == nil {
		return out
	}
	if out.Properties == nil {
		out.Properties = &propertiesJSON{}
	}
	op := out.Properties
	if p.Has(packet.PropPayloadFormat) {
		op.PayloadFormat = &p.PayloadFormat
	}
	op.ContentType, op.ResponseTopic = p.ContentType, p.ResponseTopic
	if p.Has(packet.PropCorrelationData) {
		b64 := base64.StdEncoding.EncodeToString(p.CorrelationData)
		op.CorrelationData, op.CorrelationDataBase64 = textOf(p.CorrelationData), &b64
	}
	for _, u := range p.User {
		op.UserProperties = append(op.UserProperties, userJSON(u))
	}
	return out
}

// textOf returns b as text when it is UTF-8, nil otherwise.
func textOf(b []byte) *string {
	if !utf8.Valid(b) {
		return nil
	}
	s := string(b)
	return &s
}

// listRetained: GET /api/v1/retained, a page, filtered.
func (s *Server) listRetained(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "cursor", "limit", "filter")
	limit := q.limit()
	if !q.ok(w) {
		return
	}
	page, err := s.cfg.Broker.RetainedMessages(broker.RetainedQuery{Cursor: q.get("cursor"), Limit: limit, Filter: q.get("filter")})
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	out := struct {
		Retained []messageOut `json:"retained"`
		Next     string       `json:"next_cursor,omitempty"`
	}{Retained: make([]messageOut, len(page.Messages)), Next: page.Next}
	for i := range page.Messages {
		out.Retained[i] = messageOf(&page.Messages[i])
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getRetained(w http.ResponseWriter, r *http.Request) {
	if !parseQuery(r).ok(w) {
		return
	}
	m, ok := s.cfg.Broker.Retained(r.PathValue("topic"))
	if !ok {
		writeError(w, http.StatusNotFound, "no retained message on this topic")
		return
	}
	writeJSON(w, http.StatusOK, messageOf(&m))
}

// putRetained: PUT /api/v1/retained/{topic}, without delivering it.
func (s *Server) putRetained(w http.ResponseWriter, r *http.Request) {
	var in messageIn
	if !parseQuery(r).ok(w) || !s.readBody(w, r, &in) {
		return
	}
	if in.Topic != "" || in.Retain {
		writeError(w, http.StatusBadRequest, "topic and retain are not for this call: the topic is in the path")
		return
	}
	name := r.PathValue("topic")
	payload, o, err := in.options()
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	_, existed := s.cfg.Broker.Retained(name)
	if err := s.cfg.Broker.SetRetained(name, payload, o); err != nil {
		writeBrokerError(w, err)
		return
	}
	s.log.Info("http: retained message set", "topic", name, "qos", o.QoS, "bytes", len(payload), "remote", r.RemoteAddr)
	status := http.StatusCreated
	if existed {
		status = http.StatusOK
	}
	m, ok := s.cfg.Broker.Retained(name)
	if !ok { // replaced or deleted meanwhile, or expired already
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, status, messageOf(&m))
}

func (s *Server) deleteRetained(w http.ResponseWriter, r *http.Request) {
	if !parseQuery(r).ok(w) {
		return
	}
	name := r.PathValue("topic")
	deleted, err := s.cfg.Broker.DeleteRetained(name)
	switch {
	case err != nil:
		writeBrokerError(w, err)
	case !deleted:
		writeError(w, http.StatusNotFound, "no retained message on this topic")
	default:
		s.log.Info("http: retained message deleted", "topic", name, "remote", r.RemoteAddr)
		w.WriteHeader(http.StatusNoContent)
	}
}

// publishResult is the answer to POST /api/v1/publish.
type publishResult struct {
	// Matched counts the subscriptions that took the message (a shared
	// subscription group once).
	Matched int    `json:"matched"`
	Result  string `json:"result"`
}

// publish: POST /api/v1/publish, answered 202 once the message is routed
// (and, at QoS 1 and 2, in the store for every persistent session it goes
// to): delivery goes on after the answer.
func (s *Server) publish(w http.ResponseWriter, r *http.Request) {
	var in messageIn
	if !parseQuery(r).ok(w) || !s.readBody(w, r, &in) {
		return
	}
	if in.Topic == "" {
		writeError(w, http.StatusBadRequest, "topic is required")
		return
	}
	payload, o, err := in.options()
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	n, err := s.cfg.Broker.PublishMatched(in.Topic, payload, o)
	if err != nil {
		if !errors.Is(err, broker.ErrInvalidMessage) {
			s.log.Error("http: publish failed", "topic", in.Topic, "err", err)
		}
		writeBrokerError(w, err)
		return
	}
	s.log.Info("http: published", "topic", in.Topic, "qos", o.QoS, "retain", o.Retain, "bytes", len(payload),
		"matched", n, "remote", r.RemoteAddr)
	res := publishResult{Matched: n, Result: fmt.Sprintf("routed to %d subscriptions", n)}
	if n == 0 {
		res.Result = "no subscribers"
	}
	writeJSON(w, http.StatusAccepted, res)
}
