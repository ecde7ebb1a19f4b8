#!/usr/bin/env bash
# HTTP/2 and gRPC unary beside Envoy, nginx and HAProxy, one command: perf/scenarios/h2.yaml
# (16, 64 and 256 concurrent streams over 1 and 8 connections) then grpc-unary.yaml, each
# interleaved over its rounds (peers in a rotated order, a fresh proxy each round), 1 worker
# pinned to CPU 0, backend and load on CPU 1, medians. The load on the machine before and after
# is printed beside the tables: figures taken under other work are not comparable.
#
#   perf/h2-peers.sh [ROUNDS] [DURATION]       # defaults 5 and 5s: about 20 minutes
#   ROUNDS=1 DURATION=1s perf/h2-peers.sh      # a short run proving every peer works
#   PEERS=strait,envoy,nginx perf/h2-peers.sh  # only these (the scenario's `--peers`)
#
# Needs perf/install-peers.sh (nginx, HAProxy, Envoy) and one release build, reused:
# `cargo build --release --bin strait --bin strait-bench`. STRAIT=PATH measures another build.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-${ROUNDS:-5}} duration=${2:-${DURATION:-5s}}
bench=target/release/strait-bench
strait=${STRAIT:-target/release/strait}
for bin in "$bench" "$strait"; do
  [ -x "$bin" ] || { echo "no $bin: cargo build --release --bin strait --bin strait-bench" >&2; exit 1; }
done
echo "machine before: $(uptime)"
peers=()
[ -n "${PEERS:-}" ] && peers=(--peers "$PEERS")
for scenario in h2 grpc-unary; do
  "$bench" scenario "perf/scenarios/$scenario.yaml" --strait "$strait" --rounds "$rounds" --duration "$duration" \
    "${peers[@]}"
  echo
done
echo "machine after: $(uptime)"
