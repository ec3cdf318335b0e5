package dashboard

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/admin"
)

// get sends a request to the handler and returns the response, its body
// read.
func get(t *testing.T, method, path string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, req)
	resp := rec.Result()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// Each file is served whole, with its type, told to revalidate (no-cache
// and an ETag) and guarded: nosniff, no referrer, a policy that allows the
// page its own files and API only.
func TestFilesServed(t *testing.T) {
	for path, want := range map[string]struct{ file, contentType string }{
		"/":              {"index.html", "text/html; charset=utf-8"},
		"/dashboard.js":  {"dashboard.js", "text/javascript; charset=utf-8"},
		"/dashboard.css": {"dashboard.css", "text/css; charset=utf-8"},
	} {
		resp, body := get(t, "GET", path, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
			continue
		}
		disk, err := os.ReadFile(filepath.Join("static", want.file))
		if err != nil {
			t.Fatal(err)
		}
		if body != string(disk) {
			t.Errorf("GET %s: the body is not static/%s", path, want.file)
		}
		h := resp.Header
		for name, value := range map[string]string{
			"Content-Type":           want.contentType,
			"Cache-Control":          "no-cache",
			"X-Content-Type-Options": "nosniff",
			"Referrer-Policy":        "no-referrer",
			"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
				"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
		} {
			if got := h.Get(name); got != value {
				t.Errorf("GET %s: %s %q, want %q", path, name, got, value)
			}
		}
		if !regexp.MustCompile(`^"[A-Za-z0-9_-]{16}"$`).MatchString(h.Get("ETag")) {
			t.Errorf("GET %s: ETag %q, want a quoted hash", path, h.Get("ETag"))
		}
		if h.Get("Last-Modified") != "" {
			t.Errorf("GET %s: Last-Modified %q: embedded files have no time", path, h.Get("Last-Modified"))
		}
	}
}

// A browser that has the file gets 304 without a body; HEAD answers the
// headers only; a Range is ignored.
func TestRevalidationAndHEAD(t *testing.T) {
	first, _ := get(t, "GET", "/dashboard.js", nil)
	etag := first.Header.Get("ETag")
	resp, body := get(t, "GET", "/dashboard.js", map[string]string{"If-None-Match": etag})
	if resp.StatusCode != http.StatusNotModified || body != "" {
		t.Errorf("GET with If-None-Match %s: %d with %d bytes, want 304 and none", etag, resp.StatusCode, len(body))
	}
	for _, header := range []string{`"other", ` + etag, "W/" + etag, "*"} {
		if resp, _ := get(t, "GET", "/dashboard.js", map[string]string{"If-None-Match": header}); resp.StatusCode != http.StatusNotModified {
			t.Errorf("GET with If-None-Match %s: %d, want 304", header, resp.StatusCode)
		}
	}
	resp, body = get(t, "GET", "/dashboard.js", map[string]string{"If-None-Match": `"something-else"`})
	if resp.StatusCode != http.StatusOK || body == "" {
		t.Errorf("GET with another ETag: %d, want 200 and the file", resp.StatusCode)
	}
	// A range is not served: the whole file comes.
	resp, body = get(t, "GET", "/dashboard.js", map[string]string{"Range": "bytes=0-9"})
	if resp.StatusCode != http.StatusOK || len(body) <= 10 {
		t.Errorf("GET with Range: %d with %d bytes, want 200 and the whole file", resp.StatusCode, len(body))
	}
	resp, body = get(t, "HEAD", "/", nil)
	if resp.StatusCode != http.StatusOK || body != "" || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("HEAD /: %d, %d bytes, %q", resp.StatusCode, len(body), resp.Header.Get("Content-Type"))
	}
	if got, _ := get(t, "GET", "/", nil); resp.Header.Get("Content-Length") != got.Header.Get("Content-Length") || got.Header.Get("Content-Length") == "" {
		t.Errorf("HEAD / Content-Length %q, GET's %q", resp.Header.Get("Content-Length"), got.Header.Get("Content-Length"))
	}
}

