#!/usr/bin/env bash
# bench-instr.sh: the instructions a broker executes per message, counted
# under cachegrind rather than timed, to compare two petrel binaries more
# finely than this VM's timing allows (it has no hardware counters, and
# CPU-seconds per message vary about 10% from run to run).
#
#   scripts/bench-instr.sh OLD_BINARY NEW_BINARY
#
# Each binary serves a preset's shape twice under `valgrind --tool=cachegrind
# --cache-sim=no`: once with BASE messages per publisher, once with COUNT;
# the difference in instructions over the difference in messages received
# is the cost of a message, without start-up and shutdown. The generator is
# NEW_BINARY's petrel bench, run natively. Prints each run, then the
# functions whose share of a message changed most (averaged over ROUNDS),
# and the same by package.
#
# Environment: PRESET (fanin-q1), COUNT (1500) and BASE (300) messages a
# publisher, ROUNDS (2), TOP (30 rows), GOGC (off), INFLIGHT (the broker's
# max_inflight, 65535: wide enough that no delivery waits in a queue).
#
# What it does not see: time spent waiting, in the kernel, or on a cache
# miss, and the cost of an atomic instruction beyond one instruction. With
# GOGC=off (the default) it leaves the collector out, whose share depends
# on timing; GOGC=100 puts it back, noisier. How many deliveries wait in a
# subscriber's queue rather than go straight out depends on timing too:
# with INFLIGHT=1000 (bench-ab.sh's) a queue forms, and the queue's functions
# (unpack, front, pop, appendPacked) then move by hundreds of instructions a
# message between runs of the same binary; the default keeps them out.
#
# Needs valgrind (apt-get install valgrind). Loopback only.
set -euo pipefail
[ $# -eq 2 ] || { sed -n '2,17p' "$0" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "bench-instr.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
bins=("$1" "$2")
PRESET=${PRESET:-fanin-q1}
COUNT=${COUNT:-1500}
BASE=${BASE:-300}
ROUNDS=${ROUNDS:-2}
TOP=${TOP:-30}
export GOGC=${GOGC:-off}
. "$(dirname "$0")/bench-lib.sh"
out=$(mktemp -d -t petrel-instr.XXXXXX)
trap 'rm -rf "$out"' EXIT
port=$(free_port)
# A window wider than the publishers can fill keeps deliveries out of the
# subscriber's queue, where how many go depends on timing.
ab_config "$port" "${INFLIGHT:-65535}" >"$out/petrel.yaml"

# one BIN COUNT NAME: BIN under cachegrind, COUNT messages a publisher;
# leaves NAME.cg (the counts) and NAME.json (the bench's result).
one() {
	GODEBUG=asyncpreemptoff=1 valgrind --tool=cachegrind --cache-sim=no \
		--cachegrind-out-file="$out/$3.cg" "$1" --config "$out/petrel.yaml" >"$out/$3.log" 2>&1 &
	local pid=$!
	for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
	"${bins[1]}" bench preset "$PRESET" -h 127.0.0.1 -p "$port" --count "$2" --duration 300s \
		--json --no-progress >"$out/$3.json" 2>/dev/null || true
	kill "$pid"
	wait "$pid" || true
}

for round in $(seq "$ROUNDS"); do
	for i in 0 1; do
		one "${bins[$i]}" "$BASE" "b$i-r$round-lo"
		one "${bins[$i]}" "$COUNT" "b$i-r$round-hi"
	done
done

python3 - "$out" "$ROUNDS" "$TOP" "${bins[@]}" <<'PY'
import collections, json, re, sys
out, rounds, top, old, new = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]

def load(name):
    """Instructions by function, names without the module's path."""
    fns, fn = collections.Counter(), None
    for line in open(f"{out}/{name}.cg"):
        if line.startswith("fn="):
            fn = line[3:].strip()
            fn = re.sub(r"\[go\.shape.*", "[...]", fn)
            fn = fn.replace("github.com/petrelmq/petrel/", "").replace("internal/", "")
        elif line[:1].isdigit() and fn is not None:
            f = line.split()
            if len(f) >= 2:
                fns[fn] += int(f[1])
    return fns

def received(name):
    try:
        return json.load(open(f"{out}/{name}.json"))["receive"]["received"]
    except (OSError, ValueError, KeyError):
        return 0

per = [collections.Counter(), collections.Counter()]
print("binary  round  instructions per message")
for r in range(1, rounds + 1):
    for i, b in enumerate((old, new)):
        lo, hi = f"b{i}-r{r}-lo", f"b{i}-r{r}-hi"
        msgs = received(hi) - received(lo)
        if msgs <= 0:
            sys.exit(f"bench-instr.sh: run {hi} received no more than {lo}")
        a, z = load(hi), load(lo)
        d = {k: (a[k] - z.get(k, 0)) / msgs / rounds for k in a}
        per[i].update(d)
        print(f"{'old' if i == 0 else 'new'}     {r}      {sum(d.values()) * rounds:,.0f}")
print(f"\nold {old}: {sum(per[0].values()):,.0f} a message; new {new}: {sum(per[1].values()):,.0f}")

def table(o, n, label):
    keys = sorted(set(o) | set(n), key=lambda k: -abs(n.get(k, 0) - o.get(k, 0)))[:top]
    print(f"\n{'old':>8} {'new':>8} {'change':>8}  {label}")
    for k in keys:
        print(f"{o.get(k, 0):8.1f} {n.get(k, 0):8.1f} {n.get(k, 0) - o.get(k, 0):+8.1f}  {k[:110]}")

def package(fn):
    m = re.match(r"([\w/]+?)\.", fn)
    return m.group(1) if m else fn
pk = [collections.Counter(), collections.Counter()]
for i in (0, 1):
    for k, v in per[i].items():
        pk[i][package(k)] += v
table(pk[0], pk[1], "package")
table(per[0], per[1], "function")
PY
