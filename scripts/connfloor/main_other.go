//go:build !linux

// Command connfloor needs Linux's epoll; see main.go.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "connfloor: Linux only")
	os.Exit(2)
}
