#!/usr/bin/env bash
# Issue 23's bar in CPU: the plain route against the same route under 20 AuthorizationPolicies
# and a JWT requirement (perf/authz_configs.py's jwt20, one token repeated), one worker pinned
# to CPU 0, the C backend and strait-bench on CPU 1. Each round starts a fresh gateway per
# variant (order alternating), warms it with 20,000 requests, then counts the gateway's
# utime+stime (/proc) over REQUESTS more; CPU µs per request, medians of ROUNDS (default 5).
#
#   perf/authz_cpu.sh [BINARY]    # BACKEND_BIN as perf/instructions.sh; CONNS (default 64)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../target/release/strait}
bench=$here/../target/release/strait-bench
backend=${BACKEND_BIN:-$here/../../shared/bench-peers/.tools/hello_backend}
rounds=${ROUNDS:-5} requests=${REQUESTS:-200000} conns=${CONNS:-64}
dir=$(mktemp -d)
python3 "$here/authz_configs.py" "$dir"
token="authorization: Bearer $(cat "$dir/token")"
taskset -c 1 "$backend" 18080 >/dev/null 2>&1 &
backend_pid=$!
gw=
trap 'kill $backend_pid $gw 2>/dev/null || true; rm -rf "$dir"' EXIT
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A results
for round in $(seq "$rounds"); do
  order=(plain jwt20)
  [ $((round % 2)) = 0 ] && order=(jwt20 plain)
  for variant in "${order[@]}"; do
    args=(--config "$here/configs/instructions")
    [ "$variant" = jwt20 ] && args+=(--config "$dir/jwt20.yaml")
    taskset -c 0 "$bin" run "${args[@]}" --workers 1 --admin 127.0.0.1:15998 >/dev/null 2>&1 &
    gw=$!
    for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18081/ -H 'host: bench.local' && break; sleep 0.1; done
    load=(taskset -c 1 "$bench" http http://127.0.0.1:18081/ -H "host: bench.local" -H "$token" -c "$conns" --quiet --json)
    "${load[@]}" -n 20000 -d 30s >/dev/null
    before=$(cpu_ticks $gw)
    "${load[@]}" -n "$requests" -d 60s >"$dir/out.json"
    after=$(cpu_ticks $gw)
    done_requests=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['operations'])" "$dir/out.json")
    us=$(echo "($after - $before) * 1000000 / $(getconf CLK_TCK) / $done_requests" | bc -l)
    printf 'round %d %-6s %8.2f CPU µs/request (%d requests)\n' "$round" "$variant" "$us" "$done_requests"
    results[$variant]+="$us "
    kill $gw; wait $gw 2>/dev/null || true
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
plain=$(echo "${results[plain]}" | median) jwt=$(echo "${results[jwt20]}" | median)
printf 'plain %.2f µs/request, jwt20 %.2f µs/request: %.3f× (load before: %s)\n' "$plain" "$jwt" \
  "$(echo "$jwt / $plain" | bc -l)" "$(cut -d' ' -f1-3 /proc/loadavg)"
