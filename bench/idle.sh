#!/usr/bin/env bash
# Idle memory per connection, pushgate vs nginx+Nchan, each server started
# fresh for each measurement (compare.sh measures after the heavy scenarios,
# when both have memory to reuse). Appends a dated section to
# bench/RESULTS.md.
#
#   bench/idle.sh             # 19,000 connections (or the open-files limit)
#   N=5000 bench/idle.sh
#
# pushgate: RSS growth of its process / connections (`--pid`).
# nginx: growth of the summed RSS and of the summed PSS of all nginx
# processes / connections. PSS splits the shared pages (Nchan keeps its
# subscribers in shared memory) between the workers that map them, so it
# does not count them twice; RSS does.
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh
bench_need nginx libnginx-mod-nchan
bench_start
N=$(fit_fd_limit "${N:-19000}")
nchan_conf "$work/nginx.conf"

out=bench/RESULTS.md
{
  echo
  echo "## Idle memory, fresh processes, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(uname -sr); $N idle connections per measurement, each on a freshly started server. Command: \`bench/idle.sh\`."
  echo
  echo '| server | transport | connected | KiB per connection |'
  echo '|---|---|---|---|'
} >> "$out"

for t in sse ws; do
  $PG run -c bench/pushgate.yaml > "$work/pg.log" 2>&1 & pg=$!; pids+=($pg)
  sleep 1
  line=$($PG bench --transport $t -n "$N" -m 1 -r 1 --hold 2 --pid $pg 2>/dev/null | tail -1)
  kill -INT $pg; wait $pg || true
  connected=$(echo "$line" | awk -F'|' '{gsub(/ /,"",$4); print $4}')
  kib=$(echo "$line" | awk -F'|' '{gsub(/ /,"",$14); print $14}')
  echo "| pushgate | $t | $connected | $kib (RSS) |" >> "$out"

  nginx -c "$work/nginx.conf" -g 'daemon off;' & ng=$!; pids+=($ng)
  sleep 1
  read -r rss0 pss0 < <(nginx_mem)
  $PG bench --target nchan --url http://127.0.0.1:28080 --publish http://127.0.0.1:28080 \
    --transport $t -n "$N" -m 1 -r 1 --hold 20 --json > "$work/nchan.json" 2>/dev/null & gen=$!
  # Sample while the generator holds every connection open.
  wait_established 28080 "$N"
  sleep 2
  read -r rss1 pss1 < <(nginx_mem)
  wait $gen || true
  kill -QUIT $ng; wait $ng || true
  connected=$(sed -n 's/.*"connected": *\([0-9]*\).*/\1/p' "$work/nchan.json" | head -1)
  echo "| nginx+Nchan | $t | ${connected:-?} | $(awk -v a=$rss1 -v b=$rss0 -v n=$N 'BEGIN {printf "%.1f", (a-b)/n}') (RSS), $(awk -v a=$pss1 -v b=$pss0 -v n=$N 'BEGIN {printf "%.1f", (a-b)/n}') (PSS) |" >> "$out"
done
echo >> "$out"
tail -8 "$out"
