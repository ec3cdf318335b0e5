package config

import (
	"encoding"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The decoder walks a YAML node tree and a Go value side by side, setting
// what the file sets and leaving everything else as it was (the defaults).
// The Go type decides what is accepted:
//
//   - a struct takes a mapping whose keys are its fields' `yaml:"name"` tags;
//     an embedded struct tagged `yaml:",inline"` lends its keys to the parent;
//   - a slice takes a list, which replaces the slice;
//   - a map with string keys takes a mapping, which replaces the map;
//   - a type implementing encoding.TextUnmarshaler (Size, Duration,
//     Tristate) takes a scalar, whose text it parses;
//   - bool, the integers, the floats and string take a scalar of that kind.
//
// A null value (a key with nothing after it, or ~) leaves a struct as it was
// and empties a list or map, so that commenting out everything under a key
// behaves as one expects; for a scalar it is an error, because "no value"
// is never a useful setting.
//
// New list and map elements start from their zero value, or from whatever
// their setDefaults method sets when their pointer type has one.
type decoder struct {
	file  string
	root  reflect.Type // the schema, for suggesting keys found at the wrong level
	errs  []*Error
	pos   map[string]position
	paths []string // every key path in the schema, computed on first need
}

type position struct{ line, column int }

// defaulter is implemented by list and map element types whose fields have
// defaults other than their zero values.
type defaulter interface{ setDefaults() }

// decodeInto overlays the document root onto v, which must be a pointer to a
// struct.
func (d *decoder) decodeInto(root *yaml.Node, v any) {
	rv := reflect.ValueOf(v).Elem()
	d.root = rv.Type()
	d.value(root, rv, "")
}

func (d *decoder) failf(n *yaml.Node, key, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Column: n.Column, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// full reports whether enough errors have been found to stop looking: one
// more than a report shows, so that the report can say it is cut short.
func (d *decoder) full() bool { return len(d.errs) > maxErrors }

var textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

func (d *decoder) value(n *yaml.Node, v reflect.Value, key string) {
	if d.full() {
		return
	}
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if reflect.PointerTo(v.Type()).Implements(textUnmarshalerType) {
		d.text(n, v.Addr().Interface().(encoding.TextUnmarshaler), key, v.Type())
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structure(n, v, key)
	case reflect.Slice:
		d.list(n, v, key)
	case reflect.Map:
		d.dictionary(n, v, key)
	case reflect.Bool:
		d.boolean(n, v, key)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		d.integer(n, v, key)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		d.unsigned(n, v, key)
	case reflect.Float32, reflect.Float64:
		d.float(n, v, key)
	case reflect.String:
		if s, ok := d.scalar(n, v.Type(), key); ok {
			v.SetString(s.Value)
		}
	default:
		// A schema mistake, not a user's: TestSchemaIsDecodable catches it.
		panic(fmt.Sprintf("config: %s: the decoder does not support %s", key, v.Type()))
	}
}

// field is one key of a struct: its name in the file and where it is in Go.
type field struct {
	name  string
	index []int
}

// fieldsOf lists the keys of struct type t in declaration order.
func fieldsOf(t reflect.Type) []field {
	var fields []field
	for _, sf := range reflect.VisibleFields(t) {
		if !sf.IsExported() || len(sf.Index) > 1 && !inlined(t, sf.Index) {
			continue
		}
		name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || opts == "inline" {
			continue
		}
		fields = append(fields, field{name, sf.Index})
	}
	return fields
}

// inlined reports whether every struct on the way to the promoted field at
// index is tagged `yaml:",inline"`.
func inlined(t reflect.Type, index []int) bool {
	for _, i := range index[:len(index)-1] {
		sf := t.Field(i)
		if _, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ","); opts != "inline" || sf.Type.Kind() != reflect.Struct {
			return false
		}
		t = sf.Type
	}
	return true
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value, key string) {
	if isNull(n) {
		return
	}
	fields := fieldsOf(v.Type())
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	if n.Kind != yaml.MappingNode {
		d.failf(n, key, "expected a mapping (keys: %s), got %s", strings.Join(names, ", "), describe(n))
		return
	}
	d.mapping(n, key, func(k, val *yaml.Node, name, path string) {
		at := slices.Index(names, name)
		if at < 0 {
			d.failf(k, path, "unknown key%s", unknownKeyHint(name, names, d.schemaPaths()))
			return
		}
		d.pos[path] = position{k.Line, k.Column}
		d.value(val, v.FieldByIndex(fields[at].index), path)
	})
}

// mapping calls each for every entry of the mapping n whose key is a plain
// name not seen before in it.
func (d *decoder) mapping(n *yaml.Node, key string, each func(k, val *yaml.Node, name, path string)) {
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content) && !d.full(); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		for k.Kind == yaml.AliasNode {
			k = k.Alias
		}
		switch {
		case k.Kind != yaml.ScalarNode:
			d.failf(k, key, "a key must be a plain name, not %s", describe(k))
			continue
		case k.ShortTag() == "!!merge":
			d.failf(k, key, "merge keys (<<) are not supported; write the keys out")
			continue
		}
		path := childKey(key, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.failf(k, path, "duplicate key (first set on line %d)", first.Line)
			continue
		}
		seen[k.Value] = k
		each(k, val, k.Value, path)
	}
}

