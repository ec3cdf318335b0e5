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
#   PRESETS="storm storm-persistent storm-tls" scripts/bench-compare.sh
#   FLOORS=1 PRESETS="storm large" scripts/bench-compare.sh
#
# With FLOORS=1, the least any epoll server could spend on the same load
# runs too, pinned as the brokers are: scripts/connfloor (TCP_DEFER_ACCEPT
# on) for storm, through epoll, through io_uring, and through io_uring with the
# sockets as the ring's registered files (direct); for large, scripts/relayfloor copying each payload in and
# out (as Mosquitto does) and moving its pages with splice instead (as
# Petrel does, mqtt.splice_payloads). They get a table of their own.
#
# The storms (issue 21) connect STORM_CONNS clients at once (default 50,000,
# or what the descriptor limit leaves): storm with clean sessions over TCP;
# storm-tls the same over TLS (a throwaway CA and certificate made with
# openssl); storm-persistent resumes MQTT 5 sessions that a first run
# subscribed, after a broker restart, so that they come from the store
# (Mosquitto with persistence on, Petrel on Pebble). During each storm one
# publisher and one subscriber that connected before it exchange 100
# QoS 1 messages a second: their p99 latency is the table's "existing
# clients" row.
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
PRESETS=${PRESETS:-"fanin-q0 fanin-q1 fanin-q2 overload-q1 overload-q2 fanout-q0 fanout-q1 many-topics large idle-conns storm storm-persistent storm-tls"}
IDLE_CONNS=${IDLE_CONNS:-19800}
# Each connection is a descriptor in the broker and in the generator.
nofile=$(ulimit -Hn)
if [ "$nofile" = unlimited ] || [ "$nofile" -ge 50300 ]; then
	STORM_CONNS=${STORM_CONNS:-50000}
else
	STORM_CONNS=${STORM_CONNS:-$((nofile - 300))}
fi
OUT=${OUT:-$(mktemp -d -t petrel-bench.XXXXXX)}

for tool in go taskset mosquitto; do
	command -v "$tool" >/dev/null || { echo "bench-compare: $tool is not installed" >&2; exit 2; }
done
mkdir -p "$OUT"
# Connections need a file each, in the broker and in the generator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

go build -o "$OUT/petrel" ./cmd/petrel
if [ -n "${FLOORS:-}" ]; then
	go build -o "$OUT/connfloor" ./scripts/connfloor
	go build -o "$OUT/relayfloor" ./scripts/relayfloor
fi

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

# certs makes a CA and a certificate for 127.0.0.1, once, for storm-tls.
certs() {
	[ -f "$OUT/tls/server.pem" ] && return 0
	command -v openssl >/dev/null || { echo "bench-compare: storm-tls needs openssl" >&2; return 1; }
	mkdir -p "$OUT/tls"
	(
		cd "$OUT/tls"
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
			-days 2 -subj /CN=bench-ca
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
			-subj /CN=127.0.0.1
		printf 'subjectAltName=IP:127.0.0.1\n' >san.ext
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
			-extfile san.ext
	) >/dev/null 2>&1
}

