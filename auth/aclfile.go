package auth

import (
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"strings"
	"sync"
	"sync/atomic"
)

// ACLFile is an access control list in Mosquitto's acl_file format, loaded
// in memory. It implements Authorizer and Covering, and is safe for
// concurrent use. Build one with LoadACLFile or ParseACLFile.
//
// # Format
//
// One directive a line; blank lines and lines whose first non-blank
// character is '#' are ignored:
//
//	user <name>                                  the topic lines after it are <name>'s
//	topic [read|write|readwrite|deny] <filter>   a rule for the current user
//	pattern [read|write|readwrite|deny] <filter> a rule for every client
//
// The access word is optional and defaults to readwrite; when the filter has
// a space in it the access word must be given (as with mosquitto, "topic a
// b" is an error, not the topic "a b"). <filter> is an MQTT topic filter:
// '+' and '#' wildcards as in subscriptions. topic lines before the first
// user line are the anonymous clients' (those with no user name). In a
// pattern, a level that is exactly "%c" stands for the client's id and one
// that is exactly "%u" for its user name; "%c" or "%u" inside a longer level
// is an error (mosquitto's documentation requires the whole level).
//
// # Which rules apply
//
// A client's rules are its user's topic lines (the anonymous ones if it has
// no user name; none if its user has no user line) plus every pattern line.
// Substitution never widens a pattern: a pattern with %u does not apply to a
// client without a user name (or with an empty one), a pattern with %c does
// not apply to a client with an empty id, and a %c or %u level matches only
// when the id or name has no '+', '#' or '/' in it, so a client calling
// itself "a/#" gets nothing from "pattern read devices/%c". Nor does a value
// starting with '$' match as a first level: "pattern %c/#" does not give a
// client called "$SYS" the broker's topics.
//
// # Decisions
//
// Topic names (Read, Write) are matched against each rule's filter with
// MQTT's rules, including the '$' rule: a filter starting with '+' or '#'
// does not match a topic starting with '$' ("#" does not match "$SYS/x").
// A deny rule that matches wins over any grant; otherwise access is allowed
// when a read (for Read) or write (for Write) grant matches — readwrite
// grants both — and denied when none does.
//
// A subscription (Subscribe) names a filter, not a topic. It is allowed when
// some read grant intersects it — some topic could match both, so the
// subscription can bring the client something it may read — unless a
// single deny rule covers the whole filter (every topic the filter matches
// is denied). What a subscription matches but the client may not read is
// withheld message by message (Read).
//
// Covers(c, filter) is true when a single read grant contains the filter
// (every topic the filter matches matches the grant) and no deny rule
// intersects it: every message the subscription can bring is readable, so
// the broker need not check each one. It holds until the rules change:
// after Reload, the broker must ask again (Generation tells when).
type ACLFile struct {
	path   string
	rules  atomic.Pointer[aclRules]
	gen    atomic.Uint64
	reload sync.Mutex
}

// aclRules is one loaded file: a trie of rules per user, one for anonymous
// clients and one of patterns.
type aclRules struct {
	anonymous *aclNode
	users     map[string]*aclNode
	patterns  *aclNode
	size      int // rules in the file
}

// aclBits is what the rules ending at one place grant.
type aclBits uint8

const (
	aclRead aclBits = 1 << iota
	aclWrite
	aclDeny
)

// aclNode is a trie over filter levels. A rule ends at the node its levels
// lead to (end), or, when its last level is '#', at the node of the levels
// before the '#' (hash).
type aclNode struct {
	literal  map[string]*aclNode
	plus     *aclNode
	clientID *aclNode // a "%c" level (patterns only)
	username *aclNode // a "%u" level (patterns only)
	end      aclBits
	hash     aclBits
}

// LoadACLFile reads and parses the ACL file at path. Its errors name the
// file and line.
func LoadACLFile(path string) (*ACLFile, error) {
	r, err := readACLRules(path)
	if err != nil {
		return nil, err
	}
	f := &ACLFile{path: path}
	f.rules.Store(r)
	return f, nil
}

// ParseACLFile parses an ACL file read from r; name is used in error
// messages. An ACLFile made this way has no path: Reload fails.
func ParseACLFile(name string, r io.Reader) (*ACLFile, error) {
	rules, err := parseACLRules(name, r)
	if err != nil {
		return nil, err
	}
	f := &ACLFile{}
	f.rules.Store(rules)
	return f, nil
}

