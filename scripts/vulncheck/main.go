// Command vulncheck reads govulncheck's JSON output and decides whether the
// tree has a known vulnerability in code it calls.
//
//	govulncheck -db file://DIR -format json ./... | go run ./scripts/vulncheck [-stdlib=fail]
//
// A vulnerability in a required module that our code reaches fails the
// check: go get the fixed version. One in the standard library is a fact
// about the Go release that runs the check, not about the tree, so by
// default it is listed as a warning naming the release that fixes it;
// -stdlib=fail makes it fail too (for a release build). Vulnerabilities in
// code that is imported or required but never called are counted, not
// listed, as govulncheck itself does.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// message is one of the JSON values govulncheck writes; each has one field set.
type message struct {
	OSV     *osvEntry `json:"osv"`
	Finding *finding  `json:"finding"`
}

type osvEntry struct {
	ID      string `json:"id"`
	Summary string `json:"summary"`
}

type finding struct {
	OSV          string  `json:"osv"`
	FixedVersion string  `json:"fixed_version"`
	Trace        []frame `json:"trace"`
}

// frame is one step of a finding's trace: the first is the vulnerable
// symbol, the last our code that reaches it.
type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
	Position *struct {
		Filename string `json:"filename"`
		Line     int    `json:"line"`
	} `json:"position"`
}

// report is what is said of one vulnerability our code calls.
type report struct {
	id, module, version, pkg, fixed, from string
}

func main() {
	stdlib := flag.String("stdlib", "warn", "what a reachable standard-library vulnerability does: warn or fail")
	flag.Parse()
	if *stdlib != "warn" && *stdlib != "fail" {
		fmt.Fprintln(os.Stderr, "vulncheck: -stdlib is warn or fail")
		os.Exit(2)
	}
	called, uncalled, summaries, err := read(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulncheck:", err)
		os.Exit(2)
	}
	failed := false
	for _, r := range called {
		level := "FAIL"
		if r.module == "stdlib" && *stdlib == "warn" {
			level = "warning"
		} else {
			failed = true
		}
		fmt.Printf("%s: %s in %s@%s (fixed in %s): %s\n\treached from %s\n",
			level, r.id, r.pkg, r.version, r.fixed, summaries[r.id], r.from)
	}
	fmt.Printf("vulncheck: %d known vulnerabilities reached by our code, %d more in code we import or require but do not call\n",
		len(called), len(uncalled))
	if failed {
		os.Exit(1)
	}
}

// read collects, from govulncheck's JSON stream, one report per
// vulnerability our code calls (in id order), the ids of those it does not
// call, and each vulnerability's summary.
func read(r io.Reader) ([]report, map[string]bool, map[string]string, error) {
	byID := map[string]report{}
	uncalled := map[string]bool{}
	summaries := map[string]string{}
	dec := json.NewDecoder(r)
	for {
		var m message
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("reading govulncheck's output: %w", err)
		}
		if m.OSV != nil {
			summaries[m.OSV.ID] = m.OSV.Summary
		}
		f := m.Finding
		if f == nil || len(f.Trace) == 0 {
			continue
		}
		if f.Trace[0].Function == "" {
			uncalled[f.OSV] = true
			continue
		}
		vuln, entry := f.Trace[0], f.Trace[len(f.Trace)-1]
		from := entry.Package + "." + entry.Function
		if entry.Position != nil {
			from = fmt.Sprintf("%s:%d", entry.Position.Filename, entry.Position.Line)
		}
		version, fixed := vuln.Version, f.FixedVersion
		if vuln.Module == "stdlib" { // Go releases, which govulncheck writes as v1.26.8
			version, fixed = "go"+strings.TrimPrefix(version, "v"), "go"+strings.TrimPrefix(fixed, "v")
		}
		if seen, ok := byID[f.OSV]; ok && seen.from <= from {
			continue // one path is enough: the first in order, so that runs agree
		}
		byID[f.OSV] = report{id: f.OSV, module: vuln.Module, version: version, pkg: vuln.Package, fixed: fixed, from: from}
	}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
		delete(uncalled, id)
	}
	slices.Sort(ids)
	called := make([]report, len(ids))
	for i, id := range ids {
		called[i] = byID[id]
	}
	return called, uncalled, summaries, nil
}
