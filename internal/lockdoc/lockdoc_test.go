// Package lockdoc holds a test that keeps docs/LOCKING.md complete: every
// mutex in the repository's code must have its place in the lock order.
package lockdoc

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// root is the repository, two levels above this package.
const root = "../.."

// TestLockingDocNamesEveryMutex fails naming each struct field of type
// sync.Mutex or sync.RWMutex (as package.Type.field; an embedded mutex is
// package.Type.Mutex or .RWMutex) that docs/LOCKING.md does not mention,
// and each such name the document mentions that the code no longer has.
func TestLockingDocNamesEveryMutex(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(root, "docs", "LOCKING.md"))
	if err != nil {
		t.Fatal(err)
	}
	mutexes := mutexFields(t)
	if len(mutexes) == 0 {
		t.Fatal("found no mutex at all: is the walk looking at the repository?")
	}
	for _, m := range mutexes {
		if !regexp.MustCompile(`(^|[^\w.])` + regexp.QuoteMeta(m.name) + `($|[^\w])`).Match(doc) {
			t.Errorf("docs/LOCKING.md does not place %s (%s) in the lock order", m.name, m.pos)
		}
	}
	// Every field the document names as `package.Type.field` (an
	// unexported last part, or an embedded Mutex or RWMutex; exported
	// methods such as `listener.Conn.Flush` are left alone) must still be a
	// mutex, so a renamed or removed one does not leave a stale line behind.
	for _, ref := range regexp.MustCompile("`(\\w+\\.\\w+\\.([a-z]\\w*|Mutex|RWMutex))`").FindAllSubmatch(doc, -1) {
		name := string(ref[1])
		if !slices.ContainsFunc(mutexes, func(m mutex) bool { return m.name == name }) {
			t.Errorf("docs/LOCKING.md names %s, which is not a mutex field in the code", name)
		}
	}
}

type mutex struct {
	name string // package.Type.field
	pos  string // file:line
}

// mutexFields parses every non-test Go file of the repository (not
// testdata, not hidden or node_modules directories) and returns its mutex
// fields, fields of anonymous structs included (package.Type.field.inner).
func mutexFields(t *testing.T) []mutex {
	t.Helper()
	var out []mutex
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		syncName := importName(f, "sync")
		if syncName == "" {
			return nil
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				if st, ok := ts.Type.(*ast.StructType); ok {
					out = append(out, structMutexes(fset, syncName, f.Name.Name+"."+ts.Name.Name, st)...)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// structMutexes lists the mutex fields of st, named below prefix.
func structMutexes(fset *token.FileSet, syncName, prefix string, st *ast.StructType) []mutex {
	var out []mutex
	for _, field := range st.Fields.List {
		typ := field.Type
		for { // a pointer to, or an array or slice of, what matters
			switch x := typ.(type) {
			case *ast.StarExpr:
				typ = x.X
				continue
			case *ast.ArrayType:
				typ = x.Elt
				continue
			}
			break
		}
		names := make([]string, 0, len(field.Names))
		for _, n := range field.Names {
			names = append(names, n.Name)
		}
		switch x := typ.(type) {
		case *ast.SelectorExpr:
			if id, ok := x.X.(*ast.Ident); !ok || id.Name != syncName || (x.Sel.Name != "Mutex" && x.Sel.Name != "RWMutex") {
				continue
			}
			if len(names) == 0 { // embedded
				names = []string{x.Sel.Name}
			}
			p := fset.Position(field.Pos())
			for _, n := range names {
				out = append(out, mutex{prefix + "." + n, filepath.ToSlash(mustRel(p.Filename)) + ":" + strconv.Itoa(p.Line)})
			}
		case *ast.StructType:
			for _, n := range names {
				out = append(out, structMutexes(fset, syncName, prefix+"."+n, x)...)
			}
		}
	}
	return out
}

// importName is the name f uses for the package at path, "" if f does not
// import it.
func importName(f *ast.File, path string) string {
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == path {
			if imp.Name != nil {
				return imp.Name.Name
			}
			return filepath.Base(path)
		}
	}
	return ""
}

func mustRel(path string) string {
	rel, err := filepath.Rel(root, path)
	if err != nil {
		return path
	}
	return rel
}
