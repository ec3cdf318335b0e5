package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// The reference (docs/CONFIG.md) and the example file must keep up with the
// schema: a key added without them fails here.

func TestDocsListEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range keyPaths(reflect.TypeFor[File](), "") {
		if !strings.Contains(string(doc), "| `"+path+"` |") {
			t.Errorf("docs/CONFIG.md has no table row for `%s`", path)
		}
	}
}

func TestDocsShowTheExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("testdata/petrel.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```yaml\n"+string(example)+"```\n") {
		t.Error("docs/CONFIG.md does not show testdata/petrel.example.yaml as it is; copy it into the Example section")
	}
}

func TestExampleSetsEveryKey(t *testing.T) {
	f, err := Load("testdata/petrel.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range keyPaths(reflect.TypeFor[File](), "") {
		if _, ok := f.pos[strings.ReplaceAll(path, "[]", "[0]")]; !ok {
			t.Errorf("testdata/petrel.example.yaml does not set %s", path)
		}
	}
}