// Only the three paths exist, for GET and HEAD.
func TestOtherPathsAndMethods(t *testing.T) {
	for _, path := range []string{"/index.html", "/static/index.html", "/dashboard.js/", "/favicon.ico", "/x/../dashboard.js", "//"} {
		if resp, _ := get(t, "GET", path, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
		}
	}
	resp, _ := get(t, "POST", "/", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d, Allow %q; want 405, GET, HEAD", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// Behind the HTTP server, the files need no token (a browser's navigation
// sends none) while the API they call does.
func TestServedWithoutTheToken(t *testing.T) {
	b := broker.New(broker.Options{Listeners: []broker.ListenerConfig{{Address: "127.0.0.1:0"}}})
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	s, err := admin.New(admin.Config{Listen: "127.0.0.1:0", TokenFile: filepath.Join(t.TempDir(), "token"),
		CreateToken: true, Broker: b, Dashboard: Handler()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	base := "http://" + s.Addr().String()
	client := &http.Client{Timeout: 10 * time.Second}
	for path, want := range map[string]int{"/": 200, "/dashboard.js": 200, "/dashboard.css": 200, "/nothing": 404} {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s without a token: %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp, err := client.Get(base + "/api/v1/listeners")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/listeners without a token: %d, want 401", resp.StatusCode)
	}
}

// The page loads nothing from elsewhere (no CDN) and nothing it does not
// serve, and holds no inline script or style, which its policy would
// refuse.
func TestPageUsesOnlyItsOwnFiles(t *testing.T) {
	_, page := get(t, "GET", "/", nil)
	refs := regexp.MustCompile(`(?i)\b(?:src|href)="([^"]*)"`).FindAllStringSubmatch(page, -1)
	if len(refs) == 0 {
		t.Fatal("the page references no file")
	}
	for _, m := range refs {
		ref := m[1]
		if ref == "data:," { // an empty icon, so that the browser asks for no favicon
			continue
		}
		if _, ok := files()["/"+ref]; !ok || strings.Contains(ref, ":") || strings.HasPrefix(ref, "/") {
			t.Errorf("the page references %q, not one of its own files by a relative path", ref)
		}
	}
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`(?i)<script(?:[^>]*)>[^<]+</script>`), // inline script
		regexp.MustCompile(`(?i)<style`),
		regexp.MustCompile(`(?i)\sstyle=`),
		regexp.MustCompile(`(?i)\son[a-z]+=`), // inline event handler
	} {
		if loc := bad.FindStringIndex(page); loc != nil {
			t.Errorf("the page has %q, which its policy refuses", page[loc[0]:loc[1]])
		}
	}
}

// The script never writes HTML: what comes from the broker (client ids,
// user names) goes in as text.
func TestScriptWritesNoHTML(t *testing.T) {
	_, script := get(t, "GET", "/dashboard.js", nil)
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
		"new Function", "setAttribute('on", "setAttribute('style", "createContextualFragment"} {
		if strings.Contains(script, sink) {
			t.Errorf("dashboard.js uses %s", sink)
		}
	}
	// Every element the script looks up is in the page.
	_, page := get(t, "GET", "/", nil)
	var missing []string
	for _, m := range regexp.MustCompile(`\$\('([a-z-]+)'\)`).FindAllStringSubmatch(script, -1) {
		if !strings.Contains(page, `id="`+m[1]+`"`) && !slices.Contains(missing, m[1]) {
			missing = append(missing, m[1])
		}
	}
	if len(missing) > 0 {
		t.Errorf("dashboard.js looks up ids the page lacks: %v", missing)
	}
}

// The script parses (node --check), where Node.js is installed; the
// interop suite runs it in Chromium.
func TestScriptParses(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	if out, err := exec.Command(node, "--check", filepath.Join("static", "dashboard.js")).CombinedOutput(); err != nil {
		t.Errorf("node --check dashboard.js: %v\n%s", err, out)
	}
}