# Set by run for the preset at hand: DURABLE keeps sessions across a
# restart (KEEP_DATA: the restart itself), TLS serves TLS only.
DURABLE= TLS= KEEP_DATA=
BROKER_PID=
start_mosquitto() { # port
	local persist="persistence false" tls=""
	if [ -n "$DURABLE" ]; then
		[ -n "$KEEP_DATA" ] || rm -rf "$OUT/mosquitto-data"
		mkdir -p "$OUT/mosquitto-data"
		persist="persistence true
persistence_location $OUT/mosquitto-data/
autosave_interval 0"
	fi
	[ -n "$TLS" ] && tls="cafile $OUT/tls/ca.pem
certfile $OUT/tls/server.pem
keyfile $OUT/tls/server.key"
	cat >"$OUT/mosquitto.conf" <<EOF
listener $1 127.0.0.1
$tls
# Run as root (as this script may be), Mosquitto would drop to its own
# user, which cannot read the key or write the store made here.
user root
allow_anonymous true
$persist
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
	local engine=$PETREL_STORE kind=tcp tls=""
	[ -n "$KEEP_DATA" ] || rm -rf "$OUT/data"
	[ -n "$DURABLE" ] && engine=pebble
	if [ -n "$TLS" ]; then
		kind=tls
		tls="    tls:
      cert_file: $OUT/tls/server.pem
      key_file: $OUT/tls/server.key"
	fi
	cat >"$OUT/petrel.yaml" <<EOF
log:
  level: warn
listeners:
  - kind: $kind
    address: 127.0.0.1:$1
    allow_anonymous: true
$tls
store:
  engine: $engine
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

start_floor() { # port binary args...
	local port=$1 bin=$2
	shift 2
	taskset -c "$BROKER_CPU" "$OUT/$bin" "$port" "$@" >"$OUT/$bin.log" 2>&1 &
	BROKER_PID=$!
	wait_port "$port"
}
start_connfloor() { start_floor "$1" connfloor defer; }
start_uringfloor() { start_floor "$1" connfloor defer uring; }
start_directfloor() { start_floor "$1" connfloor defer uring direct; }
start_relayfloor() { start_floor "$1" relayfloor; }
start_splicefloor() { start_floor "$1" relayfloor splice; }

stop_broker() {
	[ -n "$BROKER_PID" ] || return 0
	kill "$BROKER_PID" 2>/dev/null || true
	wait "$BROKER_PID" 2>/dev/null || true
	BROKER_PID=
}
trap stop_broker EXIT

run() { # broker preset round
	local port preset=$2 extra=() addr side=
	port=$(free_port)
	addr=(-h 127.0.0.1 -p "$port")
	DURABLE= TLS= KEEP_DATA=
	case $2 in
	idle-conns) extra=(-c "$IDLE_CONNS") ;;
	storm) extra=(-c "$STORM_CONNS") ;;
	storm-tls)
		certs || return 0
		TLS=1 preset=storm extra=(-c "$STORM_CONNS")
		addr=(-L "mqtts://127.0.0.1:$port" --cafile "$OUT/tls/ca.pem")
		;;
	storm-persistent) DURABLE=1 extra=(-c "$STORM_CONNS") ;;
	esac
	"start_$1" "$port"
	echo "== $1 $2 (round $3)" >&2
	if [ "$2" = storm-persistent ]; then
		# The sessions, subscribed; then a restart reads them back.
		"$OUT/petrel" bench preset storm-persistent "${addr[@]}" --cpus "$BENCH_CPUS" --no-progress \
			"${extra[@]}" --subscribe 'storm/%i' -q 1 >"$OUT/$1-$2-$3.prepare.txt" 2>&1 ||
			echo "bench-compare: $1 $2 round $3: making the sessions failed" >&2
		stop_broker
		KEEP_DATA=1 "start_$1" "$port"
	fi
	case $2 in
	storm*)
		# Clients already connected, timed while the storm comes in.
		"$OUT/petrel" bench pubsub --pubs 1 --subs 1 -q 1 --rate 100 --duration 120s --id-prefix side- \
			"${addr[@]}" --cpus "$BENCH_CPUS" --json --no-progress >"$OUT/$1-$2-$3.side" 2>/dev/null &
		side=$!
		sleep 1
		;;
	esac
	"$OUT/petrel" bench preset "$preset" "${addr[@]}" --cpus "$BENCH_CPUS" \
		--broker-pid "$BROKER_PID" --json --no-progress "${extra[@]}" \
		>"$OUT/$1-$2-$3.json" 2>"$OUT/$1-$2-$3.txt" ||
		echo "bench-compare: $1 $2 round $3 failed (see $OUT/$1-$2-$3.txt)" >&2
	if [ -n "$side" ]; then
		kill -INT "$side" 2>/dev/null || true
		wait "$side" 2>/dev/null || true
	fi
	stop_broker
}

{
	echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)"
	echo "mosquitto: $(mosquitto -h 2>/dev/null | head -1)"
	echo "petrel: $(git rev-parse --short HEAD 2>/dev/null || echo unknown), store $PETREL_STORE, $(go version | cut -d' ' -f3)"
	echo "command: ROUNDS=$ROUNDS PRESETS=\"$PRESETS\" PETREL_STORE=$PETREL_STORE${FLOORS:+ FLOORS=$FLOORS} scripts/bench-compare.sh"
} >"$OUT/about.txt"

first=mosquitto second=petrel
for round in $(seq "$ROUNDS"); do
	for preset in $PRESETS; do
		run "$first" "$preset" "$round"
		run "$second" "$preset" "$round"
		tmp=$first first=$second second=$tmp
		if [ -n "${FLOORS:-}" ]; then
			case $preset in
			storm)
				run connfloor storm "$round"
				run uringfloor storm "$round"
				run directfloor storm "$round"
				;;
			large)
				run relayfloor large "$round"
				run splicefloor large "$round"
				;;
			esac
		fi
	done
done

go run ./scripts/benchtable "$OUT"
echo "results: $OUT" >&2
