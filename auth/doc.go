// Package auth decides who may connect. This part of it is MQTT 5 enhanced
// authentication (MQTT 5.0 §4.12): a pluggable Method interface, a registry
// of methods by name, and SCRAM-SHA-256 (RFC 5802, RFC 7677) as the built-in
// method, with its credential format, an in-memory credential store and a
// client for tools and tests.
//
// The package knows nothing of packets or sockets. The broker carries bytes
// between the client and an Exchange:
//
//	CONNECT  method M, data d0     →  x, err := methods[M].Start(clientID)
//	                                   out, done, err := x.Step(d0)
//	AUTH 0x18 out  ← (not done)
//	AUTH 0x18 d1   →                  out, done, err = x.Step(d1)
//	   ...
//	CONNACK 0x00, data out  ← (done, err == nil); identity is x.Username()
//	CONNACK ReasonCode(err) ← (err != nil)
//
// Re-authentication (the client sends AUTH 0x19 with method M and data d0)
// runs the same conversation on a new Exchange; it ends with AUTH 0x00 on
// success and with DISCONNECT ReasonCode(err) on failure.
package auth
