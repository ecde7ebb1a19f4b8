#!/usr/bin/env bash
# User-space instructions per request through one worker, counted by callgrind: deterministic
# where CPU time on this shared VM is not. The kernel's share (most of a proxy's CPU) is left
# out, so compare variants that differ in user space only (a feature, a log format).
#
#   perf/instructions.sh NAME BINARY [STRAIT ARGS...]
#   e.g. perf/instructions.sh off /tmp/strait-off; perf/instructions.sh log target/release/strait --access-log
#
# VIRTUALSERVICE=FILE replaces perf/configs/instructions/virtualservice.yaml with FILE (a
# bench-peers VirtualService file such as perf/configs/lb-round-robin.yaml, ${BACKEND_PORT} filled in).
#
# Needs valgrind; the backend is ../shared/bench-peers/setup.sh's C one where it is built (or
# BACKEND_BIN, that C file built elsewhere), else
# strait-bench's own (`serve http`, built by `cargo build --release`). The legacy (epoll) driver is
# used: valgrind does not know io_uring. 300 warm-up requests, then 3,000 counted ones on one
# keep-alive connection, GET / with a 5-byte answer (perf/configs/instructions/).
# HEADER="Name: value" adds one request header (a bearer token, say); CALLGRIND_OUT=FILE keeps
# callgrind's profile there (for `callgrind_annotate --inclusive=yes FILE`).
#
# Proxy, backend and client share one CPU (CPU=N, default 0): each request then takes the same
# path through the event loop (the upstream's answer is never there yet at the first read), and
# counts repeat within 0.2%. Left to the scheduler they moved by 3% with the machine's load.
set -euo pipefail
name=$1 bin=$2
shift 2
pin=(taskset -c "${CPU:-0}")
here=$(cd "$(dirname "$0")" && pwd)
backend=${BACKEND_BIN:-$here/../../shared/bench-peers/.tools/hello_backend}
out=$(mktemp -d)
config=$here/configs/instructions
if [ -n "${VIRTUALSERVICE:-}" ]; then
  config=$out/config
  mkdir "$config"
  cp "$here/configs/instructions/gateway.yaml" "$config/"
  sed 's/${BACKEND_PORT}/18080/g' "$VIRTUALSERVICE" >"$config/virtualservice.yaml"
fi
if [ -x "$backend" ]; then
  "${pin[@]}" "$backend" 18080 >/dev/null 2>&1 &
else
  "${pin[@]}" "$here/../target/release/strait-bench" serve --listen 127.0.0.1:18080 http --size 5 >/dev/null 2>&1 &
fi
backend_pid=$!
"${pin[@]}" valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$bin" run --config "$config" \
  --workers 1 --admin 127.0.0.1:15998 --driver legacy "$@" >"$out/stdout" 2>"$out/stderr" &
vg=$!
trap 'kill $vg $backend_pid 2>/dev/null || true' EXIT
requests() {
  "${pin[@]}" python3 -c "
import http.client, sys
c = http.client.HTTPConnection('127.0.0.1', 18081, timeout=30)
h = {'Host': 'bench.local'}
extra = '''${HEADER:-}'''
if extra:
    name, value = extra.split(':', 1)
    h[name.strip()] = value.strip()
for _ in range(int(sys.argv[1])):
    c.request('GET', '/', headers=h); r = c.getresponse(); r.read(); assert r.status == 200, r.status" "$1"
}
for _ in $(seq 120); do requests 1 2>/dev/null && break; sleep 0.5; done
requests 300
callgrind_control -z "$vg" >/dev/null
requests 3000
callgrind_control -d "$vg" >/dev/null
total=$(callgrind_annotate "$out/cg.1" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
[ -n "${CALLGRIND_OUT:-}" ] && cp "$out/cg.1" "$CALLGRIND_OUT"
echo "$name: $((total / 3000)) user-space instructions per request ($total for 3000)"
