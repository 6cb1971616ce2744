#!/usr/bin/env bash
# Pusher servers side by side in one run: pushgate's Pusher road (protocol 7
# subscribers, triggers through the signed HTTP API), pushgate's own
# WebSocket (POST /publish), and sockudo (a Rust Pusher server, local
# adapter, in-memory everything) with the same generator and publisher:
#
#   1. memory per idle connection (server RSS from /proc before and after N
#      idle Pusher connections, each server freshly started);
#   2. fan-out: 1,000 subscribers on one channel at 20 msgs/s (throughput, p99);
#   3. saturation: the rate raised step by step until delivery loses messages
#      or falls behind (p99 over 1 s); the highest lossless rate is kept;
#   4. presence: 1,000 members over 11 presence channels (at most 100
#      members each, Pusher's limit, one observer included) join at once,
#      then leave: joins and leaves per second.
#
# sockudo: $SOCKUDO when set, else `sockudo` on PATH, else
# `cargo install sockudo --no-default-features --features local` into
# target/sockudo (needs Debian's protobuf-compiler, installed when missing).
#
#   bench/sockudo.sh                     # full numbers
#   QUICK=1 bench/sockudo.sh             # 200 subscribers, short steps
#   SOCKUDO=/path/to/sockudo NOTE="two builds running" bench/sockudo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh

if [ -z "${SOCKUDO:-}" ]; then
  if command -v sockudo >/dev/null; then
    SOCKUDO=$(command -v sockudo)
  else
    SOCKUDO=target/sockudo/bin/sockudo
    if [ ! -x "$SOCKUDO" ]; then
      bench_need protobuf-compiler
      cargo install sockudo --locked --no-default-features --features local --root target/sockudo
    fi
  fi
fi

bench_start

if [ -n "${QUICK:-}" ]; then
  N=200; SECS=5; IDLE=500; MEMBERS=200; RATES="20 50 100 200"; STEP=3
else
  N=1000; SECS=15; IDLE=2000; MEMBERS=1000; RATES="${RATES:-20 50 100 200 400 800 1600}"; STEP=5
fi
IDLE=$(fit_fd_limit "$IDLE")
APP=(--app-id 1001 --app-key bench-key --app-secret bench-secret)

# pushgate: the benchmark config plus a Pusher app, presence channels, and
# no presence grace (sockudo tells a leave at once; pushgate by default
# keeps a member listed for realtime.presence_grace in case it reconnects).
{
  sed -e 's/^realtime:$/realtime:\n  presence_grace: 0s/' bench/pushgate.yaml
  cat <<'YAML'
pusher:
  apps:
    - { id: "1001", key: bench-key, secret: bench-secret, max_connections: 1000000 }
YAML
} > "$work/pushgate.yaml"
sed -i 's/^  - { pattern: "public\.\*", subscribe: anyone }$/&\n  - { pattern: "presence-*", subscribe: anyone }/' "$work/pushgate.yaml"

# sockudo on 28090: one app from the environment, its limits raised as
# pushgate's are (the defaults allow 1,000 connections, 100 triggers/s and
# 20 WebSocket connects a minute per address); its per-socket buffer (1,000
# messages) stays at its default, as pushgate keeps client_queue: 1024.
sockudo_env=(
  HOST=127.0.0.1 PORT=28090 DEBUG_MODE=false LOG_LEVEL=warn
  ADAPTER_DRIVER=local CACHE_DRIVER=memory QUEUE_DRIVER=memory APP_MANAGER_DRIVER=memory
  RATE_LIMITER_DRIVER=memory RATE_LIMITER_ENABLED=false METRICS_ENABLED=false SSL_ENABLED=false
  SOCKUDO_DEFAULT_APP_ID=1001 SOCKUDO_DEFAULT_APP_KEY=bench-key SOCKUDO_DEFAULT_APP_SECRET=bench-secret
  SOCKUDO_DEFAULT_APP_ENABLED=true SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=1000000
  SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND=1000000
  SOCKUDO_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND=1000000
  SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND=1000000
  SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBERS_PER_CHANNEL=100
)

