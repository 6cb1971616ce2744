#!/usr/bin/env bash
# A check of the summary bench/tls.sh prints (tls_summary in bench/lib.sh):
# fixed JSON reports in, the expected table out, compared line by line.
# Covers a met and a missed latency ratio, the ¼ bound at 5 msgs/s, a run
# where pushgate lost messages (not met whatever the ratio), a missing
# Nchan report, the floor's column (within the bound, missing it too, a
# floor run that lost messages and so gives no figure, rows without one), the saturation steps (a failed step ends the count; all
# steps clean is a lower bound; exactly 2× is met) and idle memory per TLS
# connection and per h2 stream.
#
#   bench/summary_check.sh      # exits non-zero and shows the difference on a mismatch
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT

# report FILE SUBSCRIBERS CONNECTED SOCKETS LOST P99 [KIB]: a one-run report
# with the fields the summary reads.
report() {
  printf '{"runs":[{"transport":"sse","subscribers":%s,"connected":%s,"sockets":%s,"delivered":1,"lost":%s,"duplicates":0,"publish_errors":0,"msgs_per_sec":1,"latency_ms":{"avg":1,"p50":1,"p95":1,"p99":%s,"max":1},"memory_per_connection_kib":%s}]}\n' \
    "$2" "$3" "$4" "$5" "$6" "${7:-null}" > "$d/$1"
}
report pg-https-1000x5.json 1000 1000 1000 0 2.0
report nc-https-1000x5.json 1000 1000 1000 0 10.0
report fl-https-1000x5.json 1000 1000 1000 0 1.5
# pushgate and the floor both above ¼ of Nchan's.
report pg-wss-1000x5.json 1000 1000 1000 0 6.0
report fl-wss-1000x5.json 1000 1000 1000 0 4.0
# A report from a generator that gives p90 (the distribution table shows it).
jq -c '.runs[0].latency_ms.p90 = 3.5' "$d/fl-wss-1000x5.json" > "$d/p90" && mv "$d/p90" "$d/fl-wss-1000x5.json"
report nc-wss-1000x5.json 1000 1000 1000 0 10.0
# A floor run that lost messages: no floor figure.
report fl-https-5000x20.json 5000 5000 5000 2 10.0
report pg-https-5000x20.json 5000 5000 5000 0 30.0
report nc-https-5000x20.json 5000 5000 5000 0 50.0
report pg-wss-1000x100.json 1000 1000 1000 3 5.0
report nc-wss-1000x100.json 1000 1000 1000 0 20.0
report pg-h2-1000x100.json 1000 1000 20 0 8.0
report pg-sse-5000x20.json 5000 5000 5000 0 25.0
report nc-sse-5000x20.json 5000 5000 5000 0 50.0
# p99 over 1 s with nothing lost: judged by the ratio alone.
report pg-sse-1000x5.json 1000 1000 1000 0 1200
report nc-sse-1000x5.json 1000 1000 1000 0 6000
report pg-sat-tls-50.json 1000 1000 1000 0 10
report pg-sat-tls-100.json 1000 1000 1000 0 20
report pg-sat-tls-200.json 1000 1000 1000 7 20
report nc-sat-tls-50.json 1000 1000 1000 0 30
report nc-sat-tls-100.json 1000 1000 1000 0 1500
# A clean step above a failed one does not count (every lower step must be clean).
report nc-sat-tls-200.json 1000 1000 1000 0 30
report pg-sat-plain-50.json 1000 1000 1000 0 5
report pg-sat-plain-100.json 1000 1000 1000 0 9
report nc-sat-plain-50.json 1000 1000 1000 0 5
# A step whose report was cut short (an empty file) is not clean.
: > "$d/pg-sat-plain-200.json"
report pg-idle-https.json 5000 5000 5000 0 1 12.0
report nc-idle-https.json 5000 5000 5000 0 1
echo '{"rss_kib": 210000, "pss_kib": 200000}' > "$d/nc-idle-https.mem.json"
report pg-idle-h2.json 5000 5000 100 0 1 5.0
report nc-idle-h2.json 5000 5000 100 0 1
echo '{"rss_kib": 30000, "pss_kib": 25000}' > "$d/nc-idle-h2.mem.json"

