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

