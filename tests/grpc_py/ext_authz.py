"""An envoy.service.auth.v3 Authorization server for tests/ext_authz.rs, on grpcio's generic
handlers (raw bytes, no generated code): the CheckResponse is written by hand. Prints its
port, then one line per check: the CheckRequest's bytes, hex-encoded."""

import sys
import time
from concurrent import futures

import grpc

from wire import field, number


def header(key, value):
    # HeaderValueOption { header: HeaderValue { key, value } }
    return field(1, field(1, key) + field(2, value))


def check(request, context):
    """A path holding `deny`, or a connection to 127.0.0.2, is denied (PERMISSION_DENIED, 401,
    lines and a body); a path holding `slow` is allowed after 3 s; any other is allowed with
    `x-user: alice` for the upstream and `x-session: s1` for the client."""
    print(request.hex(), flush=True)
    if b"deny" in request or b"127.0.0.2" in request:
        denied = field(1, number(1, 401)) + field(2, header(b"x-reason", b"no token")) + field(3, b"go away")
        return field(1, number(1, 7)) + field(2, denied)
    if b"slow" in request:
        time.sleep(3)
    return field(1, b"") + field(3, field(2, header(b"x-user", b"alice")) + field(6, header(b"x-session", b"s1")))


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handler = grpc.method_handlers_generic_handler(
        "envoy.service.auth.v3.Authorization", {"Check": grpc.unary_unary_rpc_method_handler(check)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"port {port}", flush=True)
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
