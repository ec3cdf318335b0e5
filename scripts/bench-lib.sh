# bench-lib.sh: what bench-cluster.sh and bench-bridge.sh share. Sourced,
# not run: servers started in the background go in PIDS, and stop_all
# (run on exit) stops them.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

PIDS=()
stop_all() {
	for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]:-}"; do wait "$p" 2>/dev/null || true; done
	PIDS=()
}
trap stop_all EXIT

# ab_config PORT [INFLIGHT]: the broker configuration of bench-ab.sh and
# bench-instr.sh: a memory store, and limits out of the way of a preset.
ab_config() {
	cat <<Y
log:
  level: warn
listeners:
  - address: 127.0.0.1:$1
    allow_anonymous: true
store:
  engine: memory
mqtt:
  max_inflight: ${2:-1000}
  max_queued_messages: 1000000
  max_queued_bytes: 0
limits:
  queued_memory: 0
  max_subscriptions: 0
Y
}

# wait_port PORT: until something accepts on 127.0.0.1:PORT, at most 60 s.
wait_port() {
	for _ in $(seq 1 600); do
		if (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "port $1 never opened" >&2
	exit 1
}

# table_row LABEL JSON: a markdown row from a petrel bench --json result.
table_row() {
	python3 - "$1" "$2" <<'PY'
import json, sys
label, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
rec, lat, b = r.get("receive") or {}, r.get("latency_ms") or {}, r.get("broker") or {}
print(f"| {label} | {rec.get('msgs_per_s', 0):,.0f} | {b.get('deliveries_per_cpu_s', 0):,.0f} | {b.get('cpu_s', 0):.2f} "
      f"| {lat.get('p50', 0):.2f} | {lat.get('p99', 0):.2f} | {rec.get('lost', 0)} |")
PY
}