expected='| scenario | pushgate | floor | nginx+Nchan | pushgate / Nchan | floor / Nchan | target | result |
|---|---|---|---|---|---|---|---|
| p99 ms, 1000 SSE over HTTPS/1.1 × 5 msgs/s | 2 | 1.5 | 10 | 0.20 | 0.15 | ≤ 0.25 | met |
| p99 ms, 5000 SSE over HTTPS/1.1 × 20 msgs/s | 30 | - | 50 | 0.60 | - | ≤ 0.5 | not met |
| p99 ms, 1000 SSE over h2 (50 streams per connection) × 100 msgs/s | 8 | – | – | - | – | ≤ 0.5 | no figure |
| p99 ms, 1000 WSS × 5 msgs/s | 6 | 4 | 10 | 0.60 | 0.40 | ≤ 0.25 | not met; the floor misses it too |
| p99 ms, 1000 WSS × 100 msgs/s | 5 | – | 20 | 0.25 | – | ≤ 0.5 | not met (pushgate: 1000/1000 connected, 3 lost, 0 twice, 0 publish errors) |
| p99 ms, 1000 SSE, plain HTTP × 5 msgs/s | 1200 | – | 6000 | 0.20 | – | ≤ 0.25 | met |
| p99 ms, 5000 SSE, plain HTTP × 20 msgs/s | 25 | – | 50 | 0.50 | – | ≤ 0.5 | met |
| saturation over TLS: highest clean deliveries/s | 100000 | – | 50000 | 2.00 | – | ≥ 2 | met |
| saturation plain HTTP: highest clean deliveries/s | 100000 | – | 50000 (lower bound) | 2.00 | – | ≥ 2 | not met (Nchan steps ran out: raise RATES) |
| idle memory per TLS connection (SSE over HTTPS/1.1), KiB | 12 | – | 40.0 | 0.30 | – | ≤ 0.5 | met |
| idle memory per h2 stream (50 per TLS connection), KiB | 5 | – | 5.0 | 1.00 | – | – | no target |'

got=$(tls_summary "$d")
if [ "$got" != "$expected" ]; then
  echo "summary_check: the summary differs from the expected table (- expected, + got):" >&2
  diff <(echo "$expected") <(echo "$got") >&2 || true
  exit 1
fi
# The distribution table of the rows the floor ran in: pushgate, floor and
# Nchan per row; a report without p90 (an older generator) shows "–".
expected='| row | server | p50 | p90 | p95 | p99 | max |
|---|---|---|---|---|---|---|
| https-1000x5 | pushgate | 1 | – | 1 | 2 | 1 |
| https-1000x5 | floor | 1 | – | 1 | 1.5 | 1 |
| https-1000x5 | nginx+Nchan | 1 | – | 1 | 10 | 1 |
| https-5000x20 | pushgate | 1 | – | 1 | 30 | 1 |
| https-5000x20 | floor | 1 | – | 1 | 10 | 1 |
| https-5000x20 | nginx+Nchan | 1 | – | 1 | 50 | 1 |
| wss-1000x5 | pushgate | 1 | – | 1 | 6 | 1 |
| wss-1000x5 | floor | 1 | 3.5 | 1 | 4 | 1 |
| wss-1000x5 | nginx+Nchan | 1 | – | 1 | 10 | 1 |'
got=$(latency_distribution "$d")
if [ "$got" != "$expected" ]; then
  echo "summary_check: the latency distribution differs from the expected table (- expected, + got):" >&2
  diff <(echo "$expected") <(echo "$got") >&2 || true
  exit 1
fi
echo "summary_check: ok"
