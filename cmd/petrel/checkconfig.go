package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/petrelmq/petrel/internal/config"
)

// checkConfig validates a configuration file without starting the broker:
// what serve checks before it opens the store or a listener. The file is
// parsed and validated completely, then the files it names are read and
// parsed as serve reads them (listeners' certificates and keys, the
// password and ACL files, the HTTP server's certificate and token file, the
// cluster's password file and route certificates). It prints "ok" and
// returns 0 when serve would start on it; otherwise it prints each problem,
// "FILE:LINE: KEY: MESSAGE" for the configuration file and "FILE: MESSAGE"
// for a file it names, and returns 1. The store is not opened: a running
// broker holds its lock, and no cluster is joined.
func checkConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("petrel check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: petrel check-config FILE")
		fmt.Fprintln(stderr, "Checks a configuration file, and the files it names, as 'petrel serve --config FILE' would, without starting.")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	cfg, err := loadConfig(fs.Arg(0), overrides{})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	// Warnings (an expired certificate) are worth seeing; the lines saying
	// what was loaded are not.
	log := newLogger(config.Log{Level: "warn", Format: cfg.Log.Format}, stderr)
	if _, _, err := brokerOptions(cfg, log); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := checkHTTP(cfg, log); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}
