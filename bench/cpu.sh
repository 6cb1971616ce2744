#!/usr/bin/env bash
# Server CPU per delivered message, in one run: pushgate, the floor
# (`pushgate bench --floor`, src/bench/floor.rs: a minimal writer on the
# same runtime layout, one write per delivery, no logic) and nginx+Nchan, each alone with the generator, SSE
# and WebSocket, plain and over TLS (HTTP/1.1; the same self-signed
# certificate for all three), the same subscribers and rate.
#
# CPU is the server's utime+stime from /proc/PID/stat (every nginx process
# summed), sampled once every subscriber is connected (the handshakes are
# not counted) and again after the run, divided by the deliveries the
# generator saw; with the server's write calls per delivery (syscw of
# /proc/PID/io), which says whether it wrote each delivery on its own or
# several in one call. Appends a dated table to bench/RESULTS.md.
#
#   bench/cpu.sh                       # 2,000 subscribers x 20 msgs/s, 10 s
#   N=1000 R=50 SECS=10 bench/cpu.sh
#   QUICK=1 bench/cpu.sh               # 200 subscribers, 3 s
#   PERF=1 bench/cpu.sh                # also `perf record -g` pushgate's runs
#                                      # (perf data left in bench/perf-*.data)
#   NOTE="two builds running" bench/cpu.sh
#   PORT_OFFSET=1000 bench/cpu.sh      # every port below moved up by 1000
#                                      # (another benchmark holds the defaults)
#   BEFORE=path/to/older/pushgate bench/cpu.sh
#                                      # also measures that build's rows
#                                      # ("pushgate before"), in the same run
set -euo pipefail
cd "$(dirname "$0")/.."

# The ports: pushgate public/admin, over TLS; the floor plain/publish, TLS/publish; nginx plain, TLS.
O=${PORT_OFFSET:-0}
P_PG=$((18080 + O)) P_ADM=$((19090 + O)) P_PGS=$((18443 + O))
P_FL=$((18580 + O)) P_FLPUB=$((18590 + O)) P_FLS=$((18543 + O)) P_FLSPUB=$((18591 + O))
P_NG=$((28080 + O)) P_NGS=$((28443 + O))
ALL_PORTS="$P_PG $P_ADM $P_PGS $P_FL $P_FLPUB $P_FLS $P_FLSPUB $P_NG $P_NGS"
if [ "$O" != 0 ]; then BENCH_PORTS="$ALL_PORTS"; fi
. bench/lib.sh
bench_need nginx libnginx-mod-nchan
bench_start

if [ -n "${QUICK:-}" ]; then N=${N:-200}; R=${R:-20}; SECS=${SECS:-3}; else N=${N:-2000}; R=${R:-20}; SECS=${SECS:-10}; fi
N=$(fit_fd_limit "$N")
M=$((R * SECS))
TICK=$(getconf CLK_TCK)

# The certificate all three serve: pushgate generates it on its first start.
mkdir -p "$work/certs"
sed -e "s/127.0.0.1:18080/127.0.0.1:$P_PG/; s/127.0.0.1:19090/127.0.0.1:$P_ADM/" bench/pushgate.yaml > "$work/pushgate.yaml"
sed -e "s/public: 127.0.0.1:$P_PG/public: 127.0.0.1:$P_PGS/" "$work/pushgate.yaml" > "$work/pushgate-tls.yaml"
printf 'tls: { cert: %s/certs/gw.crt, key: %s/certs/gw.key, self_signed_if_missing: true }\n' "$work" "$work" >> "$work/pushgate-tls.yaml"
nchan_conf "$work/nginx.conf" "  server {
    listen 127.0.0.1:$P_NGS ssl;
    ssl_certificate $work/certs/gw.crt; ssl_certificate_key $work/certs/gw.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location ~ ^/sub/(.+)\$ { nchan_subscriber; nchan_channel_id \$1; nchan_subscriber_first_message newest; }
  }"
sed -i "s/127.0.0.1:28080;/127.0.0.1:$P_NG;/" "$work/nginx.conf"

# utime+stime, in clock ticks, of the given pids summed (field 14 and 15;
# read after the ")" that ends the command name).
ticks() {
  local sum=0 pid t
  for pid in "$@"; do
    t=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}')
    sum=$((sum + ${t:-0}))
  done
  echo "$sum"
}

