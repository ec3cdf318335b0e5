package auth

import (
	"strings"
	"testing"
)

// FuzzParseACLFile: any input parses or fails cleanly, and the rules it
// gives answer every question without panicking.
func FuzzParseACLFile(f *testing.F) {
	f.Add(testACL, "dev1", "alice", "a/b/c")
	f.Add("pattern read %c/#\ntopic deny #\n", "$SYS", "", "$SYS/x")
	f.Add("user u\ntopic read +/+/#\n", "+", "u", "+/#")
	f.Fuzz(func(t *testing.T, file, clientID, username, topic string) {
		acl, err := ParseACLFile("fuzz", strings.NewReader(file))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz:") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		for _, c := range []*Client{{ClientID: clientID}, {ClientID: clientID, Username: username, HasUsername: true}} {
			for _, a := range []Access{Read, Write, Subscribe} {
				acl.Allow(c, a, topic)
			}
			acl.Covers(c, topic)
		}
	})
}

// FuzzParsePasswordFile: any input parses or fails cleanly, without
// quoting what may be a plain-text password.
func FuzzParsePasswordFile(f *testing.F) {
	f.Add("ann:$7$101$AAAA$AAAA\n# c\n\nbob:$6$AAAA$AAAA")
	f.Add("ann:hunter2\n")
	f.Fuzz(func(t *testing.T, file string) {
		if _, err := ParsePasswordFile("fuzz", strings.NewReader(file)); err != nil && !strings.HasPrefix(err.Error(), "fuzz:") {
			t.Fatalf("error %q does not name the file", err)
		}
		e, err := ReadPasswordEditor(strings.NewReader(file))
		if err != nil {
			return
		}
		var b strings.Builder
		e.writeTo(&b)
	})
}
