#!/usr/bin/env bash
# What refreshing 1,000 `resolution: DNS` hostnames costs the request path: user-space
# instructions per request of the worker thread, counted by callgrind (deterministic where CPU
# time on this shared VM is not), with the names re-asked every 5 s (1 s TTLs, Envoy's 5 s
# floor, --dns-refresh-rate 5s) against the same config whose answers are never due (1 h TTLs,
# --dns-refresh-rate 1h).
# The control thread's own work (the lookups) is reported apart: it is off the request path.
#
#   perf/dns-refresh.sh [STRAIT [STRAIT-BENCH]]   (default target/release/strait and strait-bench)
#
# Ports 18090 (backend), 18091 (gateway), 15990 (admin), 15353 (DNS): beside perf/instructions.sh
# and the scenarios. Needs valgrind; the legacy (epoll) driver, as valgrind does not know
# io_uring. One worker; 300 warm-up requests, then REQUESTS (3,000) counted ones on one keep-alive
# connection to host0.dns.bench (a DNS cluster), GET / with a 5-byte answer.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../target/release/strait}
bench=${2:-$here/../target/release/strait-bench}
requests=${REQUESTS:-3000}
out=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

"$bench" serve --listen 127.0.0.1:18090 http --size 5 >/dev/null 2>&1 &
pids+=($!)

config() { # the gateway, a route to host0, and 1,000 DNS ServiceEntries
  cat <<YAML
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 18091, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route:
    - destination: {host: host0.dns.bench, port: {number: 18090}}
YAML
  for n in $(seq 0 999); do
    cat <<YAML
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: host$n, namespace: default}
spec:
  hosts: [host$n.dns.bench]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - {number: 18090, name: http, protocol: HTTP}
YAML
  done
}
mkdir "$out/config"
config >"$out/config/dns.yaml"

requests() {
  python3 -c "
import http.client, sys
c = http.client.HTTPConnection('127.0.0.1', 18091, timeout=60)
for _ in range(int(sys.argv[1])):
    c.request('GET', '/', headers={'Host': 'bench.local'}); c.getresponse().read()" "$1"
}
resolutions() {
  curl -s 127.0.0.1:15990/stats/prometheus | awk '/^strait_dns_resolutions_total/ {n += $2} END {print n + 0}'
}

# measure NAME TTL RATE: one run, the answers carrying TTL seconds, --dns-refresh-rate RATE.
measure() {
  local name=$1 ttl=$2 rate=$3
  "$bench" serve --listen 127.0.0.1:15353 dns --names 1000 --ttl "$ttl" 2>/dev/null &
  local dns=$!
  valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out/$name" "$bin" run \
    --config "$out/config" --workers 1 --admin 127.0.0.1:15990 --driver legacy \
    --dns-server 127.0.0.1:15353 --dns-refresh-rate "$rate" >"$out/$name.stdout" 2>"$out/$name.stderr" &
  local vg=$!
  pids+=($dns $vg)
  for _ in $(seq 240); do curl -sf 127.0.0.1:15990/ready >/dev/null && break; sleep 0.5; done
  requests 300
  local before
  before=$(resolutions)
  callgrind_control -z "$vg" >/dev/null 2>&1
  local start=$SECONDS
  requests "$requests"
  callgrind_control -d "$vg" >/dev/null 2>&1
  local took=$((SECONDS - start)) asked=$(($(resolutions) - before))
  kill "$vg" "$dns"
  wait "$vg" 2>/dev/null || true
  # The worker thread's file is the one that ran the HTTP session.
  local worker=0 other=0 file total
  for file in "$out/$name".1-*; do
    total=$(awk '/^summary:/ {print $2; exit}' "$file")
    if grep -q 'http::session' "$file"; then
      worker=$((worker + total))
    else
      other=$((other + total))
    fi
  done
  echo "$name: worker $((worker / requests)) instructions per request; other threads $other in all;" \
    "$asked lookups answered in the ${took}s counted"
}

measure not-due 3600 1h
measure refreshing 1 5s