// Reload re-reads the file the ACLFile was loaded from. The new rules
// replace the old in one step: a concurrent Allow sees the old rules or the
// new, never a mixture. If the file cannot be read or parsed, the old rules
// stay in force and the error is returned. A successful Reload increments
// Generation.
func (f *ACLFile) Reload() error {
	if f.path == "" {
		return errors.New("auth: ACL file: Reload of a file that was not loaded from a path")
	}
	f.reload.Lock()
	defer f.reload.Unlock()
	r, err := readACLRules(f.path)
	if err != nil {
		return err
	}
	f.rules.Store(r)
	f.gen.Add(1)
	return nil
}

// Generation counts successful Reloads. An answer of Covers holds while
// Generation stays the same.
func (f *ACLFile) Generation() uint64 { return f.gen.Load() }

// Len returns the number of topic and pattern rules.
func (f *ACLFile) Len() int { return f.rules.Load().size }

// subst is what %c and %u stand for, for one client; ok is false when the
// value must never match.
type subst struct {
	clientID, username     string
	clientIDOK, usernameOK bool
}

func substFor(c *Client) subst {
	return subst{
		clientID:   c.ClientID,
		username:   c.Username,
		clientIDOK: safeSubst(c.ClientID),
		usernameOK: c.HasUsername && safeSubst(c.Username),
	}
}

// safeSubst reports whether v may stand for a whole level.
func safeSubst(v string) bool {
	return v != "" && !strings.ContainsAny(v, "+#/")
}

// base returns the trie of c's user's topic rules.
func (r *aclRules) base(c *Client) *aclNode {
	if !c.HasUsername {
		return r.anonymous
	}
	return r.users[c.Username]
}

// Allow implements Authorizer.
func (f *ACLFile) Allow(c *Client, a Access, topic string) bool {
	r := f.rules.Load()
	s := substFor(c)
	base := r.base(c)
	switch a {
	case Read, Write:
		bits := base.match(topic, 0, &s) | r.patterns.match(topic, 0, &s)
		if bits&aclDeny != 0 {
			return false
		}
		if a == Read {
			return bits&aclRead != 0
		}
		return bits&aclWrite != 0
	case Subscribe:
		if (base.contain(topic, 0, &s)|r.patterns.contain(topic, 0, &s))&aclDeny != 0 {
			return false
		}
		return (base.intersect(topic, 0, &s)|r.patterns.intersect(topic, 0, &s))&aclRead != 0
	}
	return false
}

// Covers implements Covering.
func (f *ACLFile) Covers(c *Client, filter string) bool {
	r := f.rules.Load()
	s := substFor(c)
	base := r.base(c)
	if (base.contain(filter, 0, &s)|r.patterns.contain(filter, 0, &s))&aclRead == 0 {
		return false
	}
	return (base.intersect(filter, 0, &s)|r.patterns.intersect(filter, 0, &s))&aclDeny == 0
}

// level returns the level of t starting at start, and where the next one
// starts. start > len(t) means no levels are left.
func level(t string, start int) (lv string, next int) {
	if i := strings.IndexByte(t[start:], '/'); i >= 0 {
		return t[start : start+i], start + i + 1
	}
	return t[start:], len(t) + 1
}

// dollar reports whether a first level starting with '$' puts a topic
// beyond wildcards.
func dollar(lv string) bool { return len(lv) > 0 && lv[0] == '$' }

// substOK reports whether a %c or %u value v may match level lv, the first
// level when first.
func substOK(v string, ok bool, lv string, first bool) bool {
	return ok && v == lv && !(first && dollar(v))
}

// match returns what the rules whose filters match the topic name t
// (from its level at start) grant.
//
// match, contain and intersect each spell out the step to a literal level's
// children rather than share a helper returning them: match runs for every
// message delivered and published, and the helper made it half as slow
// again (BenchmarkACLAllow).
func (n *aclNode) match(t string, start int, s *subst) aclBits {
	if n == nil {
		return 0
	}
	first := start == 0
	shielded := first && dollar(t) // [MQTT-4.7.2-1]
	var bits aclBits
	if !shielded {
		bits = n.hash // '#' also matches the parent level
	}
	if start > len(t) {
		return bits | n.end
	}
	lv, next := level(t, start)
	if c := n.literal[lv]; c != nil {
		bits |= c.match(t, next, s)
	}
	if n.plus != nil && !shielded {
		bits |= n.plus.match(t, next, s)
	}
	if n.clientID != nil && substOK(s.clientID, s.clientIDOK, lv, first) {
		bits |= n.clientID.match(t, next, s)
	}
	if n.username != nil && substOK(s.username, s.usernameOK, lv, first) {
		bits |= n.username.match(t, next, s)
	}
	return bits
}

