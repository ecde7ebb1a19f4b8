//! TCP proxying end to end on both drivers: bytes, half-closes and resets pass through, routes
//! match and split, timeouts and connection limits close what they must, reloads spare
//! established connections, and the per-cluster and per-route counters add up.

use strait_test_support::{self as support, both_drivers, gateway};

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::config::docs;
use support::tcp::{
    listen_port, read_counted, tcp_destination_rule, tcp_gateway, tcp_route, tcp_service_entry, tcp_virtual_service,
    wait_sample, Blackhole, TcpBackend,
};
use support::{metric, wait_until, Gateway};

/// The service port of every ServiceEntry here.
const SVC: u16 = 9000;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The cluster label of `host`'s service port.
fn cluster(host: &str) -> String {
    format!("envoy_cluster_name=\"outbound|{SVC}||{host}\"")
}

/// The label of VirtualService `vs`'s tcp route `index`.
fn route(vs: &str, index: usize) -> String {
    format!("envoy_tcp_prefix=\"default/{vs}/tcp/{index}\"")
}

/// A `tcp` list entry without a match, all to `host`.
fn to(host: &str) -> String {
    tcp_route("", SVC, &[(host, 100)])
}

/// Gateway `gw` of `protocol` on `port`, VirtualService `db` with the `tcp` list, a ServiceEntry
/// per (host, backend port) and the `extra` resources.
fn config(port: u16, protocol: &str, tcp: &str, services: &[(&str, u16)], extra: &[String]) -> String {
    let mut parts = vec![tcp_gateway("gw", port, protocol), tcp_virtual_service("db", "gw", tcp)];
    parts.extend(services.iter().map(|(host, p)| tcp_service_entry(host.split('.').next().unwrap(), host, SVC, &[*p])));
    parts.extend_from_slice(extra);
    docs(&parts)
}

/// Gateway and VirtualService `name` (TCP on `port`) sending everything to `name.local`, whose
/// ServiceEntry points at `backend`: several of these share one gateway process.
fn straight(name: &str, port: u16, backend: u16) -> Vec<String> {
    let host = format!("{name}.local");
    vec![
        tcp_gateway(name, port, "TCP"),
        tcp_virtual_service(name, name, &to(&host)),
        tcp_service_entry(name, &host, SVC, &[backend]),
    ]
}

/// A client connection with bounded reads and writes.
fn connect(gw: &Gateway, to: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&to, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {to}: {e}; logs:\n{}", gw.logs()));
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn read_n(gw: &Gateway, s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).unwrap_or_else(|e| panic!("reading {n} bytes: {e}; logs:\n{}", gw.logs()));
    buf
}

/// Writes `msg` and reads the echo back.
fn echo_once(gw: &Gateway, s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap_or_else(|e| panic!("writing {msg:?}: {e}; logs:\n{}", gw.logs()));
    assert_eq!(read_n(gw, s, msg.len()), msg, "echo");
}

/// Waits for the gateway to close `s` (EOF or an error such as a reset) and says how long that
/// took; panics when data arrives instead or nothing happens within `limit`.
fn wait_closed(gw: &Gateway, s: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected a close, read {:?}; logs:\n{}", &buf[..n], gw.logs()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("not closed within {limit:?}; logs:\n{}", gw.logs())
        }
        Err(_) => {}
    }
    start.elapsed()
}

/// A fixed pseudo-random block of prime length, so its repeats never line up with the buffer
/// sizes along the way.
fn pseudo_random_block() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..65_521)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `len` bytes of the pseudo-random block repeated, and their crc32.
fn payload(len: usize) -> (Vec<u8>, u32) {
    let bytes: Vec<u8> = pseudo_random_block().into_iter().cycle().take(len).collect();
    let crc = crc32fast::hash(&bytes);
    (bytes, crc)
}

/// What the half-close backend answers after reading `len` bytes with checksum `crc` to EOF: a
/// line naming them, then enough bytes that the answer outlasts the socket buffers.
fn summary(len: usize, crc: u32) -> Vec<u8> {
    let mut out = format!("{len} {crc:08x}\n").into_bytes();
    out.extend(payload(300_000).0);
    out
}