out="$work/results.md"
{
  echo
  echo "## CPU per delivery, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(uname -sr); load before: $(cut -d' ' -f1-3 /proc/loadavg)${NOTE:+; $NOTE}. Command: \`bench/cpu.sh\` (N=$N, R=$R msgs/s, SECS=$SECS, QUICK=${QUICK:-}). $N subscribers on one channel, $M messages of 512 B at $R/s; generator and server share the cores."
  echo "Server CPU = utime+stime of the server's processes from /proc (all nginx processes summed), from the moment every subscriber is connected to the end of the run, over the deliveries the generator counted."
  echo
  echo '| server | transport | connected | delivered | lost | dup / reordered | server CPU s | µs per delivery | write calls per delivery |'
  echo '|---|---|---|---|---|---|---|---|---|'
} > "$out"

# write(2)-family calls (syscw of /proc/PID/io) of the given pids summed.
writes() {
  local sum=0 pid w
  for pid in "$@"; do
    w=$(awk '/^syscw:/ {print $2}' "/proc/$pid/io" 2>/dev/null)
    sum=$((sum + ${w:-0}))
  done
  echo "$sum"
}

# One measurement: server name, road, local port, the pids to sum, then the
# generator's arguments.
measure() {
  local server=$1 road=$2 port=$3 pidlist=$4; shift 4
  local t0 t1 w0 w1 gen conn delivered lost dup us cpu wpd
  # shellcheck disable=SC2086
  set -- "$@" -n "$N" -m "$M" -r "$R" --hold 6 --json
  $PG bench "$@" > "$work/run.json" 2>> "$work/bench.log" & gen=$!
  wait_established "$port" "$N"
  # TCP is established before the TLS handshake ends: wait (at most 4 s)
  # until the server is idle, so that t0 follows every opening.
  local prev now
  # shellcheck disable=SC2086
  prev=$(ticks $pidlist)
  for _ in $(seq 1 8); do
    sleep 0.5
    # shellcheck disable=SC2086
    now=$(ticks $pidlist)
    [ $((now - prev)) -le 1 ] && break
    prev=$now
  done
  # shellcheck disable=SC2086
  t0=$(ticks $pidlist); w0=$(writes $pidlist)
  if [ -n "${PERF:-}" ] && [ "${server%% *}" = pushgate ]; then
    # shellcheck disable=SC2086
    perf record -q -g -o "bench/perf-${server// /-}-${road// /-}.data" -p "${pidlist%% *}" -- sleep $((SECS + 2)) >/dev/null 2>&1 || true
  fi
  wait $gen || true
  # shellcheck disable=SC2086
  t1=$(ticks $pidlist); w1=$(writes $pidlist)
  conn=$(jq -r '.runs[0].connected // 0' "$work/run.json")
  delivered=$(jq -r '.runs[0].delivered // 0' "$work/run.json")
  lost=$(jq -r '.runs[0].lost // 0' "$work/run.json")
  dup=$(jq -r '"\(.runs[0].duplicates // 0) / \(.runs[0].reordered // 0)"' "$work/run.json")
  cpu=$(awk -v t=$((t1 - t0)) -v k="$TICK" 'BEGIN {printf "%.2f", t/k}')
  us=$(awk -v t=$((t1 - t0)) -v k="$TICK" -v d="$delivered" 'BEGIN {if (d > 0) printf "%.2f", t/k*1e6/d; else print "-"}')
  wpd=$(awk -v w=$((w1 - w0)) -v d="$delivered" 'BEGIN {if (d > 0) printf "%.2f", w/d; else print "-"}')
  echo "| $server | $road | $conn | $delivered | $lost | $dup | $cpu | $us | $wpd |" >> "$out"
  echo "$server $road: $us µs per delivery" >&2
}

# SIGTERM: a background job of a script ignores SIGINT unless it installs a
# handler (pushgate does; the floor does not).
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
# Only this run's nginx (its master and workers), never another nginx on the machine.
nginx_pids() { echo "$ng $(pgrep -P "$ng" | tr '\n' ' ')"; }
# A port still held by another process would pass wait_listening at once and
# the run would measure that process: refuse to start instead.
for port in $ALL_PORTS; do
  if ss -Hltn "sport = :$port" | grep -q .; then echo "port $port is in use: stop what listens there first" >&2; exit 1; fi
done