func (d *decoder) list(n *yaml.Node, v reflect.Value, key string) {
	if isNull(n) {
		v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.failf(n, key, "expected a list, got %s", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, el := range n.Content {
		path := indexKey(key, i)
		d.pos[path] = position{el.Line, el.Column}
		e := s.Index(i)
		setDefaults(e)
		d.value(el, e, path)
	}
	v.Set(s)
}

func (d *decoder) dictionary(n *yaml.Node, v reflect.Value, key string) {
	if v.Type().Key().Kind() != reflect.String {
		panic(fmt.Sprintf("config: %s: map keys must be strings, not %s", key, v.Type().Key()))
	}
	m := reflect.MakeMap(v.Type())
	if !isNull(n) {
		if n.Kind != yaml.MappingNode {
			d.failf(n, key, "expected a mapping, got %s", describe(n))
			return
		}
		d.mapping(n, key, func(k, val *yaml.Node, name, path string) {
			d.pos[path] = position{k.Line, k.Column}
			e := reflect.New(v.Type().Elem()).Elem()
			setDefaults(e)
			d.value(val, e, path)
			m.SetMapIndex(reflect.ValueOf(name).Convert(v.Type().Key()), e)
		})
	}
	v.Set(m)
}

func setDefaults(v reflect.Value) {
	if dv, ok := v.Addr().Interface().(defaulter); ok {
		dv.setDefaults()
	}
}

// scalar returns n if it is a scalar with a value, and reports it otherwise.
func (d *decoder) scalar(n *yaml.Node, t reflect.Type, key string) (*yaml.Node, bool) {
	switch {
	case n.Kind != yaml.ScalarNode:
		d.failf(n, key, "expected %s, got %s", describeType(t), describe(n))
		return nil, false
	case isNull(n):
		d.failf(n, key, "missing value (remove the key to use the default)")
		return nil, false
	}
	return n, true
}

func (d *decoder) text(n *yaml.Node, u encoding.TextUnmarshaler, key string, t reflect.Type) {
	s, ok := d.scalar(n, t, key)
	if !ok {
		return
	}
	if err := u.UnmarshalText([]byte(s.Value)); err != nil {
		d.failf(n, key, "%v", err)
	}
}

func (d *decoder) boolean(n *yaml.Node, v reflect.Value, key string) {
	s, ok := d.scalar(n, v.Type(), key)
	if !ok {
		return
	}
	switch strings.ToLower(s.Value) {
	case "true":
		v.SetBool(true)
	case "false":
		v.SetBool(false)
	default:
		d.failf(n, key, "%q is not a boolean (write true or false)", s.Value)
	}
}

func (d *decoder) integer(n *yaml.Node, v reflect.Value, key string) {
	s, ok := d.scalar(n, v.Type(), key)
	if !ok {
		return
	}
	if !d.isNumber(s, key, "an integer", "!!int") {
		return
	}
	// Base 10 only: YAML would read 0100 as octal, which nobody means in a
	// config file, and hexadecimal limits are no clearer than decimal ones.
	i, err := strconv.ParseInt(strings.ReplaceAll(s.Value, "_", ""), 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange) || err == nil && v.OverflowInt(i):
		d.failf(n, key, "%s is out of range", s.Value)
	case err != nil:
		d.failf(n, key, "%q is not a decimal integer", s.Value)
	default:
		v.SetInt(i)
	}
}

func (d *decoder) unsigned(n *yaml.Node, v reflect.Value, key string) {
	s, ok := d.scalar(n, v.Type(), key)
	if !ok {
		return
	}
	if !d.isNumber(s, key, "an integer", "!!int") {
		return
	}
	text := strings.ReplaceAll(s.Value, "_", "")
	if strings.HasPrefix(text, "-") {
		d.failf(n, key, "%s is negative; this key takes 0 or more", s.Value)
		return
	}
	u, err := strconv.ParseUint(text, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange) || err == nil && v.OverflowUint(u):
		d.failf(n, key, "%s is out of range", s.Value)
	case err != nil:
		d.failf(n, key, "%q is not a decimal integer", s.Value)
	default:
		v.SetUint(u)
	}
}

