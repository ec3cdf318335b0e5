package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// aclService is a fake ACL and authentication service on loopback. Access
// is allowed when the topic starts with "ok/", denied when it starts with
// "no/", and anything else answers 500. Logins answer the status in
// statusFor[password] (200 if absent).
type aclService struct {
	t        *testing.T
	srv      *httptest.Server
	mu       sync.Mutex
	requests []map[string]any
	acl      atomic.Int64
	auth     atomic.Int64
	delay    time.Duration
	hold     atomic.Pointer[chan struct{}] // when set, ACL answers wait for it to close
}

func newACLService(t *testing.T) *aclService {
	s := &aclService{t: t}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth", func(w http.ResponseWriter, r *http.Request) {
		s.auth.Add(1)
		m := s.record(r)
		time.Sleep(s.delay)
		switch m["password"] {
		case "bad":
			w.WriteHeader(http.StatusUnauthorized)
		case "banned":
			w.WriteHeader(http.StatusForbidden)
		case "boom":
			w.WriteHeader(http.StatusInternalServerError)
		case "moved":
			http.Redirect(w, r, "/auth2", http.StatusFound)
		default:
			w.WriteHeader(http.StatusOK)
		}
	})
	mux.HandleFunc("POST /acl", func(w http.ResponseWriter, r *http.Request) {
		s.acl.Add(1)
		m := s.record(r)
		if h := s.hold.Load(); h != nil {
			<-*h
		}
		time.Sleep(s.delay)
		topic, _ := m["topic"].(string)
		switch {
		case strings.HasPrefix(topic, "ok/"):
			w.WriteHeader(http.StatusOK)
		case strings.HasPrefix(topic, "no/"):
			w.WriteHeader(http.StatusForbidden)
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

func (s *aclService) record(r *http.Request) map[string]any {
	var m map[string]any
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		s.t.Errorf("request body: %v", err)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		s.t.Errorf("Content-Type %q", ct)
	}
	s.mu.Lock()
	s.requests = append(s.requests, m)
	s.mu.Unlock()
	return m
}

// holdAnswers makes ACL answers wait until release.
func (s *aclService) holdAnswers() {
	ch := make(chan struct{})
	s.hold.Store(&ch)
}

func (s *aclService) release() { close(*s.hold.Load()) }

func (s *aclService) last() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[len(s.requests)-1]
}

// fakeClock is a settable clock for the cache.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newHTTPBackend(t *testing.T, s *aclService, cfg HTTPConfig) (*HTTP, *fakeClock) {
	t.Helper()
	if cfg.AuthURL == "" {
		cfg.AuthURL = s.srv.URL + "/auth"
	}
	if cfg.ACLURL == "" {
		cfg.ACLURL = s.srv.URL + "/acl"
	}
	h, err := NewHTTP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	h.now = clock.now
	return h, clock
}

func TestHTTPAuthenticate(t *testing.T) {
	s := newACLService(t)
	h, _ := newHTTPBackend(t, s, HTTPConfig{})
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 4242}
	c := &Client{ClientID: "dev1", Username: "ann", HasUsername: true, Listener: "tls", RemoteAddr: remote}
	tests := []struct {
		password string
		want     error // nil, ErrBadCredentials, ErrNotAuthorized, or errServer
	}{
		{"right", nil},
		{"bad", ErrBadCredentials},
		{"banned", ErrNotAuthorized},
		{"boom", errServer},
		{"moved", errServer}, // redirects are not followed
	}
	for _, tt := range tests {
		t.Run(tt.password, func(t *testing.T) {
			err := h.Authenticate(context.Background(), c, []byte(tt.password))
			checkAuthErr(t, err, tt.want)
		})
	}
	want := map[string]any{"clientid": "dev1", "username": "ann", "password": "moved", "listener": "tls", "remote": "127.0.0.9:4242"}
	if got := s.last(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("request %v, want %v", got, want)
	}

	// No user name and no password are sent as null.
	if err := h.Authenticate(context.Background(), &Client{ClientID: "x"}, nil); err != nil {
		t.Fatal(err)
	}
	if got := s.last(); got["username"] != nil || got["password"] != nil || got["remote"] != "" {
		t.Errorf("anonymous request %v: want null user name and password", got)
	}

	// A password JSON cannot carry exactly is refused without asking.
	n := s.auth.Load()
	if err := h.Authenticate(context.Background(), c, []byte{0xff, 0xfe}); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("non-UTF-8 password: %v", err)
	}
	if s.auth.Load() != n {
		t.Error("a non-UTF-8 password was sent")
	}
	if st := h.readStats(); st.AuthRequests != uint64(len(tests)+1) || st.Errors != 2 {
		t.Errorf("stats %+v", st)
	}
}

