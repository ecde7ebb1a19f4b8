#!/usr/bin/env bash
# Two proxies under the same HTTP/2 (or gRPC) load, alternating, one worker pinned to CPU 0
# with the backend and the load on CPU 1: the proxy's CPU time (user + system, from /proc) per
# request over each run, and the new/old ratio of each pair. Finer than perf/h2-peers.sh for
# telling a change from the machine's drift: the two alternate run by run, on one backend.
# Each side is a Strait binary, or `envoy` (the scenario's Envoy), or `floor`: `strait-bench
# serve h2 --relay`, which passes each stream to the backend and back with the h2 crate and
# nothing else (no routing, no field edits, no metrics), the least an h2-based proxy costs.
#
#   perf/h2-ab.sh OLD NEW [ROUNDS] [STREAMS×CONNS ...]   # default 3 rounds of 16x1 64x1 2x8
#   MODE=grpc perf/h2-ab.sh /tmp/old/strait target/release/strait 3 64x1 8x8
#   perf/h2-ab.sh envoy floor 3 16x1 2x8                  # the floor beside Envoy
#
# The configs are perf/scenarios/h2.yaml's for Strait (an HTTP2 ServiceEntry for the backend)
# and Envoy, written once by the scenario runner. Needs target/release/strait-bench, and for
# `envoy` perf/install-peers.sh.
set -euo pipefail
old=$1 new=$2 rounds=${3:-3}
shift $(($# < 3 ? $# : 3))
shapes=("$@")
[ ${#shapes[@]} -eq 0 ] && shapes=(16x1 64x1 2x8)
cd "$(dirname "$0")/.."
peers=strait
if [ "$old" = envoy ] || [ "$new" = envoy ]; then
  peers=strait,envoy
  # Where the scenario runner looks for it: PATH, then perf/.tools/ and the shared rig's.
  envoy=$(command -v envoy || true)
  for candidate in perf/.tools/envoy ../shared/bench-peers/.tools/envoy; do
    if [ -z "$envoy" ] && [ -x "$candidate" ]; then envoy=$candidate; fi
  done
  [ -n "$envoy" ] || { echo "no envoy: perf/install-peers.sh installs it" >&2; exit 1; }
fi
source perf/h2-setup.sh

# CPU µs per request of one run of `who` under `streams` × `conns`.
run() {
  local who=$1 streams=$2 conns=$3 port=$proxy_port
  case $who in
    floor) taskset -c 0 "$bench" serve h2 --relay "127.0.0.1:$backend_port" --listen "127.0.0.1:$proxy_port" \
      --cpus 0 >/dev/null 2>&1 & ;;
    envoy)
      port=$(grep -m1 -o 'port_value: [0-9]*' "$work/scenario/envoy/envoy.yaml" | cut -d' ' -f2)
      taskset -c 0 "$envoy" -c "$work/scenario/envoy/envoy.yaml" --concurrency 1 \
        --log-level warning --disable-hot-restart >/dev/null 2>&1 & ;;
    *) taskset -c 0 "$who" run --config "$config" --workers 1 --admin 127.0.0.1:0 >/dev/null 2>&1 & ;;
  esac
  local proxy=$!
  local load=("$bench" "$mode" "http://127.0.0.1:$port/" -s "$streams" -c "$conns" -t 1 --timeout 5s --cpus 1 --quiet)
  "${load[@]}" -d 1s >/dev/null # warm-up, and the proxy is up
  local before after ops
  before=$(awk '{print $14 + $15}' "/proc/$proxy/stat")
  ops=$("${load[@]}" -d 3s --json | grep -o '"operations":[0-9]*' | cut -d: -f2)
  after=$(awk '{print $14 + $15}' "/proc/$proxy/stat")
  kill "$proxy"
  wait "$proxy" 2>/dev/null || true
  python3 -c "print(f'{($after - $before) * 1e6 / $(getconf CLK_TCK) / $ops:.2f}')"
}

echo "$mode: old $old, new $new; CPU µs per request, machine: $(uptime)"
for shape in "${shapes[@]}"; do
  streams=${shape%x*} conns=${shape#*x}
  for round in $(seq "$rounds"); do
    a=$(run "$old" "$streams" "$conns")
    b=$(run "$new" "$streams" "$conns")
    echo "streams=$streams conns=$conns round $round: old $a new $b new/old $(python3 -c "print(f'{$b / $a:.3f}')")"
  done
done
