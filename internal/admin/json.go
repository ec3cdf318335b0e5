package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/petrelmq/petrel/broker"
)

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // a client gone meanwhile is nobody's problem
}

// apiError is the body of every error: {"error": "..."}.
type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, apiError{msg})
}

// writeBrokerError answers an error of a broker method with the status
// that fits it.
func writeBrokerError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, broker.ErrInvalidMessage), errors.Is(err, broker.ErrBadCursor):
		status = http.StatusBadRequest
	case errors.Is(err, broker.ErrRejected):
		status = http.StatusForbidden
	case errors.Is(err, broker.ErrNoSession):
		status = http.StatusNotFound
	case errors.Is(err, broker.ErrNotConnected):
		status = http.StatusConflict
	case errors.Is(err, broker.ErrNotRunning):
		status = http.StatusServiceUnavailable
	}
	writeError(w, status, strings.TrimPrefix(err.Error(), "broker: "))
}

// query is a request's query parameters, checked: a parameter the route
// does not take, or one given twice, is an error rather than ignored.
type query struct {
	v   url.Values
	err error
}

// parseQuery reads r's query, allowing the parameters named.
func parseQuery(r *http.Request, allowed ...string) *query {
	v, err := url.ParseQuery(r.URL.RawQuery)
	q := &query{v: v, err: err}
	for name, vals := range v {
		switch {
		case q.err != nil:
		case !slices.Contains(allowed, name):
			q.err = fmt.Errorf("unknown parameter %q (this call takes: %v)", name, allowed)
		case len(vals) > 1:
			q.err = fmt.Errorf("parameter %q given %d times", name, len(vals))
		}
	}
	return q
}

func (q *query) get(name string) string { return q.v.Get(name) }

func (q *query) has(name string) bool { return q.v.Has(name) }

// limit reads the page size: 1 to broker.MaxPageLimit, the broker's
// default when absent.
func (q *query) limit() int {
	s := q.get("limit")
	if s == "" || q.err != nil {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > broker.MaxPageLimit {
		q.err = fmt.Errorf("limit %q is not a number from 1 to %d", s, broker.MaxPageLimit)
	}
	return n
}

// boolean reads a true or false parameter; nil when absent.
func (q *query) boolean(name string) *bool {
	if !q.has(name) || q.err != nil {
		return nil
	}
	b := q.get(name) == "true"
	if !b && q.get(name) != "false" {
		q.err = fmt.Errorf("%s %q is neither true nor false", name, q.get(name))
	}
	return &b
}

// ok answers 400 and reports false when the query had a problem.
func (q *query) ok(w http.ResponseWriter) bool {
	if q.err != nil {
		writeError(w, http.StatusBadRequest, q.err.Error())
		return false
	}
	return true
}

// readBody decodes a JSON body into v, strictly: an unknown field is an
// error (a misspelt "retian" must not publish without retain), and so is
// anything after the value.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(new(json.RawMessage)) != io.EOF {
		err = errors.New("more than one JSON value")
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", tooBig.Limit))
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "the body is empty; send a JSON object")
	case err != nil:
		writeError(w, http.StatusBadRequest, "the body is not what this call takes: "+err.Error())
	default:
		return true
	}
	return false
}