// errServer stands for "any error that is the server's fault".
var errServer = errors.New("server error")

func checkAuthErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("error %v, want none", err)
	case want == errServer && (err == nil || errors.Is(err, ErrBadCredentials) || errors.Is(err, ErrNotAuthorized)):
		t.Fatalf("error %v, want a server error", err)
	case want != nil && want != errServer && !errors.Is(err, want):
		t.Fatalf("error %v, want %v", err, want)
	}
}

func TestHTTPAuthenticateTimeoutAndDown(t *testing.T) {
	s := newACLService(t)
	s.delay = 300 * time.Millisecond
	h, _ := newHTTPBackend(t, s, HTTPConfig{Timeout: 50 * time.Millisecond})
	start := time.Now()
	err := h.Authenticate(context.Background(), client("ann"), []byte("right"))
	checkAuthErr(t, err, errServer)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timeout error %v does not wrap DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("Authenticate took %v with a 50ms timeout", d)
	}
	// The caller's deadline counts too.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	h2, _ := newHTTPBackend(t, s, HTTPConfig{})
	checkAuthErr(t, h2.Authenticate(ctx, client("ann"), []byte("right")), errServer)

	down := downURL(t)
	h3, err := NewHTTP(HTTPConfig{AuthURL: down + "/auth", ACLURL: down + "/acl"})
	if err != nil {
		t.Fatal(err)
	}
	checkAuthErr(t, h3.Authenticate(context.Background(), client("ann"), []byte("right")), errServer)
	if h3.AllowWait(context.Background(), client("ann"), Write, "ok/x") {
		t.Error("AllowWait allowed with the service down")
	}
}

// downURL returns the URL of a loopback port nothing listens on.
func downURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func TestHTTPAllowWait(t *testing.T) {
	s := newACLService(t)
	h, _ := newHTTPBackend(t, s, HTTPConfig{})
	c := &Client{ClientID: "dev1", Username: "ann", HasUsername: true}
	ctx := context.Background()
	tests := []struct {
		access Access
		topic  string
		want   bool
	}{
		{Write, "ok/a", true},
		{Write, "no/a", false},
		{Subscribe, "ok/#", true},
		{Subscribe, "no/+", false},
		{Read, "ok/r", true},
		{Write, "error/a", false}, // 500: fail closed
	}
	for _, tt := range tests {
		if got := h.AllowWait(ctx, c, tt.access, tt.topic); got != tt.want {
			t.Errorf("AllowWait(%v, %q) = %v, want %v", tt.access, tt.topic, got, tt.want)
		}
		want := map[string]any{"clientid": "dev1", "username": "ann", "topic": tt.topic, "access": tt.access.String()}
		if got := s.last(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("request %v, want %v", got, want)
		}
	}
	h.AllowWait(ctx, anon("x"), Write, "ok/anon")
	if got := s.last(); got["username"] != nil {
		t.Errorf("anonymous request %v: want a null user name", got)
	}
}

func TestHTTPCacheHits(t *testing.T) {
	s := newACLService(t)
	h, clock := newHTTPBackend(t, s, HTTPConfig{CacheTTL: time.Minute, NegativeTTL: 5 * time.Second})
	c := client("ann")
	ctx := context.Background()
	for range 100 {
		if !h.AllowWait(ctx, c, Write, "ok/a") || !h.Allow(c, Write, "ok/a") {
			t.Fatal("denied")
		}
	}
	if n := s.acl.Load(); n != 1 {
		t.Fatalf("service saw %d requests for one question, want 1", n)
	}
	// Each part of the question is part of the key.
	h.AllowWait(ctx, c, Read, "ok/a")
	h.AllowWait(ctx, c, Write, "ok/b")
	h.AllowWait(ctx, client("bob"), Write, "ok/a")
	h.AllowWait(ctx, &Client{ClientID: c.ClientID, Username: "ann"}, Write, "ok/a") // HasUsername false
	h.AllowWait(ctx, &Client{ClientID: "other", Username: "ann", HasUsername: true}, Write, "ok/a")
	if n := s.acl.Load(); n != 6 {
		t.Fatalf("service saw %d requests, want 6", n)
	}

	// Within the TTL: cached. Past it: AllowWait asks again.
	clock.advance(59 * time.Second)
	h.AllowWait(ctx, c, Write, "ok/a")
	if n := s.acl.Load(); n != 6 {
		t.Fatalf("asked again within the TTL (%d requests)", n)
	}
	clock.advance(2 * time.Second)
	h.AllowWait(ctx, c, Write, "ok/a")
	if n := s.acl.Load(); n != 7 {
		t.Fatalf("not asked again past the TTL (%d requests)", n)
	}
	if st := h.readStats(); st.CacheHits < 200 || st.ACLRequests != 7 {
		t.Errorf("stats %+v", st)
	}
}