// contain returns what the rules whose filters contain the filter f (from
// its level at start) grant: those matching every topic f matches.
func (n *aclNode) contain(f string, start int, s *subst) aclBits {
	if n == nil {
		return 0
	}
	first := start == 0
	var bits aclBits
	if start > len(f) {
		return n.hash | n.end
	}
	lv, next := level(f, start)
	// A rule ending in '#' here contains whatever follows, unless it is the
	// first level and f names '$' topics, which '#' does not match.
	if !(first && dollar(lv)) {
		bits = n.hash
	}
	switch lv {
	case "#":
		// Only a '#' rule here contains a '#'; at the first level, where
		// '#' cannot match the (absent) parent, so does "+/#".
		if first && n.plus != nil {
			bits |= n.plus.hash
		}
		return bits
	case "+":
		return bits | n.plus.contain(f, next, s)
	}
	if c := n.literal[lv]; c != nil {
		bits |= c.contain(f, next, s)
	}
	if n.plus != nil && !(first && dollar(lv)) {
		bits |= n.plus.contain(f, next, s)
	}
	if n.clientID != nil && substOK(s.clientID, s.clientIDOK, lv, first) {
		bits |= n.clientID.contain(f, next, s)
	}
	if n.username != nil && substOK(s.username, s.usernameOK, lv, first) {
		bits |= n.username.contain(f, next, s)
	}
	return bits
}

// intersect returns what the rules whose filters intersect the filter f
// (from its level at start) grant: those for which some topic matches both.
func (n *aclNode) intersect(f string, start int, s *subst) aclBits {
	if n == nil {
		return 0
	}
	first := start == 0
	var bits aclBits
	if start > len(f) {
		return n.hash | n.end
	}
	lv, next := level(f, start)
	if !(first && dollar(lv)) {
		bits = n.hash
	}
	switch lv {
	case "#":
		// f matches this node's topics and everything below.
		return bits | n.end | n.below(first, s)
	case "+":
		for c := range n.anyChild(first, s) {
			bits |= c.intersect(f, next, s)
		}
		return bits
	}
	if c := n.literal[lv]; c != nil {
		bits |= c.intersect(f, next, s)
	}
	if n.plus != nil && !(first && dollar(lv)) {
		bits |= n.plus.intersect(f, next, s)
	}
	if n.clientID != nil && substOK(s.clientID, s.clientIDOK, lv, first) {
		bits |= n.clientID.intersect(f, next, s)
	}
	if n.username != nil && substOK(s.username, s.usernameOK, lv, first) {
		bits |= n.username.intersect(f, next, s)
	}
	return bits
}

// below returns what every rule deeper than n grants, skipping what a '#'
// filter at the first level cannot reach ('$' levels) and substitutions
// that cannot match for this client.
func (n *aclNode) below(first bool, s *subst) aclBits {
	if n == nil {
		return 0
	}
	bits := n.hash
	for c := range n.anyChild(first, s) {
		bits |= c.end | c.below(false, s)
	}
	return bits
}

// anyChild yields the nodes under n that some level, the first level when
// first, leads to: what a "+" or "#" filter level reaches. Skipped are
// literal levels starting with '$' at the first level, and "%c" and "%u"
// when they can stand for no level of this client's.
func (n *aclNode) anyChild(first bool, s *subst) iter.Seq[*aclNode] {
	return func(yield func(*aclNode) bool) {
		for k, c := range n.literal {
			if !(first && dollar(k)) && !yield(c) {
				return
			}
		}
		if n.plus != nil && !yield(n.plus) {
			return
		}
		if n.clientID != nil && s.clientIDOK && !(first && dollar(s.clientID)) && !yield(n.clientID) {
			return
		}
		if n.username != nil && s.usernameOK && !(first && dollar(s.username)) {
			yield(n.username)
		}
	}
}

