#!/usr/bin/env bash
# Issue 23's bar in user-space instructions per request (perf/instructions.sh, callgrind):
# the plain route against the same route under 20 AuthorizationPolicies and a JWT requirement
# (one token, repeated: the per-core verified-token cache's steady state), and each against
# itself plus 200 policies that do not apply to this gateway (another namespace, another
# workload's selector). Variants alternate, REPS times (default 3); medians.
#
#   perf/authz.sh [BINARY]        # default target/release/strait; BACKEND_BIN, CPU as instructions.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../target/release/strait}
reps=${REPS:-3}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 "$here/authz_configs.py" "$dir"
token="authorization: Bearer $(cat "$dir/token")"
declare -A counts
for rep in $(seq "$reps"); do
  for variant in plain plain-other200 jwt20 jwt20-other200; do
    args=() header=
    [ "$variant" = plain ] || args=(--config "$dir/$variant.yaml")
    [[ "$variant" = jwt20* ]] && header=$token
    line=$(HEADER=$header "$here/instructions.sh" "$variant" "$bin" "${args[@]}")
    echo "round $rep: $line"
    counts[$variant]+="$(echo "$line" | awk '{print $2}') "
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
plain=$(echo "${counts[plain]}" | median)
for variant in plain plain-other200 jwt20 jwt20-other200; do
  m=$(echo "${counts[$variant]}" | median)
  printf '%-15s median %6d instructions/request  %.3f× plain\n' "$variant" "$m" "$(echo "$m / $plain" | bc -l)"
done
