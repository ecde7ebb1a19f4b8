# Sourced by perf/h2-ab.sh and perf/h2-instructions.sh, from the repository's root: the scenario
# runner writes perf/scenarios/h2.yaml's configs for `peers` (default strait) into a temporary
# folder (a short run of its own, about half a minute), and the built-in HTTP/2 backend starts on
# CPU 1. Sets bench, mode (MODE, default h2), work, config, proxy_port and backend_port; pids
# (the backend's first) are killed, and the folder removed, on exit.
bench=target/release/strait-bench
mode=${MODE:-h2}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
"$bench" scenario perf/scenarios/h2.yaml --peers "${peers:-strait}" --rounds 1 --duration 1s \
  --work-dir "$work/scenario" >/dev/null 2>&1
config=$work/scenario/strait/config
proxy_port=$(grep -m1 -o 'number: [0-9]*' "$config/gateway.yaml" | cut -d' ' -f2)
backend_port=$(grep -m1 -o 'number: [0-9]*' "$config/serviceentry.yaml" | cut -d' ' -f2)
taskset -c 1 "$bench" serve h2 --size 5 --listen "127.0.0.1:$backend_port" -t 1 --cpus 1 >/dev/null 2>&1 &
pids+=($!)
