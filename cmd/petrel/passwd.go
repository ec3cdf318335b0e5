package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"strings"

	"github.com/petrelmq/petrel/auth"
)

const passwdUsage = `Usage:
  petrel passwd [-c] [-I iterations] FILE USER              set USER's password, asked twice
  petrel passwd [-c] [-I iterations] -b FILE USER PASSWORD  set it from the command line
  petrel passwd -D FILE USER                                delete USER
  petrel passwd -U [-I iterations] FILE                     hash a plain-text user:password file

FILE is a password file in Mosquitto's format (mosquitto_passwd makes and reads
the same). Other users, comments and blank lines are kept; the file is replaced
atomically with mode 0600.

Without -b the password is read from the terminal with echo off, or, when
standard input is not a terminal, from its first line (a second line, if any,
must repeat it).

Flags:
`

// passwd manages a password file like mosquitto_passwd.
func passwd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("petrel passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, passwdUsage)
		fs.PrintDefaults()
	}
	create := fs.Bool("c", false, "create the file, overwriting one that exists")
	batch := fs.Bool("b", false, "take the password from the command line (it shows in the process list and shell history)")
	del := fs.Bool("D", false, "delete the user")
	upgrade := fs.Bool("U", false, "hash every plain-text password in the file, in place")
	iterations := fs.Int("I", auth.DefaultIterations, "PBKDF2 `iterations` for new hashes (mosquitto_passwd uses 101)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	want := 2
	switch {
	case *upgrade:
		want = 1
	case *batch:
		want = 3
	}
	usageErr := func(msg string) int {
		fmt.Fprintf(stderr, "petrel passwd: %s\n\n", msg)
		fs.Usage()
		return 2
	}
	switch {
	case flagsSet(*create, *del, *upgrade) > 1 || *upgrade && *batch || *del && *batch:
		return usageErr("-c, -D and -U do not go together, nor -b with -D or -U")
	case fs.NArg() != want:
		return usageErr(fmt.Sprintf("want %d arguments, got %d", want, fs.NArg()))
	case *iterations < 1:
		return usageErr("-I must be at least 1")
	}
	file := fs.Arg(0)
	fail := func(err error) int {
		fmt.Fprintln(stderr, "petrel passwd:", err)
		return 1
	}

	if *upgrade {
		ed, err := readPasswordFile(file)
		if err != nil {
			return fail(err)
		}
		hashed, skipped, err := ed.UpgradePlaintext(*iterations)
		if err != nil {
			return fail(err)
		}
		if err := auth.WritePasswordFile(file, ed); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "%s: %d passwords hashed, %d already hashed\n", file, hashed, skipped)
		return 0
	}

	user := fs.Arg(1)
	if err := auth.ValidateUsername(user); err != nil {
		return fail(fmt.Errorf("user %q: %w", user, err))
	}
	var ed *auth.PasswordEditor
	if *create {
		ed = auth.NewPasswordEditor()
	} else {
		var err error
		if ed, err = readPasswordFile(file); err != nil {
			return fail(err)
		}
	}
	if *del {
		if !ed.Delete(user) {
			return fail(fmt.Errorf("%s: no user %q", file, user))
		}
	} else {
		password := ""
		if *batch {
			password = fs.Arg(2)
		} else {
			var err error
			if password, err = askPassword(stdin, stderr); err != nil {
				return fail(err)
			}
		}
		if err := ed.SetPassword(user, password, *iterations); err != nil {
			return fail(err)
		}
	}
	if err := auth.WritePasswordFile(file, ed); err != nil {
		return fail(err)
	}
	return 0
}

func flagsSet(fs ...bool) int {
	n := 0
	for _, f := range fs {
		if f {
			n++
		}
	}
	return n
}

func readPasswordFile(path string) (*auth.PasswordEditor, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist (use -c to create it)", path)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ed, err := auth.ReadPasswordEditor(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ed, nil
}

// askPassword reads a new password twice: from the terminal with echo off
// when stdin is one, else as the lines of stdin.
func askPassword(stdin io.Reader, prompt io.Writer) (string, error) {
	if tty, ok := stdin.(*os.File); ok && isTerminal(tty) {
		return askTerminal(tty, prompt)
	}
	r := bufio.NewReader(stdin)
	first, err := readLine(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return "", errors.New("no password on standard input")
		}
		return "", err
	}
	second, err := readLine(r)
	if err == nil && second != first {
		return "", errors.New("the two passwords on standard input differ")
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	if first == "" {
		return "", errors.New("empty password")
	}
	return first, nil
}

// readLine reads a line without its line ending; io.EOF only when there
// is nothing at all.
func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && fi.Mode()&os.ModeDevice != 0
}

// askTerminal prompts on the terminal tty with echo turned off by stty(1):
// golang.org/x/term would do it with an ioctl, but it is not among our
// dependencies, and stty is on every system with a terminal.
func askTerminal(tty *os.File, prompt io.Writer) (string, error) {
	saved, err := stty(tty, "-g")
	if err != nil {
		return "", fmt.Errorf("cannot turn off echo (stty: %v); use -b or pipe the password in", err)
	}
	restore := func() { stty(tty, strings.TrimSpace(saved)) }
	if _, err := stty(tty, "-echo"); err != nil {
		return "", fmt.Errorf("cannot turn off echo (stty: %v)", err)
	}
	// Ctrl-C while echo is off must not leave the terminal silent.
	interrupted := make(chan os.Signal, 1)
	signal.Notify(interrupted, os.Interrupt)
	done := make(chan struct{})
	defer func() {
		signal.Stop(interrupted)
		close(done)
		restore()
	}()
	go func() {
		select {
		case <-interrupted:
			restore()
			fmt.Fprintln(prompt)
			os.Exit(130)
		case <-done:
		}
	}()
	r := bufio.NewReader(tty)
	fmt.Fprint(prompt, "Password: ")
	first, err := readLine(r)
	fmt.Fprintln(prompt)
	if err != nil {
		return "", err
	}
	fmt.Fprint(prompt, "Reenter password: ")
	second, err := readLine(r)
	fmt.Fprintln(prompt)
	if err != nil {
		return "", err
	}
	switch {
	case first != second:
		return "", errors.New("passwords do not match")
	case first == "":
		return "", errors.New("empty password")
	}
	return first, nil
}

// stty runs stty(1) with args on the terminal tty.
func stty(tty *os.File, args ...string) (string, error) {
	cmd := exec.Command("stty", args...)
	cmd.Stdin = tty
	out, err := cmd.Output()
	return string(out), err
}
