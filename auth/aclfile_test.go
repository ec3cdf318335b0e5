package auth

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testACL = `# Petrel test ACL

# anonymous clients
topic read public/#
topic deny public/secret

user alice
topic readwrite alice/#
topic read shared/+/status
topic write commands/alice
topic deny alice/private/#
  topic   read   name with spaces/x

user bob
topic bob/#
topic read $SYS/broker/load/#
topic read #

user carol
topic deny #

user dave
topic read sensors/#
topic deny sensors/+/raw
topic deny sensors/kitchen/#

pattern read devices/%c/in
pattern write devices/%c/out
pattern readwrite users/%u/#
pattern %c/#
pattern deny users/%u/private
`

func loadTestACL(t testing.TB) *ACLFile {
	t.Helper()
	f, err := ParseACLFile("acl", strings.NewReader(testACL))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func anon(id string) *Client { return &Client{ClientID: id} }
func user(id, name string) *Client {
	return &Client{ClientID: id, Username: name, HasUsername: true}
}

func TestACLReadWrite(t *testing.T) {
	f := loadTestACL(t)
	tests := []struct {
		name   string
		client *Client
		access Access
		topic  string
		want   bool
	}{
		// The anonymous section applies only to clients without a user name.
		{"anonymous reads public", anon("x"), Read, "public/news", true},
		{"anonymous reads public parent via #", anon("x"), Read, "public", true},
		{"anonymous cannot write public", anon("x"), Write, "public/news", false},
		{"anonymous denied the secret", anon("x"), Read, "public/secret", false},
		{"deny is exact: below the secret is fine", anon("x"), Read, "public/secret/more", true},
		{"anonymous reads nothing else", anon("x"), Read, "alice/x", false},
		{"a user does not get the anonymous rules", user("x", "zed"), Read, "public/news", false},
		{"an empty user name is a user, not anonymous", user("x", ""), Read, "public/news", false},

		{"alice readwrite own", user("a1", "alice"), Write, "alice/notes", true},
		{"alice reads own", user("a1", "alice"), Read, "alice/notes/today", true},
		{"alice deny wins over readwrite", user("a1", "alice"), Read, "alice/private/diary", false},
		{"alice deny covers the parent", user("a1", "alice"), Write, "alice/private", false},
		{"alice + matches one level", user("a1", "alice"), Read, "shared/room1/status", true},
		{"alice + does not match two", user("a1", "alice"), Read, "shared/a/b/status", false},
		{"alice + matches an empty level", user("a1", "alice"), Read, "shared//status", true},
		{"alice read-only is not write", user("a1", "alice"), Write, "shared/room1/status", false},
		{"alice write-only is not read", user("a1", "alice"), Read, "commands/alice", false},
		{"alice write-only", user("a1", "alice"), Write, "commands/alice", true},
		{"topic with spaces", user("a1", "alice"), Read, "name with spaces/x", true},
		{"names are case-sensitive", user("a1", "Alice"), Read, "alice/notes", false},

		{"no access word is readwrite", user("b1", "bob"), Write, "bob/x", true},
		{"bob # reads everything", user("b1", "bob"), Read, "any/thing", true},
		{"# does not match $SYS", user("b1", "bob"), Read, "$SYS/broker/uptime", false},
		{"explicit $SYS rule matches", user("b1", "bob"), Read, "$SYS/broker/load/1min", true},
		{"# is read-only for bob", user("b1", "bob"), Write, "any/thing", false},

		{"carol denied everything", user("c1", "carol"), Read, "carol/x", false},
		{"carol's deny # still lets patterns? no: deny wins", user("carol", "carol"), Read, "carol/x", false},

		// Patterns apply to every client, anonymous ones included.
		{"%c read", user("dev1", "zed"), Read, "devices/dev1/in", true},
		{"%c read is not write", user("dev1", "zed"), Write, "devices/dev1/in", false},
		{"%c write", anon("dev1"), Write, "devices/dev1/out", true},
		{"%c other client", anon("dev1"), Read, "devices/dev2/in", false},
		{"%u readwrite", user("x", "zed"), Write, "users/zed/a/b", true},
		{"%u parent via #", user("x", "zed"), Read, "users/zed", true},
		{"%u other user", user("x", "zed"), Read, "users/amy/a", false},
		{"%u pattern deny wins", user("x", "zed"), Read, "users/zed/private", false},
		{"%u not for anonymous", anon("x"), Read, "users//a", false},
		{"%u not for an empty user name", user("x", ""), Read, "users//a", false},
		{"%c/# own prefix", user("dev1", "zed"), Write, "dev1/a/b", true},
		{"%c/# exact", user("dev1", "zed"), Write, "dev1", true},
		{"empty client id never substitutes", anon(""), Read, "devices//in", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := f.Allow(tt.client, tt.access, tt.topic); got != tt.want {
				t.Fatalf("Allow(%+v, %v, %q) = %v, want %v", *tt.client, tt.access, tt.topic, got, tt.want)
			}
		})
	}
}

