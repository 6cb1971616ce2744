#!/usr/bin/env bash
# Pushpin side by side with pushgate: the same generator, the same machine.
# Pushpin holds SSE streams through a small GRIP backend (the application
# answers `Grip-Hold: stream` + `Grip-Channel`), publishes go to its
# `/publish/` control API. Debian's Pushpin expects the zurl daemon (its
# outgoing HTTP client) to be running as a system service; this script runs
# one itself with the packaged settings, minus the loopback deny list.
# Pushpin's own packaged limits are kept (handler message_rate 2500/s,
# message_hwm 25000). Appends a dated section to bench/RESULTS.md.
#
#   bench/pushpin.sh            # 1,000 × 5/s and 5,000 × 20/s over SSE
#   QUICK=1 bench/pushpin.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_need pushpin
bench_start
bench_cleanup_extra() {
  pkill -f "pushpin-proxy --config=$work" 2>/dev/null || true
  pkill -f "pushpin-handler --config=$work" 2>/dev/null || true
  pkill -f "condure --log-level=2 --listen=0.0.0.0:17999" 2>/dev/null || true
}

mkdir -p "$work/run" "$work/log" /var/run/zurl
sed -e "s|^rundir=.*|rundir=$work/run|" -e "s|^logdir=.*|logdir=$work/log|" \
    -e 's|^http_port=.*|http_port=17999|' -e "s|^routesfile=.*|routesfile=$work/routes|" \
    -e 's|^log_level=.*|log_level=2|' /etc/pushpin/pushpin.conf > "$work/pushpin.conf"
echo "* 127.0.0.1:18091" > "$work/routes"
sed -e 's|^deny=.*|deny=|' /etc/zurl.conf > "$work/zurl.conf"
cat > "$work/grip.py" <<'PY'
import http.server, urllib.parse
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 4096
    daemon_threads = True
class Grip(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        channel = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).get("channel", ["x"])[0]
        body = b":ok\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Grip-Hold", "stream")
        self.send_header("Grip-Channel", channel)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
Server(("127.0.0.1", 18091), Grip).serve_forever()
PY
python3 "$work/grip.py" & pids+=($!)
zurl --config="$work/zurl.conf" >/dev/null 2>&1 & pids+=($!)
pushpin --config "$work/pushpin.conf" >/dev/null 2>&1 & pids+=($!)
$PG run -c bench/pushgate.yaml >/dev/null 2>&1 & pgpid=$!; pids+=($pgpid)
sleep 4
curl -sf -X POST http://127.0.0.1:5561/publish/ -d '{"items":[]}' >/dev/null || { echo "pushpin did not start" >&2; exit 1; }

if [ -n "${QUICK:-}" ]; then S=1000; M=100; else S=5000; M=400; fi
out="$work/results.md"
{
  echo "## Pushpin run of $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr). Versions: pushgate $($PG --version | cut -d' ' -f2), $(pushpin --version 2>&1 | head -1), zurl $(dpkg-query -W -f='${Version}' zurl). Command: \`bench/pushpin.sh\` (QUICK=${QUICK:-})."
  echo "Pushpin runs with its packaged limits; its GRIP backend is a Python ThreadingHTTPServer stand-in (\`bench/pushpin.sh\`), which may itself limit how fast Pushpin can open streams."
  echo
} > "$out"
run() {
  local title=$1; shift
  echo "### $title" >> "$out"; echo >> "$out"
  echo "\`pushgate bench $*\`" >> "$out"; echo >> "$out"
  $PG bench "$@" >> "$out"
  echo >> "$out"
}
for spec in "1000 100 5" "$S $M 20"; do
  set -- $spec
  run "pushgate: $1 sse subscribers, one channel, $3 msgs/s of 512 B" --transport sse -n $1 -m $2 -r $3 -s 512
  run "Pushpin: $1 sse subscribers, one channel, $3 msgs/s of 512 B" --target pushpin --url http://127.0.0.1:17999 --publish http://127.0.0.1:5561 --transport sse -n $1 -m $2 -r $3 -s 512
done
cat "$out"
{ echo; cat "$out"; } >> bench/RESULTS.md
