#!/usr/bin/env bash
# The Mercure road against pushgate's own SSE, same server, same run:
# N SSE subscribers on one channel (own SSE: /realtime/sse?channels=…;
# Mercure: /.well-known/mercure?topic=…, anonymous), R messages/s of 512 B
# (own: POST /publish on the admin listener; Mercure: one form POST per
# update with a publisher token, as symfony/mercure publishes). Reports
# p99, delivered/s and the server's CPU (utime+stime from /proc) per
# 1,000 deliveries, and appends the table to bench/RESULTS.md.
#
#   bench/mercure.sh                 # 1,000 subscribers x 20 msgs/s, 20 s, 2 rounds
#   N=500 R=10 SECS=10 ROUNDS=1 bench/mercure.sh
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh
bench_start

N=${N:-1000}; R=${R:-20}; SECS=${SECS:-20}; ROUNDS=${ROUNDS:-2}
SECRET=bench-mercure-secret-0123456789
cp bench/pushgate.yaml "$work/gateway.yaml"
cat >> "$work/gateway.yaml" <<YAML
mercure:
  publisher_jwt: { hs256_secret: "$SECRET" }
  anonymous: true
YAML
$PG run -c "$work/gateway.yaml" & pgpid=$!; pids+=($pgpid)
for _ in $(seq 1 50); do
  curl -sf -o /dev/null http://127.0.0.1:19090/healthz 2>/dev/null && break
  sleep 0.2
done
# A publisher token as symfony/mercure's factory signs it (HS256, 0.x claim).
jwt=$(python3 - "$SECRET" <<'PY'
import base64, hashlib, hmac, json, sys
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
head = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
claims = b(json.dumps({"mercure": {"publish": ["*"]}}).encode())
sig = b(hmac.new(sys.argv[1].encode(), f"{head}.{claims}".encode(), hashlib.sha256).digest())
print(f"{head}.{claims}.{sig}")
PY
)
hz=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pgpid/stat"; }

rows="$work/rows.md"
: > "$rows"
one() { # label, then pushgate bench arguments
  local label=$1; shift
  local a b
  a=$(cpu)
  $PG bench "$@" -n "$N" -m $((R * SECS)) -r "$R" -s 512 --json > "$work/run.json"
  b=$(cpu)
  python3 - "$label" "$a" "$b" "$hz" "$work/run.json" >> "$rows" <<'PY'
import json, sys
label, a, b, hz, path = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
r = json.load(open(path))
r = r["runs"][0]
cpu_ms = (b - a) * 1000 / hz
per_k = cpu_ms / r["delivered"] * 1000 if r["delivered"] else float("nan")
print(f"| {label} | {r['subscribers']} | {r['connected']} | {r['delivered']} | {r['lost']} | "
      f"{r['delivered'] / r['seconds']:.0f} | {r['latency_ms']['p50']:.2f} | {r['latency_ms']['p99']:.2f} | "
      f"{cpu_ms:.0f} | {per_k:.1f} |")
PY
}
for round in $(seq 1 "$ROUNDS"); do
  one "own SSE (round $round)" --transport sse
  one "Mercure (round $round)" --target mercure --publish http://127.0.0.1:18080 --mercure-jwt "$jwt" --transport sse
done

{
  echo
  echo "## Mercure road vs own SSE, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(uname -sr); load before: $(cut -d' ' -f1-3 /proc/loadavg). Command: \`N=$N R=$R SECS=$SECS ROUNDS=$ROUNDS bench/mercure.sh\` (release build; load generator, server and publisher share the cores)."
  echo "$N SSE subscribers on one channel/topic, $R msgs/s of 512 B for $SECS s. CPU: the server's utime+stime over the run (connect, publish, drain), per 1,000 deliveries."
  echo
  echo "| road | subscribers | connected | delivered | lost | delivered/s | p50 ms | p99 ms | server CPU ms | CPU ms / 1k deliveries |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  cat "$rows"
} | tee -a bench/RESULTS.md
