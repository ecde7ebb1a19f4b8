"""Resident memory per idle client connection of a running gateway (perf/connections.md).

    python3 perf/idle_connections.py PORT PID N ka|idle

Opens N connections to 127.0.0.1:PORT one after another; with `ka` each sends one request
(Host: app.test), reads the answer and stays open (an idle keep-alive connection), with
`idle` each sends nothing. Prints the growth of PID's VmRSS divided by N. Run it against a
fresh gateway: memory freed earlier and kept by the allocator would hide the cost.
"""
import socket, sys, time
port, pid, n, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
base = rss()
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    if mode == "ka":
        s.sendall(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        d = b""
        while b"\r\n\r\n" not in d:
            d += s.recv(4096)
    socks.append(s)
time.sleep(1)
after = rss()
print(f"{mode}: {n} conns: rss {base} -> {after} KiB: {(after-base)*1024/n:.0f} B/conn")
