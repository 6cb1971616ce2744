#!/usr/bin/env bash
# Fan-out over TLS, side by side: pushgate (its self-signed development
# certificate, TLS 1.2/1.3 via rustls, ALPN h2 and http/1.1) against
# nginx+Nchan on `listen ... ssl http2` with `ssl_protocols TLSv1.2 TLSv1.3`
# and the same certificate. Scenarios: SSE over HTTPS/1.1, SSE over h2 with
# 50 streams per connection, WSS, at 1,000 x 5 msgs/s and 5,000 x 20 msgs/s,
# then idle memory per TLS connection. Appends the tables to bench/RESULTS.md.
#
#   bench/tls.sh                 # full numbers
#   QUICK=1 bench/tls.sh         # 200 subscribers, a few seconds each
#   NOTE="two builds running" bench/tls.sh   # adds the load to the machine line
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh
bench_need nginx libnginx-mod-nchan
bench_start

# pushgate on 18443 (TLS) with the benchmark limits; admin on 19090.
mkdir -p "$work/certs"
sed -e 's/public: 127.0.0.1:18080/public: 127.0.0.1:18443/' bench/pushgate.yaml > "$work/pushgate.yaml"
printf 'tls: { cert: %s/certs/gw.crt, key: %s/certs/gw.key, self_signed_if_missing: true }\n' "$work" "$work" >> "$work/pushgate.yaml"
$PG run -c "$work/pushgate.yaml" & pgpid=$!; pids+=($pgpid)
for _ in $(seq 1 50); do [ -s "$work/certs/gw.crt" ] && break; sleep 0.1; done

# nginx+Nchan: plain publisher on 28080, TLS subscribers on 28443.
nchan_conf "$work/nginx.conf" "  server {
    listen 127.0.0.1:28443 ssl http2;
    ssl_certificate $work/certs/gw.crt; ssl_certificate_key $work/certs/gw.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    http2_max_concurrent_streams 1000;
    location ~ ^/sub/(.+)\$ { nchan_subscriber; nchan_channel_id \$1; nchan_subscriber_first_message newest; }
  }"
nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)
sleep 1
nginx_rss() { ps -o rss= -C nginx | awk '{s+=$1} END {print s}'; }

if [ -n "${QUICK:-}" ]; then S=200; SECS=3; IDLE=500; else S=5000; SECS=20; IDLE=5000; fi
IDLE=$(fit_fd_limit "$IDLE")
PGU=(--url https://127.0.0.1:18443 --ca "$work/certs/gw.crt")
NCU=(--target nchan --url https://127.0.0.1:28443 --publish http://127.0.0.1:28080 --ca "$work/certs/gw.crt")

out="$work/results.md"
{
  echo "## TLS run of $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); load before: $(cut -d' ' -f1-3 /proc/loadavg)${NOTE:+; $NOTE}."
  echo "Versions: pushgate $($PG --version | cut -d' ' -f2), $(nginx -v 2>&1 | cut -d' ' -f3), nchan $(dpkg-query -W -f='${Version}' libnginx-mod-nchan). TLS: rustls (pushgate) and OpenSSL (nginx), same self-signed P-256 certificate."
  echo "Command: \`bench/tls.sh\` (QUICK=${QUICK:-}). Generator, servers and publisher share the cores."
  echo
} > "$out"

run() { # title, then pushgate bench arguments
  local title=$1; shift
  echo "### $title" >> "$out"; echo >> "$out"
  echo "\`pushgate bench $*\`" >> "$out"; echo >> "$out"
  $PG bench "$@" >> "$out"
  echo >> "$out"
}
for load in "$((S / 5)) 5" "$S 20"; do
  read -r n r <<< "$load"
  m=$((r * SECS))
  run "pushgate: $n SSE over HTTPS/1.1, $r msgs/s" "${PGU[@]}" --transport sse -n "$n" -m $m -r "$r"
  run "nginx+Nchan: $n SSE over HTTPS/1.1, $r msgs/s" "${NCU[@]}" --transport sse -n "$n" -m $m -r "$r"
  run "pushgate: $n SSE over h2 (50 streams per connection), $r msgs/s" "${PGU[@]}" --transport sse --h2 --streams 50 -n "$n" -m $m -r "$r"
  run "nginx+Nchan: $n SSE over h2 (50 streams per connection), $r msgs/s" "${NCU[@]}" --transport sse --h2 --streams 50 -n "$n" -m $m -r "$r"
  run "pushgate: $n WSS, $r msgs/s" --url wss://127.0.0.1:18443 --ca "$work/certs/gw.crt" --transport ws -n "$n" -m $m -r "$r"
  run "nginx+Nchan: $n WSS, $r msgs/s" --target nchan --url wss://127.0.0.1:28443 --publish http://127.0.0.1:28080 --ca "$work/certs/gw.crt" --transport ws -n "$n" -m $m -r "$r"
done

# Idle memory per TLS connection (SSE over HTTPS/1.1), one message each.
echo "### Idle memory: $IDLE SSE connections over TLS" >> "$out"; echo >> "$out"
run "pushgate idle over TLS" "${PGU[@]}" --transport sse -n "$IDLE" -m 1 -r 1 --hold 2 --pid $pgpid
before=$(nginx_rss)
$PG bench "${NCU[@]}" --transport sse -n "$IDLE" -m 1 -r 1 --hold 20 --json > "$work/nchan-idle.json" 2>/dev/null &
benchpid=$!
wait_established 28443 "$IDLE"
sleep 2
after=$(nginx_rss)
wait $benchpid || true
echo "nginx+Nchan: RSS of all nginx processes grew by $((after - before)) KiB while $IDLE SSE connections over TLS were open: $(awk -v a=$after -v b=$before -v n=$IDLE 'BEGIN {printf "%.1f", (a-b)/n}') KiB per connection (sampled mid-run)." >> "$out"
echo >> "$out"

cat "$out"
{ echo; cat "$out"; } >> bench/RESULTS.md