// TestACLSubstitutionInjection: a client id or user name holding filter
// syntax, or naming a '$' topic, must not widen a pattern.
func TestACLSubstitutionInjection(t *testing.T) {
	f := loadTestACL(t)
	tests := []struct {
		name   string
		client *Client
		access Access
		topic  string
	}{
		{"client id # on devices/%c/in", anon("#"), Subscribe, "devices/#"},
		{"client id + on devices/%c/in", anon("+"), Subscribe, "devices/+/in"},
		{"client id a/# on %c/#", anon("a/#"), Subscribe, "a/#"},
		{"client id a/b on %c/#", anon("a/b"), Write, "a/b/c"},
		{"client id +/x in a read", anon("+"), Read, "devices/+/in"},
		{"user name # on users/%u/#", user("x", "#"), Subscribe, "users/#"},
		{"user name + on users/%u/#", user("x", "+"), Subscribe, "users/+/a"},
		{"user name a/b on users/%u/#", user("x", "a/b"), Write, "users/a/b/c"},
		{"client id $SYS on %c/#", anon("$SYS"), Read, "$SYS/broker/uptime"},
		{"client id $SYS on %c/# (write)", anon("$SYS"), Write, "$SYS/x"},
		{"client id $SYS on %c/# (subscribe)", anon("$SYS"), Subscribe, "$SYS/#"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if f.Allow(tt.client, tt.access, tt.topic) {
				t.Fatalf("Allow(%+v, %v, %q) = true: substitution widened the pattern", *tt.client, tt.access, tt.topic)
			}
			if tt.access == Subscribe && f.Covers(tt.client, tt.topic) {
				t.Fatalf("Covers(%+v, %q) = true", *tt.client, tt.topic)
			}
		})
	}
	// An id that is only '$' inside, not first, is an ordinary level.
	if !f.Allow(anon("a$b"), Write, "a$b/x") {
		t.Error("client id a$b cannot use its own prefix")
	}
	if !f.Allow(anon("$dev"), Read, "devices/$dev/in") {
		t.Error("a '$' id below the first level should substitute")
	}
}