# Start a server; sets srvpid. $1: pushgate | sockudo.
start() {
  case $1 in
    pushgate) $PG run -c "$work/pushgate.yaml" > "$work/pushgate.log" 2>&1 & srvpid=$!; port=18080 ;;
    sockudo) (cd "$work" && exec env "${sockudo_env[@]}" "$SOCKUDO" > "$work/sockudo.log" 2>&1) & srvpid=$!; port=28090 ;;
  esac
  pids+=("$srvpid")
  for _ in $(seq 1 100); do ss -Hltn "sport = :$port" | grep -q . && return 0; sleep 0.1; done
  echo "$1 did not start:" >&2; tail -20 "$work/$1.log" >&2; exit 1
}
stop() { kill "$srvpid" 2>/dev/null || true; wait "$srvpid" 2>/dev/null || true; }
case $SOCKUDO in /*) ;; *) SOCKUDO="$PWD/$SOCKUDO" ;; esac

# Generator arguments per road.
PG_PUSHER=(--url http://127.0.0.1:18080 --publish http://127.0.0.1:19090 --transport pusher "${APP[@]}")
PG_WS=(--url http://127.0.0.1:18080 --publish http://127.0.0.1:19090 --transport ws)
SK_PUSHER=(--target pusher --url http://127.0.0.1:28090 --publish http://127.0.0.1:28090 --transport pusher "${APP[@]}")

out="$work/results.md"
{
  echo "## Pusher side by side with sockudo, run of $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); load before: $(cut -d' ' -f1-3 /proc/loadavg)${NOTE:+; $NOTE}."
  echo "Versions: pushgate $($PG --version | cut -d' ' -f2), sockudo $(timeout 5 "$SOCKUDO" --version 2>/dev/null | head -1 || echo '?') (local adapter, memory cache/queue/rate limiter, rate limiter off)."
  echo "Command: \`bench/sockudo.sh\` (QUICK=${QUICK:-}). Generator, servers and publisher share the cores; 512-byte messages."
  echo
} > "$out"

# One run: title, json file, then pushgate bench arguments. Appends the table.
run() {
  local title=$1 json=$2; shift 2
  echo "### $title" >> "$out"; echo >> "$out"
  echo "\`pushgate bench $*\`" >> "$out"; echo >> "$out"
  $PG bench --json "$@" > "$json" 2>> "$work/bench.log" || echo '{"runs":[]}' > "$json"
  jq -r '.runs[] | "| \(.transport) | \(.subscribers) | \(.connected) | \(.delivered) | \(.lost) | \(.duplicates) | \(.msgs_per_sec // 0 | floor) | \(.latency_ms.p50) | \(.latency_ms.p99) | \(.latency_ms.max) | \(.memory_per_connection_kib // "-") |"' "$json" \
    | { echo "| transport | subscribers | connected | delivered | lost | dup | msgs/s | p50 ms | p99 ms | max ms | KiB/conn |"; echo "|---|---|---|---|---|---|---|---|---|---|---|"; cat; } >> "$out"
  echo >> "$out"
}
field() { jq -r ".runs[0].$2 // 0" "$1"; }

# 1. Idle memory, each on a freshly started server.
echo "### Memory per idle connection ($IDLE connections, RSS from /proc)" >> "$out"; echo >> "$out"
for road in pg_pusher pg_ws sk_pusher; do
  case $road in
    pg_pusher) start pushgate; args=("${PG_PUSHER[@]}") ;;
    pg_ws) start pushgate; args=("${PG_WS[@]}") ;;
    sk_pusher) start sockudo; args=("${SK_PUSHER[@]}") ;;
  esac
  run "idle: $road" "$work/idle-$road.json" "${args[@]}" -n "$IDLE" -m 0 --hold 1 --pid "$srvpid"
  stop
done

# 2 and 3 on one server each: fan-out, then the saturation steps.
declare -A best
for road in pg_ws pg_pusher sk_pusher; do
  case $road in
    pg_pusher) start pushgate; args=("${PG_PUSHER[@]}") ;;
    pg_ws) start pushgate; args=("${PG_WS[@]}") ;;
    sk_pusher) start sockudo; args=("${SK_PUSHER[@]}") ;;
  esac
  run "fan-out: $road, $N subscribers, 20 msgs/s" "$work/fan-$road.json" "${args[@]}" -n "$N" -m $((20 * SECS)) -r 20
  best[$road]=0
  for r in $RATES; do
    j="$work/sat-$road-$r.json"
    run "saturation: $road, $N subscribers, $r msgs/s for ${STEP}s" "$j" "${args[@]}" -n "$N" -m $((r * STEP)) -r "$r"
    connected=$(field "$j" connected); lost=$(field "$j" lost); dup=$(field "$j" duplicates)
    p99=$(field "$j" latency_ms.p99); errors=$(field "$j" publish_errors)
    if [ "$connected" -eq "$N" ] && [ "$lost" -eq 0 ] && [ "$dup" -eq 0 ] && [ "$errors" -eq 0 ] \
      && awk -v p="$p99" 'BEGIN {exit !(p < 1000)}'; then
      best[$road]=$((r * N))
    else
      break
    fi
  done
  stop
done

# 4. Presence joins and leaves.
echo "### Presence: $MEMBERS members over 11 presence channels" >> "$out"; echo >> "$out"
for road in pg sk; do
  case $road in
    pg) start pushgate; u=(--url http://127.0.0.1:18080 --publish http://127.0.0.1:19090) ;;
    sk) start sockudo; u=(--target pusher --url http://127.0.0.1:28090 --publish http://127.0.0.1:28090) ;;
  esac
  echo "$road: \`pushgate bench --presence ${u[*]} ${APP[*]} -n $MEMBERS --channels 11\`" >> "$out"; echo >> "$out"
  $PG bench --presence "${u[@]}" "${APP[@]}" -n "$MEMBERS" --channels 11 --json > "$work/presence-$road.json" 2>> "$work/bench.log" \
    || echo '{"presence":{}}' > "$work/presence-$road.json"
  jq -r '.presence | "| \(.members) | \(.joined) | \(.added_seen) | \(.removed_seen) | \(.joins_per_sec // 0 | floor) | \(.leaves_per_sec // 0 | floor) |"' "$work/presence-$road.json" \
    | { echo "| members | joined | added seen | removed seen | joins/s | leaves/s |"; echo "|---|---|---|---|---|---|"; cat; } >> "$out"
  echo >> "$out"
  stop
done

# The summary: the targets and how each came out.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
mem() { jq -r '.runs[0].memory_per_connection_kib // 0' "$work/idle-$1.json"; }
fan() { jq -r ".runs[0].$2 // 0" "$work/fan-$1.json"; }
pres() { jq -r ".presence.$2 // 0" "$work/presence-$1.json"; }
{
  echo "### Summary"
  echo
  echo "| measure | pushgate WebSocket | pushgate Pusher | sockudo | ratio | target |"
  echo "|---|---|---|---|---|---|"
  echo "| fan-out $N × 20/s, deliveries/s | $(fan pg_ws msgs_per_sec) | $(fan pg_pusher msgs_per_sec) | $(fan sk_pusher msgs_per_sec) | Pusher/WebSocket $(ratio "$(fan pg_pusher msgs_per_sec)" "$(fan pg_ws msgs_per_sec)") | ≥ 0.90 |"
  echo "| fan-out $N × 20/s, p99 ms | $(fan pg_ws latency_ms.p99) | $(fan pg_pusher latency_ms.p99) | $(fan sk_pusher latency_ms.p99) | Pusher/WebSocket $(ratio "$(fan pg_pusher latency_ms.p99)" "$(fan pg_ws latency_ms.p99)") | ≤ 1.10 |"
  echo "| saturation: highest lossless rate, deliveries/s (steps: $RATES msgs/s × $N) | ${best[pg_ws]} | ${best[pg_pusher]} | ${best[sk_pusher]} | pushgate Pusher/sockudo $(ratio "${best[pg_pusher]}" "${best[sk_pusher]}") | ≥ 2 |"
  echo "| memory per idle connection, KiB | $(mem pg_ws) | $(mem pg_pusher) | $(mem sk_pusher) | sockudo/pushgate Pusher $(ratio "$(mem sk_pusher)" "$(mem pg_pusher)") | ≥ 2 |"
  echo "| presence joins/s ($MEMBERS members) | - | $(pres pg joins_per_sec) | $(pres sk joins_per_sec) | $(ratio "$(pres pg joins_per_sec)" "$(pres sk joins_per_sec)") | - |"
  echo "| presence leaves/s ($MEMBERS members) | - | $(pres pg leaves_per_sec) | $(pres sk leaves_per_sec) | $(ratio "$(pres pg leaves_per_sec)" "$(pres sk leaves_per_sec)") | - |"
  echo
  echo "A saturation figure is the last step's offered deliveries/s that every subscriber received (no loss, no duplicate, no publish error, p99 under 1 s); the next step failed one of those or the steps ran out (then the figure is a lower bound)."
  echo
} >> "$out"

cat "$out"
{ echo; cat "$out"; } >> bench/RESULTS.md
