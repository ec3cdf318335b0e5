package bridge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"testing"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/internal/testlog"
	"github.com/petrelmq/petrel/internal/testpki"
	"github.com/petrelmq/petrel/packet"
)

// A bridge reaches its remote broker over TLS with a client certificate
// (which the remote requires), over WebSocket, and over WebSocket in TLS.
func TestBridgeTransports(t *testing.T) {
	ca := testpki.NewCA(t, "bridge test CA")
	cert := ca.Client(t, &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "site1"}})
	serverTLS := &tls.Config{Certificates: []tls.Certificate{ca.Server(t, 2).TLS}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: ca.Pool()}
	remote := broker.New(broker.Options{Logger: testlog.New(t), Listeners: []broker.ListenerConfig{
		{Kind: "tls", Address: "127.0.0.1:0", TLS: serverTLS},
		{Kind: "ws", Address: "127.0.0.1:0"},
		{Kind: "wss", Address: "127.0.0.1:0", TLS: serverTLS},
	}})
	if err := remote.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { remote.Close() })
	addrs := remote.Addrs()
	clientTLS := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert.TLS}}
	local, _ := startBroker(t, "127.0.0.1:0", "")
	for i, tc := range []struct {
		name, url string
	}{
		{"mqtts", "mqtts://" + addrs[0].String()},
		{"ws", "ws://" + addrs[1].String() + "/mqtt"},
		{"wss", "wss://" + addrs[2].String() + "/mqtt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := New(Config{Name: tc.name, Addr: tc.url, TLS: clientTLS, Local: local.DialInternal, Logger: testlog.New(t),
				Rules: []Rule{{Pattern: "t/#", Direction: Out, QoS: 1, RemotePrefix: tc.name + "/"}}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(b.Start())
			// A subscriber at the remote broker, over its TLS listener.
			in := &inbox{}
			sub := connectTLS(t, addrs[0].String(), clientTLS, fmt.Sprint("sub", i), in)
			if _, err := sub.Subscribe(context.Background(), []packet.Subscription{{Filter: tc.name + "/t/#", QoS: 1}}, packet.Properties{}); err != nil {
				t.Fatal(err)
			}
			waitConnected(t, b)
			pub := publisher(t, local.Addrs()[0].String(), fmt.Sprint("pub", i))
			if _, err := pub.Publish(context.Background(), &packet.Publish{Topic: "t/x", QoS: 1, Payload: []byte(tc.name)}); err != nil {
				t.Fatal(err)
			}
			if got := in.await(t, 1); got[0] != tc.name+"/t/x="+tc.name {
				t.Errorf("got %v", got)
			}
		})
	}
}
