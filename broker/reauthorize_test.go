package broker

import (
	"sync/atomic"
	"testing"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/packet"
)

// switchableACL lets the test change the rules, as a reloaded ACL file does:
// "open" lets the client read everything, otherwise nothing under secret/.
type switchableACL struct{ open atomic.Bool }

func (a *switchableACL) Allow(_ *auth.Client, acc auth.Access, topic string) bool {
	if acc == auth.Read && !a.open.Load() {
		return len(topic) < 7 || topic[:7] != "secret/"
	}
	return true
}

func (a *switchableACL) Covers(_ *auth.Client, filter string) bool { return a.open.Load() }

// After the rules change, a subscription the authorizer had vouched for is
// checked message by message.
func TestAuthorizationChangedRechecksSubscriptions(t *testing.T) {
	acl := &switchableACL{}
	acl.open.Store(true)
	srv := startServer(t, Options{Authorizer: acl})
	addr := srv.Addrs()[0].String()
	sub, _ := wireConnect(t, addr, "reader", true)
	sub.Subscribe("#", 0)
	pub, _ := wireConnect(t, addr, "writer", true)

	pub.Publish("secret/a", "before", 0, 0, false)
	pub.Ping()
	if p, ok := sub.Next().(*packet.Publish); !ok || string(p.Payload) != "before" {
		t.Fatalf("before the change: got %+v", p)
	}

	acl.open.Store(false)
	srv.AuthorizationChanged()
	pub.Publish("secret/a", "after", 0, 0, false)
	pub.Publish("public/a", "still readable", 0, 0, false)
	pub.Ping()
	if p, ok := sub.Next().(*packet.Publish); !ok || string(p.Payload) != "still readable" {
		t.Fatalf("after the change: got %+v; the secret/ message must be withheld", p)
	}
	if srv.stats.withheld.Load() == 0 {
		t.Error("withheld counter did not rise")
	}
}
