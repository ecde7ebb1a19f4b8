#!/usr/bin/env bash
# User-space instructions per HTTP/2 (or gRPC unary) request through one worker, counted by
# callgrind, as perf/instructions.sh counts HTTP/1.1's: they repeat within about 0.5% where CPU
# time on this shared VM moves by several percent, so a change to Strait's own work shows. The
# kernel's share is left out, and valgrind's slowness changes how requests batch: compare
# variants with it, and take ratios to Envoy from perf/h2-peers.sh.
#
#   perf/h2-instructions.sh BINARY|floor [STREAMS] [CONNS]        # default 16 streams, 1 conn
#   MODE=grpc perf/h2-instructions.sh target/release/strait 64 1
#   perf/h2-instructions.sh floor 16 1     # the h2 crate's floor: strait-bench serve h2 --relay
#
# The config is perf/scenarios/h2.yaml's (an HTTP2 ServiceEntry for the backend), written by the
# scenario runner. Proxy on CPU 0 under valgrind; backend and load (strait-bench) on CPU 1; 3 s
# of warm-up, then the instructions of 6 s of load over the requests it completed.
# CALLGRIND_OUT=FILE keeps the profile (`callgrind_annotate --inclusive=yes FILE`).
set -euo pipefail
bin=$1 streams=${2:-16} conns=${3:-1}
cd "$(dirname "$0")/.."
source perf/h2-setup.sh
case $bin in
  floor) proxy=("$bench" serve h2 --relay "127.0.0.1:$backend_port" --listen "127.0.0.1:$proxy_port" --cpus 0) ;;
  *) proxy=("$bin" run --config "$config" --workers 1 --admin 127.0.0.1:0) ;;
esac
taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$work/cg" "${proxy[@]}" >"$work/proxy.log" 2>&1 &
vg=$!
pids+=($vg)
for _ in $(seq 120); do (echo >"/dev/tcp/127.0.0.1/$proxy_port") 2>/dev/null && break; sleep 0.5; done
load=("$bench" "$mode" "http://127.0.0.1:$proxy_port/" -s "$streams" -c "$conns" -t 1 --timeout 20s --cpus 1 --quiet)
"${load[@]}" -d 3s >/dev/null
callgrind_control -z "$vg" >/dev/null 2>&1
ops=$("${load[@]}" -d 6s --json | grep -o '"operations":[0-9]*' | cut -d: -f2)
callgrind_control -d "$vg" >/dev/null 2>&1
total=$(callgrind_annotate "$work/cg.1" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
[ -n "${CALLGRIND_OUT:-}" ] && cp "$work/cg.1" "$CALLGRIND_OUT"
echo "$bin $mode ${streams}x$conns: $((total / ops)) user-space instructions per request ($total for $ops)"