func TestACLSubscribeAndCovers(t *testing.T) {
	f := loadTestACL(t)
	tests := []struct {
		name          string
		client        *Client
		filter        string
		subscribe     bool // Allow(Subscribe)
		covers        bool // Covers
		subscribeWhy  string
		coversWhyNote string
	}{
		{"exact read grant", user("a1", "alice"), "shared/x/status", true, true, "", ""},
		{"filter inside a # grant", user("a1", "alice"), "alice/notes/#", true, true, "", ""},
		{"filter equal to the grant", user("a1", "alice"), "alice/#", true, false, "", "deny alice/private/# intersects"},
		{"filter wider than the grant", user("a1", "alice"), "shared/#", true, false, "intersects shared/+/status", "not contained"},
		{"+ filter over a + grant", user("a1", "alice"), "shared/+/status", true, true, "", ""},
		{"# filter intersects a + grant", user("a1", "alice"), "#", true, false, "", ""},
		{"+ filter over a deeper grant", user("a1", "alice"), "+/+/status", true, false, "", ""},
		{"write-only grant does not allow subscribe", user("a1", "alice"), "commands/alice", false, false, "", ""},
		{"deny covers the whole filter", user("a1", "alice"), "alice/private/#", false, false, "", ""},
		{"deny covers a narrower filter", user("a1", "alice"), "alice/private/x/+", false, false, "", ""},
		{"no grant at all", user("a1", "alice"), "other/#", false, false, "", ""},

		{"bob # covers ordinary topics", user("b1", "bob"), "a/+/c", true, true, "", ""},
		{"bob # does not cover #: pattern deny users/%u/private", user("b1", "bob"), "#", true, false, "", ""},
		{"bob # covers users/+", user("b1", "bob"), "users/+", true, true, "", ""},
		{"# grant does not reach $SYS", user("b1", "bob"), "$SYS/broker/uptime", false, false, "", ""},
		{"$SYS/# intersects bob's $SYS grant", user("b1", "bob"), "$SYS/#", true, false, "", ""},
		{"bob's $SYS grant covers its subtree", user("b1", "bob"), "$SYS/broker/load/+", true, true, "", ""},
		{"+ does not reach $ topics", user("b1", "bob"), "+/broker/load/1min", true, true, "bob's # grant", ""},

		{"carol: deny # covers everything", user("c1", "carol"), "a/b", false, false, "", ""},
		{"carol: deny # does not cover $ filters", user("c1", "carol"), "$SYS/x", false, false, "no grant either", ""},

		{"dave: partial deny keeps subscribe", user("d1", "dave"), "sensors/#", true, false, "", ""},
		{"dave: + deny intersects + filter", user("d1", "dave"), "sensors/+/temp", true, false, "kitchen/temp denied", ""},
		{"dave: clean subtree is covered", user("d1", "dave"), "sensors/hall/temp", true, true, "", ""},
		{"dave: deny + covers the exact topic", user("d1", "dave"), "sensors/hall/raw", false, false, "", ""},
		{"dave: deny + covers + filter", user("d1", "dave"), "sensors/+/raw", false, false, "", ""},
		{"dave: deny subtree covers", user("d1", "dave"), "sensors/kitchen/+", false, false, "", ""},

		{"pattern %c read", user("dev1", "zed"), "devices/dev1/in", true, true, "", ""},
		{"pattern %c write-only", user("dev1", "zed"), "devices/dev1/out", false, false, "", ""},
		{"pattern %c: + filter intersects", user("dev1", "zed"), "devices/+/in", true, false, "", ""},
		{"pattern %u subtree", user("x", "zed"), "users/zed/#", true, false, "deny users/zed/private", ""},
		{"pattern %u clean subtree", user("x", "zed"), "users/zed/pub/+", true, true, "", ""},
		{"pattern %u deny covers", user("x", "zed"), "users/zed/private", false, false, "", ""},
		{"pattern %c/# covers own tree", user("dev1", "zed"), "dev1/#", true, true, "", ""},
		{"# filter reaches %c/# only for valid ids", anon("a/b"), "#", true, false, "public/# grant", ""},
		{"anonymous: public/# minus the secret", anon("x"), "public/#", true, false, "", ""},
		{"anonymous: deny exact topic", anon("x"), "public/secret", false, false, "", ""},
		{"anonymous: public/+ intersects deny", anon("x"), "public/+", true, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := f.Allow(tt.client, Subscribe, tt.filter); got != tt.subscribe {
				t.Errorf("Allow(%+v, Subscribe, %q) = %v, want %v %s", *tt.client, tt.filter, got, tt.subscribe, tt.subscribeWhy)
			}
			if got := f.Covers(tt.client, tt.filter); got != tt.covers {
				t.Errorf("Covers(%+v, %q) = %v, want %v %s", *tt.client, tt.filter, got, tt.covers, tt.coversWhyNote)
			}
		})
	}
}

