package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/internal/throttle"
	"github.com/petrelmq/petrel/internal/wiretest"
	"github.com/petrelmq/petrel/packet"
)

// Authentication: the Mosquitto password file, anonymous access per
// listener and the secure default, the HTTP backend (logins and access
// decisions, with the broker waiting for the service on PUBLISH and
// SUBSCRIBE), an Authenticator written in Go, and the delay that grows with
// each failed login from one address.

// mosquittoUsers are the users of ../auth/testdata/mosquitto_passwd.txt,
// made by Debian's mosquitto_passwd (see auth/passwordfile_test.go).
var mosquittoUsers = map[string]string{
	"alice":       "wonderland",
	"bob":         "b0b:with:colons",
	"carol smith": "spaces in it ",
	"dave":        "",
	"émile":       "pâté€",
}

func loadMosquittoPasswd(t *testing.T) *auth.PasswordFile {
	t.Helper()
	pf, err := auth.LoadPasswordFile("../auth/testdata/mosquitto_passwd.txt")
	if err != nil {
		t.Fatal(err)
	}
	return pf
}

// quickThrottle makes failed logins cost a millisecond, for tests that
// fail many on purpose; loginThrottle sets another schedule.
func quickThrottle(s *Server) { loginThrottle(time.Millisecond, 2*time.Millisecond)(s) }

func loginThrottle(base, max time.Duration) func(*Server) {
	return func(s *Server) { s.logins = throttle.New(throttle.Config{Base: base, Max: max}) }
}

// refusal codes of each protocol level for the same failure.
type refusal struct{ v311, v5 packet.ReasonCode }

var (
	badLogin      = refusal{packet.ConnRefusedBadUsernamePassword, packet.BadUserNameOrPassword}
	notAuthorized = refusal{packet.ConnRefusedNotAuthorized, packet.NotAuthorized}
	unavailable   = refusal{packet.ConnRefusedServerUnavailable, packet.ServerUnavailable}
)

func (r refusal) code(version byte) packet.ReasonCode {
	if version == packet.V5 {
		return r.v5
	}
	return r.v311
}

// loginCase is one CONNECT and what the broker must answer (success when
// refused is nil).
type loginCase struct {
	name     string
	user     string
	password *string // nil: no password flag
	anon     bool    // no user name at all
	refused  *refusal
}

func pw(s string) *string { return &s }

// try connects with each protocol level and checks the answer.
func (lc loginCase) try(t *testing.T, addr string, id string) {
	t.Helper()
	for _, version := range []byte{packet.V311, packet.V5} {
		p := connectPacket(version, fmt.Sprintf("%s-v%d", id, version))
		if !lc.anon {
			p.UsernameFlag, p.Username = true, lc.user
		}
		if lc.password != nil {
			p.PasswordFlag, p.Password = true, []byte(*lc.password)
		}
		c, ack := secConnect(t, addr, p)
		if lc.refused == nil {
			if ack.Code != packet.Success {
				t.Errorf("%s (v%d): CONNACK 0x%02x (%q), want 0x00", lc.name, version, byte(ack.Code), ack.Props.ReasonString)
				continue
			}
			c.ping()
			continue
		}
		if want := lc.refused.code(version); ack.Code != want {
			t.Errorf("%s (v%d): CONNACK 0x%02x, want 0x%02x", lc.name, version, byte(ack.Code), byte(want))
			continue
		}
		c.expectClosed()
	}
}

