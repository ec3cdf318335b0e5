// Command embed runs Petrel inside a Go program: it starts a broker, sets
// hooks that log who connects and keep clients away from one topic tree,
// and publishes into the broker from Go.
//
//	go run ./examples/embed                      # a broker on 127.0.0.1:1883 until Ctrl-C
//	go run ./examples/embed -addr 127.0.0.1:0 -selfcheck
//
// With -selfcheck it connects to itself with the Paho MQTT client, checks
// that the hooks and Publish did what they should, and exits (0 when all
// is well), within a few seconds.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/petrelmq/petrel/auth"
	"github.com/petrelmq/petrel/broker"
)

// forbidden is the topic tree no client may publish or subscribe to.
const forbidden = "forbidden/"

func main() {
	addr := flag.String("addr", "127.0.0.1:1883", "address to listen on (port 0 picks one)")
	selfCheck := flag.Bool("selfcheck", false, "connect to the broker, check it, and exit")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*addr, *selfCheck, log); err != nil {
		log.Error("embed", "err", err)
		os.Exit(1)
	}
}

func run(addr string, selfCheck bool, log *slog.Logger) error {
	connected := make(chan string, 16)
	srv := broker.New(broker.Options{
		Listeners: []broker.ListenerConfig{{Address: addr}},
		Logger:    log,
		Hooks: broker.Hooks{
			// Hooks run on the broker's event loops: they log, or send
			// without blocking, and return.
			OnConnect: func(c *auth.Client, sessionPresent bool) {
				log.Info("OnConnect", "client", c.ClientID, "remote", c.RemoteAddr.String(), "session_present", sessionPresent)
				select {
				case connected <- strings.Clone(c.ClientID): // the client id is the broker's: copied to be kept
				default:
				}
			},
			OnDisconnect: func(c *auth.Client, d broker.DisconnectInfo) {
				log.Info("OnDisconnect", "client", c.ClientID, "by_client", d.ByClient, "code", d.Code.String(),
					"err", d.Err, "will_published", d.WillPublished)
			},
			OnACLCheck: func(c *auth.Client, access auth.Access, topic string) bool {
				if strings.HasPrefix(topic, forbidden) {
					log.Info("access denied", "client", c.ClientID, "access", access.String(), "topic", topic)
					return false
				}
				return true
			},
		},
	})
	if err := srv.Start(); err != nil {
		return err
	}
	defer srv.Close()
	log.Info("broker running", "addr", srv.Addrs()[0].String())

	// A retained message from Go: every client subscribing to greetings
	// gets it.
	if err := srv.Publish("greetings", []byte("hello from Go"), 1, true); err != nil {
		return err
	}
	if selfCheck {
		return check(srv, connected)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

// checkTimeout bounds each step of the self-check.
const checkTimeout = 10 * time.Second

// check connects to srv with Paho and verifies the hooks and Publish.
func check(srv *broker.Server, connected <-chan string) error {
	got := make(chan mqtt.Message, 16)
	o := mqtt.NewClientOptions().AddBroker("tcp://" + srv.Addrs()[0].String()).SetClientID("selfcheck").
		SetAutoReconnect(false).SetConnectTimeout(checkTimeout).SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { got <- m })
	c := mqtt.NewClient(o)
	if err := wait(c.Connect()); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Disconnect(0)
	select {
	case id := <-connected:
		if id != "selfcheck" {
			return fmt.Errorf("OnConnect saw %q, want selfcheck", id)
		}
	case <-time.After(checkTimeout):
		return errors.New("OnConnect did not run")
	}

	// The message published from Go before anyone subscribed was retained.
	if err := wait(c.Subscribe("greetings", 1, nil)); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if err := expect(got, "greetings", "hello from Go"); err != nil {
		return err
	}

	// The hook refuses the forbidden tree: SUBACK 0x80 for a filter in it.
	st := c.Subscribe(forbidden+"#", 1, nil)
	if err := wait(st); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if code := st.(*mqtt.SubscribeToken).Result()[forbidden+"#"]; code != 0x80 {
		return fmt.Errorf("SUBACK for %s#: 0x%02x, want 0x80", forbidden, code)
	}
	// A PUBLISH there is acknowledged (MQTT 3.1.1 cannot say no) and
	// dropped: of the two messages below only the second arrives.
	if err := wait(c.Subscribe("#", 1, nil)); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if err := expect(got, "greetings", "hello from Go"); err != nil { // retained, again for the new filter
		return err
	}
	if err := wait(c.Publish(forbidden+"x", 1, false, "must not arrive")); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if err := srv.Publish("from/go", []byte("live"), 1, false); err != nil {
		return fmt.Errorf("Server.Publish: %w", err)
	}
	if err := expect(got, "from/go", "live"); err != nil {
		return err
	}
	fmt.Println("self-check passed")
	return nil
}

func wait(t mqtt.Token) error {
	if !t.WaitTimeout(checkTimeout) {
		return errors.New("no answer in time")
	}
	return t.Error()
}

// expect requires the next message to be payload on topic.
func expect(got <-chan mqtt.Message, topic, payload string) error {
	select {
	case m := <-got:
		if m.Topic() != topic || string(m.Payload()) != payload {
			return fmt.Errorf("got %q on %s, want %q on %s", m.Payload(), m.Topic(), payload, topic)
		}
		return nil
	case <-time.After(checkTimeout):
		return fmt.Errorf("no message on %s", topic)
	}
}
