// Package auth decides who may connect and what they may do.
//
// The broker asks an Authenticator at CONNECT and an Authorizer for each
// publish, subscription and delivery (access.go). The backends here:
//
//   - PasswordFile: Mosquitto's password_file ("$7$" PBKDF2-SHA512 and
//     "$6$" SHA-512 hashes), made and edited by petrel passwd or
//     mosquitto_passwd; HashPassword, PasswordEditor and WritePasswordFile
//     for tools.
//   - ACLFile: Mosquitto's acl_file (user, topic, pattern with %c and %u).
//     Deny wins over grants; a subscription is allowed when its filter
//     intersects a read grant and refused when one deny rule covers it;
//     Covers holds when one read grant contains the filter and no deny rule
//     intersects it. The type's documentation has the whole of it.
//   - HTTP: a web service asked at login and, through a bounded cache, for
//     access; Allow never blocks (the message path), AllowWait may
//     (WaitingAuthorizer, for publish and subscribe).
//
// Each is safe for concurrent use; the file backends reload atomically.
//
// The rest of the package is MQTT 5 enhanced
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
