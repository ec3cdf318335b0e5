package admin

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// access says who may call a route.
type access uint8

const (
	public  access = iota // anyone: the health checks
	token                 // the token's holder
	metrics               // the token's holder, or anyone with OpenMetrics
)

// route is one method on one path. A pattern's segments are literal, or
// {name} for one segment (percent-decoded: a client id "a/b" is written
// a%2Fb), or a last {name...} for the rest of the path (a topic, whose
// slashes are its levels).
type route struct {
	method, pattern string
	access          access
	handle          func(*Server, http.ResponseWriter, *http.Request)
}

// routes are every route the server serves besides the dashboard; docs/API.md
// and docs/openapi.yaml describe each (a test checks).
var routes = []route{
	{"GET", "/healthz", public, (*Server).healthz},
	{"HEAD", "/healthz", public, (*Server).healthz},
	{"GET", "/readyz", public, (*Server).readyz},
	{"HEAD", "/readyz", public, (*Server).readyz},
	{"GET", "/metrics", metrics, (*Server).metrics},
	{"GET", "/api/v1/stats", token, (*Server).stats},
	{"GET", "/api/v1/listeners", token, (*Server).listListeners},
	{"GET", "/api/v1/bridges", token, (*Server).listBridges},
	{"GET", "/api/v1/clients", token, (*Server).listClients},
	{"GET", "/api/v1/clients/{id}", token, (*Server).getClient},
	{"DELETE", "/api/v1/clients/{id}", token, (*Server).kickClient},
	{"GET", "/api/v1/clients/{id}/subscriptions", token, (*Server).clientSubscriptions},
	{"GET", "/api/v1/subscriptions", token, (*Server).listSubscriptions},
	{"GET", "/api/v1/retained", token, (*Server).listRetained},
	{"GET", "/api/v1/retained/{topic...}", token, (*Server).getRetained},
	{"PUT", "/api/v1/retained/{topic...}", token, (*Server).putRetained},
	{"DELETE", "/api/v1/retained/{topic...}", token, (*Server).deleteRetained},
	{"POST", "/api/v1/publish", token, (*Server).publish},
}

// ServeHTTP routes a request. Paths are matched as sent, segment by
// segment, and never cleaned or redirected: "/api/v1/retained//a" names
// the topic "/a", not "a".
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, allowed, found := match(r)
	switch {
	case rt != nil:
	case found:
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed here; allowed: "+strings.Join(allowed, ", "))
		return
	case s.cfg.Dashboard != nil && !isAPI(r.URL.Path):
		s.cfg.Dashboard.ServeHTTP(w, r)
		return
	default:
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	if rt.access == token || (rt.access == metrics && !s.cfg.OpenMetrics) {
		if !s.authorized(r) {
			s.refuse(w, r)
			return
		}
	}
	if rt.access != public {
		w.Header().Set("Cache-Control", "no-store")
	}
	rt.handle(s, w, r)
}

func isAPI(path string) bool { return path == "/api" || strings.HasPrefix(path, "/api/") }

// match finds the route for r and sets its path values. Without one,
// allowed lists the methods of the routes whose pattern the path matches,
// and found says whether there were any.
func match(r *http.Request) (rt *route, allowed []string, found bool) {
	segs := strings.Split(r.URL.EscapedPath(), "/")
	for i := range routes {
		values, ok := matchPattern(routes[i].pattern, segs)
		if !ok {
			continue
		}
		if routes[i].method != r.Method {
			if !slices.Contains(allowed, routes[i].method) {
				allowed = append(allowed, routes[i].method)
			}
			continue
		}
		for name, v := range values {
			r.SetPathValue(name, v)
		}
		return &routes[i], nil, true
	}
	return nil, allowed, len(allowed) > 0
}

// matchPattern matches the escaped segments of a path against a pattern,
// and returns the values of its wildcards, decoded. A wildcard matches no
// empty value.
func matchPattern(pattern string, segs []string) (map[string]string, bool) {
	pat := strings.Split(pattern, "/")
	var values map[string]string
	for i, p := range pat {
		if i >= len(segs) {
			return nil, false
		}
		name, wild := strings.CutPrefix(p, "{")
		if !wild {
			if segs[i] != p {
				return nil, false
			}
			continue
		}
		name = strings.TrimSuffix(name, "}")
		raw := segs[i]
		rest, all := strings.CutSuffix(name, "...")
		if all {
			name, raw = rest, strings.Join(segs[i:], "/")
		}
		v, err := url.PathUnescape(raw)
		if err != nil || v == "" {
			return nil, false
		}
		if values == nil {
			values = make(map[string]string, 1)
		}
		values[name] = v
		if all {
			return values, true
		}
	}
	return values, len(segs) == len(pat)
}
