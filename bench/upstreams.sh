#!/usr/bin/env bash
# Proxying to two application servers: pushgate (`backend.urls`, round
# robin) against nginx (`upstream {}` with the same two servers, keepalive),
# over plain HTTP and with an HTTPS upstream (a test CA made here with
# openssl; both proxies verify the servers' certificate), in alternating
# rounds on the same machine. Appends a dated section to bench/RESULTS.md.
#
#   bench/upstreams.sh
#   ROUNDS=5 bench/upstreams.sh
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh
bench_need nginx libnginx-mod-nchan wrk openssl
bench_start
ROUNDS=${ROUNDS:-3}

# A test CA and one server certificate for 127.0.0.1 / localhost.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=bench test CA" -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=localhost" -keyout "$work/app.key" -out "$work/app.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$work/san.ext"
openssl x509 -req -in "$work/app.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
  -CAcreateserial -days 2 -extfile "$work/san.ext" -out "$work/app.crt" 2>/dev/null

# The application servers: an nginx instance of their own (two workers),
# as an application is a process of its own in front of which either proxy
# sits. (Inside the proxy's own nginx they would share its event loops and
# wake-ups, which favours nginx's figures and is no deployment.)
hello='location / { return 200 "hello from the application\n"; }'
nchan_conf "$work/apps.conf" "
  server { listen 127.0.0.1:18081; $hello }
  server { listen 127.0.0.1:18082; $hello }
  server { listen 127.0.0.1:18083 ssl; ssl_certificate $work/app.crt; ssl_certificate_key $work/app.key; $hello }
  server { listen 127.0.0.1:18084 ssl; ssl_certificate $work/app.crt; ssl_certificate_key $work/app.key; $hello }"
sed -i "s|listen 127.0.0.1:28080;|listen 127.0.0.1:28090;|; s|pid $work/nginx.pid|pid $work/apps.pid|" "$work/apps.conf"
nginx -c "$work/apps.conf" -g 'daemon off;' & pids+=($!)
nchan_conf "$work/nginx.conf" "
  upstream app { server 127.0.0.1:18081; server 127.0.0.1:18082; keepalive 64; }
  upstream app_tls { server 127.0.0.1:18083; server 127.0.0.1:18084; keepalive 64; }
  server { listen 127.0.0.1:28081; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }
  server { listen 127.0.0.1:28082; location / {
    proxy_pass https://app_tls; proxy_http_version 1.1; proxy_set_header Connection \"\";
    proxy_ssl_verify on; proxy_ssl_trusted_certificate $work/ca.pem; proxy_ssl_name localhost;
    proxy_ssl_server_name on; proxy_ssl_session_reuse on; } }"
nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)

# pushgate: the bench config with the two servers, and a second instance
# (other ports) with the two HTTPS servers.
sed -e 's|backend: .*|backend: { urls: [http://127.0.0.1:18081, http://127.0.0.1:18082] }|' \
  bench/pushgate.yaml > "$work/plain.yaml"
sed -e "s|backend: .*|backend: { urls: [https://127.0.0.1:18083, https://127.0.0.1:18084], tls: { ca: $work/ca.pem, server_name: localhost } }|" \
  -e 's/18080/18280/; s/19090/19190/' bench/pushgate.yaml > "$work/tls.yaml"
$PG run -c "$work/plain.yaml" & pids+=($!)
$PG run -c "$work/tls.yaml" & pids+=($!)
sleep 1
for port in 28081 28082 18080 18280; do
  curl -fsS "http://127.0.0.1:$port/" > /dev/null || { echo "port $port does not answer" >&2; exit 1; }
done

out="$work/results.md"
{
  echo "## Proxy to two upstream servers, pushgate vs nginx, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(uname -sr); load before: $(cut -d' ' -f1-3 /proc/loadavg). Command: \`ROUNDS=$ROUNDS bench/upstreams.sh\`; pushgate at $(git rev-parse --short HEAD)$(git diff --quiet || echo ' with uncommitted changes')."
  echo "wrk, 2 threads, 64 connections, 10 s per run; two nginx application servers per upstream (in an nginx instance of their own, two workers), round robin on both proxies (nginx: two workers), HTTPS upstream verified against a test CA by both."
  echo
  echo '| round | path | requests/s | p50 | p99 |'
  echo '|---|---|---|---|---|'
} > "$out"
ratio() { awk -v p="$1" -v n="$2" 'BEGIN {printf "%.0f%%", 100 * p / n}'; }
plain=() tls=()
for round in $(seq "$ROUNDS"); do
  ng=$(wrk_row "$round" "nginx, http upstream" 28081)
  pg=$(wrk_row "$round" "pushgate, http upstream" 18080)
  plain+=("$(ratio "$pg" "$ng")")
  ng=$(wrk_row "$round" "nginx, https upstream" 28082)
  pg=$(wrk_row "$round" "pushgate, https upstream" 18280)
  tls+=("$(ratio "$pg" "$ng")")
done
{
  echo
  echo "pushgate / nginx requests/s by round: http upstream ${plain[*]}; https upstream ${tls[*]}."
  echo
} >> "$out"

cat "$out"
{ echo; cat "$out"; } >> bench/RESULTS.md
