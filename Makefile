# Petrel's build and test entry points. `make test` is what CI runs.
GO ?= go
# A count, not a duration: Go 1.26's fuzz coordinator can fail a duration run
# with a spurious "context deadline exceeded" at the deadline (go.dev/issue/75804).
FUZZTIME ?= 300000x
# Targets named FuzzLive* drive a whole broker over TCP per input, a few
# hundred inputs a second: they get fewer.
FUZZTIME_LIVE ?= 30000x

.PHONY: all build test vet cross unit fuzz bench clean interop

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
