#!/usr/bin/env bash
# Fan-out over TLS, side by side: pushgate (its self-signed development
# certificate, TLS 1.2/1.3 via rustls, ALPN h2 and http/1.1) against
# nginx+Nchan on `listen ... ssl http2` with `ssl_protocols TLSv1.2 TLSv1.3`
# and the same certificate, in one run:
#
#   1. fan-out over TLS: SSE over HTTPS/1.1, SSE over h2 with 50 streams per
#      connection, WSS, at 1,000 x 5 msgs/s and 5,000 x 20 msgs/s; WSS and
#      SSE over h2 at 1,000 x 100 msgs/s;
#   2. saturation over TLS: the rate to 1,000 subscribers raised step by
#      step until a step loses or duplicates a message, fails a publish,
#      leaves a subscriber unconnected or has p99 over 1 s;
#   3. the plain-HTTP rows, rerun in the same run (PLAIN=0 leaves them out):
#      5,000 SSE x 20/s, 1,000 SSE x 5/s, 1,000 WebSocket x 100/s and the
#      saturation steps;
#   4. idle memory per TLS connection and per h2 stream, and per plain
#      connection, each on freshly started servers;
#   5. the summary: each figure against nginx+Nchan's and the target,
#      computed from the run's JSON reports.
#
# The 1,000 x 5 msgs/s rows over HTTPS/1.1 and WSS run a third server
# between the two: the floor (`pushgate bench --floor`, src/bench/floor.rs:
# pre-rendered frames, one write and one TLS record per delivery, no logic)
# on the same certificate, so that each of those rows reads pushgate /
# floor / Nchan. A floor whose p99 is above the target's share of Nchan's
# says that no server writing once per delivery meets it on this machine.
#
# Appends everything to bench/RESULTS.md.
#
#   bench/tls.sh                 # full numbers
#   QUICK=1 bench/tls.sh         # 200 subscribers, a few seconds each
#   PLAIN=0 bench/tls.sh         # TLS only
#   ONLY=idle bench/tls.sh       # the idle-memory steps alone
#   ONLY=low bench/tls.sh        # the 1,000 x 5 msgs/s rows alone (floor included)
#   ONLY=h2 bench/tls.sh         # the rows over h2 alone, at every load
#   ONLY="low h2" bench/tls.sh   # both (no saturation, plain or idle steps)
#   RATES="100 200 400" SAT_TRANSPORT=ws bench/tls.sh   # other saturation steps
#   NOTE="two builds running" bench/tls.sh   # adds the load to the machine line
#   KEEP=/some/dir bench/tls.sh  # keeps the JSON reports there
#   SECS=10 bench/tls.sh         # shorter fan-out rows (default 20 s each)
set -euo pipefail
cd "$(dirname "$0")/.."

# The ports this script's servers listen on (a bench of another kind may
# run on its own ports meanwhile).
BENCH_PORTS="18080 18443 18543 18591 19090 28080 28443"
. bench/lib.sh
bench_need nginx libnginx-mod-nchan jq
bench_start
started=$(date +%s)
# The summary's arithmetic, checked on fixed reports before measuring.
bench/summary_check.sh > /dev/null

if [ -n "${QUICK:-}" ]; then
  S=200; SECS=3; IDLE=500; N=200; STEP=3; RATES=${RATES:-50 200 800}
else
  S=5000; SECS=${SECS:-20}; IDLE=5000; N=1000; STEP=5; RATES=${RATES:-50 100 200 400 800 1600 3200}
fi
IDLE=$(fit_fd_limit "$IDLE")
PLAIN=${PLAIN:-1}
SAT_TRANSPORT=${SAT_TRANSPORT:-sse}
J="$work/json"; mkdir -p "$J"

# pushgate: the benchmark config on 18443 over TLS, or on 18080 plain; admin
# on 19090 either way (one runs at a time).
mkdir -p "$work/certs"
sed -e 's/public: 127.0.0.1:18080/public: 127.0.0.1:18443/' bench/pushgate.yaml > "$work/pushgate.yaml"
printf 'tls: { cert: %s/certs/gw.crt, key: %s/certs/gw.key, self_signed_if_missing: true }\n' "$work" "$work" >> "$work/pushgate.yaml"
$PG run -c "$work/pushgate.yaml" & pgpid=$!; pids+=($pgpid)
wait_listening 18443
# pushgate binds its listeners before it writes the certificate it
# generates; nginx and the generators read that file.
for _ in $(seq 1 100); do [ -s "$work/certs/gw.crt" ] && break; sleep 0.1; done

