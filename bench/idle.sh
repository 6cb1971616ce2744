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
bench_need nginx libnginx-mod-nchan jq
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
  pushgate_idle bench/pushgate.yaml 18080 "$work/pg-$t.json" --transport $t -n "$N"
  echo "| pushgate | $t | $(report_field "$work/pg-$t.json" connected) | $(pushgate_idle_kib "$work/pg-$t.json" connected) (RSS) |" >> "$out"

  nchan_idle "$work/nginx.conf" 28080 "$N" "$work/nc-$t.json" --target nchan --url http://127.0.0.1:28080 \
    --publish http://127.0.0.1:28080 --transport $t -n "$N"
  rss=$(jq -r '.rss_kib' "$work/nc-$t.mem.json")
  echo "| nginx+Nchan | $t | $(report_field "$work/nc-$t.json" connected) | $(awk -v g="$rss" -v n="$N" 'BEGIN {printf "%.1f", g / n}') (RSS), $(awk -v g="$(jq -r '.pss_kib' "$work/nc-$t.mem.json")" -v n="$N" 'BEGIN {printf "%.1f", g / n}') (PSS) |" >> "$out"
done
echo >> "$out"
tail -8 "$out"
