"""An envoy.service.ratelimit.v3 RateLimitService for tests/rls.rs, on grpcio's generic handlers
(raw bytes, no generated code), counting hits per descriptor as envoyproxy/ratelimit does.

Arguments: quotas, each `KEY=VALUE:N` (N requests for descriptors with that entry) or `KEY:N`
(N for each value of KEY); a descriptor none names is never limited. A request is OVER_LIMIT
when one of its descriptors has had more hits than its quota. Prints its port, then one line
per request: the RateLimitRequest as JSON {"domain", "descriptors": [[[key, value], ...]],
"hits_addend"}."""

import json
import sys
import threading
from concurrent import futures

import grpc

from wire import field, number


def fields(data):
    """(number, value) of each field: an int for a varint, bytes for a length-delimited one."""
    i = 0
    while i < len(data):
        key, i = read_varint(data, i)
        kind = key & 7
        if kind == 0:
            value, i = read_varint(data, i)
        elif kind == 2:
            n, i = read_varint(data, i)
            value, i = data[i : i + n], i + n
        else:
            raise ValueError(f"wire type {kind}")
        yield key >> 3, value


def read_varint(data, i):
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def parse(request):
    out = {"domain": "", "descriptors": [], "hits_addend": 0}
    for n, v in fields(request):
        if n == 1:
            out["domain"] = v.decode()
        elif n == 2:
            entries = []
            for en, ev in fields(v):
                if en == 1:
                    kv = dict(fields(ev))
                    entries.append([kv.get(1, b"").decode(), kv.get(2, b"").decode()])
            out["descriptors"].append(entries)
        elif n == 3:
            out["hits_addend"] = v
    return out


QUOTAS = {}
HITS = {}
LOCK = threading.Lock()


def quota(descriptor):
    """The tightest quota naming one of the descriptor's entries, or None."""
    found = [QUOTAS.get((k, v), QUOTAS.get((k, None))) for k, v in descriptor]
    found = [q for q in found if q is not None]
    return min(found) if found else None


def should_rate_limit(request, context):
    r = parse(request)
    print(json.dumps(r), flush=True)
    over = False
    with LOCK:
        for d in r["descriptors"]:
            key = json.dumps(d)
            HITS[key] = HITS.get(key, 0) + max(r["hits_addend"], 1)
            q = quota(d)
            if q is not None and HITS[key] > q:
                over = True
                limit = q
    header = lambda k, v: field(1, k) + field(2, v)
    if over:
        # OVER_LIMIT, a line for the client's answer, and a body.
        return number(1, 2) + field(3, header(b"x-ratelimit-limit", str(limit).encode())) + field(5, b"over quota")
    # OK, and a line for the upstream request.
    return number(1, 1) + field(4, header(b"x-ratelimit-checked", b"ok"))


def main():
    for arg in sys.argv[1:]:
        spec, n = arg.rsplit(":", 1)
        key, _, value = spec.partition("=")
        QUOTAS[(key, value if "=" in spec else None)] = int(n)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handler = grpc.method_handlers_generic_handler(
        "envoy.service.ratelimit.v3.RateLimitService",
        {"ShouldRateLimit": grpc.unary_unary_rpc_method_handler(should_rate_limit)},
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"port {port}", flush=True)
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
