#!/usr/bin/env bash
# Reconnect storms on the Redis broker, with messages flowing throughout.
#  (a) restart: WebSocket and SSE subscribers (half each) on one pushgate;
#      SIGTERM, a new process on the same port; figures: time from the new
#      process listening to every client streaming again, lost and
#      duplicated messages, refusals.
#  (b) node lost: two pushgate instances behind HAProxy (TCP mode); one is
#      killed with SIGKILL; its clients come back through HAProxy to the
#      other; figures: time from each client's first retry to streaming
#      again, lost and duplicated messages.
# Messages are published through a third instance sharing Redis, so the
# publisher outlives both disruptions. The clients (bench/storm_clients.js)
# resume with the cursor and count loss and duplicates per channel.
# Appends a dated section to bench/RESULTS.md.
#
#   bench/storm.sh                      # 10,000 clients from 100 addresses
#   N=2000 bench/storm.sh               # fewer clients
#   OFFICE=3000 (default; 0 skips): (c) that many clients from one address
#   on the default per-address limits, restarted as in (a)
#   SCENARIOS=a N=10000 bench/storm.sh  # only (a); RESULTS.md untouched
#   RATE=1000 CHANNELS=100 ADDRS=100 BEFORE=5 AFTER=10 NOTE="…" bench/storm.sh
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh
bench_need redis-server haproxy
# Ports of their own: other bench scripts may run on the usual ones.
BENCH_PORTS="37180 37190 37280 37290 37380 37390 37480 37379"
bench_start

N=${N:-10000}; RATE=${RATE:-1000}; CHANNELS=${CHANNELS:-100}; ADDRS=${ADDRS:-100}
# One pushgate holds every client in (a), and in (b) once the other is
# killed: one descriptor each, under this shell's open-files limit (which
# every process started here inherits).
if [ "$N" -gt $(( $(ulimit -n) - 1000 )) ]; then
  echo "N=$N does not fit the open-files limit $(ulimit -n) of one pushgate process" >&2; exit 1
