#!/usr/bin/env bash
# bench-bridge.sh measures messages crossing a bridge: publishers on one
# broker, a subscriber on another, the first bridging the topic to the
# second (QoS 1, rule "bench/# out 1"). Petrel to Petrel, then Mosquitto to
# Mosquitto (Debian's, bridge_protocol_version mqttv311 and mqttv50), in the same run. It
# prints deliveries per second, deliveries per CPU-second of both brokers
# together, latency and loss (acknowledged to the publishers and never
# delivered). Every server listens on 127.0.0.1 only; each run is bounded
# by DURATION.
#
#   scripts/bench-bridge.sh
#   DURATION=10s PUBS=8 scripts/bench-bridge.sh
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
PUBS=${PUBS:-4}
SIZE=${SIZE:-64}
OUT=${OUT:-$(mktemp -d)}
BIN="$OUT/petrel"
go build -o "$BIN" ./cmd/petrel
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

. scripts/bench-lib.sh

# run LABEL PUB_PORT SUB_PORT: one bench run, its JSON kept in OUT.
run() {
	local label=$1 pub=$2 sub=$3
	pids=$(IFS=,; echo "${PIDS[*]}")
	"$BIN" bench pubsub --pubs "$PUBS" --subs 1 -q 1 -s "$SIZE" --duration "$DURATION" --no-progress --json \
		--pub-addr "127.0.0.1:$pub" --sub-addr "127.0.0.1:$sub" --broker-pid "$pids" \
		>"$OUT/$label.json" 2>"$OUT/$label.err"
	table_row "$label" "$OUT/$label.json"
}

echo "| run | deliveries/s | deliveries per CPU-s (both brokers) | CPU-s | p50 ms | p99 ms | lost |"
echo "|---|---|---|---|---|---|---|"
for proto in 5 3.1.1; do
	R=$(free_port) L=$(free_port)
	"$BIN" serve --listen "127.0.0.1:$R" --data-dir "$(mktemp -d "$OUT/remote.XXXX")" --log-level warn --sys-interval 0 \
		2>"$OUT/remote.log" &
	PIDS+=($!)
	printf 'bridges:\n  - name: bench\n    url: mqtt://127.0.0.1:%s\n    protocol: "%s"\n    topics:\n      - {pattern: "bench/#", direction: out, qos: 1}\n' \
		"$R" "$proto" >"$OUT/bridge.yaml"
	"$BIN" serve --listen "127.0.0.1:$L" --data-dir "$(mktemp -d "$OUT/local.XXXX")" --log-level warn --sys-interval 0 \
		--config "$OUT/bridge.yaml" 2>"$OUT/local.log" &
	PIDS+=($!)
	wait_port "$R"
	wait_port "$L"
	sleep 1 # the bridge's link
	run "petrel-mqtt$proto" "$L" "$R"
	stop_all

	R=$(free_port) L=$(free_port)
	v=mqttv311
	[ "$proto" = 5 ] && v=mqttv50
	printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$R" >"$OUT/mr.conf"
	printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nconnection bench\naddress 127.0.0.1:%s\nbridge_protocol_version %s\ntopic bench/# out 1\n' \
		"$L" "$R" "$v" >"$OUT/ml.conf"
	"$MOSQUITTO" -c "$OUT/mr.conf" 2>"$OUT/mr.log" &
	PIDS+=($!)
	"$MOSQUITTO" -c "$OUT/ml.conf" 2>"$OUT/ml.log" &
	PIDS+=($!)
	wait_port "$R"
	wait_port "$L"
	sleep 1
	run "mosquitto-mqtt$proto" "$L" "$R"
	stop_all
done
echo
echo "results in $OUT"
