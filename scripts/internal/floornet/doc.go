// Package floornet is what the floor servers (scripts/connfloor,
// scripts/relayfloor) share: a loopback listening socket set up as
// Petrel's, and an epoll set that accepts on it. Linux only.
package floornet
