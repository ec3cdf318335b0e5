//go:build !linux

// Command relayfloor needs Linux's epoll; see main.go.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "relayfloor: Linux only")
	os.Exit(2)
}
