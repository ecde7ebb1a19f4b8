#!/usr/bin/env python3
"""Strait beside variants of itself, in one interleaved bench-peers run: same backend, wrk,
pinning and medians as bench-peers gives every peer, so their ratios are side by side.

    ../shared/bench-peers/setup.sh        # once
    cargo build --release
    VARIANTS='strait-actions|||perf/configs/virtualservice-actions.yaml' \\
        REPS=5 CONNS=64 PEERS=nginx CANDIDATE_NAME=strait CANDIDATE_BIN=$PWD/target/release/strait \\
        python3 perf/variants.py

`VARIANTS` lists `NAME|BINARY|EXTRA ARGS|VIRTUALSERVICE` entries separated by `;`: BINARY
empty means CANDIDATE_BIN; VIRTUALSERVICE replaces bench-peers' VirtualService (same
placeholders, e.g. ${BACKEND_PORT}). VARIANT_WORKERS sets their `--workers` (default 1). The
plain candidate is bench-peers' own. Every other knob is bench-peers' (see its README);
results land in its results/.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "bench-peers"))

import bench  # noqa: E402  (bench-peers' harness: its peers, runs and tables)

plain_make_peers = bench.make_peers
# Workers of each variant, all on the proxy CPU(s) bench-peers pins them to.
WORKERS = os.environ.get("VARIANT_WORKERS", "1")


def variants():
    for entry in filter(None, os.environ.get("VARIANTS", "").split(";")):
        name, binary, args, vs = (entry.split("|") + ["", "", ""])[:4]
        yield name.strip(), binary.strip(), args.strip(), vs.strip()


def make_peers(a, v, run_dir):
    peers = plain_make_peers(a, v, run_dir)
    for name, binary, args, vs in variants():
        binary = os.path.abspath(binary) if binary else a.candidate_bin
        if not binary:
            sys.exit(f"{name}: no binary (set CANDIDATE_BIN or name one)")
        cfg = os.path.join(run_dir, f"{name}-config")
        bench.write_candidate_config(cfg, v, False)
        if vs:
            bench.render(os.path.abspath(vs), os.path.join(cfg, "virtualservice.yaml"), v)
        line = f"{binary} run --config {cfg} --workers {WORKERS} {args}".strip()

        def start(line=line, name=name):
            return bench.start(["sh", "-c", "exec " + line], a.proxy_cpu, os.path.join(run_dir, f"{name}.log"))

        peers[name] = bench.Peer(name, start, None)
        print(f"# {name}: taskset -c {a.proxy_cpu} {line}", flush=True)
    return peers


bench.make_peers = make_peers

if __name__ == "__main__":
    names = [n for n, _, _, _ in variants()]
    os.environ["PEERS"] = ",".join(filter(None, [os.environ.get("PEERS", "nginx")] + names))
    try:
        bench.main()
    finally:
        bench.cleanup()
