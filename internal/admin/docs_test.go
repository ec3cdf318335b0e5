package admin

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// docRoute is a route as the docs write it: "GET /api/v1/retained/{topic}".
func docRoute(method, pattern string) string {
	return method + " " + strings.ReplaceAll(pattern, "...}", "}")
}

// served lists every route the server has, as the docs write them.
func served() []string {
	var all []string
	for _, rt := range routes {
		all = append(all, docRoute(rt.method, rt.pattern))
	}
	return all
}

// docs/openapi.yaml describes exactly the routes the server has.
func TestOpenAPIMatchesTheRoutes(t *testing.T) {
	b, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &spec); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(spec.OpenAPI, "3.") {
		t.Errorf("docs/openapi.yaml is OpenAPI %q, want 3.x", spec.OpenAPI)
	}
	var described []string
	for path, ops := range spec.Paths {
		for method := range ops {
			if method != "parameters" {
				described = append(described, docRoute(strings.ToUpper(method), path))
			}
		}
	}
	compareRoutes(t, "docs/openapi.yaml", described)
}

// docs/API.md has a section for every route the server has, and for no
// other.
func TestAPIDocMatchesTheRoutes(t *testing.T) {
	b, err := os.ReadFile("../../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	var described []string
	for _, m := range regexp.MustCompile("(?m)^#+ `([A-Z]+) (/[^` ]*)`").FindAllStringSubmatch(string(b), -1) {
		described = append(described, docRoute(m[1], m[2]))
		if m[1] == "GET" && (m[2] == "/healthz" || m[2] == "/readyz") {
			described = append(described, docRoute("HEAD", m[2])) // "HEAD works too"
		}
	}
	compareRoutes(t, "docs/API.md", described)
}

func compareRoutes(t *testing.T, doc string, described []string) {
	t.Helper()
	for _, r := range served() {
		if !slices.Contains(described, r) {
			t.Errorf("%s does not describe %s", doc, r)
		}
	}
	for _, r := range described {
		if !slices.Contains(served(), r) {
			t.Errorf("%s describes %s, which the server does not have", doc, r)
		}
	}
}
