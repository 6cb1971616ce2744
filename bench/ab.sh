#!/usr/bin/env bash
# Two pushgate builds side by side, in alternating rounds of one run: idle
# memory per connection (SSE and WebSocket, each on a fresh server), fan-out
# to S subscribers at 50 msgs/s (SSE and WebSocket), and proxy requests/s
# (bench/proxy.sh with OTHER=, against the same nginx). For "is this change
# slower than that build": single runs on shared cores swing by 10-20%, so
# each round runs both builds back to back and the table gives their ratio.
# Appends a dated section to bench/RESULTS.md.
#
#   BASE=../old/target/release/pushgate BASE_NAME="build of abc1234" bench/ab.sh
#   ROUNDS=3 S=5000 IDLE=10000 SECS=10 BASE=… bench/ab.sh
#
# BASE_CONFIG (default bench/pushgate.yaml less the keys an older build
# does not know) is the configuration the base build runs with.
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh
: "${BASE:?set BASE to the other pushgate binary}"
bench_start
ROUNDS=${ROUNDS:-2}
S=${S:-5000}
IDLE=$(fit_fd_limit "${IDLE:-10000}")
SECS=${SECS:-10}
M=$((50 * SECS))

if [ -z "${BASE_CONFIG:-}" ]; then
  # Builds before the limits revision know neither per_ip.connections nor
  # per_ip.subscribes; their own defaults do not limit the generator.
  BASE_CONFIG="$work/base.yaml"
  sed -e 's/^  per_ip: .*/  per_ip: { connects: { rate: 1000000\/s, burst: 1000000 } }/' \
    bench/pushgate.yaml > "$BASE_CONFIG"
fi

json_field() { # file, python expression over the first run `r`
  python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['runs'][0]; print($2)" "$1"
}

out="$work/results.md"
{
  echo
  echo "## Build A/B, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(uname -sr); load before: $(cut -d' ' -f1-3 /proc/loadavg). Command: \`ROUNDS=$ROUNDS S=$S IDLE=$IDLE SECS=$SECS BASE=… bench/ab.sh\`; new: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' with uncommitted changes'), base: ${BASE_NAME:-$BASE}."
  echo "Generator, publisher and server share the same cores. Fan-out: $S subscribers on one channel, $M messages of 512 B at 50 msgs/s. Idle: $IDLE connections held, RSS growth of the server / connections."
  echo
  echo '| round | build | scenario | connected | lost | msgs/s | p50 ms | p99 ms | KiB per connection |'
  echo '|---|---|---|---|---|---|---|---|---|'
} > "$out"

one() { # round, name, binary, config, scenario, bench args…
  local round=$1 name=$2 bin=$3 cfg=$4 scenario=$5; shift 5
  "$bin" run -c "$cfg" > "$work/server.log" 2>&1 & local pid=$!; pids+=($pid)
  sleep 1
  "$PG" bench "$@" --pid "$pid" --json > "$work/run.json" 2>/dev/null || true
  kill -INT "$pid"; wait "$pid" || true
  if [ -s "$work/run.json" ]; then
    local row
    row=$(json_field "$work/run.json" "'|'.join(str(x) for x in [r['connected'], r['lost'], round(r['msgs_per_sec']), r['latency_ms']['p50'], r['latency_ms']['p99'], r['memory_per_connection_kib']])")
    echo "| $round | $name | $scenario | ${row//|/ | } |" >> "$out"
  else
    echo "| $round | $name | $scenario | failed | | | | | |" >> "$out"
  fi
}

for round in $(seq 1 "$ROUNDS"); do
  for build in new base; do
    if [ $build = new ]; then bin=$PG; cfg=bench/pushgate.yaml; else bin=$BASE; cfg=$BASE_CONFIG; fi
    for t in sse ws; do
      one "$round" $build "$bin" "$cfg" "idle $t" --transport $t -n "$IDLE" -m 1 -r 1 --hold 2
    done
    for t in sse ws; do
      one "$round" $build "$bin" "$cfg" "fan-out $t" --transport $t -n "$S" -m "$M" -r 50 -s 512
    done
  done
done
cat "$out" >> bench/RESULTS.md
cat "$out"

# Proxy requests/s of both builds against the same nginx, in its own rounds
# (PROXY=0 skips it).
[ "${PROXY:-1}" = 0 ] && exit 0
OTHER_CONFIG="$BASE_CONFIG" OTHER="$BASE" OTHER_NAME="${BASE_NAME:-base}" ROUNDS="$ROUNDS" bench/proxy.sh
