#!/usr/bin/env bash
# Three pushgate instances + Redis + an nginx TCP front, on one machine, for
# trying the cluster out, with two stand-in applications (python3's
# http.server): the app on 8080 and an API on 8081 that `routes:` sends
# /api/ to. Ctrl-C stops everything.
#   examples/cluster/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
for p in redis-server nginx libnginx-mod-stream; do
  dpkg -s "$p" >/dev/null 2>&1 || { echo "missing Debian package $p (apt-get install $p)"; exit 1; }
done
command -v python3 >/dev/null || { echo "missing python3 (apt-get install python3)"; exit 1; }
cargo build --release --quiet
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM

for app in app:8080 api:8081; do
  mkdir -p "$work/${app%:*}" && echo "hello from the ${app%:*}" >"$work/${app%:*}/index.html"
  python3 -m http.server "${app#*:}" --bind 127.0.0.1 --directory "$work/${app%:*}" >/dev/null 2>&1 & pids+=($!)
done
redis-server --port 6379 --bind 127.0.0.1 --dir "$work" --appendonly yes >/dev/null & pids+=($!)
for i in 0 1 2; do
  PUSHGATE_PORT=$((8444 + i)) PUSHGATE_ADMIN_PORT=$((9091 + i)) \
    target/release/pushgate run -c examples/cluster/gateway.yaml & pids+=($!)
  # The first one generates the dev certificate the others then share.
  for _ in $(seq 1 50); do curl -sf "localhost:$((9091 + i))/healthz" >/dev/null && break; sleep 0.1; done
done
nginx -c "$PWD/examples/cluster/nginx.conf" -p "$work" -g 'daemon off;' & pids+=($!)
sleep 1
cat <<TXT
cluster up: https://localhost:8443 (nginx) -> pushgate on 8444, 8445, 8446; Redis on 6379
  curl -skN 'https://localhost:8443/realtime/sse?channels=public.news'      # any instance
  curl -s localhost:9092/publish -H 'Content-Type: application/json' -d '{"channel":"public.news","data":"hi"}'  # publish on another
  curl -sk https://localhost:8443/          # the app (backend:)
  curl -sk https://localhost:8443/api/      # the API, by route, as / (strip_prefix)
TXT
wait
