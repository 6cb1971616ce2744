#!/usr/bin/env bash
# The proxy with buffering on (pushgate's default, `backend.buffering`)
# against nginx with its defaults (proxy_buffering and
# proxy_request_buffering on), side by side in alternating rounds: a small
# answer, a 256 KiB answer (past nginx's default proxy buffers, so nginx
# spills it to a temporary file; within pushgate's 1 MiB memory bound), and
# a POST of 16 KiB (request bodies are read whole before the application
# is asked, by both). Appends a dated section to bench/RESULTS.md.
#
#   bench/buffering.sh
#   ROUNDS=5 bench/buffering.sh
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh
bench_need nginx libnginx-mod-nchan wrk
bench_start
ROUNDS=${ROUNDS:-3}

head -c 196608 /dev/urandom | base64 -w 0 > "$work/big.txt"   # 256 KiB of text
# nginx's workers read it as their own user.
chmod 755 "$work"; chmod 644 "$work/big.txt"
# The application: an nginx instance of its own (see bench/upstreams.sh).
nchan_conf "$work/apps.conf" "
  server { listen 127.0.0.1:18081;
    location = / { return 200 \"hello from the application\n\"; }
    location = /big { default_type text/plain; alias $work/big.txt; }
    location = /post { client_max_body_size 1m; return 200 \"taken\n\"; } }"
sed -i "s|listen 127.0.0.1:28080;|listen 127.0.0.1:28090;|; s|pid $work/nginx.pid|pid $work/apps.pid|" "$work/apps.conf"
nginx -c "$work/apps.conf" -g 'daemon off;' & pids+=($!)
nchan_conf "$work/nginx.conf" "
  upstream app { server 127.0.0.1:18081; keepalive 64; }
  server { listen 127.0.0.1:28081; client_max_body_size 100m;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)
$PG run -c bench/pushgate.yaml & pids+=($!)
sleep 1
for port in 28081 18080; do
  curl -fsS "http://127.0.0.1:$port/big" | cmp - "$work/big.txt" || { echo "port $port: /big differs" >&2; exit 1; }
done

head -c 16384 /dev/zero | tr '\0' 'x' > "$work/body.txt"
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
local f = io.open("$work/body.txt", "rb"); wrk.body = f:read("*a"); f:close()
LUA

out="$work/results.md"
{
  echo "## Proxy with buffering on, pushgate vs nginx's defaults, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(uname -sr); load before: $(cut -d' ' -f1-3 /proc/loadavg). Command: \`ROUNDS=$ROUNDS bench/buffering.sh\`; pushgate at $(git rev-parse --short HEAD)$(git diff --quiet || echo ' with uncommitted changes')."
  echo "wrk, 2 threads, 64 connections, 10 s per run; one nginx application server (an nginx instance of its own); nginx as the proxy with its default buffering, pushgate with its default buffering (1 MiB in memory per request, then a temporary file)."
  echo
  echo '| round | path | requests/s | p50 | p99 |'
  echo '|---|---|---|---|---|'
} > "$out"
ratio() { awk -v p="$1" -v n="$2" 'BEGIN {printf "%.0f%%", 100 * p / n}'; }
small=() big=() post=()
for round in $(seq "$ROUNDS"); do
  ng=$(wrk_row "$round" "nginx, GET / (27 B)" 28081 /)
  pg=$(wrk_row "$round" "pushgate, GET / (27 B)" 18080 /)
  small+=("$(ratio "$pg" "$ng")")
  ng=$(wrk_row "$round" "nginx, GET /big (256 KiB)" 28081 /big)
  pg=$(wrk_row "$round" "pushgate, GET /big (256 KiB)" 18080 /big)
  big+=("$(ratio "$pg" "$ng")")
  ng=$(wrk_row "$round" "nginx, POST 16 KiB" 28081 /post "-s $work/post.lua")
  pg=$(wrk_row "$round" "pushgate, POST 16 KiB" 18080 /post "-s $work/post.lua")
  post+=("$(ratio "$pg" "$ng")")
done
{
  echo
  echo "pushgate / nginx requests/s by round: GET / ${small[*]}; GET /big ${big[*]}; POST 16 KiB ${post[*]}."
  echo
} >> "$out"

cat "$out"
{ echo; cat "$out"; } >> bench/RESULTS.md