// The password file made by mosquitto_passwd lets its users in with their
// passwords, whatever characters those hold, and refuses wrong passwords,
// unknown users and a missing password: 0x86 (3.1.1: 0x04). Each failure
// is counted.
// [MQTT-3.1.4-2] v5
func TestPasswordFileLogin(t *testing.T) {
	srv := secStart(t, Options{Authenticator: loadMosquittoPasswd(t)}, quickThrottle)
	addr := srv.Addrs()[0].String()
	var cases []loginCase
	for user, password := range mosquittoUsers {
		cases = append(cases,
			loginCase{name: user + " with the password", user: user, password: pw(password)},
			loginCase{name: user + " with a wrong password", user: user, password: pw(password + "x"), refused: &badLogin},
			loginCase{name: user + " without a password", user: user, refused: &badLogin})
	}
	cases = append(cases,
		loginCase{name: "unknown user", user: "mallory", password: pw("wonderland"), refused: &badLogin},
		loginCase{name: "user name differing in case", user: "Alice", password: pw("wonderland"), refused: &badLogin},
		loginCase{name: "user name with a space appended", user: "alice ", password: pw("wonderland"), refused: &badLogin},
		loginCase{name: "empty user name", user: "", password: pw(""), refused: &badLogin})
	failures := int64(0)
	before := srv.stats.failedLogins.Load()
	for i, lc := range cases {
		lc.try(t, addr, fmt.Sprint("pf", i))
		if lc.refused != nil {
			failures += 2
		}
	}
	if d := srv.stats.failedLogins.Load() - before; d != failures {
		t.Errorf("failedLogins rose by %d, want %d (one per refused CONNECT)", d, failures)
	}
}

// loginDelay connects with a wrong password from dialer and returns how
// long the refusal took.
func loginDelay(t *testing.T, addr string, d *net.Dialer, version byte) time.Duration {
	t.Helper()
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := secOn(t, nc, "guesser", version)
	start := time.Now()
	ack := c.connect(withLogin(connectPacket(version, "guesser"), "alice", "guess"))
	took := time.Since(start)
	if want := badLogin.code(version); ack.Code != want {
		t.Fatalf("wrong password: CONNACK 0x%02x, want 0x%02x", byte(ack.Code), byte(want))
	}
	c.expectClosed()
	return took
}