# nginx+Nchan: plain publisher and subscribers on 28080, TLS subscribers on
# 28443 (pushgate wrote the certificate on its first start).
nchan_conf "$work/nginx.conf" "$(nchan_tls_server "$work/certs/gw.crt" "$work/certs/gw.key")"
nchan_start "$work/nginx.conf" 28080 28443

PGU=(--url https://127.0.0.1:18443 --ca "$work/certs/gw.crt")
NCU=(--target nchan --url https://127.0.0.1:28443 --publish http://127.0.0.1:28080 --ca "$work/certs/gw.crt")
PGW=(--url wss://127.0.0.1:18443 --ca "$work/certs/gw.crt")
NCW=(--target nchan --url wss://127.0.0.1:28443 --publish http://127.0.0.1:28080 --ca "$work/certs/gw.crt")
PGP=(--url http://127.0.0.1:18080)
# The floor: TLS subscribers on 18543, its publish API on 18591.
FLU=(--url https://127.0.0.1:18543 --publish http://127.0.0.1:18591 --ca "$work/certs/gw.crt")
FLW=(--url wss://127.0.0.1:18543 --publish http://127.0.0.1:18591 --ca "$work/certs/gw.crt")
NCP=(--target nchan --url http://127.0.0.1:28080 --publish http://127.0.0.1:28080)

out="$work/results.md"
{
  echo "## TLS run of $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); load before: $(cut -d' ' -f1-3 /proc/loadavg)${NOTE:+; $NOTE}."
  echo "Versions: pushgate $($PG --version | cut -d' ' -f2), $(nginx -v 2>&1 | cut -d' ' -f3), nchan $(dpkg-query -W -f='${Version}' libnginx-mod-nchan). TLS: rustls (pushgate) and OpenSSL (nginx), same self-signed P-256 certificate."
  sat="saturation: $SAT_TRANSPORT, steps $RATES msgs/s × $N, ${STEP}s each"; [ -n "${ONLY:-}" ] && sat="no saturation steps"
  echo "Command: \`bench/tls.sh\` (QUICK=${QUICK:-}, PLAIN=$PLAIN, SECS=$SECS${ONLY:+, ONLY=$ONLY}; $sat). Generator, servers and publisher share the cores; 512-byte messages."
  echo
} > "$out"

# Which parts of the run ONLY names: none named runs them all.
part() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }

# The floor over TLS, started on first use (its HTTP/1.1 subscribers only:
# it speaks no h2), stopped with the script.
flpid=""
floor_start() {
  [ -n "$flpid" ] && return 0
  $PG bench --floor 127.0.0.1:18543 --publish http://127.0.0.1:18591 \
    --cert "$work/certs/gw.crt" --key "$work/certs/gw.key" 2>> "$work/bench.log" & flpid=$!; pids+=($flpid)
  wait_listening 18543; wait_listening 18591
}

# A fan-out pair, pushgate then nginx+Nchan: road key (names the reports),
# label, subscribers, rate, then the arguments both share. The arguments
# that name each server come from the arrays named by $5 and $6. At 5
# msgs/s or less over HTTPS/1.1 and WSS the floor runs between the two, on
# the array named FL plus the road's last letter (FLU, FLW).
pair() {
  local key=$1 label=$2 n=$3 r=$4 pgargs ncargs flargs; shift 4
  pgargs="$1[@]"; ncargs="$2[@]"; flargs="FL${2: -1}[@]"; shift 2
  bench_run "pushgate: $n $label, $r msgs/s" "$J/pg-$key-${n}x$r.json" "${!pgargs}" "$@" -n "$n" -m $((r * SECS)) -r "$r"
  if [ "$r" -le 5 ] && { [ "$key" = https ] || [ "$key" = wss ]; }; then
    floor_start
    bench_run "floor: $n $label, $r msgs/s" "$J/fl-$key-${n}x$r.json" "${!flargs}" "$@" -n "$n" -m $((r * SECS)) -r "$r"
  fi
  bench_run "nginx+Nchan: $n $label, $r msgs/s" "$J/nc-$key-${n}x$r.json" "${!ncargs}" "$@" -n "$n" -m $((r * SECS)) -r "$r"
}
# The saturation steps on both servers: key (tls or plain), label, the
# arrays naming each server.
saturation_pair() {
  local key=$1 label=$2 pgargs="$3[@]" ncargs="$4[@]"
  saturation "pushgate saturation, $label" "$J/pg-sat-$key" "${!pgargs}" --transport "$SAT_TRANSPORT"
  saturation "nginx+Nchan saturation, $label" "$J/nc-sat-$key" "${!ncargs}" --transport "$SAT_TRANSPORT"
}
sat_road() { # the saturation road's arguments over TLS: SSE over HTTPS/1.1 or WSS
  if [ "$SAT_TRANSPORT" = ws ]; then echo "$1W"; else echo "$1U"; fi
}

# Fresh servers for the next phase: a phase must not inherit a server that
# the one before overloaded (a first full run's nginx+Nchan, after the
# 5,000 x 20/s rows over TLS, held every publish to a channel with
# subscribers unanswered). $1: the pushgate config, $2: its port.
fresh_servers() {
  kill -INT "$pgpid" 2>/dev/null || true; wait "$pgpid" 2>/dev/null || true
  nchan_stop
  $PG run -c "$1" & pgpid=$!; pids+=($pgpid)
  wait_listening "$2"
  nchan_start "$work/nginx.conf" 28080 28443
}

if part low || part h2; then
  # 1. Fan-out over TLS (ONLY=low: the 1,000 x 5 rows; ONLY=h2: the h2 rows).
  for load in "$((S / 5)) 5" "$S 20"; do
    read -r n r <<< "$load"
    if [ -z "${ONLY:-}" ] || { [ "$r" -le 5 ] && part low; }; then
      pair https "SSE over HTTPS/1.1" "$n" "$r" PGU NCU --transport sse
      pair h2 "SSE over h2 (50 streams per connection)" "$n" "$r" PGU NCU --transport sse --h2 --streams 50
      pair wss "WSS" "$n" "$r" PGW NCW --transport ws
    elif part h2; then
      pair h2 "SSE over h2 (50 streams per connection)" "$n" "$r" PGU NCU --transport sse --h2 --streams 50
    fi
  done
  if [ -n "$flpid" ]; then kill -TERM "$flpid" 2>/dev/null || true; wait "$flpid" 2>/dev/null || true; flpid=""; fi
  # Fresh servers for the 100 msgs/s rows: an nginx+Nchan the 5,000 x 20
  # rows overloaded left an ONLY=h2 run's next row without a figure.
  if part h2; then fresh_servers "$work/pushgate.yaml" 18443; fi
  if [ -z "${ONLY:-}" ]; then pair wss "WSS" $((S / 5)) 100 PGW NCW --transport ws; fi
  if part h2; then pair h2 "SSE over h2 (50 streams per connection)" $((S / 5)) 100 PGU NCU --transport sse --h2 --streams 50; fi
fi
if [ -z "${ONLY:-}" ]; then

  # 2. Saturation over TLS, on fresh servers.
  fresh_servers "$work/pushgate.yaml" 18443
  saturation_pair tls "$SAT_TRANSPORT over TLS" "$(sat_road PG)" "$(sat_road NC)"

  # 3. The plain-HTTP rows, on fresh servers (pushgate on its plain
  # config), the saturation steps on fresh ones again.
  if [ "$PLAIN" != 0 ]; then
    fresh_servers bench/pushgate.yaml 18080
    pair sse "SSE, plain HTTP" "$S" 20 PGP NCP --transport sse
    pair sse "SSE, plain HTTP" $((S / 5)) 5 PGP NCP --transport sse
    pair ws "WebSocket, plain HTTP" $((S / 5)) 100 PGP NCP --transport ws
    fresh_servers bench/pushgate.yaml 18080
    saturation_pair plain "$SAT_TRANSPORT, plain HTTP" PGP NCP
  fi
fi

# 4. Idle memory, each measured on a freshly started server: after the
# fan-out runs above, both servers' heaps hold what those connections freed
# and hand it to the idle ones, so their growth read about nothing.
kill -INT "$pgpid" 2>/dev/null || true; wait "$pgpid" 2>/dev/null || true
nchan_stop
if part idle; then
{
  echo "### Idle memory: $IDLE SSE subscribers, fresh servers"
  echo
  echo "Each row on a freshly started server, sampled while every subscriber is connected and idle (one message delivered each). pushgate: growth of its RSS (\`--pid\`). nginx: growth of the summed RSS and PSS of its master and workers (PSS splits the shared pages Nchan keeps its subscribers in)."
  echo
  echo '| server | road | subscribers connected | connections | KiB per subscriber | KiB per connection |'
  echo '|---|---|---|---|---|---|'
} >> "$out"
idle_rows() { # road key, label, port, pushgate config, then pushgate's and Nchan's arrays, then shared args
  local key=$1 label=$2 port=$3 conf=$4 pgargs="$5[@]" ncargs="$6[@]" ncport conns; shift 6
  pushgate_idle "$conf" "$port" "$J/pg-idle-$key.json" "${!pgargs}" "$@" -n "$IDLE"
  echo "| pushgate | $label | $(report_field "$J/pg-idle-$key.json" connected) | $(report_field "$J/pg-idle-$key.json" sockets) | $(pushgate_idle_kib "$J/pg-idle-$key.json" connected) (RSS) | $(pushgate_idle_kib "$J/pg-idle-$key.json" sockets) (RSS) |" >> "$out"
  ncport=28443; [ "$key" = sse ] && ncport=28080
  conns=$IDLE; [ "$key" = h2 ] && conns=$((IDLE / 50))
  nchan_idle "$work/nginx.conf" "$ncport" "$conns" "$J/nc-idle-$key.json" "${!ncargs}" "$@" -n "$IDLE"
  local f="$J/nc-idle-$key.json" rss
  rss=$(jq -r '.rss_kib' "${f%.json}.mem.json")
  echo "| nginx+Nchan | $label | $(report_field "$f" connected) | $(report_field "$f" sockets) | $(awk -v g="$rss" -v n="$(report_field "$f" connected)" 'BEGIN { if (n > 0) printf "%.1f", g / n }') (RSS), $(nchan_idle_kib "$f" connected) (PSS) | $(awk -v g="$rss" -v n="$(report_field "$f" sockets)" 'BEGIN { if (n > 0) printf "%.1f", g / n }') (RSS), $(nchan_idle_kib "$f" sockets) (PSS) |" >> "$out"
}
idle_rows https "SSE over HTTPS/1.1" 18443 "$work/pushgate.yaml" PGU NCU --transport sse
idle_rows h2 "SSE over h2, 50 streams per connection" 18443 "$work/pushgate.yaml" PGU NCU --transport sse --h2 --streams 50
if [ "$PLAIN" != 0 ]; then
  idle_rows sse "SSE, plain HTTP" 18080 bench/pushgate.yaml PGP NCP --transport sse
fi
echo >> "$out"
fi

# 5. The summary, from the reports.
{
  echo "### Summary"
  echo
  tls_summary "$J"
  echo
  if ls "$J"/fl-*.json > /dev/null 2>&1; then
    echo "Latency distribution of the rows the floor ran in (ms, from the generator's reports):"
    echo
    latency_distribution "$J"
    echo
  fi
  echo "Ratios are pushgate / nginx+Nchan from this run's JSON reports; a p99 row counts as met only when pushgate's run was clean (every subscriber connected, nothing lost or twice). Saturation: the offered deliveries/s (rate × subscribers) of the highest step that was clean (also p99 under 1 s), every lower step clean too; \"lower bound\" when no step failed. Idle memory: pushgate's RSS growth, nginx's PSS growth (lower than its RSS). Run time: $(( ($(date +%s) - started) / 60 )) min."
  echo
} >> "$out"

[ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$J"/*.json "$KEEP"/
cat "$out"
{ echo; cat "$out"; } >> bench/RESULTS.md
