#!/usr/bin/env bash
# bench-ab.sh: alternating A/B runs of petrel bench presets against two
# petrel binaries, to tell a change's cost from the machine's noise.
#
#   scripts/bench-ab.sh OLD_BINARY NEW_BINARY
#
# Environment: PRESETS (default "fanin-q0 fanout-q0"), ROUNDS (4), DURATION
# (5s), PIN=1 to pin the broker to CPU 0 and the generator to CPU 1 (as
# bench-compare.sh does). The generator is NEW_BINARY's petrel bench. Prints
# one line per run: binary, preset, round, delivered msgs/s, deliveries per
# broker CPU-second, broker CPU %, lost, p99 latency (ms).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY" >&2; exit 2; }
bins=("$1" "$2")
PRESETS=${PRESETS:-"fanin-q0 fanout-q0"}
ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-5s}
PIN=${PIN:-0}
out=$(mktemp -d -t petrel-ab.XXXXXX)
. "$(dirname "$0")/bench-lib.sh"
port=$(free_port)
ab_config "$port" >"$out/petrel.yaml"
pin=() cpus=()
if [ "$PIN" = 1 ]; then pin=(taskset -c 0) cpus=(--cpus 1); fi
for round in $(seq "$ROUNDS"); do
	for preset in $PRESETS; do
		for b in "${bins[@]}"; do
			"${pin[@]}" "$b" --config "$out/petrel.yaml" >/dev/null 2>&1 &
			pid=$!
			for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
			"${bins[1]}" bench preset "$preset" -h 127.0.0.1 -p "$port" "${cpus[@]}" --broker-pid "$pid" \
				--json --no-progress --duration "$DURATION" >"$out/run.json" 2>/dev/null || true
			kill "$pid"; wait "$pid" 2>/dev/null || true
			python3 - "$b" "$preset" "$round" "$out/run.json" <<'PY'
import json, sys
b, preset, rnd, path = sys.argv[1:]
d = json.load(open(path))
r, br, l = d["receive"], d["broker"], d.get("latency_ms", {})
print(b, preset, rnd, int(r["msgs_per_s"]), int(br["deliveries_per_cpu_s"]), round(br["cpu_percent"]), r.get("lost"), l.get("p99"))
PY
		done
	done
done
rm -rf "$out"
