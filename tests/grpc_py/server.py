"""A gRPC backend for tests/grpc_python.rs, on grpcio's generic handlers (raw bytes, no
generated code), plain or (given a certificate and key file) over TLS. Prints its port, then
one line per event the tests wait for."""

import sys
import threading
import time
from concurrent import futures

import grpc

# 8 MiB each way: grpcio's default (4 MiB) would refuse a 4 MiB message plus its framing.
LIMITS = [("grpc.max_send_message_length", 8 << 20), ("grpc.max_receive_message_length", 8 << 20)]


def event(line):
    print(line, flush=True)


def echo(request, context):
    """Echoes the request; `sleep:MS` answers after MS ms, first reporting whether the
    client's deadline (at most 1 s away) reached it; `missing` is NOT_FOUND with a message and
    trailing metadata."""
    if request.startswith(b"sleep:"):
        left = context.time_remaining()
        event("deadline carried" if left is not None and left <= 1 else f"deadline lost: {left}")
        time.sleep(int(request[6:]) / 1000)
    if request == b"missing":
        context.set_trailing_metadata((("x-detail", "no such thing"),))
        context.abort(grpc.StatusCode.NOT_FOUND, "thing not found")
    return request


def many(request, context):
    """Streams back int(request) messages."""
    for i in range(int(request)):
        yield b"msg-%d" % i


def collect(requests, context):
    """Answers once the client is done: its messages joined by commas."""
    return b",".join(requests)


def chat(requests, context):
    """Answers each message as it comes."""
    for r in requests:
        yield b"re:" + r


def endless(request, context):
    """Streams until the client cancels, which it reports."""
    done = threading.Event()
    context.add_callback(lambda: (event("cancelled" if not context.is_active() else "ended"), done.set()))
    i = 0
    while context.is_active():
        yield b"tick-%d" % i
        i += 1
        time.sleep(0.05)
    done.wait(5)


def main():
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Many": grpc.unary_stream_rpc_method_handler(many),
        "Collect": grpc.stream_unary_rpc_method_handler(collect),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
        "Endless": grpc.unary_stream_rpc_method_handler(endless),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=LIMITS)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Svc", handlers),))
    if len(sys.argv) == 3:
        # A certificate and key file: served over TLS.
        with open(sys.argv[1], "rb") as crt, open(sys.argv[2], "rb") as key:
            credentials = grpc.ssl_server_credentials([(key.read(), crt.read())])
        port = server.add_secure_port("127.0.0.1:0", credentials)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    event(f"port {port}")
    # Ends with the test, which closes stdin.
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
