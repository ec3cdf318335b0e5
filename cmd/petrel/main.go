// Command petrel is the Petrel MQTT broker and the tools around it.
//
//	petrel [serve] [--config FILE] [--listen ADDR]... [--log-level LEVEL]
//	petrel check-config FILE
//	petrel passwd [-c] [-b] [-D] [-U] [-I iterations] FILE [USER [PASSWORD]]
//	petrel pub {-t topic | -L URL} {-m message | -f file | -s | -l | -n} [flags]
//	petrel sub {-t topic... | -L URL} [-v | -F format | -j] [-C count] [-W seconds] [flags]
//	petrel bench {conn | pub | sub | pubsub | preset NAME} [flags]
//	petrel version
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches to a subcommand and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stderr)
	case "check-config":
		return checkConfig(args, stdout, stderr)
	case "passwd":
		return passwd(args, os.Stdin, stdout, stderr)
	case "pub":
		return pub(args, os.Stdin, stdout, stderr)
	case "sub":
		return sub(args, stdout, stderr)
	case "bench":
		return benchCommand(args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "petrel", version())
		return 0
	case "help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "petrel: unknown command %q\n\n", cmd)
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  petrel [serve] [flags]   run the broker (the default)
  petrel check-config FILE check a configuration file, and the files it
                           names, without starting the broker
  petrel passwd [flags] FILE USER [PASSWORD]
                           manage a password file (Mosquitto's format)
  petrel pub [flags]       publish a message (mosquitto_pub's flags)
  petrel sub [flags]       subscribe and print messages (mosquitto_sub's flags)
  petrel bench MODE [flags]
                           generate load and measure a broker (conn, pub, sub,
                           pubsub, preset NAME)
  petrel version           print the version
  petrel help              show this help

Run 'petrel serve -h' for the broker's flags, 'petrel pub --help' and
'petrel sub --help' for the clients', 'petrel bench --help' for the load
generator's.
`)
}

// version reports the module version the binary was built from.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