func (d *decoder) float(n *yaml.Node, v reflect.Value, key string) {
	s, ok := d.scalar(n, v.Type(), key)
	if !ok {
		return
	}
	if !d.isNumber(s, key, "a number", "!!int", "!!float") {
		return
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(s.Value, "_", ""), 64)
	switch {
	case err != nil || math.IsInf(f, 0) || math.IsNaN(f):
		d.failf(n, key, "%q is not a finite number", s.Value)
	case v.OverflowFloat(f):
		d.failf(n, key, "%s is out of range", s.Value)
	default:
		v.SetFloat(f)
	}
}

// isNumber reports whether YAML resolved scalar s to one of tags, and
// explains the mistake when it did not.
func (d *decoder) isNumber(s *yaml.Node, key, what string, tags ...string) bool {
	tag := s.ShortTag()
	if slices.Contains(tags, tag) {
		return true
	}
	quoted := s.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0
	digits := strings.Trim(s.Value, "+-0123456789_") == "" && s.Value != ""
	switch {
	case quoted && yamlResolves(s.Value, tags):
		d.failf(s, key, "%q is a string, not %s (remove the quotes)", s.Value, what)
	case tag == "!!float" && digits:
		// YAML turns integers too large for int64 into floats.
		d.failf(s, key, "%s is out of range", s.Value)
	default:
		d.failf(s, key, "%q is not %s", s.Value, what)
	}
	return false
}

// yamlResolves reports whether text, written unquoted, would be one of tags.
func yamlResolves(text string, tags []string) bool {
	n := yaml.Node{Kind: yaml.ScalarNode, Value: text}
	return slices.Contains(tags, n.ShortTag())
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node holds, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case isNull(n):
		return "nothing"
	}
	return strconv.Quote(n.Value)
}

// describeType names what a Go type takes, for "expected X, got Y" messages.
func describeType(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Size]():
		return "a size"
	case reflect.TypeFor[Duration]():
		return "a duration"
	case reflect.TypeFor[Tristate]():
		return "true, false or auto"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a single value"
}

// schemaPaths lists every key path in the schema ("listeners[].address"),
// parents before their children.
func (d *decoder) schemaPaths() []string {
	if d.paths == nil {
		d.paths = keyPaths(d.root, "")
	}
	return d.paths
}

func keyPaths(t reflect.Type, prefix string) []string {
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return nil
	}
	switch t.Kind() {
	case reflect.Slice:
		return keyPaths(t.Elem(), prefix+"[]")
	case reflect.Map:
		return keyPaths(t.Elem(), prefix+".*")
	case reflect.Struct:
		var paths []string
		for _, f := range fieldsOf(t) {
			path := childKey(prefix, f.name)
			paths = append(paths, path)
			paths = append(paths, keyPaths(t.FieldByIndex(f.index).Type, path)...)
		}
		return paths
	}
	return nil
}

// valueAt returns the value at a key path ("listeners[1].address") in v, a
// value of a schema type, and whether there is one. Map keys holding "." or
// "[" cannot be named by a path.
func valueAt(v reflect.Value, path string) (reflect.Value, bool) {
	for path != "" {
		if path[0] == '[' {
			end := strings.IndexByte(path, ']')
			if end < 0 || v.Kind() != reflect.Slice {
				return reflect.Value{}, false
			}
			i, err := strconv.Atoi(path[1:end])
			if err != nil || i < 0 || i >= v.Len() {
				return reflect.Value{}, false
			}
			v, path = v.Index(i), path[end+1:]
			continue
		}
		path = strings.TrimPrefix(path, ".")
		end := strings.IndexAny(path, ".[")
		if end < 0 {
			end = len(path)
		}
		name := path[:end]
		path = path[end:]
		switch v.Kind() {
		case reflect.Struct:
			fields := fieldsOf(v.Type())
			i := slices.IndexFunc(fields, func(f field) bool { return f.name == name })
			if i < 0 {
				return reflect.Value{}, false
			}
			v = v.FieldByIndex(fields[i].index)
		case reflect.Map:
			v = v.MapIndex(reflect.ValueOf(name).Convert(v.Type().Key()))
			if !v.IsValid() {
				return reflect.Value{}, false
			}
		default:
			return reflect.Value{}, false
		}
	}
	return v, true
}