both_drivers! {
    fn gigabyte_each_way_arrives_unchanged(driver) {
        const GIB: u64 = 1 << 30;
        let backend = TcpBackend::echo();
        let port = listen_port();
        let yaml = config(port, "TCP", &to("a.local"), &[("a.local", backend.port())], &[]);
        let gw = gateway!(driver).file("gw.yaml", &yaml).start();
        let mut client = connect(&gw, addr(port));
        let mut writer = client.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            let block = pseudo_random_block();
            let mut crc = crc32fast::Hasher::new();
            let mut left = GIB;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                writer.write_all(&block[..n]).map_err(|e| format!("sending, {left} bytes left: {e}"))?;
                crc.update(&block[..n]);
                left -= n as u64;
            }
            Ok::<_, String>(crc.finalize())
        });
        let mut crc = crc32fast::Hasher::new();
        let mut got = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        while got < GIB {
            match client.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    crc.update(&buf[..n]);
                    got += n as u64;
                }
                Err(e) => panic!("after {got} bytes: {e}; logs:\n{}", gw.logs()),
            }
        }
        let sent = sender.join().unwrap().unwrap_or_else(|e| panic!("{e}; logs:\n{}", gw.logs()));
        assert_eq!(got, GIB, "echoed byte count; logs:\n{}", gw.logs());
        assert_eq!(crc.finalize(), sent, "the echoed bytes differ from those sent");
        drop(client);
        for (family, label) in [
            ("envoy_cluster_upstream_cx_tx_bytes_total", cluster("a.local")),
            ("envoy_cluster_upstream_cx_rx_bytes_total", cluster("a.local")),
            ("envoy_tcp_downstream_cx_rx_bytes_total", route("db", 0)),
            ("envoy_tcp_downstream_cx_tx_bytes_total", route("db", 0)),
        ] {
            wait_sample(&gw, family, &label, |v| v == GIB as f64);
        }
    }

    fn half_close_from_client_still_gets_the_answer(driver) {
        // Reads to EOF, then answers what it read and closes.
        let backend = TcpBackend::start(|mut s, stats| {
            let (mut buf, mut crc, mut len) = (vec![0u8; 64 << 10], crc32fast::Hasher::new(), 0);
            while let Some(n) = read_counted(&mut s, &mut buf, stats) {
                crc.update(&buf[..n]);
                len += n;
            }
            let _ = s.write_all(&summary(len, crc.finalize()));
        });
        let port = listen_port();
        let yaml = config(port, "TCP", &to("a.local"), &[("a.local", backend.port())], &[]);
        let gw = gateway!(driver).file("gw.yaml", &yaml).start();
        let mut client = connect(&gw, addr(port));
        let (sent, crc) = payload(200_000);
        client.write_all(&sent).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        if let Err(e) = client.read_to_end(&mut answer) {
            panic!("after {} bytes of the answer: {e}; logs:\n{}", answer.len(), gw.logs());
        }
        let head = String::from_utf8_lossy(&answer[..answer.len().min(20)]).into_owned();
        assert!(answer == summary(sent.len(), crc), "an answer of {} bytes starting {head:?}", answer.len());
    }

    fn half_close_from_backend_still_takes_client_bytes(driver) {
        // Greets, closes its write side, then reads to EOF.
        let backend = TcpBackend::start(|mut s, stats| {
            if s.write_all(b"greeting\n").is_ok() && s.shutdown(Shutdown::Write).is_ok() {
                let mut buf = vec![0u8; 64 << 10];
                while read_counted(&mut s, &mut buf, stats).is_some() {}
            }
        });
        let port = listen_port();
        let yaml = config(port, "TCP", &to("a.local"), &[("a.local", backend.port())], &[]);
        let gw = gateway!(driver).file("gw.yaml", &yaml).start();
        let mut client = connect(&gw, addr(port));
        let mut greeting = Vec::new();
        client.read_to_end(&mut greeting).unwrap_or_else(|e| panic!("greeting then EOF: {e}; logs:\n{}", gw.logs()));
        assert_eq!(greeting, b"greeting\n");
        client.write_all(&payload(300_000).0).unwrap_or_else(|e| panic!("after the EOF: {e}; logs:\n{}", gw.logs()));
        wait_until(Duration::from_secs(5), || backend.received() == 300_000)
            .unwrap_or_else(|| panic!("backend received {} of 300000; logs:\n{}", backend.received(), gw.logs()));
        assert_eq!(backend.closed(), 0, "the backend's read side is still open");
        client.shutdown(Shutdown::Write).unwrap();
        wait_until(Duration::from_secs(5), || backend.closed() == 1)
            .unwrap_or_else(|| panic!("the backend never saw the client's EOF; logs:\n{}", gw.logs()));
    }

    fn thousand_concurrent_connections_echo(driver) {
        const N: usize = 1000;
        // This process holds both the clients and the backend's ends: 2,000 descriptors.
        let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap();
        assert!(limit >= 2 * N as u64 + 100, "descriptor limit {limit} is too low for {N} connections");
        let backend = TcpBackend::echo();
        let port = listen_port();
        let yaml = config(port, "TCP", &to("a.local"), &[("a.local", backend.port())], &[]);
        let gw = gateway!(driver).file("gw.yaml", &yaml).start();
        let mut conns: Vec<TcpStream> = (0..N).map(|_| connect(&gw, addr(port))).collect();
        for (i, c) in conns.iter_mut().enumerate() {
            c.write_all(format!("connection {i:04}\n").as_bytes()).unwrap();
        }
        for (i, c) in conns.iter_mut().enumerate() {
            let want = format!("connection {i:04}\n");
            assert_eq!(String::from_utf8_lossy(&read_n(&gw, c, want.len())), want);
        }
        wait_sample(&gw, "envoy_tcp_downstream_cx_active", &route("db", 0), |v| v == N as f64);
        drop(conns);
        wait_sample(&gw, "envoy_tcp_downstream_cx_active", &route("db", 0), |v| v == 0.0);
        wait_sample(&gw, "envoy_tcp_downstream_cx_total", &route("db", 0), |v| v == N as f64);
        wait_sample(&gw, "envoy_cluster_upstream_cx_active", &cluster("a.local"), |v| v == 0.0);
        wait_sample(&gw, "envoy_cluster_upstream_cx_total", &cluster("a.local"), |v| v == N as f64);
        assert_eq!(backend.accepted(), N);
    }

    fn weights_split_connections(driver) {
        const N: usize = 1000;
        let (a, b) = (TcpBackend::named("a"), TcpBackend::named("b"));
        let port = listen_port();
        let tcp = tcp_route("", SVC, &[("a.local", 80), ("b.local", 20)]);
        let yaml = config(port, "TCP", &tcp, &[("a.local", a.port()), ("b.local", b.port())], &[]);
        let gw = gateway!(driver).file("gw.yaml", &yaml).start();
        let mut to_a = 0;
        for _ in 0..N {
            let mut c = connect(&gw, addr(port));
            match read_n(&gw, &mut c, 1).as_slice() {
                b"a" => to_a += 1,
                b"b" => {}
                other => panic!("unexpected greeting {other:?}"),
            }
        }
        let share = to_a as f64 * 100.0 / N as f64;
        assert!((74.0..=86.0).contains(&share), "a got {share}% of {N} connections, want 80 ± 6");
    }

    fn idle_timeout_closes_both_sides(driver) {
        let backend = TcpBackend::echo();
        let port = listen_port();
        let rule = tcp_destination_rule("a", "a.local", "idleTimeout: 1s");
        let yaml = config(port, "TCP", &to("a.local"), &[("a.local", backend.port())], &[rule]);
        let gw = gateway!(driver).file("gw.yaml", &yaml).start();
        let mut client = connect(&gw, addr(port));
        echo_once(&gw, &mut client, b"ping");
        let quiet = wait_closed(&gw, &mut client, Duration::from_secs(6));
        assert!(quiet >= Duration::from_millis(900) && quiet <= Duration::from_secs(4), "closed after {quiet:?} quiet");
        wait_until(Duration::from_secs(2), || backend.closed() == 1)
            .unwrap_or_else(|| panic!("the backend's connection stayed open; logs:\n{}", gw.logs()));
        wait_sample(&gw, "envoy_tcp_idle_timeout", &route("db", 0), |v| v == 1.0);
    }

    fn unreachable_upstreams_close_the_client(driver) {
        let (dead_port, hole_port) = (listen_port(), listen_port());
        let mut parts = straight("dead", dead_port, support::closed_port());
        let hole = Blackhole::start();
        if let Some(hole) = &hole {
            parts.extend(straight("hole", hole_port, hole.addr.port()));
            parts.push(tcp_destination_rule("hole", "hole.local", "connectTimeout: 500ms"));
        }
        let gw = gateway!(driver).file("gw.yaml", &docs(&parts)).start();
        // Refused: the client is closed as soon as the refusal comes back.
        let mut client = connect(&gw, addr(dead_port));
        let took = wait_closed(&gw, &mut client, Duration::from_secs(3));
        assert!(took < Duration::from_secs(1), "closed after {took:?}");
        wait_sample(&gw, "envoy_cluster_upstream_cx_connect_fail", &cluster("dead.local"), |v| v >= 1.0);
        if hole.is_none() {
            println!("note: the kernel answered every SYN to a full backlog; the connectTimeout check is skipped");
            return;
        }
        // Unanswered: the client is closed when connectTimeout runs out.
        let mut client = connect(&gw, addr(hole_port));
        let took = wait_closed(&gw, &mut client, Duration::from_secs(6));
        assert!(took >= Duration::from_millis(400) && took <= Duration::from_secs(3), "closed after {took:?}");
    }

    fn reload_keeps_established_connections_on_their_upstream(driver) {
        let (a, b) = (TcpBackend::named("a"), TcpBackend::named("b"));
        let port = listen_port();
        let yaml = |host: &str| config(port, "TCP", &to(host), &[("a.local", a.port()), ("b.local", b.port())], &[]);
        let gw = gateway!(driver).file("gw.yaml", &yaml("a.local")).start();
        gw.wait_generation(1);
        let mut old = connect(&gw, addr(port));
        assert_eq!(read_n(&gw, &mut old, 1), b"a");
        echo_once(&gw, &mut old, b"before");
        gw.write_config("gw.yaml", &yaml("b.local"));
        gw.signal("HUP");
        gw.wait_generation(2);
        let mut new = connect(&gw, addr(port));
        assert_eq!(read_n(&gw, &mut new, 1), b"b", "a new connection follows the new route");
        echo_once(&gw, &mut old, b"after");
        assert_eq!(a.received(), 11, "the old connection's bytes still reach a");
        assert_eq!(b.received(), 0);
        // A broken config leaves the routes as they were.
        let broken = tcp_route("    - sourceSubnet: not-a-subnet\n", SVC, &[("a.local", 100)]);
        gw.write_config("broken.yaml", &tcp_virtual_service("broken", "gw", &broken));
        gw.signal("HUP");
        wait_until(Duration::from_secs(10), || {
            metric(&gw.admin_get("/stats/prometheus").1, "strait_reloads_total{result=\"failed\"}") == Some(1.0)
        })
        .unwrap_or_else(|| panic!("the broken reload was not counted; logs:\n{}", gw.logs()));
        assert_eq!(metric(&gw.admin_get("/stats/prometheus").1, "strait_config_generation"), Some(2.0));
        let mut after = connect(&gw, addr(port));
        assert_eq!(read_n(&gw, &mut after, 1), b"b");
    }

    fn routes_match_source_and_destination(driver) {
        let (a, b) = (TcpBackend::named("a"), TcpBackend::named("b"));
        let (src, dst, none) = (listen_port(), listen_port(), listen_port());
        let from_10 = "    - sourceSubnet: 10.0.0.0/8\n";
        let to_2 = format!("    - port: {dst}\n      destinationSubnets: [127.0.0.2/32]\n");
        // Neither the source nor the port (1, not this server's) ever matches.
        let never =
            tcp_route(from_10, SVC, &[("a.local", 100)]) + &tcp_route("    - port: 1\n", SVC, &[("a.local", 100)]);
        let parts = vec![
            tcp_gateway("src", src, "TCP"),
            tcp_virtual_service("src", "src", &(tcp_route(from_10, SVC, &[("a.local", 100)]) + &to("b.local"))),
            tcp_gateway("dst", dst, "TCP"),
            tcp_virtual_service("dst", "dst", &(tcp_route(&to_2, SVC, &[("a.local", 100)]) + &to("b.local"))),
            tcp_gateway("none", none, "TCP"),
            tcp_virtual_service("none", "none", &never),
            tcp_service_entry("a", "a.local", SVC, &[a.port()]),
            tcp_service_entry("b", "b.local", SVC, &[b.port()]),
        ];
        let gw = gateway!(driver).file("gw.yaml", &docs(&parts)).start();
        let greeting = |to: SocketAddr| {
            let mut c = connect(&gw, to);
            String::from_utf8(read_n(&gw, &mut c, 1)).unwrap()
        };
        assert_eq!(greeting(addr(src)), "b", "127.0.0.1 is outside sourceSubnet 10.0.0.0/8");
        assert_eq!(greeting(SocketAddr::from(([127, 0, 0, 2], dst))), "a", "connected to 127.0.0.2");
        assert_eq!(greeting(addr(dst)), "b", "connected to 127.0.0.1");
        let mut c = connect(&gw, addr(none));
        let took = wait_closed(&gw, &mut c, Duration::from_secs(3));
        assert!(took < Duration::from_secs(1), "closed after {took:?}");
        wait_sample(&gw, "envoy_tcp_downstream_cx_no_route", "", |v| v >= 1.0);
        assert_eq!(a.accepted(), 1, "only the 127.0.0.2 connection reached a");
    }

    fn max_connections_overflow_closes_at_once(driver) {
        let backend = TcpBackend::echo();
        let port = listen_port();
        let rule = tcp_destination_rule("a", "a.local", "maxConnections: 1");
        let yaml = config(port, "TCP", &to("a.local"), &[("a.local", backend.port())], &[rule]);
        let gw = gateway!(driver).file("gw.yaml", &yaml).start();
        let mut first = connect(&gw, addr(port));
        echo_once(&gw, &mut first, b"first");
        let mut second = connect(&gw, addr(port));
        // The gateway may already have closed it: only the read below tells.
        let _ = second.write_all(b"second");
        let took = wait_closed(&gw, &mut second, Duration::from_secs(3));
        assert!(took < Duration::from_secs(1), "closed after {took:?}");
        wait_sample(&gw, "envoy_cluster_upstream_cx_overflow", &cluster("a.local"), |v| v >= 1.0);
        assert_eq!(backend.accepted(), 1, "the overflowing connection never went upstream");
        drop(first);
        wait_sample(&gw, "envoy_cluster_upstream_cx_active", &cluster("a.local"), |v| v == 0.0);
        let mut third = connect(&gw, addr(port));
        echo_once(&gw, &mut third, b"third");
    }

    fn resets_pass_through_both_ways(driver) {
        // Closing with bytes unread in the receive buffer makes the kernel send an RST.
        let aborting = TcpBackend::start(|s, _| {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = s.peek(&mut [0u8; 1]);
        });
        let greeting = TcpBackend::named("hello");
        let (up, down) = (listen_port(), listen_port());
        let mut parts = straight("up", up, aborting.port());
        parts.extend(straight("down", down, greeting.port()));
        let gw = gateway!(driver).file("gw.yaml", &docs(&parts)).start();
        // The backend resets: the client's read fails with ECONNRESET.
        let mut client = connect(&gw, addr(up));
        client.write_all(b"never read").unwrap();
        client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        match client.read(&mut [0u8; 16]) {
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("expected ECONNRESET, got {other:?}; logs:\n{}", gw.logs()),
        }
        // The client resets: the backend's read fails with ECONNRESET.
        let client = connect(&gw, addr(down));
        wait_until(Duration::from_secs(5), || client.peek(&mut [0u8; 8]).is_ok_and(|n| n == 5))
            .unwrap_or_else(|| panic!("no greeting; logs:\n{}", gw.logs()));
        drop(client);
        wait_until(Duration::from_secs(2), || greeting.resets() == 1).unwrap_or_else(|| {
            panic!("the backend saw no reset (its side closed: {}); logs:\n{}", greeting.closed(), gw.logs())
        });
    }

    fn mongo_server_proxies_like_tcp(driver) {
        let backend = TcpBackend::echo();
        let port = listen_port();
        let yaml = config(port, "MONGO", &to("a.local"), &[("a.local", backend.port())], &[]);
        let gw = gateway!(driver).file("gw.yaml", &yaml).start();
        let mut client = connect(&gw, addr(port));
        echo_once(&gw, &mut client, b"{\"ping\": 1}");
    }
}
