// Package dashboard is Petrel's web dashboard: one page, its script and
// its style sheet, embedded in the binary and served at / by the HTTP
// server (internal/admin, Config.Dashboard). No build step, no CDN.
//
// The files hold no data and are served without the token: a browser's
// navigation sends no Authorization header. The page takes the token from
// its login form or from the URL fragment (/#token=…, which is never sent
// to the server), keeps it for the tab, and polls the admin API under
// /api/v1 with it every second. docs/API.md ("Dashboard") says what it
// shows.
package dashboard

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

//go:embed static
var static embed.FS

// file is one file the dashboard serves.
type file struct {
	name        string // in static/
	contentType string
	body        []byte
	etag        string
}

// files maps each path the dashboard serves to its file. Any other path is
// 404: the page is the only entry point.
var files = sync.OnceValue(func() map[string]*file {
	m := map[string]*file{
		"/":              {name: "index.html", contentType: "text/html; charset=utf-8"},
		"/dashboard.js":  {name: "dashboard.js", contentType: "text/javascript; charset=utf-8"},
		"/dashboard.css": {name: "dashboard.css", contentType: "text/css; charset=utf-8"},
	}
	for _, f := range m {
		b, err := static.ReadFile("static/" + f.name)
		if err != nil {
			panic("dashboard: " + err.Error()) // embedded: cannot happen
		}
		sum := sha256.Sum256(b)
		f.body, f.etag = b, `"`+base64.RawURLEncoding.EncodeToString(sum[:12])+`"`
	}
	return m
})

// contentSecurityPolicy allows the page its own script, style sheet and
// API, and nothing else: no inline script (a client id that slipped into
// the page as HTML could not run), no other origin, no framing, no form
// sent anywhere (the login form is handled by the script; without it, the
// token stays in the page).
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the dashboard's files: GET and HEAD of /, /dashboard.js
// and /dashboard.css. Browsers revalidate them on each load (no-cache,
// with an ETag of their content), so a new binary's page is never mixed
// with an old script.
func Handler() http.Handler { return http.HandlerFunc(serve) }

func serve(w http.ResponseWriter, r *http.Request) {
	f, ok := files()[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	// Served by hand rather than with http.ServeContent: no Range, no
	// If-Modified-Since, only what a browser needs to revalidate, since
	// anyone may send these requests, without the token.
	if noneMatch(r.Header.Get("If-None-Match"), f.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(f.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(f.body) // a browser gone meanwhile is nobody's problem
	}
}

// noneMatch reports whether an If-None-Match header names etag (or is
// "*"): the browser has the file. The comparison is weak, as RFC 9110
// §13.1.2 asks: W/"x" matches "x".
func noneMatch(header, etag string) bool {
	for tag := range strings.SplitSeq(header, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == etag || tag == "*" {
			return true
		}
	}
	return false
}
