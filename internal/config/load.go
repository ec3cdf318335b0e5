package config

import (
	"bytes"
	"errors"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads and parses the configuration file at path. See Parse.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err // *fs.PathError: it names the file and the operation
	}
	return Parse(path, data)
}

// Parse parses a configuration file's contents: it starts from Default,
// overlays every key data sets, and validates the result. name is the file's
// name in error messages.
//
// Parsing is strict: an unknown or repeated key, a value of the wrong kind
// and a value out of range are all errors, and all of them are returned
// together (see Error). An empty file, or one holding only comments, is valid
// and means the defaults.
func Parse(name string, data []byte) (*File, error) {
	root, err := parseYAML(name, data)
	if err != nil {
		return nil, err
	}
	f, errs := decodeFile(name, root)
	f.parsed, _ = decodeFile(name, root)
	f.parsed.fillDerived()
	errs = append(errs, withoutFollowOns(f.validate(), errs)...)
	if err := joinErrors(name, errs); err != nil {
		return nil, err
	}
	return f, nil
}

// decodeFile overlays the document at root (nil for none) onto the defaults.
func decodeFile(name string, root *yaml.Node) (*File, []*Error) {
	f := Default()
	f.name = name
	f.pos = make(map[string]position)
	if root == nil {
		return f, nil
	}
	d := decoder{file: name, pos: f.pos}
	d.decodeInto(root, f)
	return f, d.errs
}

// withoutFollowOns drops the validation errors about keys inside a value the
// decoder already refused: a listener written as a string is one mistake,
// not also a listener without an address.
func withoutFollowOns(errs, decodeErrs []*Error) []*Error {
	return slices.DeleteFunc(errs, func(e *Error) bool {
		return slices.ContainsFunc(decodeErrs, func(de *Error) bool {
			return de.Key == "" || e.Key == de.Key ||
				strings.HasPrefix(e.Key, de.Key+".") || strings.HasPrefix(e.Key, de.Key+"[")
		})
	})
}

// parseYAML returns the root node of the single YAML document in data, or
// nil when data holds no document at all.
func parseYAML(name string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return nil, nil
	case err != nil:
		return nil, syntaxError(name, data, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(name, data, err)
	default:
		return nil, &Error{File: name, Line: next.Line, Column: next.Column,
			Msg: "a second YAML document (after ---); a config file holds one"}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// yamlErrorLine picks the line out of the YAML library's messages, which
// read "yaml: line 3: could not find expected ':'" or, without a line,
// "yaml: control characters are not allowed".
var yamlErrorLine = regexp.MustCompile(`(?s)^yaml: (?:line (\d+): )?(.*)$`)

func syntaxError(name string, data []byte, err error) error {
	e := &Error{File: name, Msg: "invalid YAML: " + err.Error()}
	if m := yamlErrorLine.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = "invalid YAML: " + m[2]
	}
	if indentedWithTab(data, e.Line) {
		e.Msg += " (the line is indented with a tab; YAML allows only spaces)"
	}
	return e
}

// indentedWithTab reports whether line n (1-based) of data has a tab in its
// indentation, the usual cause of YAML's "found character that cannot start
// any token".
func indentedWithTab(data []byte, n int) bool {
	if n < 1 {
		return false
	}
	lines := bytes.Split(data, []byte("\n"))
	if n > len(lines) {
		return false
	}
	line := lines[n-1]
	indent := line[:len(line)-len(bytes.TrimLeft(line, " \t"))]
	return bytes.IndexByte(indent, '\t') >= 0
}