func TestHTTPNegativeTTL(t *testing.T) {
	s := newACLService(t)
	h, clock := newHTTPBackend(t, s, HTTPConfig{CacheTTL: time.Minute, NegativeTTL: 5 * time.Second})
	c := client("ann")
	ctx := context.Background()
	for _, topic := range []string{"no/a", "error/a"} {
		before := s.acl.Load()
		for range 10 {
			if h.AllowWait(ctx, c, Write, topic) {
				t.Fatalf("%s allowed", topic)
			}
		}
		if n := s.acl.Load() - before; n != 1 {
			t.Fatalf("%s: %d requests within NegativeTTL, want 1", topic, n)
		}
		clock.advance(6 * time.Second)
		h.AllowWait(ctx, c, Write, topic)
		if n := s.acl.Load() - before; n != 2 {
			t.Fatalf("%s: %d requests after NegativeTTL, want 2", topic, n)
		}
	}
}

func TestHTTPAllowDoesNotBlock(t *testing.T) {
	s := newACLService(t)
	s.holdAnswers()
	h, clock := newHTTPBackend(t, s, HTTPConfig{CacheTTL: time.Minute})
	c := client("ann")

	// A miss denies at once and asks in the background.
	start := time.Now()
	for range 50 {
		if h.Allow(c, Read, "ok/a") {
			t.Fatal("allowed before the service answered")
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("Allow blocked for %v", d)
	}
	s.release()
	waitFor(t, func() bool { return h.Allow(c, Read, "ok/a") })
	if n := s.acl.Load(); n != 1 {
		t.Fatalf("%d requests for one question asked 50 times while in flight, want 1", n)
	}

	// Past the TTL the old answer still serves while a new one is fetched.
	s.holdAnswers()
	clock.advance(61 * time.Second)
	if !h.Allow(c, Read, "ok/a") {
		t.Fatal("a stale allow was not used")
	}
	s.release()
	waitFor(t, func() bool { return s.acl.Load() == 2 })
	waitFor(t, func() bool {
		_, _, fresh := h.cached(&aclKey{clientID: c.ClientID, username: "ann", hasUsername: true, access: Read, topic: "ok/a"},
			hashKey(h, c, Read, "ok/a"))
		return fresh
	})
	// Past twice the TTL an answer is not used at all.
	clock.advance(121 * time.Second)
	s.holdAnswers()
	if h.Allow(c, Read, "ok/a") {
		t.Fatal("an answer older than twice its TTL was used")
	}
	s.release()
}

func hashKey(h *HTTP, c *Client, a Access, topic string) uint64 {
	return maphash.Comparable(h.seed, keyFor(c, a, topic))
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestHTTPConcurrentAskersShareARequest(t *testing.T) {
	s := newACLService(t)
	s.holdAnswers()
	h, _ := newHTTPBackend(t, s, HTTPConfig{})
	var wg sync.WaitGroup
	var allowed atomic.Int64
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if h.AllowWait(context.Background(), client("ann"), Subscribe, "ok/#") {
				allowed.Add(1)
			}
		}()
	}
	waitFor(t, func() bool { return s.acl.Load() == 1 })
	time.Sleep(20 * time.Millisecond)
	s.release()
	wg.Wait()
	if allowed.Load() != 20 || s.acl.Load() != 1 {
		t.Fatalf("%d of 20 allowed with %d requests; want 20 with 1", allowed.Load(), s.acl.Load())
	}
}

