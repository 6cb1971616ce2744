#!/usr/bin/env bash
# WebSocket compression, side by side in one run: bytes on the wire and
# server CPU per delivery with compression off, compressed once per message
# (what pushgate does), and compressed per connection (the baseline: what a
# server with a compression context per socket does, as Pushpin and Nchan;
# built with `--cfg pushgate_bench_deflate_per_connection`, never shipped), for
# 512 B and 4 KiB JSON messages to N subscribers of one channel. Appends a
# dated section to bench/RESULTS.md.
#
#   bench/deflate.sh                      # N=1000 subscribers, M=200 messages per size, 50/s
#   N=200 M=50 bench/deflate.sh           # quick
#
# CPU is the server process's utime+stime (/proc/PID/stat) from the first
# publish to the last delivery, divided by deliveries (N x M); it includes
# the M publish requests, the same in every mode. Bytes are what the
# subscribers' sockets read (frames, cursor frames, pings).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-1000}
M=${M:-200}
RATE=${RATE:-50}
PUB=${PUB:-18480}
ADMIN=${ADMIN:-19490}
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The two builds (ONCE= / PERCONN= name prebuilt binaries instead).
if [ -z "${ONCE:-}" ]; then
  cargo build --release --quiet
  cp target/release/pushgate "$work/pushgate-once"
  ONCE=$work/pushgate-once
fi
if [ -z "${PERCONN:-}" ]; then
  # A cfg, not a feature (`--all-features` must not build it); its own
  # target directory, so the flag does not rebuild the shipped build's.
  RUSTFLAGS="--cfg pushgate_bench_deflate_per_connection" \
    cargo build --release --quiet --target-dir target/bench-perconn
  cp target/bench-perconn/release/pushgate "$work/pushgate-perconn"
  PERCONN=$work/pushgate-perconn
fi
tck=$(getconf CLK_TCK)

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One measurement: binary, compression lines, message size; prints a row.
measure() {
  local bin=$1 compression=$2 size=$3 label=$4
  sed -e "s/127.0.0.1:18080/127.0.0.1:$PUB/" -e "s/127.0.0.1:19090/127.0.0.1:$ADMIN/" \
    -e "s/^  client_queue: 1024/  client_queue: 1024\n  compression: $compression/" \
    bench/pushgate.yaml >"$work/gateway.yaml"
  "$bin" run -c "$work/gateway.yaml" >"$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$ADMIN/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  coproc SUB { node bench/deflate_subscribers.js "ws://127.0.0.1:$PUB/realtime/ws?channels=public.deflate&cursor_frames=1" "127.0.0.1:$ADMIN" "$N" "$M" "$size" "$RATE"; }
  local line t0 t1 result
  read -r line <&"${SUB[0]}"
  [ "$line" = ready ] || { echo "subscribers: $line" >&2; exit 1; }
  t0=$(ticks "$pid")
  echo go >&"${SUB[1]}"
  read -r result <&"${SUB[0]}"
  t1=$(ticks "$pid")
  wait "$SUB_PID" 2>/dev/null || true
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  node -e '
    const [r, label, size, n, m, dt, tck] = [JSON.parse(process.argv[1]), ...process.argv.slice(2)];
    if (r.error) { console.error(JSON.stringify(r)); process.exit(1); }
    const d = n * m;
    const cpu = (dt / tck) * 1e6 / d;
    console.log(`| ${size} B | ${label} | ${r.extensions || "none"} | ${(r.bytes / d).toFixed(0)} | ${cpu.toFixed(2)} | ${r.received} |`);
  ' "$result" "$label" "$size" "$N" "$M" "$((t1 - t0))" "$tck"
}

rows=()
for size in 512 4096; do
  rows+=("$(measure "$ONCE" '{ enabled: false }' "$size" 'off')")
  rows+=("$(measure "$ONCE" '{ enabled: true }' "$size" 'once per message')")
  rows+=("$(measure "$PERCONN" '{ enabled: true }' "$size" 'per connection (baseline)')")
done

out=bench/RESULTS.md
{
  echo
  echo "## WebSocket compression, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(uname -sr)${NOTE:+; $NOTE}. $N subscribers (Node \`ws\`, default permessage-deflate offer) on one channel, $M messages per size at $RATE/s, default \`threshold\` (256 B) and \`level\` (3). Command: \`N=$N M=$M bench/deflate.sh\`."
  echo
  echo "| message | compression | negotiated | wire bytes / delivery | server CPU µs / delivery | delivered |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee -a "$out"
