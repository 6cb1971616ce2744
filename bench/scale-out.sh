#!/usr/bin/env bash
# Scale-out benchmark: one pushgate with the memory broker vs two pushgate
# instances sharing a real redis-server, same load generator, same machine,
# one run. Subscribers are spread over both instances; every message is
# published through the first one, so half the deliveries cross Redis.
# Appends a dated section to bench/RESULTS.md.
#
#   bench/scale-out.sh            # 5,000 subscribers
#   QUICK=1 bench/scale-out.sh    # smaller numbers, for a quick look
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh
bench_need redis-server
bench_start

if [ -n "${QUICK:-}" ]; then S=1000; M=200; RATES="20"; else S=5000; M=400; RATES="20 50"; fi

# Configs: the benchmark config with other ports, plus the broker section.
instance() { # name public admin broker-yaml
  sed -e "s/127.0.0.1:18080/127.0.0.1:$2/" -e "s/127.0.0.1:19090/127.0.0.1:$3/" bench/pushgate.yaml > "$work/$1.yaml"
  echo "$4" >> "$work/$1.yaml"
}
redis_port=26379
instance single 18080 19090 ""
instance a 18180 19190 "broker: { kind: redis, redis: { url: \"redis://127.0.0.1:$redis_port\", prefix: bench } }"
instance b 18280 19290 "broker: { kind: redis, redis: { url: \"redis://127.0.0.1:$redis_port\", prefix: bench } }"

out="$work/results.md"
{
  echo "## Scale-out run of $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr). Versions: pushgate $($PG --version | cut -d' ' -f2), $(redis-server --version | cut -d' ' -f3)."
  echo "Load generator, every pushgate process and redis-server share the same cores. Command: \`bench/scale-out.sh\` (QUICK=${QUICK:-})."
  echo
} > "$out"

run() { # title, then pushgate bench arguments
  local title=$1; shift
  echo "### $title" >> "$out"; echo >> "$out"
  echo "\`pushgate bench $*\`" >> "$out"; echo >> "$out"
  $PG bench "$@" >> "$out"
  echo >> "$out"
}
wait_ready() { for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.1; done; echo "instance on $1 not ready" >&2; exit 1; }

# One instance, memory broker.
$PG run -c "$work/single.yaml" & single=$!; pids+=($single)
wait_ready 19090
for r in $RATES; do
  for t in sse ws; do
    run "one instance, memory broker: $S $t subscribers, one channel, $r msgs/s of 512 B" \
      --transport $t -n $S -m $M -r $r -s 512
  done
done
kill $single; wait $single 2>/dev/null || true

# Two instances sharing Redis.
redis-server --port $redis_port --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null & pids+=($!)
sleep 0.5
$PG run -c "$work/a.yaml" & pids+=($!)
$PG run -c "$work/b.yaml" & pids+=($!)
wait_ready 19190; wait_ready 19290
for r in $RATES; do
  for t in sse ws; do
    run "two instances + Redis: $S $t subscribers spread over both, one channel, $r msgs/s of 512 B published on the first" \
      --url http://127.0.0.1:18180 --url http://127.0.0.1:18280 --publish http://127.0.0.1:19190 \
      --transport $t -n $S -m $M -r $r -s 512
  done
done

cat "$out"
{ echo; cat "$out"; } >> bench/RESULTS.md
