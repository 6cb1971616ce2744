#!/usr/bin/env bash
# Server CPU per proxied request, for one or more pushgate builds: each
# build is started alone in front of a small nginx "application", warmed
# for 2 s, then loaded by wrk for 10 s; its utime+stime over those 10 s is
# divided by the requests served. CPU per request swings far less than
# requests/s on shared cores, so it is the figure to compare builds by.
# Builds alternate over ROUNDS rounds, each round starting one build on. Appends a dated section to
# bench/RESULTS.md.
#
#   bench/proxy-cpu.sh                                   # this checkout only
#   ROUNDS=3 bench/proxy-cpu.sh "old build=old/pushgate"  # and another build
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh
bench_need nginx libnginx-mod-nchan wrk
bench_start
ROUNDS=${ROUNDS:-2}
nchan_conf "$work/nginx.conf" "$APP_SERVER"
nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)
sleep 1

builds=("this checkout ($(git rev-parse --short HEAD))=$PG" "$@")
hz=$(getconf CLK_TCK)
measure() { # name, binary
  local p a b res requests
  "$2" run -c bench/pushgate.yaml >/dev/null 2>&1 & p=$!
  sleep 1
  wrk -t2 -c64 -d2s http://127.0.0.1:18080/ >/dev/null 2>&1
  a=$(awk '{print $14 + $15}' "/proc/$p/stat")
  res=$(wrk -t2 -c64 -d10s http://127.0.0.1:18080/ 2>&1)
  b=$(awk '{print $14 + $15}' "/proc/$p/stat")
  requests=$(echo "$res" | awk '/requests in/ {print $1}')
  kill "$p"; wait "$p" 2>/dev/null || true
  awk -v n="$1" -v t=$((b - a)) -v r="$requests" -v hz="$hz" \
    'BEGIN {printf "| %s | %d | %.2f | %.1f |\n", n, r, t / hz, 1e6 * t / hz / r}'
}

out="$work/results.md"
{
  echo "## Proxy: server CPU per request, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(uname -sr); load before: $(cut -d' ' -f1-3 /proc/loadavg). Command: \`ROUNDS=$ROUNDS bench/proxy-cpu.sh\` with the builds below; wrk 2 threads, 64 connections, 10 s, after a 2 s warm-up; each build alone."
  echo
  echo "| build | requests in 10 s | server CPU s | CPU µs per request |"
  echo "|---|---|---|---|"
  # Each round starts one build further on: this machine's speed drifts
  # within a round, and a build always run last would look cheaper.
  n=${#builds[@]}
  for round in $(seq 0 $((ROUNDS - 1))); do
    for i in $(seq 0 $((n - 1))); do
      b=${builds[$(((round + i) % n))]}
      measure "${b%%=*}" "${b#*=}"
    done
  done
  echo
} > "$out"
cat "$out"
{ echo; cat "$out"; } >> bench/RESULTS.md
