#!/usr/bin/env bash
# Fan-out over TLS, side by side: pushgate (its self-signed development
# certificate, TLS 1.2/1.3 via rustls, ALPN h2 and http/1.1) against
# nginx+Nchan on `listen ... ssl http2` with `ssl_protocols TLSv1.2 TLSv1.3`
# and the same certificate. Scenarios: SSE over HTTPS/1.1, SSE over h2 with
# 50 streams per connection, WSS, at 1,000 x 5 msgs/s and 5,000 x 20 msgs/s,
# then idle memory per TLS connection and per h2 stream (fresh servers).
# Appends the tables to bench/RESULTS.md.
#
#   bench/tls.sh                 # full numbers
#   QUICK=1 bench/tls.sh         # 200 subscribers, a few seconds each
#   ONLY=idle bench/tls.sh       # the idle-memory step alone
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
wait_listening 18443

# nginx+Nchan: plain publisher on 28080, TLS subscribers on 28443.
nchan_conf "$work/nginx.conf" "  server {
    listen 127.0.0.1:28443 ssl http2;
    ssl_certificate $work/certs/gw.crt; ssl_certificate_key $work/certs/gw.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    http2_max_concurrent_streams 1000;
    location ~ ^/sub/(.+)\$ { nchan_subscriber; nchan_channel_id \$1; nchan_subscriber_first_message newest; }
  }"
nginx -c "$work/nginx.conf" -g 'daemon off;' & ngpid=$!; pids+=($ngpid)
wait_listening 28443

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
  echo "Command: \`bench/tls.sh\` (QUICK=${QUICK:-}${ONLY:+, ONLY=$ONLY}). Generator, servers and publisher share the cores."
  echo
} > "$out"

run() { # title, then pushgate bench arguments
  local title=$1; shift
  echo "### $title" >> "$out"; echo >> "$out"
  echo "\`pushgate bench $*\`" >> "$out"; echo >> "$out"
  $PG bench "$@" >> "$out"
  echo >> "$out"
}
# ONLY=idle: the idle-memory step alone.
[ "${ONLY:-}" = idle ] && loads=() || loads=("$((S / 5)) 5" "$S 20")
for load in "${loads[@]}"; do
  read -r n r <<< "$load"
  m=$((r * SECS))
  run "pushgate: $n SSE over HTTPS/1.1, $r msgs/s" "${PGU[@]}" --transport sse -n "$n" -m $m -r "$r"
  run "nginx+Nchan: $n SSE over HTTPS/1.1, $r msgs/s" "${NCU[@]}" --transport sse -n "$n" -m $m -r "$r"
  run "pushgate: $n SSE over h2 (50 streams per connection), $r msgs/s" "${PGU[@]}" --transport sse --h2 --streams 50 -n "$n" -m $m -r "$r"
  run "nginx+Nchan: $n SSE over h2 (50 streams per connection), $r msgs/s" "${NCU[@]}" --transport sse --h2 --streams 50 -n "$n" -m $m -r "$r"
  run "pushgate: $n WSS, $r msgs/s" --url wss://127.0.0.1:18443 --ca "$work/certs/gw.crt" --transport ws -n "$n" -m $m -r "$r"
  run "nginx+Nchan: $n WSS, $r msgs/s" --target nchan --url wss://127.0.0.1:28443 --publish http://127.0.0.1:28080 --ca "$work/certs/gw.crt" --transport ws -n "$n" -m $m -r "$r"
done

# Idle memory per TLS connection and per h2 stream, each measured on a
# freshly started server: after the fan-out runs above, both servers' heaps
# hold what those connections freed and hand it to the idle ones, so their
# growth read about nothing (0.0 and 0.1 KiB per connection).
kill "$pgpid" "$ngpid" 2>/dev/null || true
wait "$pgpid" "$ngpid" 2>/dev/null || true
{
  echo "### Idle memory over TLS: $IDLE SSE subscribers, fresh servers"
  echo
  echo "Each row on a freshly started server, sampled while every subscriber is connected and idle (one message delivered each). pushgate: growth of its RSS (\`--pid\`). nginx: growth of the summed RSS and PSS of all its processes (PSS splits the shared pages Nchan keeps its subscribers in)."
  echo
  echo '| server | transport | subscribers connected | TLS connections | KiB per subscriber | KiB per TLS connection |'
  echo '|---|---|---|---|---|---|'
} >> "$out"
idle_row() { # server, road, json file, KiB growth (or empty: from the report), and the PSS growth
  local conn socks kib
  conn=$(jq -r '.runs[0].connected' "$3"); socks=$(jq -r '.runs[0].sockets' "$3")
  if [ -n "${4:-}" ]; then
    kib="$(awk -v g="$4" -v n="$conn" 'BEGIN {printf "%.1f", g/n}') (RSS), $(awk -v g="$5" -v n="$conn" 'BEGIN {printf "%.1f", g/n}') (PSS)"
    per_conn="$(awk -v g="$4" -v n="$socks" 'BEGIN {printf "%.1f", g/n}') (RSS), $(awk -v g="$5" -v n="$socks" 'BEGIN {printf "%.1f", g/n}') (PSS)"
  else
    kib=$(jq -r '.runs[0].memory_per_connection_kib // "-"' "$3" | awk '{printf "%.1f", $1}')
    per_conn=$(awk -v k="$kib" -v n="$conn" -v s="$socks" 'BEGIN {printf "%.1f", k*n/s}')
    kib="$kib (RSS)"; per_conn="$per_conn (RSS)"
  fi
  echo "| $1 | $2 | $conn | $socks | $kib | $per_conn |" >> "$out"
}
for road in "HTTPS/1.1:" "h2, 50 streams per connection:--h2 --streams 50"; do
  label=${road%%:*}; read -r -a extra <<< "${road#*:}"
  $PG run -c "$work/pushgate.yaml" > "$work/pg-idle.log" 2>&1 & pg=$!; pids+=($pg)
  wait_listening 18443
  $PG bench "${PGU[@]}" --transport sse "${extra[@]}" -n "$IDLE" -m 1 -r 1 --hold 2 --pid $pg --json > "$work/pg-idle.json" 2>/dev/null || true
  kill -INT $pg; wait $pg || true
  idle_row pushgate "SSE over $label" "$work/pg-idle.json"

  nginx -c "$work/nginx.conf" -g 'daemon off;' & ng=$!; pids+=($ng)
  wait_listening 28443
  read -r rss0 pss0 < <(nginx_mem)
  $PG bench "${NCU[@]}" --transport sse "${extra[@]}" -n "$IDLE" -m 1 -r 1 --hold 20 --json > "$work/nchan-idle.json" 2>/dev/null & gen=$!
  # Sample while the generator holds every connection open.
  wait_established 28443 "$(( ${#extra[@]} > 0 ? IDLE / 50 : IDLE ))"
  sleep 2
  read -r rss1 pss1 < <(nginx_mem)
  wait $gen || true
  kill -QUIT $ng; wait $ng || true
  idle_row nginx+Nchan "SSE over $label" "$work/nchan-idle.json" $((rss1 - rss0)) $((pss1 - pss0))
done
echo >> "$out"

cat "$out"
{ echo; cat "$out"; } >> bench/RESULTS.md