# pushgate, plain then TLS (a fresh process each): the rows of one build,
# named $1, run from binary $2.
pushgate_rows() {
  local name=$1 bin=$2
  local pub=(--publish "http://127.0.0.1:$P_ADM")
  $bin run -c "$work/pushgate.yaml" > "$work/pg.log" 2>&1 & pg=$!; pids+=($pg)
  wait_listening $P_PG; wait_listening $P_ADM
  measure "$name" "SSE" $P_PG "$pg" --transport sse --url http://127.0.0.1:$P_PG "${pub[@]}"
  measure "$name" "WS" $P_PG "$pg" --transport ws --url http://127.0.0.1:$P_PG "${pub[@]}"
  stop $pg
  $bin run -c "$work/pushgate-tls.yaml" > "$work/pg.log" 2>&1 & pg=$!; pids+=($pg)
  wait_listening $P_PGS; wait_listening $P_ADM
  # pushgate binds its listeners before it writes the certificate it generates:
  # wait for the file, or the first TLS generator reads none.
  for _ in $(seq 1 100); do [ -s "$work/certs/gw.crt" ] && break; sleep 0.1; done
  measure "$name" "SSE over TLS" $P_PGS "$pg" --transport sse --url https://127.0.0.1:$P_PGS "${pub[@]}" "${TLSU[@]}"
  measure "$name" "WSS" $P_PGS "$pg" --transport ws --url wss://127.0.0.1:$P_PGS "${pub[@]}" "${TLSU[@]}"
  stop $pg
}
TLSU=(--ca "$work/certs/gw.crt")
if [ -n "${BEFORE:-}" ]; then pushgate_rows "pushgate before" "$BEFORE"; fi
pushgate_rows pushgate "$PG"

# The floor: plain on 18580, TLS on 18543; its publish API on 18590/18591 (plus PORT_OFFSET).
$PG bench --floor 127.0.0.1:$P_FL --publish http://127.0.0.1:$P_FLPUB & fl=$!; pids+=($fl)
wait_listening $P_FL
measure floor "SSE" $P_FL "$fl" --transport sse --url http://127.0.0.1:$P_FL --publish http://127.0.0.1:$P_FLPUB
measure floor "WS" $P_FL "$fl" --transport ws --url http://127.0.0.1:$P_FL --publish http://127.0.0.1:$P_FLPUB
stop $fl
$PG bench --floor 127.0.0.1:$P_FLS --publish http://127.0.0.1:$P_FLSPUB --cert "$work/certs/gw.crt" --key "$work/certs/gw.key" & fl=$!; pids+=($fl)
wait_listening $P_FLS
measure floor "SSE over TLS" $P_FLS "$fl" --transport sse --url https://127.0.0.1:$P_FLS --publish http://127.0.0.1:$P_FLSPUB "${TLSU[@]}"
measure floor "WSS" $P_FLS "$fl" --transport ws --url wss://127.0.0.1:$P_FLS --publish http://127.0.0.1:$P_FLSPUB "${TLSU[@]}"
stop $fl

# nginx+Nchan: plain subscribers and the publisher on 28080, TLS on 28443 (plus PORT_OFFSET).
nginx -c "$work/nginx.conf" -g 'daemon off;' & ng=$!; pids+=($ng)
wait_listening $P_NGS
NC=(--target nchan --publish http://127.0.0.1:$P_NG)
measure nginx+Nchan "SSE" $P_NG "$(nginx_pids)" --transport sse --url http://127.0.0.1:$P_NG "${NC[@]}"
measure nginx+Nchan "WS" $P_NG "$(nginx_pids)" --transport ws --url http://127.0.0.1:$P_NG "${NC[@]}"
measure nginx+Nchan "SSE over TLS" $P_NGS "$(nginx_pids)" --transport sse --url https://127.0.0.1:$P_NGS "${NC[@]}" "${TLSU[@]}"
measure nginx+Nchan "WSS" $P_NGS "$(nginx_pids)" --transport ws --url wss://127.0.0.1:$P_NGS "${NC[@]}" "${TLSU[@]}"
kill -QUIT $ng; wait $ng || true

echo >> "$out"
cat "$out"
cat "$out" >> bench/RESULTS.md
if [ -s "$work/bench.log" ]; then echo "generator errors:" >&2; grep -v '^connected\|^published\|delivered' "$work/bench.log" | tail -20 >&2; fi
