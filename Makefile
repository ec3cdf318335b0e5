# Petrel's build and test entry points. `make test` is what CI runs.
GO ?= go
# A count, not a duration: Go 1.26's fuzz coordinator can fail a duration run
# with a spurious "context deadline exceeded" at the deadline (go.dev/issue/75804).
FUZZTIME ?= 300000x
# Targets named FuzzLive* drive a whole broker over TCP per input, a few
# hundred inputs a second: they get fewer.
FUZZTIME_LIVE ?= 30000x

.PHONY: all build test vet unit fuzz bench clean interop tidy

all: build

build:
	$(GO) build -o petrel ./cmd/petrel

# test: static checks, the whole suite under the race detector, then a short
# pass of every fuzz target.
test: vet unit fuzz

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...

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