// Failed logins are answered late, later with each failure from the same
// address (within a cap); a client with the right password is not held up
// meanwhile, and other addresses are not slowed.
func TestFailedLoginDelayGrows(t *testing.T) {
	t.Parallel()
	// Wide enough apart that scheduling noise under -race cannot swap them.
	const base, max = 150 * time.Millisecond, 600 * time.Millisecond
	srv := secStart(t, Options{Authenticator: loadMosquittoPasswd(t)}, loginThrottle(base, max))
	addr := srv.Addrs()[0].String()
	d := &net.Dialer{Timeout: wiretest.Timeout}

	d1 := loginDelay(t, addr, d, packet.V311)
	d2 := loginDelay(t, addr, d, packet.V5)
	t.Logf("first failure answered after %v, second after %v", d1, d2)
	if d1 < base*9/10 || d2 < 2*base*9/10 || d2 <= d1 {
		t.Errorf("failures answered after %v then %v; want at least %v then %v, growing", d1, d2, base, 2*base)
	}
	for range 2 { // the third reaches the cap; the fourth stays there
		if dn := loginDelay(t, addr, d, packet.V311); dn > max+time.Second {
			t.Fatalf("failure answered after %v; the delay is capped at %v", dn, max)
		}
	}
	if n := srv.stats.failedLogins.Load(); n != 4 {
		t.Errorf("failedLogins = %d, want 4", n)
	}

	t.Run("another address is not slowed", func(t *testing.T) {
		other := &net.Dialer{Timeout: wiretest.Timeout, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		if c, err := other.Dial("tcp", addr); err != nil {
			t.Skipf("cannot connect from 127.0.0.2: %v", err)
		} else {
			c.Close()
		}
		if dn := loginDelay(t, addr, other, packet.V5); dn > 2*base {
			t.Errorf("a first failure from 127.0.0.2 answered after %v; want about %v, whatever 127.0.0.1 did", dn, base)
		}
	})

	t.Run("the right password is not held up", func(t *testing.T) {
		// A guess is being held back for the capped delay...
		guess := secDial(t, "tcp", addr, "guesser", packet.V311)
		guess.send(withLogin(connectPacket(packet.V311, "guesser"), "alice", "guess"))
		// ...while alice, from the same address, logs in at once.
		start := time.Now()
		secMustConnect(t, addr, withLogin(connectPacket(packet.V5, "alice"), "alice", "wonderland")).ping()
		if took := time.Since(start); took > max {
			t.Errorf("a right password took %v while a guess was delayed by %v; want it not held up", took, max)
		}
		if ack := guess.next().(*packet.Connack); ack.Code != packet.ConnRefusedBadUsernamePassword {
			t.Errorf("guess: CONNACK 0x%02x, want 0x04", byte(ack.Code))
		}
	})

	t.Run("a success from the address does not reset the delay", func(t *testing.T) {
		// An attacker with an account of its own logs in between guesses
		// at someone else's password.
		srv := secStart(t, Options{Authenticator: loadMosquittoPasswd(t)}, loginThrottle(base, max))
		addr := srv.Addrs()[0].String()
		var delays []time.Duration
		for i := range 3 {
			delays = append(delays, loginDelay(t, addr, d, packet.V311))
			p := withLogin(connectPacket(packet.V311, fmt.Sprint("own-", i)), "bob", "b0b:with:colons")
			secMustConnect(t, addr, p).ping()
		}
		if delays[2] < 2*base {
			t.Errorf("guesses interleaved with the attacker's own successful logins are answered after %v; "+
				"want the delay to keep growing (at least %v by the third)", delays, 2*base)
		}
	})
}

// Anonymous access is decided per listener: allowed on loopback addresses
// and unix sockets unless refused, refused elsewhere unless allowed; the
// broker warns when a network listener allows it.
// [MQTT-3.1.4-2] v5
func TestAnonymousPerListener(t *testing.T) {
	yes, no := true, false
	logger, logs := captureLogs(t)
	sock := shortTempDir(t) + "/mqtt.sock"
	srv := secStart(t, Options{Logger: logger, Listeners: []ListenerConfig{
		{Name: "loopback", Address: "127.0.0.1:0"},
		{Name: "loopback-refusing", Address: "127.0.0.1:0", AllowAnonymous: &no},
		{Name: "any-default", Address: "0.0.0.0:0"},
		{Name: "any-allowing", Address: "0.0.0.0:0", AllowAnonymous: &yes},
		{Name: "unix", Kind: "unix", Address: sock},
	}}, nil)
	addrs := srv.Addrs()
	port := func(i int) string { return fmt.Sprint("127.0.0.1:", addrs[i].(*net.TCPAddr).Port) }

	cases := []struct {
		listener      string
		network, addr string
		anonymous     bool
	}{
		{"loopback", "tcp", port(0), true},
		{"loopback-refusing", "tcp", port(1), false},
		{"any-default", "tcp", port(2), false}, // secure by default
		{"any-allowing", "tcp", port(3), true},
		{"unix", "unix", sock, true},
	}
	for _, tc := range cases {
		t.Run(tc.listener, func(t *testing.T) {
			for _, version := range []byte{packet.V311, packet.V5} {
				c := secDial(t, tc.network, tc.addr, "anon", version)
				ack := c.connect(connectPacket(version, "anon"))
				if tc.anonymous {
					if ack.Code != packet.Success {
						t.Errorf("v%d anonymous: CONNACK 0x%02x, want 0x00", version, byte(ack.Code))
					}
					c.ping()
					continue
				}
				expectRefused(t, c, ack, notAuthorized.code(version))
				// A user name without an authenticator to check it does
				// not get in either.
				c = secDial(t, tc.network, tc.addr, "named", version)
				ack = c.connect(withLogin(connectPacket(version, "named"), "alice", "wonderland"))
				expectRefused(t, c, ack, badLogin.code(version))
			}
		})
	}

	warned := func(listener string) bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, "allows anonymous clients") &&
				strings.Contains(l, "listener="+listener+" ") {
				return true
			}
		}
		return false
	}
	if !warned("any-allowing") {
		t.Errorf("no warning that listener any-allowing (0.0.0.0, allow_anonymous true) lets anonymous clients in; logs:\n%s", logs)
	}
	for _, l := range []string{"loopback", "any-default", "unix"} {
		if warned(l) {
			t.Errorf("listener %s warned about anonymous clients; only a network listener that allows them should", l)
		}
	}
}

