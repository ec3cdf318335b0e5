# Petrel's build and test entry points. `make test` is what CI runs.
GO ?= go
# A count, not a duration: Go 1.26's fuzz coordinator can fail a duration run
# with a spurious "context deadline exceeded" at the deadline (go.dev/issue/75804).
FUZZTIME ?= 300000x
# Targets named FuzzLive* drive a whole broker over TCP per input, a few
# hundred inputs a second: they get fewer.
FUZZTIME_LIVE ?= 30000x

.PHONY: all build test vet cross unit fuzz bench clean interop tidy lint staticcheck vulncheck

# The linters, pinned, run with go run: they come from the module proxy on
# first use and stay out of our go.mod.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOVULNCHECK := golang.org/x/vuln/cmd/govulncheck@v1.10.0
# The vulnerability database, read from the golang.org/x/vulndb module (its
# data/osv) since the online one cannot be reached: bump it to learn of newer
# vulnerabilities.
VULNDB := golang.org/x/vulndb@v0.0.0-20261105234957-e22db6528018
# What a vulnerability in the standard library that our code reaches does:
# warn (it is fixed by building with a newer Go, not by changing the tree) or
# fail.
VULN_STDLIB ?= warn

all: build

build:
	$(GO) build -o petrel ./cmd/petrel

# test: static checks, the build for other systems, the whole suite under the
# race detector, then a short pass of every fuzz target.
test: vet cross unit fuzz

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...

# cross: Petrel builds, and its tests type-check, on macOS and Windows too
# (what needs Linux sits behind build tags, with a fallback).
CROSS ?= darwin/arm64 windows/amd64
cross:
	@set -e; for p in $(CROSS); do \
		echo "cross $$p"; \
		GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build ./...; \
		GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) vet ./...; \
	done

# lint: staticcheck (with the interop tests' build tag), go.mod is tidy, and no
# known vulnerability in a required module is reached (CONTRIBUTING.md).
lint: staticcheck tidy vulncheck

staticcheck:
	$(GO) run $(STATICCHECK) -tags interop ./...

# govulncheck against a database built from the vulndb module's OSV files
# by vulndb's own indexdb; scripts/vulncheck decides from its JSON output.
vulncheck:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(GO) mod download $(VULNDB); \
	$(GO) run golang.org/x/vulndb/cmd/indexdb@$(lastword $(subst @, ,$(VULNDB))) \
		-vulns "$$($(GO) list -m -f '{{.Dir}}' $(VULNDB))/data/osv" -out "$$tmp/db"; \
	$(GO) run $(GOVULNCHECK) -db "file://$$tmp/db" -format json ./... >"$$tmp/out.json"; \
	$(GO) run ./scripts/vulncheck -stdlib=$(VULN_STDLIB) <"$$tmp/out.json"

# tidy: go.mod and go.sum say exactly what the code imports (go mod tidy would
# change nothing).
tidy:
	$(GO) mod tidy -diff

unit:
	$(GO) test -race -count=1 -timeout 15m ./...

# Each fuzz target runs for FUZZTIME on its own (go test -fuzz takes one target at a time).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
		for target in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
			n=$(FUZZTIME); case $$target in FuzzLive*) n=$(FUZZTIME_LIVE);; esac; \
			echo "fuzz $$pkg $$target ($$n)"; \
			$(GO) test -run=NONE -fuzz="^$$target\$$" -fuzztime=$$n $$pkg; \
		done; \
	done

# interop: third-party clients (mosquitto_pub/sub, Python paho-mqtt, MQTT.js in
# Node and in headless Chromium) against the broker. test/interop/README.md says
# what to install; a missing tool skips its test unless PETREL_INTEROP_REQUIRE=1.
interop:
	$(GO) test -tags interop -race -count=1 -timeout 15m -v ./test/interop

bench:
	$(GO) test -run=NONE -bench=. -benchmem ./...

clean:
	rm -f petrel
