# What the bench scripts share; sourced by them, not run.

# Install the Debian packages given that are missing.
bench_need() {
  local need=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
  if [ "${#need[@]}" -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  fi
}

# Raise the open-files limit, build pushgate, and set PG (the binary), work
# (a temporary directory) and pids (processes to stop on exit). A script
# with more to stop defines `bench_cleanup_extra`.
# The loopback ports the bench scripts' servers listen on.
BENCH_PORTS="${BENCH_PORTS:-5561 17999 18080 18081 18082 18083 18084 18091 18180 18280 18443 18543 18580 18590 18591 19090 19190 28080 28081 28082 28090}"

# A server left over from an earlier run would answer in place of the one
# a script starts (whose bind then fails), and measure the wrong build.
bench_ports_free() {
  local busy="" port
  for port in $BENCH_PORTS; do
    if ss -Hltn "sport = :$port" | grep -q .; then busy="$busy $port"; fi
  done
  if [ -n "$busy" ]; then
    echo "already listening on port(s)$busy: stop what runs there first" >&2
    exit 1
  fi
}

bench_start() {
  bench_ports_free
  ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  # PG= names a prebuilt binary (e.g. another worktree's release build).
  if [ -z "${PG:-}" ]; then cargo build --release --quiet; PG=target/release/pushgate; fi
  work=$(mktemp -d)
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if declare -F bench_cleanup_extra >/dev/null; then bench_cleanup_extra; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}

# $1, lowered to leave 1,000 descriptors below the open-files hard limit:
# the generator and the server each hold one per connection.
fit_fd_limit() {
  local hard
  hard=$(ulimit -Hn)
  if [ "$hard" != unlimited ] && [ "$1" -gt $((hard - 1000)) ]; then echo $((hard - 1000)); else echo "$1"; fi
}

# Wait (up to a minute) until $2 connections to local port $1 are open.
wait_established() {
  local n
  for _ in $(seq 1 60); do
    sleep 1
    n=$(ss -Htn state established "( sport = :$1 )" | wc -l)
    [ "$n" -ge "$2" ] && return 0
  done
  # Not all open: measure what is (the report says how many connected).
  return 0
}

# Wait (up to 10 s) until something listens on local port $1.
wait_listening() {
  for _ in $(seq 1 100); do
    ss -Hltn "sport = :$1" | grep -q . && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1 after 10 s" >&2
  return 1
}

# Summed RSS and PSS (KiB) of every nginx process, from smaps_rollup.
nginx_mem() {
  local rss=0 pss=0 r p pid
  for pid in $(pgrep -x nginx); do
    r=$(awk '/^Rss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
    p=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
    rss=$((rss + ${r:-0})); pss=$((pss + ${p:-0}))
  done
  echo "$rss $pss"
}

# Write an nginx config to $1: Nchan on 127.0.0.1:28080 (publisher at
# /pub?id=, subscribers at /sub/<channel>), two workers, temp files in
# $work, and any extra `http` block lines from $2.
nchan_conf() {
  cat > "$1" <<NGINX
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
${2:-}
  server {
    listen 127.0.0.1:28080;
    location = /pub { nchan_publisher; nchan_channel_id \$arg_id; nchan_message_buffer_length 1000; nchan_message_timeout 10m; }
    location ~ ^/sub/(.+)\$ { nchan_subscriber; nchan_channel_id \$1; nchan_subscriber_first_message newest; }
  }
}
NGINX
}

# nginx `http` block lines for the proxy scenarios: a small "application"
# on 127.0.0.1:18081, and nginx as a plain reverse proxy to it on 28081.
APP_SERVER='  server { listen 127.0.0.1:18081; location / { return 200 "hello from the application\n"; } }'
NGINX_PROXY="  upstream app { server 127.0.0.1:18081; keepalive 64; }
$APP_SERVER
  server { listen 127.0.0.1:28081; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"

# One wrk run against local port $3, as a row (round $1, path $2) of the
# table in "$out"; prints the requests/s. Optional: $4 the request path
# (default /), $5 more wrk arguments (e.g. `-s post.lua`).
wrk_row() {
  local res rps p50 p99
  # shellcheck disable=SC2086
  res=$(wrk -t2 -c64 -d10s --latency ${5:-} "http://127.0.0.1:$3${4:-/}" 2>&1)
  rps=$(echo "$res" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$res" | awk '$1=="50%" {print $2}')
  p99=$(echo "$res" | awk '$1=="99%" {print $2}')
  echo "| $1 | $2 | $rps | $p50 | $p99 |" >> "$out"
  echo "$rps"
}


# nginx `http` block lines for Nchan subscribers over TLS on
# 127.0.0.1:28443, configured as production would run it: `listen … ssl
# http2`, TLS 1.2 and 1.3, certificate $1 and key $2 (pushgate's own, so
# both servers present the same P-256 certificate).
nchan_tls_server() {
  cat <<NGINX
  server {
    listen 127.0.0.1:28443 ssl http2;
    ssl_certificate $1; ssl_certificate_key $2;
    ssl_protocols TLSv1.2 TLSv1.3;
    http2_max_concurrent_streams 1000;
    location ~ ^/sub/(.+)\$ { nchan_subscriber; nchan_channel_id \$1; nchan_subscriber_first_message newest; }
  }
NGINX
}

# Start nginx+Nchan on config $1 (written by nchan_conf) and wait until it
# listens on every port named after it; sets ngpid. nchan_stop ends it.
nchan_start() {
  local conf=$1 port; shift
  nginx -c "$conf" -g 'daemon off;' & ngpid=$!; pids+=($ngpid)
  for port in "$@"; do wait_listening "$port"; done
}
# Fast shutdown (TERM): a graceful one (QUIT) waits for every open
# connection, and an nginx+Nchan left behind by an overload held one phase
# of a run that way for minutes.
nchan_stop() { kill -TERM "$ngpid" 2>/dev/null || true; wait "$ngpid" 2>/dev/null || true; }

# Summed RSS and PSS (KiB) of the nginx started by nchan_start: its master
# and workers only, so that another nginx on the machine does not count.
nchan_mem() {
  local rss=0 pss=0 r p pid
  for pid in "$ngpid" $(pgrep -P "$ngpid" || true); do
    r=$(awk '/^Rss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
    p=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
    rss=$((rss + ${r:-0})); pss=$((pss + ${p:-0}))
  done
  echo "$rss $pss"
}

# Idle memory of a freshly started nginx+Nchan: start it on config $1,
# hold idle subscribers open with `pushgate bench` (the arguments after $4;
# one message each, so every one is known live), sample the growth of its
# summed RSS and PSS once $3 connections to port $2 are established. The
# generator's report goes to $4, the growth to $4 with `.json` replaced by
# `.mem.json`: {"rss_kib": …, "pss_kib": …}.
nchan_idle() {
  local conf=$1 port=$2 conns=$3 json=$4 gen rss0 pss0 rss1 pss1; shift 4
  nchan_start "$conf" "$port"
  read -r rss0 pss0 < <(nchan_mem)
  $PG bench "$@" -m 1 -r 1 --hold 20 --json > "$json" 2>> "$work/bench.log" & gen=$!
  # Sample while the generator holds every connection open.
  wait_established "$port" "$conns"
  sleep 2
  read -r rss1 pss1 < <(nchan_mem)
  wait "$gen" || echo '{"runs":[]}' > "$json"
  nchan_stop
  printf '{"rss_kib": %d, "pss_kib": %d}\n' $((rss1 - rss0)) $((pss1 - pss0)) > "${json%.json}.mem.json"
}

# Idle memory of a freshly started pushgate: run it on config $1, wait for
# port $2, hold idle subscribers open with `pushgate bench --pid` (the
# arguments after $3), which reports its RSS growth per subscriber; the
# report goes to $3.
pushgate_idle() {
  local conf=$1 port=$2 json=$3 pg; shift 3
  $PG run -c "$conf" > "$work/pg-idle.log" 2>&1 & pg=$!; pids+=($pg)
  wait_listening "$port"
  $PG bench "$@" -m 1 -r 1 --hold 2 --pid "$pg" --json > "$json" 2>> "$work/bench.log" || echo '{"runs":[]}' > "$json"
  kill -INT "$pg"; wait "$pg" || true
}

# The table of one `pushgate bench --json` report (as `pushgate bench`
# prints it without --json), with pushgate's own server-side line.
bench_table() {
  jq -r '.runs[] | select(.server_latency_ms != null) | .server_latency_ms as $s
    | "Server side, \(.transport): publish accepted → written, from pushgate'"'"'s histogram over \($s.deliveries) deliveries: p50 ≤ \($s.p50_at_most // "(above the last bucket)") ms, p95 ≤ \($s.p95_at_most // "(above the last bucket)") ms, p99 ≤ \($s.p99_at_most // "(above the last bucket)") ms.\n"' "$1"
  echo "| transport | subscribers | connected | delivered | lost | dup | msgs/s | avg ms | p50 ms | p95 ms | p99 ms | max ms | KiB/conn |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  jq -r '.runs[] | "| \(.transport) | \(.subscribers) | \(.connected) | \(.delivered) | \(.lost) | \(.duplicates) | \(.msgs_per_sec | floor) | \(.latency_ms.avg * 100 | round / 100) | \(.latency_ms.p50) | \(.latency_ms.p95) | \(.latency_ms.p99) | \(.latency_ms.max) | \(.memory_per_connection_kib // "-") |"' "$1"
}

# One `pushgate bench` run: title $1, its JSON report kept in $2, then the
# generator's arguments. Appends the title, the command and the table to
# "$out". A run that fails leaves an empty report ({"runs": []}); one that
# has not ended after $BENCH_TIMEOUT seconds (default 240: a server that
# stopped answering publishes holds the generator forever) is stopped, said
# so, and leaves an empty report too.
bench_run() {
  local title=$1 json=$2 rc=0; shift 2
  { echo "### $title"; echo; echo "\`pushgate bench $*\`"; echo; } >> "$out"
  timeout -k 5 "${BENCH_TIMEOUT:-240}" $PG bench --json "$@" > "$json" 2>> "$work/bench.log" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo '{"runs":[]}' > "$json"
    [ "$rc" -eq 124 ] && echo "The generator had not finished after ${BENCH_TIMEOUT:-240} s (the server stopped answering): stopped, no figure." >> "$out" && echo >> "$out"
  fi
  bench_table "$json" >> "$out"
  echo >> "$out"
}

# Whether the run in report $1 was lossless: every subscriber connected,
# nothing lost or twice, no publish refused.
bench_lossless() {
  # jq -e succeeds on an empty file: a report cut short must not count.
  [ -s "$1" ] && jq -e '.runs[0] | . != null and .connected == .subscribers and .lost == 0
    and .duplicates == 0 and .publish_errors == 0' "$1" > /dev/null 2>&1
}
# Whether it was clean, as a saturation step must be: lossless, p99 under 1 s.
bench_clean() {
  bench_lossless "$1" && jq -e '.runs[0].latency_ms.p99 < 1000' "$1" > /dev/null 2>&1
}

# The saturation steps: the rate raised through $RATES (msgs/s, ascending),
# $STEP seconds each, to $N subscribers, until a step is not clean
# (bench_clean). Title $1, reports kept as $2-<rate>.json, then the
# generator's arguments.
saturation() {
  local title=$1 key=$2 r; shift 2
  for r in $RATES; do
    bench_run "$title: $N subscribers, $r msgs/s for ${STEP}s" "$key-$r.json" "$@" -n "$N" -m $((r * STEP)) -r "$r"
    bench_clean "$key-$r.json" || break
  done
}

# The saturation figure of the steps kept as $1-<rate>.json: the offered
# deliveries/s (rate × subscribers) of the highest step that was clean with
# every lower step clean too; 0 when the first was not. When the highest
# step run was clean (the steps ran out before the server did), the figure
# is a lower bound and says so.
saturation_best() {
  local best=0 r n f last=""
  for r in $(for f in "$1"-*.json; do [ -f "$f" ] && { f=${f##*-}; echo "${f%.json}"; }; done | sort -n); do
    last=$r
    bench_clean "$1-$r.json" || { last=""; break; }
    n=$(jq -r '.runs[0].subscribers' "$1-$r.json")
    best=$((r * n))
  done
  if [ -n "$last" ]; then echo "$best (lower bound)"; else echo "$best"; fi
}

# One row of the summary table: measure $1, pushgate's figure $2, Nchan's $3,
# and the target on pushgate / Nchan: $4 is `<=` or `>=`, $5 the bound. The
# ratio is printed to two places; met or not is decided on the exact one. An
# empty or zero figure gives no ratio. $6, when given, is why the row cannot
# count as met whatever the ratio (e.g. pushgate lost messages). $7, when
# given, is the floor's figure (`pushgate bench --floor`): it gets its own
# ratio to Nchan, and a floor that misses the bound itself is said in the
# result, since then no server writing once per delivery meets it here.
summary_row() {
  local ratio verdict floor="–" fratio="–"
  ratio=$(bench_ratio "$2" "$3")
  if [ "$ratio" = - ]; then
    verdict="no figure"
  elif [ "$4" = - ]; then
    verdict="no target"
  elif bench_within "$2" "$3" "$4" "$5"; then
    verdict=met
  else
    verdict="not met"
  fi
  if [ -n "${6:-}" ] && [ "$verdict" = met ]; then verdict="not met ($6)"; fi
  if [ -n "${7:-}" ]; then
    floor=$7; fratio=$(bench_ratio "$7" "$3")
    if [ "$fratio" != - ] && [ "$4" != - ] && ! bench_within "$7" "$3" "$4" "$5"; then
      verdict="$verdict; the floor misses it too"
    fi
  fi
  local target="–"
  case $4 in "<=") target="≤ $5" ;; ">=") target="≥ $5" ;; esac
  echo "| $1 | ${2:-–} | $floor | ${3:-–} | $ratio | $fratio | $target | $verdict |"
}
# $1 / $2 to two places, "-" when either is empty or not above zero.
bench_ratio() {
  awk -v p="$1" -v n="$2" 'BEGIN { if (p == "" || n == "" || p + 0 <= 0 || n + 0 <= 0) print "-"; else printf "%.2f", p / n }'
}
# Whether $1 / $2 is $3 (`<=` or `>=`) $4, on the exact ratio.
bench_within() {
  awk -v p="$1" -v n="$2" -v op="$3" -v t="$4" 'BEGIN { r = p / n; exit !(op == "<=" ? r <= t : r >= t) }'
}

# A field of the first run of report $1 (jq path $2), empty when the report
# or the run is missing.
report_field() { [ -f "$1" ] && jq -r ".runs[0].$2 // empty" "$1" 2>/dev/null || true; }

# A latency row: measure $1, pushgate's report $2, Nchan's $3, bound $4 on
# the p99 ratio, and the floor's report $5 when one was run (a floor run
# that was not lossless gives no figure: its p99 would flatter it). Not
# met when pushgate's run was not lossless.
summary_p99_row() {
  local why="" floor=""
  if [ -f "$2" ] && ! bench_lossless "$2"; then
    why="pushgate: $(report_field "$2" connected)/$(report_field "$2" subscribers) connected, $(report_field "$2" lost) lost, $(report_field "$2" duplicates) twice, $(report_field "$2" publish_errors) publish errors"
  fi
  if [ -f "${5:-}" ]; then
    floor=-
    bench_lossless "$5" && floor=$(report_field "$5" latency_ms.p99)
  fi
  summary_row "$1" "$(report_field "$2" latency_ms.p99)" "$(report_field "$3" latency_ms.p99)" "<=" "$4" "$why" "$floor"
}

# Idle memory (KiB) of a pushgate report $1 per socket ($2 = sockets: per
# TLS connection, which carries 50 subscribers over h2) or per subscriber
# ($2 = connected): its RSS growth per subscriber, scaled.
pushgate_idle_kib() {
  [ -f "$1" ] || return 0
  jq -r --arg per "$2" '.runs[0] | select(.memory_per_connection_kib != null and .[$per] > 0)
    | .memory_per_connection_kib * .connected / .[$per] | . * 10 | round / 10' "$1" 2>/dev/null || true
}
# The same for nginx+Nchan from nchan_idle's reports ($1 and its .mem.json):
# the growth of its PSS (the shared pages Nchan keeps subscribers in counted
# once, which reads lower than RSS: the stricter figure to be measured against).
nchan_idle_kib() {
  local mem=${1%.json}.mem.json n pss
  [ -f "$1" ] && [ -f "$mem" ] || return 0
  n=$(report_field "$1" "$2"); pss=$(jq -r '.pss_kib' "$mem")
  awk -v g="$pss" -v n="${n:-0}" 'BEGIN { if (n > 0) printf "%.1f", g / n }'
}

# The summary of a run whose reports are in directory $1, named as
# bench/tls.sh names them: {pg,nc}-<road>-<subscribers>x<rate>.json for
# fan-out (the floor's, where it ran, fl-<road>-…; road: https, h2, wss over TLS; sse, ws plain), {pg,nc}-sat-<tls
# or plain>-<rate>.json for the saturation steps, {pg,nc}-idle-<https, h2
# or sse>.json for idle memory. Rows only for what the run measured; the
# targets are the ratios pushgate / nginx+Nchan: p99 ≤ ½ (≤ ¼ at 5 msgs/s
# or less), saturation ≥ 2×, idle memory per connection ≤ ½.
tls_summary() {
  local d=$1 road f load n r label bound k what pg nc why row
  echo "| scenario | pushgate | floor | nginx+Nchan | pushgate / Nchan | floor / Nchan | target | result |"
  echo "|---|---|---|---|---|---|---|---|"
  for road in https h2 wss sse ws; do
    case $road in
      https) label="SSE over HTTPS/1.1" ;; h2) label="SSE over h2 (50 streams per connection)" ;;
      wss) label="WSS" ;; sse) label="SSE, plain HTTP" ;; ws) label="WebSocket, plain HTTP" ;;
    esac
    for f in $(cd "$d" && ls pg-"$road"-*x*.json 2>/dev/null | sort -t x -k2n -k1,1); do
      load=${f#pg-"$road"-}; load=${load%.json}; n=${load%x*}; r=${load#*x}; f=$d/$f
      bound=0.5; [ "$r" -le 5 ] && bound=0.25
      summary_p99_row "p99 ms, $n $label × $r msgs/s" "$f" "$d/nc-$road-$load.json" "$bound" "$d/fl-$road-$load.json"
    done
  done
  for k in tls plain; do
    ls "$d"/pg-sat-"$k"-*.json > /dev/null 2>&1 || continue
    what="over TLS"; [ "$k" = plain ] && what="plain HTTP"
    pg=$(saturation_best "$d/pg-sat-$k"); nc=$(saturation_best "$d/nc-sat-$k")
    # Nchan's figure a lower bound: a ratio met is not known to be; pushgate's
    # a lower bound: a ratio missed is not known to be.
    why=""
    case $nc in *bound*) why="Nchan steps ran out: raise RATES" ;; esac
    row=$(summary_row "saturation $what: highest clean deliveries/s" "$pg" "$nc" ">=" 2 "$why")
    case $pg in *bound*) row=$(echo "$row" | sed 's/| not met |$/| not known (pushgate steps ran out: raise RATES) |/') ;; esac
    echo "$row"
  done
  [ -f "$d/pg-idle-https.json" ] && summary_row "idle memory per TLS connection (SSE over HTTPS/1.1), KiB" \
    "$(pushgate_idle_kib "$d/pg-idle-https.json" sockets)" "$(nchan_idle_kib "$d/nc-idle-https.json" sockets)" "<=" 0.5
  [ -f "$d/pg-idle-h2.json" ] && summary_row "idle memory per h2 stream (50 per TLS connection), KiB" \
    "$(pushgate_idle_kib "$d/pg-idle-h2.json" connected)" "$(nchan_idle_kib "$d/nc-idle-h2.json" connected)" - -
  [ -f "$d/pg-idle-sse.json" ] && summary_row "idle memory per connection (SSE, plain HTTP), KiB" \
    "$(pushgate_idle_kib "$d/pg-idle-sse.json" sockets)" "$(nchan_idle_kib "$d/nc-idle-sse.json" sockets)" "<=" 0.5
  return 0
}

# The latency distribution of each fan-out row the floor ran in (reports
# fl-<road>-<load>.json in directory $1), pushgate, floor and nginx+Nchan
# one line each: where pushgate spends more than the floor shows in the
# shape, not only in the p99.
latency_distribution() {
  local d=$1 f key who name
  echo "| row | server | p50 | p90 | p95 | p99 | max |"
  echo "|---|---|---|---|---|---|---|"
  for f in $(cd "$d" && ls fl-*.json 2>/dev/null | sort); do
    key=${f#fl-}; key=${key%.json}
    for who in pg fl nc; do
      case $who in pg) name=pushgate ;; fl) name=floor ;; nc) name=nginx+Nchan ;; esac
      [ -s "$d/$who-$key.json" ] || continue
      jq -r --arg row "$key" --arg name "$name" '.runs[0] // empty | .latency_ms
        | "| \($row) | \($name) | \(.p50) | \(.p90 // "–") | \(.p95) | \(.p99) | \(.max) |"' "$d/$who-$key.json" 2>/dev/null || true
    done
  done
}
