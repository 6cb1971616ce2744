#!/usr/bin/env bash
# Side-by-side benchmark: pushgate vs nginx + Nchan (and the proxy path vs
# plain nginx), same load generator, same machine, one run. Writes the
# tables to bench/RESULTS.md (appends a dated section).
#
#   bench/compare.sh            # full scenarios
#   QUICK=1 bench/compare.sh    # smaller numbers, for a quick look
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh
bench_need nginx libnginx-mod-nchan wrk
bench_start

# nginx: a static "application", a plain reverse proxy to it, and Nchan.
nchan_conf "$work/nginx.conf" "$NGINX_PROXY"
nchan_start "$work/nginx.conf" 28080 28081
$PG run -c bench/pushgate.yaml & pgpid=$!; pids+=($pgpid)
wait_listening 18080
nginx_rss() { ps -o rss= -C nginx | awk '{s+=$1} END {print s}'; }

if [ -n "${QUICK:-}" ]; then S=500; M=200; SECS=4; C=1000; CH=100; IDLE=2000; else S=5000; M=1000; SECS=20; C=10000; CH=1000; IDLE=20000; fi
IDLE=$(fit_fd_limit "$IDLE")

out="$work/results.md"
{
  echo "## Run of $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); open-files limit $(ulimit -Hn); load before: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Versions: pushgate $($PG --version | cut -d' ' -f2), $(nginx -v 2>&1 | cut -d' ' -f3), nchan $(dpkg-query -W -f='${Version}' libnginx-mod-nchan), wrk $(dpkg-query -W -f='${Version}' wrk)."
  echo "Load generator, servers and publisher share the same cores. Command: \`bench/compare.sh\` (QUICK=${QUICK:-})."
  echo
} > "$out"

run() { # title, then pushgate bench arguments
  local title=$1; shift
  echo "### $title" >> "$out"; echo >> "$out"
  echo "\`pushgate bench $*\`" >> "$out"; echo >> "$out"
  $PG bench "$@" >> "$out"
  echo >> "$out"
}
rate=$((M / SECS))
for t in sse ws; do
  run "pushgate: $S $t subscribers, one channel, $rate msgs/s of 512 B" --transport $t -n $S -m $M -r $rate -s 512 --pid $pgpid
  run "nginx+Nchan: $S $t subscribers, one channel, $rate msgs/s of 512 B" --target nchan --url http://127.0.0.1:28080 --publish http://127.0.0.1:28080 --transport $t -n $S -m $M -r $rate -s 512
done
# The latency targets, in the same run: 5,000 x 20 msgs/s and 1,000 x 5 msgs/s.
for load in "$S 20" "$((S / 5)) 5"; do
  read -r n r <<< "$load"
  run "pushgate: $n sse subscribers, one channel, $r msgs/s of 512 B" --transport sse -n "$n" -m $((r * SECS)) -r "$r" -s 512
  run "nginx+Nchan: $n sse subscribers, one channel, $r msgs/s of 512 B" --target nchan --url http://127.0.0.1:28080 --publish http://127.0.0.1:28080 --transport sse -n "$n" -m $((r * SECS)) -r "$r" -s 512
done
run "pushgate: $C sse subscribers on $CH channels, $((CH * 2)) msgs/s" --transport sse -n $C --channels $CH -m $((CH * 2 * SECS / 2)) -r $((CH * 2)) -s 512 --pid $pgpid
run "nginx+Nchan: $C sse subscribers on $CH channels, $((CH * 2)) msgs/s" --target nchan --url http://127.0.0.1:28080 --publish http://127.0.0.1:28080 --transport sse -n $C --channels $CH -m $((CH * 2 * SECS / 2)) -r $((CH * 2)) -s 512

# Idle memory: connections held, one message so each is verified live.
echo "### Idle memory: $IDLE SSE connections" >> "$out"; echo >> "$out"
run "pushgate idle" --transport sse -n $IDLE -m 1 -r 1 --hold 2 --pid $pgpid
before=$(nginx_rss)
$PG bench --target nchan --url http://127.0.0.1:28080 --publish http://127.0.0.1:28080 --transport sse -n $IDLE -m 1 -r 1 --hold 20 --json > "$work/nchan-idle.json" 2>/dev/null &
benchpid=$!
# Sample while the generator holds every connection open.
wait_established 28080 "$IDLE"
sleep 2
after=$(nginx_rss)
wait $benchpid || true
echo "nginx+Nchan generator report: $(cat "$work/nchan-idle.json")" >> "$out"
echo "nginx+Nchan: RSS of all nginx processes grew by $(( (after - before) )) KiB while $IDLE SSE connections were open: $(awk -v a=$after -v b=$before -v n=$IDLE 'BEGIN {printf "%.1f", (a-b)/n}') KiB per connection (sampled mid-run)." >> "$out"
echo >> "$out"

# Proxy pass-through. nginx and pushgate alternate, several rounds: single
# runs on shared cores swing by 10-20%, and going last must not decide it.
if [ -n "${QUICK:-}" ]; then ROUNDS=${ROUNDS:-1}; else ROUNDS=${ROUNDS:-3}; fi
echo "### Proxy pass-through (wrk, 2 threads, 64 connections, 10 s per run, $ROUNDS alternating rounds)" >> "$out"; echo >> "$out"
echo '| round | path | requests/s | p50 | p99 |' >> "$out"; echo '|---|---|---|---|---|' >> "$out"
wrk_row - "direct to the application" 18081 > /dev/null
ratios=()
for round in $(seq "$ROUNDS"); do
  ng=$(wrk_row "$round" "through nginx" 28081)
  pg=$(wrk_row "$round" "through pushgate" 18080)
  ratios+=("$(awk -v p="$pg" -v n="$ng" 'BEGIN {printf "%.0f%%", 100 * p / n}')")
done
echo >> "$out"
echo "pushgate / nginx requests/s by round: ${ratios[*]}." >> "$out"
echo >> "$out"

cat "$out"
{ echo; cat "$out"; } >> bench/RESULTS.md