// matchRef is a plain reference matcher: does filter match topic name?
func matchRef(filter, topic string) bool {
	fl, tl := strings.Split(filter, "/"), strings.Split(topic, "/")
	if (fl[0] == "+" || fl[0] == "#") && strings.HasPrefix(topic, "$") {
		return false
	}
	for i, f := range fl {
		if f == "#" {
			return true
		}
		if i >= len(tl) || f != "+" && f != tl[i] {
			return false
		}
	}
	return len(fl) == len(tl)
}

// allFilters returns every valid filter of up to depth levels over words.
func allFilters(words []string, depth int) []string {
	var out []string
	var walk func(prefix string, d int)
	walk = func(prefix string, d int) {
		for _, w := range append(words, "+", "#") {
			f := w
			if prefix != "" {
				f = prefix + "/" + w
			}
			out = append(out, f)
			if w != "#" && d < depth {
				walk(f, d+1)
			}
		}
	}
	walk("", 1)
	return out
}

// allTopics returns every topic name of up to depth levels over words.
func allTopics(words []string, depth int) []string {
	var out []string
	var walk func(prefix string, d int)
	walk = func(prefix string, d int) {
		for _, w := range words {
			t := w
			if d > 1 {
				t = prefix + "/" + w
			}
			out = append(out, t)
			if d < depth {
				walk(t, d+1)
			}
		}
	}
	walk("", 1)
	return out
}

// TestACLFilterRelationsExhaustive checks Subscribe and Covers against a
// brute-force answer: for every pair of small filters (rule R, subscription
// F), whether some topic matches both and whether every topic F matches
// also matches R, over every topic of the relevant depth made of the
// filters' words plus fresh ones ("z", "$z") that no filter names.
func TestACLFilterRelationsExhaustive(t *testing.T) {
	filters := allFilters([]string{"a", "$s"}, 3)
	topics := allTopics([]string{"a", "z", "$s", "$z"}, 4)
	matched := make(map[string][]bool, len(filters))
	for _, f := range filters {
		m := make([]bool, len(topics))
		for i, tp := range topics {
			m[i] = matchRef(f, tp)
		}
		matched[f] = m
	}
	c := anon("x")
	for _, r := range filters {
		grant, err := ParseACLFile("acl", strings.NewReader("topic read "+r))
		if err != nil {
			t.Fatal(err)
		}
		deny, err := ParseACLFile("acl", strings.NewReader("topic read #\ntopic read $s/#\ntopic read $z/#\ntopic deny "+r))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range filters {
			intersects, contained := false, true
			for i := range topics {
				if matched[f][i] && matched[r][i] {
					intersects = true
				}
				if matched[f][i] && !matched[r][i] {
					contained = false
				}
			}
			if got := grant.Allow(c, Subscribe, f); got != intersects {
				t.Errorf("read %q, Subscribe %q = %v, want %v (intersects)", r, f, got, intersects)
			}
			if got := grant.Covers(c, f); got != contained {
				t.Errorf("read %q, Covers %q = %v, want %v (contained)", r, f, got, contained)
			}
			// With everything readable, a deny rule refuses the subscription
			// when it contains the filter, and spoils coverage when it
			// intersects it.
			if got := deny.Allow(c, Subscribe, f); got == contained {
				t.Errorf("deny %q, Subscribe %q = %v, want %v", r, f, got, !contained)
			}
			if got := deny.Covers(c, f); got == intersects {
				t.Errorf("deny %q, Covers %q = %v, want %v", r, f, got, !intersects)
			}
		}
		for i, tp := range topics {
			if got := grant.Allow(c, Read, tp); got != matched[r][i] {
				t.Errorf("read %q, Read %q = %v, want %v", r, tp, got, matched[r][i])
			}
		}
	}
}

