#!/usr/bin/env bash
# bench-cluster.sh measures a message crossing nodes against one that does
# not: a single Petrel node, then a 3-node cluster on this machine with the
# publishers on node 1 and the subscribers on node 2. For QoS 0 and 1 it
# prints messages per second, deliveries per broker CPU-second (all nodes'
# CPU together) and the latency percentiles, first at full speed, then at
# half the rate the cluster reached (RATE_FRACTION). Every server listens on
# 127.0.0.1 only; each run is bounded by DURATION.
#
# With PERSISTENT=1 the clients keep persistent sessions (MQTT 5, never
# expiring): on a cluster node every delivery to one and every
# acknowledgement is replicated (docs/CLUSTER.md, "The replica").
#
#   scripts/bench-cluster.sh
#   DURATION=10s PUBS=8 SUBS=2 scripts/bench-cluster.sh
# REPLICATE=0 turns the replica off on the cluster's nodes
# (cluster.replicate_sessions: false); QOS lists the QoS levels to run.
#
#   PERSISTENT=1 scripts/bench-cluster.sh
#   PERSISTENT=1 REPLICATE=0 QOS=1 scripts/bench-cluster.sh
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
PUBS=${PUBS:-4}
SUBS=${SUBS:-4}
SIZE=${SIZE:-64}
SESSION=()
if [ "${PERSISTENT:-0}" = 1 ]; then
	SESSION=(--persistent -V 5)
fi
OUT=${OUT:-$(mktemp -d)}
BIN="$OUT/petrel"
go build -o "$BIN" ./cmd/petrel
NODE_CONF=()
if [ "${REPLICATE:-1}" = 0 ]; then
	printf 'cluster:\n  replicate_sessions: false\n' >"$OUT/norep.yaml"
	NODE_CONF=(--config "$OUT/norep.yaml")
fi

. scripts/bench-lib.sh

# start NAME MQTT_PORT [cluster args...]: a node in the background.
start() {
	local name=$1 port=$2
	shift 2
	# A fresh store for each run: nothing of the last run is resumed.
	"$BIN" serve --listen "127.0.0.1:$port" --data-dir "$(mktemp -d "$OUT/$name.XXXX")" --node "$name" \
		--log-level warn --sys-interval 0 "$@" 2>"$OUT/$name.log" &
	PIDS+=($!)
}

# run LABEL ARGS...: one bench run, its JSON kept in OUT.
run() {
	local label=$1
	shift
	"$BIN" bench pubsub --pubs "$PUBS" --subs "$SUBS" -s "$SIZE" --duration "$DURATION" \
		--no-progress --json "${SESSION[@]}" "$@" >"$OUT/$label.json" 2>"$OUT/$label.err"
	table_row "$label" "$OUT/$label.json"
}

echo "| run | deliveries/s | deliveries per broker CPU-s | broker CPU-s | p50 ms | p99 ms | lost |"
echo "|---|---|---|---|---|---|---|"
for q in ${QOS:-0 1}; do
	# One node.
	P=$(free_port)
	start single "$P"
	wait_port "$P"
	run "single-q$q" -p "$P" -q "$q" --broker-pid "${PIDS[0]}"
	stop_all

	# Three nodes: publishers on n1, subscribers on n2.
	R1=$(free_port) R2=$(free_port) R3=$(free_port)
	M1=$(free_port) M2=$(free_port) M3=$(free_port)
	start n1 "$M1" --cluster "127.0.0.1:$R1" --peers "127.0.0.1:$R2,127.0.0.1:$R3" "${NODE_CONF[@]}"
	start n2 "$M2" --cluster "127.0.0.1:$R2" --peers "127.0.0.1:$R1,127.0.0.1:$R3" "${NODE_CONF[@]}"
	start n3 "$M3" --cluster "127.0.0.1:$R3" --peers "127.0.0.1:$R1,127.0.0.1:$R2" "${NODE_CONF[@]}"
	wait_port "$M1"
	wait_port "$M2"
	wait_port "$M3"
	pids=$(IFS=,; echo "${PIDS[*]}")
	run "cross-q$q" --pub-addr "127.0.0.1:$M1" --sub-addr "127.0.0.1:$M2" -q "$q" --broker-pid "$pids"
	# Half the rate the cluster reached: messages published per second.
	full=$(python3 -c "import json; r=json.load(open('$OUT/cross-q$q.json')); print(int(r['receive']['msgs_per_s'] / $SUBS))")
	half=$(( ${full:-2000} / 2 ))
	run "cross-q$q-half-rate-$half" --pub-addr "127.0.0.1:$M1" --sub-addr "127.0.0.1:$M2" -q "$q" \
		--rate "$half" --broker-pid "$pids"
	stop_all
done
echo
echo "results in $OUT"