func TestHTTPAllowWaitGivesUpWithContext(t *testing.T) {
	s := newACLService(t)
	s.holdAnswers()
	defer s.release()
	h, _ := newHTTPBackend(t, s, HTTPConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if h.AllowWait(ctx, client("ann"), Write, "ok/a") {
		t.Fatal("allowed without an answer")
	}
}

func TestHTTPAclTimeout(t *testing.T) {
	s := newACLService(t)
	s.delay = 300 * time.Millisecond
	h, _ := newHTTPBackend(t, s, HTTPConfig{Timeout: 30 * time.Millisecond})
	start := time.Now()
	if h.AllowWait(context.Background(), client("ann"), Write, "ok/a") {
		t.Fatal("allowed after a timeout")
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Fatalf("AllowWait took %v with a 30ms timeout", d)
	}
	if h.readStats().Errors != 1 {
		t.Errorf("stats %+v", h.readStats())
	}
}

func TestHTTPCovers(t *testing.T) {
	s := newACLService(t)
	h, clock := newHTTPBackend(t, s, HTTPConfig{CacheTTL: time.Minute})
	c := client("ann")
	ctx := context.Background()
	if h.Covers(c, "ok/#") {
		t.Fatal("Covers before any answer")
	}
	if !h.AllowWait(ctx, c, Subscribe, "ok/#") || !h.Covers(c, "ok/#") {
		t.Fatal("an allowed subscription is not covered")
	}
	if h.Covers(client("bob"), "ok/#") {
		t.Fatal("covered for another user")
	}
	if h.AllowWait(ctx, c, Subscribe, "no/#") || h.Covers(c, "no/#") {
		t.Fatal("a denied subscription is covered")
	}
	clock.advance(2 * time.Minute)
	if h.Covers(c, "ok/#") {
		t.Fatal("covered by an expired answer")
	}

	each, _ := newHTTPBackend(t, s, HTTPConfig{CheckEachRead: true})
	if !each.AllowWait(ctx, c, Subscribe, "ok/#") || each.Covers(c, "ok/#") {
		t.Fatal("CheckEachRead: Covers must be false")
	}
}

func TestHTTPCacheIsBounded(t *testing.T) {
	s := newACLService(t)
	h, _ := newHTTPBackend(t, s, HTTPConfig{CacheSize: 64})
	c := client("ann")
	for i := range 1000 {
		h.AllowWait(context.Background(), c, Write, fmt.Sprintf("ok/%d", i))
	}
	if n := h.readStats().Entries; n > 64 || n < 32 {
		t.Fatalf("%d entries in a cache of 64", n)
	}
	// The newest answers are the ones kept.
	before := s.acl.Load()
	h.AllowWait(context.Background(), c, Write, "ok/999")
	if s.acl.Load() != before {
		t.Error("the newest answer was evicted")
	}
	for i := range h.shards {
		if sh := &h.shards[i]; len(sh.order)-sh.head != len(sh.entries) || len(sh.order) > 2*h.perShard()+1 {
			t.Fatalf("shard %d: order %d (head %d), entries %d", i, len(sh.order), sh.head, len(sh.entries))
		}
	}
}

func TestHTTPBackgroundFetchesAreBounded(t *testing.T) {
	s := newACLService(t)
	s.holdAnswers()
	h, _ := newHTTPBackend(t, s, HTTPConfig{Fetches: 4})
	for i := range 100 {
		h.Allow(client("ann"), Read, fmt.Sprintf("ok/%d", i))
	}
	waitFor(t, func() bool { return s.acl.Load() == 4 })
	time.Sleep(20 * time.Millisecond)
	if n := s.acl.Load(); n != 4 {
		t.Fatalf("%d requests in flight, want at most 4", n)
	}
	if st := h.readStats(); st.Skipped != 96 {
		t.Errorf("skipped %d, want 96", st.Skipped)
	}
	s.release()
}

func TestNewHTTPChecksConfig(t *testing.T) {
	for _, cfg := range []HTTPConfig{
		{},
		{AuthURL: "ftp://x/auth"},
		{ACLURL: "not a url"},
		{AuthURL: "http://"},
	} {
		if _, err := NewHTTP(cfg); err == nil {
			t.Errorf("NewHTTP(%+v) accepted", cfg)
		}
	}
	h, err := NewHTTP(HTTPConfig{AuthURL: "http://127.0.0.1:1/auth"})
	if err != nil {
		t.Fatal(err)
	}
	if h.cfg.Timeout != 2*time.Second || h.cfg.CacheTTL != time.Minute || h.cfg.NegativeTTL != 5*time.Second {
		t.Errorf("defaults %+v", h.cfg)
	}
	if h.Allow(client("a"), Read, "x") || h.AllowWait(context.Background(), client("a"), Read, "x") || h.Covers(client("a"), "x") {
		t.Error("no ACLURL must deny")
	}
	acl, _ := NewHTTP(HTTPConfig{ACLURL: "http://127.0.0.1:1/acl"})
	if acl.Authenticate(context.Background(), client("a"), []byte("x")) == nil {
		t.Error("no AuthURL must refuse")
	}
}

func TestHTTPAllowHitDoesNotAllocate(t *testing.T) {
	s := newACLService(t)
	h, _ := newHTTPBackend(t, s, HTTPConfig{})
	c := client("ann")
	h.AllowWait(context.Background(), c, Read, "ok/topic/name")
	if n := testing.AllocsPerRun(100, func() { h.Allow(c, Read, "ok/topic/name") }); n != 0 {
		t.Errorf("a cache hit allocates %.0f times", n)
	}
}

func BenchmarkHTTPAllowHit(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	h, err := NewHTTP(HTTPConfig{ACLURL: srv.URL})
	if err != nil {
		b.Fatal(err)
	}
	c := client("ann")
	h.AllowWait(context.Background(), c, Read, "building/17/floor/3/temp")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Allow(c, Read, "building/17/floor/3/temp")
		}
	})
}