// add puts a rule for filter into the trie.
func (n *aclNode) add(filter string, bits aclBits, pattern bool) {
	for start := 0; start <= len(filter); {
		lv, next := level(filter, start)
		switch {
		case lv == "#":
			n.hash |= bits
			return
		case lv == "+":
			if n.plus == nil {
				n.plus = &aclNode{}
			}
			n = n.plus
		case pattern && lv == "%c":
			if n.clientID == nil {
				n.clientID = &aclNode{}
			}
			n = n.clientID
		case pattern && lv == "%u":
			if n.username == nil {
				n.username = &aclNode{}
			}
			n = n.username
		default:
			c := n.literal[lv]
			if c == nil {
				if n.literal == nil {
					n.literal = make(map[string]*aclNode)
				}
				c = &aclNode{}
				n.literal[lv] = c
			}
			n = c
		}
		start = next
	}
	n.end |= bits
}

func readACLRules(path string) (*aclRules, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: ACL file: %w", err)
	}
	defer file.Close()
	return parseACLRules(path, file)
}

var aclAccess = map[string]aclBits{
	"read":      aclRead,
	"write":     aclWrite,
	"readwrite": aclRead | aclWrite,
	"deny":      aclDeny,
}

func parseACLRules(name string, r io.Reader) (*aclRules, error) {
	rules := &aclRules{users: make(map[string]*aclNode)}
	var current *aclNode // the anonymous clients' until the first user line
	anonymous := true
	err := scanLines(name, r, func(n int, line string) error {
		line = strings.TrimLeft(line, " \t")
		if line == "" || line[0] == '#' {
			return nil
		}
		keyword, rest := cutBlank(line)
		switch keyword {
		case "user":
			if rest == "" {
				return fmt.Errorf("%s:%d: user: missing user name", name, n)
			}
			anonymous = false
			current = rules.users[rest]
			if current == nil {
				current = &aclNode{}
				rules.users[rest] = current
			}
			return nil
		case "topic", "pattern":
			bits, filter, err := parseACLRule(keyword, rest)
			if err != nil {
				return fmt.Errorf("%s:%d: %w", name, n, err)
			}
			rules.size++
			if keyword == "pattern" {
				if rules.patterns == nil {
					rules.patterns = &aclNode{}
				}
				rules.patterns.add(filter, bits, true)
				return nil
			}
			if anonymous && rules.anonymous == nil {
				rules.anonymous = &aclNode{}
				current = rules.anonymous
			}
			current.add(filter, bits, false)
			return nil
		}
		return fmt.Errorf("%s:%d: unknown directive %q (want user, topic or pattern)", name, n, keyword)
	})
	if err != nil {
		return nil, err
	}
	return rules, nil
}

// cutBlank splits s at its first run of blanks.
func cutBlank(s string) (first, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimLeft(s[i:], " \t")
}

// parseACLRule parses what follows "topic" or "pattern".
func parseACLRule(keyword, rest string) (aclBits, string, error) {
	if rest == "" {
		return 0, "", fmt.Errorf("%s: missing topic", keyword)
	}
	word, filter := cutBlank(rest)
	bits, isAccess := aclAccess[word]
	switch {
	case filter == "" && isAccess:
		return 0, "", fmt.Errorf("%s %s: missing topic (for a topic named %q write \"%s readwrite %s\")", keyword, word, word, keyword, word)
	case filter == "":
		bits, filter = aclRead|aclWrite, word
	case !isAccess:
		return 0, "", fmt.Errorf("%s: unknown access %q (want read, write, readwrite or deny; a topic with a space in it needs one)", keyword, word)
	}
	if err := validACLFilter(filter, keyword == "pattern"); err != nil {
		return 0, "", fmt.Errorf("%s %q: %w", keyword, filter, err)
	}
	return bits, filter, nil
}

// validACLFilter checks filter is an MQTT topic filter and, in a pattern,
// that %c and %u fill their levels.
func validACLFilter(filter string, pattern bool) error {
	if strings.IndexByte(filter, 0) >= 0 {
		return errors.New("topic contains U+0000")
	}
	for start := 0; start <= len(filter); {
		lv, next := level(filter, start)
		switch {
		case lv == "#" && next <= len(filter):
			return errors.New(`"#" must be the last level`)
		case lv != "#" && lv != "+" && strings.ContainsAny(lv, "+#"):
			return errors.New(`"+" and "#" must fill a whole level`)
		case pattern && lv != "%c" && lv != "%u" && (strings.Contains(lv, "%c") || strings.Contains(lv, "%u")):
			return errors.New(`"%c" and "%u" must fill a whole level`)
		}
		start = next
	}
	return nil
}