fi
# HAProxy processes for (b): see there.
hap_maxconn=$(( ($(ulimit -Hn) - 100) / 2 ))
hap_procs=$(( (N * 10 / 9 + hap_maxconn - 1) / hap_maxconn ))
BEFORE=${BEFORE:-5}; AFTER=${AFTER:-10}
redis_port=37379
broker="broker: { kind: redis, redis: { url: \"redis://127.0.0.1:$redis_port\", prefix: storm } }"
instance() { # name public admin
  sed -e "s/127.0.0.1:18080/127.0.0.1:$2/" -e "s/127.0.0.1:19090/127.0.0.1:$3/" bench/pushgate.yaml > "$work/$1.yaml"
  echo "$broker" >> "$work/$1.yaml"
}
instance p 37380 37390
instance a 37180 37190
instance b 37280 37290
wait_ready() { for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.05; done; echo "instance on $1 not ready" >&2; exit 1; }
bench_cleanup_extra() { # processes the disruptions started
  local f
  for f in "$work"/*.pid; do [ -e "$f" ] && { kill "$(cat "$f")" 2>/dev/null || true; }; done
  return 0
}

redis-server --port $redis_port --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null & pids+=($!)
sleep 0.5
$PG run -c "$work/p.yaml" & pids+=($!)
wait_ready 37390

clients() { # json options without the common ones
  node bench/storm_clients.js "{\"n\":$N,\"channels\":$CHANNELS,\"addrs\":$ADDRS,\"rate\":$RATE,\"before_s\":$BEFORE,\"after_s\":$AFTER,\"publish\":\"http://127.0.0.1:37390\",$1}"
}

out="$work/results.md"
{
  echo "## Reconnect storm run of $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr)${NOTE:+; $NOTE}. Versions: pushgate $($PG --version | cut -d' ' -f2), $(redis-server --version | cut -d' ' -f3), $(haproxy -v | head -1 | cut -d' ' -f1-3)."
  echo "Load before: $(cut -d' ' -f1-3 /proc/loadavg). Open files per process: soft $(ulimit -n), hard $(ulimit -Hn). Clients spread over $(( (N + 2499) / 2500 )) Node processes (2,500 each at most), the publisher a process of its own; (b) through $hap_procs HAProxy process(es) of maxconn $hap_maxconn sharing the port (two descriptors per client each)."
  echo "Clients, every pushgate process, HAProxy and redis-server share the same cores. Command: \`N=$N RATE=$RATE CHANNELS=$CHANNELS ADDRS=$ADDRS BEFORE=$BEFORE AFTER=$AFTER bench/storm.sh\`."
  echo "$N subscribers (half WebSocket, half SSE, each resuming with its cursor) on $CHANNELS channels from $ADDRS source addresses; $RATE messages/s published through a third instance sharing Redis, $BEFORE s before the disruption and $AFTER s after."
  echo
} > "$out"

# (a) SIGTERM, a new process on the same port: `restart CONFIG EXTRA-JSON`
# prints the clients' report.
restart() {
  $PG run -c "$work/$1.yaml" & echo $! > "$work/a1.pid"
  wait_ready 37190
  local cmd="kill -TERM $(cat "$work/a1.pid");
  while ss -Hltn 'sport = :37180' | grep -q .; do sleep 0.01; done;
  echo closed \$(date +%s%3N);
  $PG run -c $work/$1.yaml >/dev/null 2>&1 & echo \$! > $work/a2.pid;
  for _ in \$(seq 1 400); do ss -Hltn 'sport = :37180' | grep -q . && break; sleep 0.005; done;
  echo listening \$(date +%s%3N)"
  # Clients that fail never run the disruption: stop the first process
  # too, or the wait below would hold the script forever.
  clients "\"urls\":[\"http://127.0.0.1:37180\"],$2\"disrupt\":$(printf '%s' "$cmd" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')" \
    || { kill "$(cat "$work/a1.pid")" 2>/dev/null; exit 1; }
  curl -sf http://127.0.0.1:37190/metrics > "$work/a_metrics.txt" || true
  kill "$(cat "$work/a2.pid")" 2>/dev/null || true
  wait "$(cat "$work/a1.pid")" 2>/dev/null || true
  while ss -Hltn 'sport = :37180' | grep -q .; do sleep 0.1; done
}
# Where a resume's time goes: the survivor's stage histogram
# (`pushgate_resume_seconds`, seconds from accept, in its /metrics saved
# in file $1) and the clients' own stages (from `$2`, their report).
# Prints one line per side.
stages() { # metrics-file clients-json
  [ -e "$1" ] || : > "$1"
  python3 - "$1" "$2" <<'PY'
import json, re, sys
text, r = open(sys.argv[1]).read(), json.loads(sys.argv[2])
buckets = {}
for m in re.finditer(r'^pushgate_resume_seconds_bucket\{(.*?)\} (\S+)$', text, re.M):
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
    buckets.setdefault(labels["stage"], []).append((float(labels["le"]), float(m.group(2))))
def q(bs, p):
    # the bucket bound the p-th resume falls under: an upper estimate
    bs.sort(); total = bs[-1][1]
    if total == 0: return None
    for le, c in bs:
        if c >= p * total: return le
order = ["request", "admitted", "replay_started", "replay_read", "first_write"]
gw = [f"{s} {q(buckets[s], .5)*1000:.0f} / {q(buckets[s], .99)*1000:.0f} ms (n={buckets[s][-1][1]:.0f})" for s in order if s in buckets and q(buckets[s], .5) is not None]
print("survivor, from accept (p50 / p99, bucket bounds): " + ("; ".join(gw) or "no pushgate_resume_seconds (an older build)"))
cs = r.get("client_stages_ms", {})
cl = [f"{k} {v['p50']} / {v['p99']} ms" for k, v in cs.items() if v.get("n")]
print("clients, from the attempt's start (p50 / p99): " + "; ".join(cl) + "; event loop late p99 / max per process: " + ", ".join(f"{d['p99']} / {d['max']} ms" for d in r.get("client_loop_delay_ms", [])))
PY
}
# SCENARIOS picks which to run (default all: "abc"); a partial run
# prints its figures and leaves bench/RESULTS.md alone.
SCENARIOS=${SCENARIOS:-abc}
a=""
if [[ $SCENARIOS == *a* ]]; then
  echo "(a) restart: $N clients…" >&2
  a=$(restart a "")
  echo "$a" >&2
  a_stages=$(stages "$work/a_metrics.txt" "$a")
  echo "$a_stages" >&2
fi
# (c) an office: OFFICE clients (default 3,000) from one address, on the
# default per-address limits (`per_ip` left out of the config).
OFFICE=${OFFICE:-3000}
c=""
if [ "$OFFICE" -gt 0 ] && [[ $SCENARIOS == *c* ]]; then
  grep -v '^  per_ip:' "$work/a.yaml" > "$work/office.yaml"
  echo "(c) office: $OFFICE clients from one address…" >&2
  c=$(restart office "\"n\":$OFFICE,\"addrs\":1,")
  echo "$c" >&2
fi

[[ $SCENARIOS == *b* ]] || exit 0
# (b) two instances behind HAProxy, one killed with SIGKILL.
# HAProxy holds two descriptors per client connection, and one process may
# not open more than the open-files hard limit: past it, several HAProxy
# processes bind the same port (HAProxy sets SO_REUSEPORT, so the kernel
# spreads the connections over them by address hash), each with a maxconn
# under the limit and 10% headroom for an uneven spread.
cat > "$work/haproxy.cfg" <<CFG
global
  maxconn $hap_maxconn
defaults
  mode tcp
  timeout connect 1s
  timeout client 1h
  timeout server 1h
  retries 3
  option redispatch
frontend storm
  bind 127.0.0.1:37480
  default_backend pushgate
backend pushgate
  balance roundrobin
  server a 127.0.0.1:37180 check inter 500ms fall 1 rise 2
  server b 127.0.0.1:37280 check inter 500ms fall 1 rise 2
CFG
$PG run -c "$work/a.yaml" & echo $! > "$work/a3.pid"
$PG run -c "$work/b.yaml" & pids+=($!)
wait_ready 37190; wait_ready 37290
for _ in $(seq 1 "$hap_procs"); do
  haproxy -f "$work/haproxy.cfg" -db >/dev/null 2>&1 & pids+=($!)
done
for _ in $(seq 1 100); do [ "$(ss -Hltn 'sport = :37480' | wc -l)" -ge "$hap_procs" ] && break; sleep 0.05; done
echo "(b) node lost: $N clients…" >&2
b=$(clients "\"urls\":[\"http://127.0.0.1:37480\"],\"disrupt\":\"kill -KILL $(cat "$work/a3.pid")\"")
echo "$b" >&2
curl -sf http://127.0.0.1:37290/metrics > "$work/b_metrics.txt" || true
b_stages=$(stages "$work/b_metrics.txt" "$b")
echo "$b_stages" >&2

[ "$SCENARIOS" = abc ] || exit 0
row() { # title json
  python3 - "$1" "$2" <<'PY'
import json, sys
t, r = sys.argv[1], json.loads(sys.argv[2])
b, f, g = r["back_ms"], r["back_from_first_retry_ms"], r["back_from_last_attempt_ms"]
ref = ", ".join(f"{k}: {v}" for k, v in sorted(r["refusals"].items())) or "none"
ref += " (during the storm: " + (", ".join(f"{k}: {v}" for k, v in sorted(r["refusals_during_storm"].items())) or "none") + ")"
print(f"| {t} | {r['connected_before']}/{r['clients']} | {r['disrupted']} (ws {r['disrupted_by_kind']['ws']}, sse {r['disrupted_by_kind']['sse']}) | {r['unresumed']} | "
      f"{b['p50']} / {b['p99']} / {b['max']} | {f['p50']} / {f['p99']} / {f['max']} | {g['p50']} / {g['p99']} / {g['max']} | {r['connections_refused_during_storm']} | {r['published']} ({r['published_per_s']}/s) | {r['lost']}{'' if r.get('drained', True) else ' (not drained: late ones too)'} | {r['duplicated']} ({r['duplicated_ids']} by id) | {r['resets']} | {ref} | {r['publish_errors']} |")
PY
}
{
  echo "| scenario | streaming before | disrupted | not back | back after listening (a) / after loss (b), ms p50 / p99 / max | back after first retry, ms p50 / p99 / max | the attempt that succeeded, ms p50 / p99 / max | connects refused (port closed) | published | lost | duplicated | resets | refusals | publish errors |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  row "(a) SIGTERM, new process on the same port" "$a"
  row "(b) 2 behind HAProxy, one SIGKILLed" "$b"
  [ -z "$c" ] || row "(c) office: $OFFICE from one address, default per_ip limits, SIGTERM + new process" "$c"
  echo
  echo "(a) where a resume's time went: $a_stages"
  echo
  echo "(a) old process's listener closed $(echo "$a" | python3 -c 'import json,sys; print(json.load(sys.stdin)["closed_after_disrupt_ms"])') ms and new process listening $(echo "$a" | python3 -c 'import json,sys; print(json.load(sys.stdin)["listening_after_disrupt_ms"])') ms after the SIGTERM. Raw: \`$a\`"
  echo
  echo "(b) where a resume's time went: $b_stages"
  echo
  echo "(b) raw: \`$b\`"
  echo
  [ -z "$c" ] || { echo "(c) raw: \`$c\`"; echo; }
} >> "$out"
cat "$out"
{ echo; cat "$out"; } >> bench/RESULTS.md
