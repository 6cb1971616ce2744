#!/usr/bin/env bash
# Proxy pass-through alone: wrk against a small nginx "application"
# directly, through nginx as a plain reverse proxy, and through pushgate,
# in alternating rounds (single runs on shared cores swing by 10-20%).
# With OTHER=<path to another pushgate binary> (OTHER_CONFIG, the config it
# runs with when it differs, and OTHER_NAME, what to
# call it in the results, e.g. the commit it was built from), that build
# runs in the same rounds too, for an A/B of two builds against the same
# nginx. Appends a dated section to bench/RESULTS.md.
#
#   bench/proxy.sh
#   ROUNDS=5 OTHER=old/pushgate OTHER_NAME="build of abc1234" bench/proxy.sh
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh
bench_need nginx libnginx-mod-nchan wrk
bench_start
ROUNDS=${ROUNDS:-3}

nchan_conf "$work/nginx.conf" "$NGINX_PROXY"
nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)
$PG run -c bench/pushgate.yaml & pids+=($!)
if [ -n "${OTHER:-}" ]; then
  # The same config on other ports: the public one is the only one used.
  sed -e 's/18080/18180/; s/19090/19190/' "${OTHER_CONFIG:-bench/pushgate.yaml}" > "$work/other.yaml"
  "$OTHER" run -c "$work/other.yaml" & pids+=($!)
fi
sleep 1

out="$work/results.md"
{
  echo "## Proxy pass-through A/B, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(uname -sr); load before: $(cut -d' ' -f1-3 /proc/loadavg). Command: \`ROUNDS=$ROUNDS${OTHER:+ OTHER=…} bench/proxy.sh\`; pushgate at $(git rev-parse --short HEAD)$(git diff --quiet || echo ' with uncommitted changes')${OTHER:+, other: ${OTHER_NAME:-another build}}."
  echo "wrk, 2 threads, 64 connections, 10 s per run."
  echo
  echo '| round | path | requests/s | p50 | p99 |'
  echo '|---|---|---|---|---|'
} > "$out"
ratio() { awk -v p="$1" -v n="$2" 'BEGIN {printf "%.0f%%", 100 * p / n}'; }
wrk_row - "direct to the application" 18081 > /dev/null
ratios=() others=()
for round in $(seq "$ROUNDS"); do
  ng=$(wrk_row "$round" "through nginx" 28081)
  pg=$(wrk_row "$round" "through pushgate" 18080)
  ratios+=("$(ratio "$pg" "$ng")")
  if [ -n "${OTHER:-}" ]; then
    ot=$(wrk_row "$round" "through the other pushgate" 18180)
    others+=("$(ratio "$ot" "$ng")")
  fi
done
{
  echo
  echo "pushgate / nginx requests/s by round: ${ratios[*]}."
  [ -n "${OTHER:-}" ] && echo "other pushgate / nginx by round: ${others[*]}."
  echo
} >> "$out"

cat "$out"
{ echo; cat "$out"; } >> bench/RESULTS.md
