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

need=()
for p in nginx libnginx-mod-nchan; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
N=${N:-19000}
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$N" -gt $((hard - 1000)) ]; then N=$((hard - 1000)); fi

cargo build --release --quiet
PG=target/release/pushgate
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cat > "$work/nginx.conf" <<NGINX
load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
worker_processes 2;
worker_rlimit_nofile 200000;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 100000; }
http {
  access_log off;
  client_body_temp_path $work/body; proxy_temp_path $work/proxy;
  fastcgi_temp_path $work/fcgi; uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
  server {
    listen 127.0.0.1:28080;
    location = /pub { nchan_publisher; nchan_channel_id \$arg_id; nchan_message_buffer_length 1000; nchan_message_timeout 10m; }
    location ~ ^/sub/(.+)$ { nchan_subscriber; nchan_channel_id \$1; nchan_subscriber_first_message newest; }
  }
}
NGINX

# Summed RSS and PSS (KiB) of every nginx process.
nginx_mem() {
  local rss=0 pss=0 r p
  for pid in $(pgrep -x nginx); do
    r=$(awk '/^Rss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
    p=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
    rss=$((rss + r)); pss=$((pss + p))
  done
  echo "$rss $pss"
}

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
  for _ in $(seq 1 60); do
    sleep 1
    n=$(ss -Htn state established '( sport = :28080 )' | wc -l)
    [ "$n" -ge "$N" ] && break
  done
  sleep 2
  read -r rss1 pss1 < <(nginx_mem)
  wait $gen || true
  kill -QUIT $ng; wait $ng || true
  connected=$(sed -n 's/.*"connected": *\([0-9]*\).*/\1/p' "$work/nchan.json" | head -1)
  echo "| nginx+Nchan | $t | ${connected:-?} | $(awk -v a=$rss1 -v b=$rss0 -v n=$N 'BEGIN {printf "%.1f", (a-b)/n}') (RSS), $(awk -v a=$pss1 -v b=$pss0 -v n=$N 'BEGIN {printf "%.1f", (a-b)/n}') (PSS) |" >> "$out"
done
echo >> "$out"
tail -8 "$out"