// An unconfigured broker listens on 127.0.0.1:1883 only, and lets anonymous
// clients in there (they can only come from this machine).
func TestDefaultsListenOnLoopbackOnly(t *testing.T) {
	var o Options
	o.setDefaults()
	if len(o.Listeners) != 1 || o.Listeners[0].Address != "127.0.0.1:1883" || o.Listeners[0].Kind != "tcp" {
		t.Fatalf("default listeners %+v; want one tcp listener on 127.0.0.1:1883", o.Listeners)
	}
	if !anonymousAllowed(o.Listeners[0]) {
		t.Error("the default listener refuses anonymous clients; it is loopback only and should allow them")
	}
	for _, addr := range []string{"0.0.0.0:1883", ":1883", "[::]:1883", "192.0.2.1:1883", "example.com:1883"} {
		if anonymousAllowed(ListenerConfig{Kind: "tcp", Address: addr}) {
			t.Errorf("a listener on %s allows anonymous clients by default; want them refused", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1:1883", "[::1]:1883", "localhost:1883", "127.1.2.3:1883"} {
		if !anonymousAllowed(ListenerConfig{Kind: "tcp", Address: addr}) {
			t.Errorf("a listener on loopback %s refuses anonymous clients by default", addr)
		}
	}
	// The same configuration with a free port serves anonymous clients.
	o.Listeners[0].Address = "127.0.0.1:0"
	srv := secStart(t, Options{Listeners: o.Listeners}, nil)
	secMustConnect(t, srv.Addrs()[0].String(), connectPacket(packet.V5, "anon")).ping()
}

// goAuth is an Authenticator written against the Go interface: it knows
// one password, refuses "banned" as not authorized, fails for "broken" as
// the server's fault, and holds "slow" until released.
type goAuth struct {
	release chan struct{}
	mu      sync.Mutex
	seen    []auth.Client
	noDead  atomic.Bool // a call came without a deadline
}

func (a *goAuth) Authenticate(ctx context.Context, c *auth.Client, password []byte) error {
	a.mu.Lock()
	a.seen = append(a.seen, *c)
	a.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		a.noDead.Store(true)
	}
	switch c.Username {
	case "banned":
		return fmt.Errorf("%w: banned", auth.ErrNotAuthorized)
	case "broken":
		return errors.New("the user database is down")
	case "slow":
		select {
		case <-a.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if string(password) != "gopher-"+c.Username {
		return auth.ErrBadCredentials
	}
	return nil
}

// An Authenticator written in Go decides logins: its errors map to the
// reason codes, it learns who connects, and a slow one holds up only the
// connection it is checking.
func TestGoAuthenticator(t *testing.T) {
	a := &goAuth{release: make(chan struct{})}
	srv := secStart(t, Options{Authenticator: a, Listeners: []ListenerConfig{{Name: "main", Address: "127.0.0.1:0"}}}, quickThrottle)
	addr := srv.Addrs()[0].String()
	for i, lc := range []loginCase{
		{name: "right password", user: "ann", password: pw("gopher-ann")},
		{name: "wrong password", user: "ann", password: pw("gopher-bob"), refused: &badLogin},
		{name: "banned", user: "banned", password: pw("gopher-banned"), refused: &notAuthorized},
		{name: "backend failure", user: "broken", password: pw("x"), refused: &unavailable},
		{name: "empty user name is a user name", user: "", password: pw("gopher-"), refused: nil},
	} {
		t.Run(lc.name, func(t *testing.T) { lc.try(t, addr, fmt.Sprint("go", i)) })
	}

	a.mu.Lock()
	first := a.seen[0]
	a.mu.Unlock()
	if first.ClientID != "go0-v4" || first.Username != "ann" || !first.HasUsername || first.Listener != "main" ||
		addrIP(first.RemoteAddr).String() != "127.0.0.1" {
		t.Errorf("the authenticator was given %+v; want client go0-v4, user ann, listener main, from 127.0.0.1", first)
	}
	if a.noDead.Load() {
		t.Error("the authenticator was called without a deadline")
	}

	t.Run("a slow check holds up only its own connection", func(t *testing.T) {
		slow := secDial(t, "tcp", addr, "slow", packet.V5)
		slow.send(withLogin(connectPacket(packet.V5, "slow"), "slow", "gopher-slow"))
		// The client may send before CONNACK: it is held, not lost.
		slow.send(&packet.Pingreq{})
		secMustConnect(t, addr, withLogin(connectPacket(packet.V311, "quick"), "ann", "gopher-ann")).ping()
		close(a.release)
		if ack := slow.next().(*packet.Connack); ack.Code != packet.Success {
			t.Fatalf("slow login: CONNACK 0x%02x, want 0x00", byte(ack.Code))
		}
		if p := slow.next(); p.Type() != packet.PINGRESP {
			t.Fatalf("slow login: after CONNACK got %s, want the PINGRESP for the PINGREQ sent early", p.Type())
		}
	})
}

// aclService is the web service behind the HTTP backend: it logs in
// "alice" with "secret", refuses "banned" (403) and fails for "broken"
// (500); it allows every access to topics under allowed/ and slow/, after
// delay (slow/: much longer), and denies the rest.
type aclService struct {
	delay   time.Duration
	asked   sync.Map // "access topic" -> *atomic.Int64
	pending atomic.Int64
}

func (s *aclService) count(key string) int64 {
	v, _ := s.asked.LoadOrStore(key, new(atomic.Int64))
	return v.(*atomic.Int64).Load()
}

func (s *aclService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ClientID string  `json:"clientid"`
		Username *string `json:"username"`
		Password *string `json:"password"`
		Topic    string  `json:"topic"`
		Access   string  `json:"access"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch r.URL.Path {
	case "/auth":
		switch {
		case req.Username == nil:
			w.WriteHeader(http.StatusUnauthorized)
		case *req.Username == "banned":
			w.WriteHeader(http.StatusForbidden)
		case *req.Username == "broken":
			w.WriteHeader(http.StatusInternalServerError)
		case *req.Username == "alice" && req.Password != nil && *req.Password == "secret":
			w.WriteHeader(http.StatusOK)
		default:
			w.WriteHeader(http.StatusUnauthorized)
		}
	case "/acl":
		v, _ := s.asked.LoadOrStore(req.Access+" "+req.Topic, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		delay := s.delay
		if strings.HasPrefix(req.Topic, "slow/") {
			delay = time.Minute
		}
		s.pending.Add(1)
		defer s.pending.Add(-1)
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		if strings.HasPrefix(req.Topic, "allowed/") || strings.HasPrefix(req.Topic, "slow/") {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusForbidden)
	default:
		http.NotFound(w, r)
	}
}

// httpBroker runs a broker whose logins and access decisions go to svc.
func httpBroker(t *testing.T, svc *aclService, opts Options) *Server {
	t.Helper()
	hs := httptest.NewServer(svc)
	t.Cleanup(hs.Close)
	h, err := auth.NewHTTP(auth.HTTPConfig{AuthURL: hs.URL + "/auth", ACLURL: hs.URL + "/acl", Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	opts.Authenticator, opts.Authorizer = h, h
	return secStart(t, opts, quickThrottle)
}

// The HTTP backend's login answers map to CONNACK codes: 200 accepts, 401
// is a bad password, 403 not authorized, anything else the server's fault.
func TestHTTPBackendLogin(t *testing.T) {
	srv := httpBroker(t, &aclService{}, Options{})
	addr := srv.Addrs()[0].String()
	before := srv.stats.failedLogins.Load()
	for i, lc := range []loginCase{
		{name: "right password", user: "alice", password: pw("secret")},
		{name: "wrong password", user: "alice", password: pw("Secret"), refused: &badLogin},
		{name: "no password", user: "alice", refused: &badLogin},
		{name: "banned", user: "banned", password: pw("secret"), refused: &notAuthorized},
		{name: "service error", user: "broken", password: pw("secret"), refused: &unavailable},
	} {
		t.Run(lc.name, func(t *testing.T) { lc.try(t, addr, fmt.Sprint("http", i)) })
	}
	if d := srv.stats.failedLogins.Load() - before; d != 8 {
		t.Errorf("failedLogins rose by %d, want 8", d)
	}
}

// The broker waits for the access service on PUBLISH and SUBSCRIBE: the
// first publish to a topic, and the first subscription to a filter, are
// decided by the service's answer, not refused because nothing was cached.
func TestHTTPBackendColdCache(t *testing.T) {
	svc := &aclService{delay: 20 * time.Millisecond}
	srv := httpBroker(t, svc, Options{})
	addr := srv.Addrs()[0].String()

	sub := secMustConnect(t, addr, withLogin(connectPacket(packet.V5, "sub"), "alice", "secret"))
	if codes := sub.subscribe(1, 1, "allowed/#", "denied/#", "allowed/x/+"); codes[0] != 1 || codes[1] != packet.NotAuthorized || codes[2] != 1 {
		t.Fatalf("first SUBSCRIBE with a cold cache: SUBACK % x, want 01 87 01", codes)
	}
	pub := secMustConnect(t, addr, withLogin(connectPacket(packet.V5, "pub"), "alice", "secret"))
	for i, step := range []struct {
		topic string
		want  packet.ReasonCode
	}{
		{"allowed/a", packet.Success}, // the first publish to a topic
		{"denied/d", packet.NotAuthorized},
		{"allowed/b", packet.Success},
		{"allowed/a", packet.Success}, // from the cache
		{"allowed/end", packet.Success},
	} {
		if code := pub.publish(uint16(i+1), 1, step.topic, fmt.Sprint(i), false); code != step.want {
			t.Errorf("publish %d to %s: PUBACK 0x%02x, want 0x%02x", i, step.topic, byte(code), byte(step.want))
		}
	}
	if got := sub.until("allowed/end"); strings.Join(got, " ") != "allowed/a=0 allowed/b=2 allowed/a=3" {
		t.Errorf("subscriber got %q, want allowed/a=0 allowed/b=2 allowed/a=3", got)
	}
	// Each question went to the service once; the second publish to
	// allowed/a was answered from the cache.
	if n := svc.count("write allowed/a"); n != 1 {
		t.Errorf("the service was asked %d times about writing allowed/a, want 1", n)
	}
	if srv.stats.deniedPublish.Load() != 1 || srv.stats.deniedSubscribe.Load() != 1 {
		t.Errorf("deniedPublish %d, deniedSubscribe %d; want 1 and 1", srv.stats.deniedPublish.Load(), srv.stats.deniedSubscribe.Load())
	}

	t.Run("pipelined", func(t *testing.T) {
		// QoS 0 has no answer to give, so a client sends on without
		// waiting: each message to a new topic waits for the service in
		// turn, and every allowed one must arrive, in order.
		var burst []byte
		var want []string
		for i := range 12 {
			topic := fmt.Sprintf("allowed/pipelined-%d", i)
			if i == 3 || i == 8 {
				topic = "denied/pipelined"
			} else {
				want = append(want, topic+"="+fmt.Sprint(i))
			}
			b, _ := packet.Append(nil, &packet.Publish{Topic: topic, Payload: []byte(fmt.Sprint(i))}, packet.V5)
			burst = append(burst, b...)
		}
		pub.sendRaw(burst)
		pub.publish(10, 1, "allowed/end", "", false)
		got := sub.until("allowed/end")
		if strings.Join(got, " ") != strings.Join(want, " ") {
			var asked []string
			svc.asked.Range(func(k, _ any) bool {
				asked = append(asked, k.(string))
				return true
			})
			slices.Sort(asked)
			t.Errorf("pipelined QoS 0 publishes to allowed topics with a cold cache: subscriber got %q, want %q; "+
				"the service was asked about %q (the topics handed to the waiting goroutine must not alias the read buffer)",
				got, want, asked)
		}
	})
}

// A service that does not answer within AuthTimeout is a refusal: the
// broker fails closed, and the client is answered in time.
func TestHTTPBackendTimeoutFailsClosed(t *testing.T) {
	t.Parallel()
	svc := &aclService{}
	srv := httpBroker(t, svc, Options{AuthTimeout: 200 * time.Millisecond})
	c := secMustConnect(t, srv.Addrs()[0].String(), withLogin(connectPacket(packet.V5, "c"), "alice", "secret"))
	start := time.Now()
	if code := c.publish(1, 1, "slow/x", "x", false); code != packet.NotAuthorized {
		t.Errorf("publish while the service hangs: PUBACK 0x%02x, want 0x87", byte(code))
	}
	if codes := c.subscribe(2, 0, "slow/#"); codes[0] != packet.NotAuthorized {
		t.Errorf("subscribe while the service hangs: SUBACK 0x%02x, want 0x87", byte(codes[0]))
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("answers took %v; AuthTimeout is 200ms", took)
	}
	c.ping()
}
