#!/usr/bin/env bash
# bench-compare.sh runs every petrel bench preset against Mosquitto and
# against Petrel in one sitting and prints a table of ratios (Markdown).
#
# It installs nothing: it needs go, taskset and mosquitto on the PATH
# (apt-get install mosquitto). Each broker is started fresh for each preset,
# pinned to one CPU (BROKER_CPU, default 0), with the load generator pinned
# to another (BENCH_CPUS, default 1); the two brokers alternate which goes
# first. Both listen on 127.0.0.1 only.
#
#   scripts/bench-compare.sh                 # every preset, one round
#   ROUNDS=3 scripts/bench-compare.sh        # the median of three rounds
#   PRESETS="fanin-q0 large" scripts/bench-compare.sh
#   PETREL_STORE=pebble scripts/bench-compare.sh   # Petrel durable (fsync per commit)
#
# Mosquitto runs with persistence off, max_queued_messages 1000000 and
# max_inflight_messages 1000, so that neither broker drops or stalls for
# want of room; Petrel gets the same limits and, unless PETREL_STORE says
# otherwise, its memory store (the like of Mosquitto without persistence).
# The results (one JSON file per run) stay in OUT (default a new temporary
# directory); the table is printed on stdout.
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-1}
BROKER_CPU=${BROKER_CPU:-0}
BENCH_CPUS=${BENCH_CPUS:-1}
PETREL_STORE=${PETREL_STORE:-memory}
PRESETS=${PRESETS:-"fanin-q0 fanin-q1 fanin-q2 overload-q1 overload-q2 fanout-q0 fanout-q1 many-topics large idle-conns"}
IDLE_CONNS=${IDLE_CONNS:-19800}
OUT=${OUT:-$(mktemp -d -t petrel-bench.XXXXXX)}

for tool in go taskset mosquitto; do
	command -v "$tool" >/dev/null || { echo "bench-compare: $tool is not installed" >&2; exit 2; }
done
mkdir -p "$OUT"
# Connections need a file each, in the broker and in the generator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

go build -o "$OUT/petrel" ./cmd/petrel

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
		echo $((20000 + RANDOM % 20000))
}

wait_port() { # host port: until something accepts there, at most 10 s
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "bench-compare: nothing listens on 127.0.0.1:$1" >&2
	return 1
}

BROKER_PID=
start_mosquitto() { # port
	cat >"$OUT/mosquitto.conf" <<EOF
listener $1 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000000
max_inflight_messages 1000
max_connections -1
log_dest none
EOF
	taskset -c "$BROKER_CPU" mosquitto -c "$OUT/mosquitto.conf" >"$OUT/mosquitto.log" 2>&1 &
	BROKER_PID=$!
	wait_port "$1"
}

start_petrel() { # port
	rm -rf "$OUT/data"
	cat >"$OUT/petrel.yaml" <<EOF
log:
  level: warn
listeners:
  - address: 127.0.0.1:$1
    allow_anonymous: true
store:
  engine: $PETREL_STORE
  dir: $OUT/data
mqtt:
  max_inflight: 1000
  max_queued_messages: 1000000
  max_queued_bytes: 0
limits:
  queued_memory: 0
  max_subscriptions: 0
EOF
	taskset -c "$BROKER_CPU" "$OUT/petrel" --config "$OUT/petrel.yaml" >"$OUT/petrel.log" 2>&1 &
	BROKER_PID=$!
	wait_port "$1"
}

stop_broker() {
	[ -n "$BROKER_PID" ] || return 0
	kill "$BROKER_PID" 2>/dev/null || true
	wait "$BROKER_PID" 2>/dev/null || true
	BROKER_PID=
}
trap stop_broker EXIT

run() { # broker preset round
	local port extra=()
	port=$(free_port)
	"start_$1" "$port"
	[ "$2" = idle-conns ] && extra=(-c "$IDLE_CONNS")
	echo "== $1 $2 (round $3)" >&2
	"$OUT/petrel" bench preset "$2" -h 127.0.0.1 -p "$port" --cpus "$BENCH_CPUS" \
		--broker-pid "$BROKER_PID" --json --no-progress "${extra[@]}" \
		>"$OUT/$1-$2-$3.json" 2>"$OUT/$1-$2-$3.txt" ||
		echo "bench-compare: $1 $2 round $3 failed (see $OUT/$1-$2-$3.txt)" >&2
	stop_broker
}

{
	echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)"
	echo "mosquitto: $(mosquitto -h 2>/dev/null | head -1)"
	echo "petrel: $(git rev-parse --short HEAD 2>/dev/null || echo unknown), store $PETREL_STORE, $(go version | cut -d' ' -f3)"
	echo "command: ROUNDS=$ROUNDS PRESETS=\"$PRESETS\" PETREL_STORE=$PETREL_STORE scripts/bench-compare.sh"
} >"$OUT/about.txt"

first=mosquitto second=petrel
for round in $(seq "$ROUNDS"); do
	for preset in $PRESETS; do
		run "$first" "$preset" "$round"
		run "$second" "$preset" "$round"
		tmp=$first first=$second second=$tmp
	done
done

go run ./scripts/benchtable "$OUT"
echo "results: $OUT" >&2
