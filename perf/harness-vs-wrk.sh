#!/usr/bin/env bash
# Is strait-bench ever the bottleneck? wrk and strait-bench, alternated, against the same
# backend (strait-bench's own `serve http`, 5-byte answers) with the same connections and one
# thread; medians of requests/s and of the load generator's CPU µs per request.
#   perf/harness-vs-wrk.sh            (REPS=5 DURATION=5 CONNS="16 64 256" LOAD_CPU=0 BACKEND_CPU=1)
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${BENCH:-target/release/strait-bench}
reps=${REPS:-5}
duration=${DURATION:-5}
conns=${CONNS:-16 64 256}
load_cpu=${LOAD_CPU:-0}
backend_cpu=${BACKEND_CPU:-1}
port=${PORT:-18080}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

taskset -c "$backend_cpu" "$bench" serve http --listen "127.0.0.1:$port" 2>/dev/null &
backend=$!
trap 'kill $backend 2>/dev/null' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

# Runs a load generator in the background and prints "requests/s cpu-µs-per-request".
measure() {
  local out ticks requests rps
  out=$(mktemp)
  taskset -c "$load_cpu" "$@" >"$out" 2>/dev/null &
  local pid=$!
  ticks=0
  while kill -0 "$pid" 2>/dev/null; do
    # utime+stime (fields 14, 15) while it still exists; the last reading is within 50 ms of its end.
    t=$(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null || echo "$ticks")
    ticks=$t
    sleep 0.05
  done
  wait "$pid"
  case "$1" in
    wrk) requests=$(awk '/requests in/ {print $1}' "$out"); rps=$(awk '/Requests\/sec/ {print $2}' "$out") ;;
    *) requests=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["operations"])' <"$out")
       rps=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["operations_per_second"])' <"$out") ;;
  esac
  rm -f "$out"
  python3 -c "print(f'{float($rps):.0f} {$ticks * 1e6 / $(getconf CLK_TCK) / max($requests, 1):.2f}')"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

printf '| connections | wrk req/s | strait-bench req/s | ratio | wrk CPU µs/req | strait-bench CPU µs/req |\n|---:|---:|---:|---:|---:|---:|\n'
for c in $conns; do
  : >/tmp/hvw.wrk; : >/tmp/hvw.sb
  for _ in $(seq "$reps"); do
    measure wrk -t1 -c"$c" -d"${duration}s" "http://127.0.0.1:$port/" >>/tmp/hvw.wrk
    measure "$bench" http "http://127.0.0.1:$port/" -t1 -c"$c" -d"${duration}s" --json --quiet >>/tmp/hvw.sb
  done
  w=$(cut -d' ' -f1 /tmp/hvw.wrk | median); s=$(cut -d' ' -f1 /tmp/hvw.sb | median)
  wc=$(cut -d' ' -f2 /tmp/hvw.wrk | median); sc=$(cut -d' ' -f2 /tmp/hvw.sb | median)
  printf '| %s | %.0f | %.0f | %.2f | %.2f | %.2f |\n' "$c" "$w" "$s" "$(python3 -c "print($s/$w)")" "$wc" "$sc"
done
rm -f /tmp/hvw.wrk /tmp/hvw.sb