func TestParseACLFileErrors(t *testing.T) {
	tests := []struct{ name, file, want string }{
		{"unknown directive", "user a\ntopics read x\n", `acl:2: unknown directive "topics"`},
		{"user without name", "user\n", "acl:1: user: missing user name"},
		{"topic without filter", "\ntopic\n", "acl:2: topic: missing topic"},
		{"access without filter", "topic read\n", "acl:1: topic read: missing topic"},
		{"unknown access", "topic rw x\n", `acl:1: topic: unknown access "rw"`},
		{"space without access", "topic a b\n", `unknown access "a"`},
		{"# not last", "topic read a/#/b\n", `acl:1: topic "a/#/b": "#" must be the last level`},
		{"partial +", "pattern read a+/b\n", `"+" and "#" must fill a whole level`},
		{"partial #", "topic read a/b#\n", `"+" and "#" must fill a whole level`},
		{"partial %c", "pattern read dev-%c/in\n", `"%c" and "%u" must fill a whole level`},
		{"partial %u", "pattern read a/%u%c\n", `"%c" and "%u" must fill a whole level`},
		{"NUL", "topic read a\x00b\n", "U+0000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseACLFile("acl", strings.NewReader(tt.file))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	// In a topic line, %c is only text.
	f, err := ParseACLFile("acl", strings.NewReader("topic read dev-%c/x\ntopic read %c\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !f.Allow(anon("x"), Read, "%c") || f.Allow(anon("x"), Read, "x") {
		t.Errorf("a %%c in a topic line was substituted")
	}
}

func TestParseACLFileLayout(t *testing.T) {
	file := "\r\n   # indented comment\r\n\ttopic\tread\tpub/#  \r\nuser   spaced name  \r\n  topic deny  a b  \r\ntopic read #\r\n"
	f, err := ParseACLFile("acl", strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if f.Len() != 3 {
		t.Errorf("Len = %d, want 3", f.Len())
	}
	if !f.Allow(anon("x"), Read, "pub/x") {
		t.Error("tabs between fields are not accepted")
	}
	u := user("x", "spaced name")
	if !f.Allow(u, Read, "c") || f.Allow(u, Read, "a b") {
		t.Error(`user "spaced name" or its "a b" deny rule was not read`)
	}
}

func TestACLUserLinesMerge(t *testing.T) {
	f, err := ParseACLFile("acl", strings.NewReader("user a\ntopic read x\nuser b\ntopic read y\nuser a\ntopic read z\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := user("1", "a")
	if !f.Allow(a, Read, "x") || !f.Allow(a, Read, "z") || f.Allow(a, Read, "y") {
		t.Error("a second user block for the same user does not add to the first")
	}
	if f.Allow(anon("1"), Read, "x") {
		t.Error("a user's rule applies to anonymous clients")
	}
}

func TestACLEmptyFileDeniesAll(t *testing.T) {
	f, err := ParseACLFile("acl", strings.NewReader("# nothing\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []Access{Read, Write, Subscribe} {
		if f.Allow(user("x", "y"), a, "a") || f.Allow(anon("x"), a, "a") {
			t.Errorf("%v allowed by an empty ACL", a)
		}
	}
	if f.Covers(anon("x"), "#") {
		t.Error("Covers with an empty ACL")
	}
	if f.Allow(anon("x"), Access(0), "a") {
		t.Error("unknown access allowed")
	}
}

func TestACLFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acl")
	os.WriteFile(path, []byte("topic read a\n"), 0o600)
	f, err := LoadACLFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c := anon("x")
	g := f.Generation()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 10000 {
			f.Allow(c, Read, "a")
			f.Covers(c, "b")
		}
	}()
	os.WriteFile(path, []byte("topic read b\n"), 0o600)
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	<-done
	if f.Allow(c, Read, "a") || !f.Allow(c, Read, "b") || !f.Covers(c, "b") {
		t.Error("Reload did not replace the rules")
	}
	if f.Generation() == g {
		t.Error("Generation did not change on Reload")
	}
	g = f.Generation()
	os.WriteFile(path, []byte("topic reed b\n"), 0o600)
	if err := f.Reload(); err == nil || !strings.Contains(err.Error(), path+":1:") {
		t.Fatalf("Reload of a broken file: %v", err)
	}
	if !f.Allow(c, Read, "b") || f.Generation() != g {
		t.Error("a failed Reload changed the rules")
	}
	if _, err := LoadACLFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("no error for a missing file")
	}
	parsed, _ := ParseACLFile("x", strings.NewReader(""))
	if parsed.Reload() == nil {
		t.Error("Reload of a parsed file did not fail")
	}
}

func TestACLAllowDoesNotAllocate(t *testing.T) {
	f := bigACL(t)
	c := user("client-17", "user17")
	for _, tt := range []struct {
		a     Access
		topic string
	}{
		{Read, "building/17/floor/3/temp"},
		{Write, "nowhere/at/all"},
		{Read, "clients/client-17/inbox/x"},
		{Subscribe, "building/17/#"},
	} {
		if n := testing.AllocsPerRun(100, func() { f.Allow(c, tt.a, tt.topic) }); n != 0 {
			t.Errorf("Allow(%v, %q) allocates %.0f times", tt.a, tt.topic, n)
		}
	}
}

// bigACL is a file of 1,000 rules: 100 users with 9 topic rules each, 50
// anonymous rules and 50 patterns.
func bigACL(t testing.TB) *ACLFile {
	t.Helper()
	var b strings.Builder
	for i := range 50 {
		fmt.Fprintf(&b, "topic read public/%d/#\n", i)
	}
	for u := range 100 {
		fmt.Fprintf(&b, "user user%d\n", u)
		fmt.Fprintf(&b, "topic readwrite building/%d/#\n", u)
		fmt.Fprintf(&b, "topic read building/%d/floor/+/temp\n", u+1)
		fmt.Fprintf(&b, "topic write commands/%d/+\n", u)
		fmt.Fprintf(&b, "topic deny building/%d/secret/#\n", u)
		fmt.Fprintf(&b, "topic read shared/+/status\n")
		fmt.Fprintf(&b, "topic read alerts/%d\n", u)
		fmt.Fprintf(&b, "topic read $SYS/broker/clients/%d\n", u)
		fmt.Fprintf(&b, "topic read fleet/+/+/%d/#\n", u)
		fmt.Fprintf(&b, "topic write telemetry/%d/+/data\n", u)
	}
	for i := range 25 {
		fmt.Fprintf(&b, "pattern read clients/%%c/inbox/%d\n", i)
		fmt.Fprintf(&b, "pattern write users/%%u/outbox/%d/#\n", i)
	}
	b.WriteString("pattern read clients/%c/inbox/#\n")
	f, err := ParseACLFile("big", strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func BenchmarkACLAllow(b *testing.B) {
	f := bigACL(b)
	if f.Len() < 1000 {
		b.Fatalf("only %d rules", f.Len())
	}
	c := user("client-17", "user17")
	for _, bm := range []struct {
		name   string
		a      Access
		topic  string
		expect bool
	}{
		{"hit/read", Read, "building/17/floor/3/temp", true},
		{"hit/write", Write, "commands/17/open", true},
		{"hit/deep-plus", Read, "fleet/a/b/17/x/y", true},
		{"miss/read", Read, "building/99/floor/3/temp", false},
		{"miss/unknown-root", Write, "nowhere/at/all", false},
		{"deny", Read, "building/17/secret/plans", false},
		{"pattern/%c", Read, "clients/client-17/inbox/7", true},
		{"pattern/%u", Write, "users/user17/outbox/3/x", true},
		{"pattern/miss", Read, "clients/other/inbox/7", false},
		{"subscribe/#", Subscribe, "building/17/#", true},
		{"subscribe/+", Subscribe, "+/+/floor/+/temp", true},
	} {
		if got := f.Allow(c, bm.a, bm.topic); got != bm.expect {
			b.Fatalf("%s: Allow = %v, want %v", bm.name, got, bm.expect)
		}
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				f.Allow(c, bm.a, bm.topic)
			}
		})
	}
}

func BenchmarkACLCovers(b *testing.B) {
	f := bigACL(b)
	c := user("client-17", "user17")
	b.ReportAllocs()
	for b.Loop() {
		f.Covers(c, "building/17/floor/+/temp")
	}
}
