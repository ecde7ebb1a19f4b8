"""A gRPC client for tests/grpc_python.rs, on grpcio without generated code: `client.py ADDR
CASE [CA]` makes one call through the gateway (h2c, or TLS trusting the PEM file CA; authority
`app.test`) and prints what it got, which the test compares."""

import queue
import sys

import grpc

LIMITS = [("grpc.max_send_message_length", 8 << 20), ("grpc.max_receive_message_length", 8 << 20)]
TIMEOUT = 10


def unary(channel):
    print(channel.unary_unary("/test.Svc/Echo")(b"hello", timeout=TIMEOUT).decode())


def server_stream(channel):
    print(" ".join(m.decode() for m in channel.unary_stream("/test.Svc/Many")(b"5", timeout=TIMEOUT)))


def client_stream(channel):
    print(channel.stream_unary("/test.Svc/Collect")(iter([b"a", b"b", b"c"]), timeout=TIMEOUT).decode())


def bidi(channel):
    """Sends each message only once the answer to the previous one came back (ping-pong)."""
    outgoing = queue.Queue()
    replies = channel.stream_stream("/test.Svc/Chat")(iter(outgoing.get, None), timeout=TIMEOUT)
    got = []
    for word in (b"one", b"two", b"three"):
        outgoing.put(word)
        got.append(next(replies).decode())
    outgoing.put(None)
    got.extend(m.decode() for m in replies)
    print(" ".join(got))


def bidi_whole(channel):
    """Sends all its messages, then reads the answers, which the server sends as each message
    comes."""
    replies = channel.stream_stream("/test.Svc/Chat")(iter([b"one", b"two", b"three"]), timeout=TIMEOUT)
    print(" ".join(m.decode() for m in replies))


def deadline(channel):
    try:
        channel.unary_unary("/test.Svc/Echo")(b"sleep:3000", timeout=0.5)
        print("answered")
    except grpc.RpcError as e:
        details = f"|{e.details()}" if e.code() == grpc.StatusCode.UNAVAILABLE else ""
        print(e.code().name + details)


def cancel(channel):
    call = channel.unary_stream("/test.Svc/Endless")(b"", timeout=TIMEOUT)
    got = [next(call).decode() for _ in range(3)]
    call.cancel()
    print(" ".join(got), call.code().name)


def big(channel):
    payload = bytes(i % 251 for i in range(4 << 20))
    answer = channel.unary_unary("/test.Svc/Echo")(payload, timeout=TIMEOUT)
    print(len(answer), answer == payload)


def error(channel):
    try:
        channel.unary_unary("/test.Svc/Echo")(b"missing", timeout=TIMEOUT)
        print("answered")
    except grpc.RpcError as e:
        detail = dict(e.trailing_metadata()).get("x-detail")
        print(f"{e.code().name}|{e.details()}|{detail}")


CASES = {f.__name__: f for f in (unary, server_stream, client_stream, bidi, bidi_whole, deadline, cancel, big, error)}


def main():
    addr, case = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 3:
        with open(sys.argv[3], "rb") as ca:
            credentials = grpc.ssl_channel_credentials(root_certificates=ca.read())
        options = LIMITS + [("grpc.ssl_target_name_override", "app.test"), ("grpc.default_authority", "app.test")]
        channel = grpc.secure_channel(addr, credentials, options=options)
    else:
        channel = grpc.insecure_channel(addr, options=LIMITS + [("grpc.default_authority", "app.test")])
    with channel:
        CASES[case](channel)


if __name__ == "__main__":
    main()
