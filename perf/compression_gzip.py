#!/usr/bin/env python3
"""gzip level 6 on a 100 KiB JSON body: proxy CPU per MB of body, Strait beside nginx.

Both proxies sit on CPU 0 in front of one nginx backend (static file, no gzip) on CPU 1; this
client, on CPU 1 too, sends REQUESTS keep-alive GETs with `accept-encoding: gzip` per round
through each, ROUNDS rounds in alternating order, and checks every body decompresses to the
file. CPU is the proxy's utime+stime (all its processes, from /proc) over the round, divided by
the uncompressed megabytes served. Medians across rounds.

    STRAIT_BIN=target/release/strait python3 perf/compression_gzip.py      # REQUESTS=2000 ROUNDS=5
"""
import gzip, http.client, json, os, shutil, signal, statistics, subprocess, sys, tempfile, time

STRAIT = os.environ.get("STRAIT_BIN", "target/release/strait")
REQUESTS = int(os.environ.get("REQUESTS", "2000"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
PORTS = {"backend": 18480, "nginx": 18481, "strait": 18482, "admin": 18483}


def body():
    items, out = [], 0
    i = 0
    while out < 100 * 1024:
        item = {"id": i, "name": f"item-{i}", "tags": ["alpha", "beta", "gamma"][: i % 3 + 1],
                "price": round(i * 7.31 % 1000, 2), "in_stock": i % 5 != 0, "sku": f"SKU-{i * 7919 % 100000:05d}"}
        items.append(item)
        out += len(json.dumps(item)) + 2
        i += 1
    return json.dumps(items, indent=1).encode()[: 100 * 1024]


NGINX_COMMON = """worker_processes 1; daemon off; pid {dir}/{name}.pid; error_log {dir}/{name}.err warn;
events {{ worker_connections 1024; }}
http {{ access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp; fastcgi_temp_path {dir}/tmp;
  uwsgi_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp; types {{ application/json json; }}
  {extra} }}
"""
BACKEND = """server {{ listen 127.0.0.1:{port}; root {dir}/www; gzip off; }}"""
PROXY = """upstream b {{ server 127.0.0.1:{backend}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port};
    gzip on; gzip_comp_level 6; gzip_types application/json; gzip_min_length 100; gzip_proxied any;
    location / {{ proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}"""
ISTIO = """apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: {port}, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{{route: [{{destination: {{host: backend.local, port: {{number: 80}}}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: backend, namespace: default}}
spec:
  hosts: [backend.local]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {backend}}}}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {{name: gzip, namespace: istio-system}}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    match: {{context: GATEWAY}}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.compressor
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor
          response_direction_config: {{common_config: {{min_content_length: 100, content_type: [application/json]}}}}
          compressor_library:
            name: gzip
            typed_config:
              '@type': type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip
              compression_level: COMPRESSION_LEVEL_6
              window_bits: 15
"""


def cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / tick


def children(pid):
    out = [pid]
    try:
        for line in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split():
            out += children(int(line))
    except OSError:
        pass
    return out


def wait_port(port):
    for _ in range(200):
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def round_through(port, pids, original):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    check = lambda r, b: gzip.decompress(b) == original and r.getheader("content-encoding") == "gzip"
    conn.request("GET", "/data.json", headers={"accept-encoding": "gzip", "host": "app.test"})
    r = conn.getresponse()
    b = r.read()
    assert check(r, b), f"port {port}: not gzip of the file: {r.status} {r.getheaders()} {b[:200]!r}"
    start = cpu_seconds(pids)
    wire = 0
    for _ in range(REQUESTS):
        conn.request("GET", "/data.json", headers={"accept-encoding": "gzip", "host": "app.test"})
        r = conn.getresponse()
        b = r.read()
        wire += len(b)
    used = cpu_seconds(pids) - start
    mb = REQUESTS * len(original) / 1e6
    return used * 1e6 / mb, wire / REQUESTS


def main():
    d = tempfile.mkdtemp(prefix="gzip-perf-")
    os.chmod(d, 0o755)  # nginx workers run as nobody under root
    os.makedirs(f"{d}/www"), os.makedirs(f"{d}/tmp"), os.makedirs(f"{d}/istio")
    original = body()
    open(f"{d}/www/data.json", "wb").write(original)
    procs = []
    try:
        for name, extra, cpu in [
            ("backend", BACKEND.format(port=PORTS["backend"], dir=d), "1"),
            ("nginx", PROXY.format(port=PORTS["nginx"], backend=PORTS["backend"]), "0"),
        ]:
            conf = f"{d}/{name}.conf"
            open(conf, "w").write(NGINX_COMMON.format(dir=d, name=name, extra=extra))
            procs.append((name, subprocess.Popen(["taskset", "-c", cpu, "nginx", "-c", conf, "-p", d])))
        open(f"{d}/istio/gw.yaml", "w").write(ISTIO.format(port=PORTS["strait"], backend=PORTS["backend"]))
        strait_cmd = ["taskset", "-c", "0", STRAIT, "run", "--config", f"{d}/istio", "--workers", "1",
                      "--admin", f"127.0.0.1:{PORTS['admin']}"]
        procs.append(("strait", subprocess.Popen(strait_cmd, stderr=subprocess.DEVNULL)))
        for p in PORTS.values():
            wait_port(p)
        os.sched_setaffinity(0, {1})
        pids = {name: children(p.pid) for name, p in procs}
        results = {"nginx": [], "strait": []}
        sizes = {}
        for i in range(ROUNDS):
            order = ["nginx", "strait"] if i % 2 == 0 else ["strait", "nginx"]
            for name in order:
                per_mb, size = round_through(PORTS[name], pids[name], original)
                results[name].append(per_mb)
                sizes[name] = size
        print(f"body {len(original)} bytes, {REQUESTS} requests x {ROUNDS} rounds, gzip level 6")
        for name, runs in results.items():
            print(f"{name:7s} CPU µs per MB: median {statistics.median(runs):8.0f}  "
                  f"(rounds: {', '.join(f'{r:.0f}' for r in runs)})  compressed body {sizes[name]:.0f} bytes")
        print(f"strait / nginx: {statistics.median(results['strait']) / statistics.median(results['nginx']):.2f}")
        print("strait command:", " ".join(strait_cmd))
    finally:
        for _, p in procs:
            p.send_signal(signal.SIGTERM)
        for _, p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
