#!/usr/bin/env bash
# Two builds of Strait on one scenario, interleaved: one round each, N times over, so that the
# machine's drift falls on both alike; prints each row, the medians, and the median of each
# round's new/old ratio.
#
#   perf/ab.sh OLD_STRAIT NEW_STRAIT SCENARIO [N]      # e.g. perf/ab.sh /tmp/old/strait target/release/strait http-small 5
#
# The load generator is this checkout's target/release/strait-bench for both.
set -euo pipefail
old=$1 new=$2 scenario=$3 n=${4:-5}
cd "$(dirname "$0")/.."
bench=target/release/strait-bench
rows=$(mktemp)
for i in $(seq 1 "$n"); do
  for who in old new; do
    bin=$old; [ "$who" = new ] && bin=$new
    "$bench" scenario "perf/scenarios/$scenario.yaml" --peers strait --strait "$bin" --rounds 1 --duration 5s \
      | awk -v who="$who" -v i="$i" '$1 == "strait" && $2 ~ /^[0-9]+$/ { gsub(",", "", $3); print who, i, $2, $3, $7 }' \
      | tee -a "$rows"
  done
done
python3 - "$rows" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
# The paired column is the median of each round's new/old CPU: the machine drifts between
# states for tens of seconds, and a round's two runs share the state more than two medians do.
print("conns  old req/s  new req/s  old CPU µs/op  new CPU µs/op  new/old CPU  paired new/old")
for c in sorted({int(r[2]) for r in rows}):
    med = lambda who, col: statistics.median(float(r[col]) for r in rows if r[0] == who and int(r[2]) == c)
    cpu = {(r[0], r[1]): float(r[4]) for r in rows if int(r[2]) == c}
    paired = statistics.median(cpu[("new", i)] / cpu[("old", i)] for (who, i) in cpu if who == "old" and ("new", i) in cpu)
    print(f"{c:5}  {med('old', 3):9,.0f}  {med('new', 3):9,.0f}  {med('old', 4):13.2f}  {med('new', 4):13.2f}  {med('new', 4) / med('old', 4):11.3f}  {paired:14.3f}")
PY
rm -f "$rows"
