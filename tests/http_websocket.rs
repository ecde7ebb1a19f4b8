//! Upgrades through the gateway, end to end on both drivers: a WebSocket echo with a real
//! client and server (tungstenite), closes passed on either way, raw bytes both ways after a
//! non-WebSocket `101`, a declined upgrade, and a 502 for a `101` nobody asked for.

use strait_test_support::{self as support, both_drivers, gateway};

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use tungstenite::{Bytes, Error as WsError, Message};

use support::backend::Backend;
use support::client;
use support::config::{docs, http_gateway, service_entry, virtual_service};
use support::tcp::listen_port;
use support::{Driver, Gateway};

const TIMEOUT: Duration = Duration::from_secs(20);

/// A backend on 127.0.0.1:0 running `serve` on each connection, one thread each.
fn backend(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let serve = serve.clone();
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(TIMEOUT)).unwrap();
                serve(stream);
            });
        }
    });
    addr
}

/// A WebSocket echo: text and binary messages go back as they came; tungstenite itself
/// answers pings and the close handshake, after which dropping the socket closes TCP from
/// the server side first, as RFC 6455 §7.1.1 asks.
fn echo(stream: TcpStream) {
    let Ok(mut ws) = tungstenite::accept(stream) else { return };
    while let Ok(msg) = ws.read() {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).is_err() {
            break;
        }
    }
}

/// A gateway on a fresh port routing each `(host, backend)` to its backend.
fn gateway(driver: Driver, routes: &[(&str, SocketAddr)]) -> (Gateway, SocketAddr) {
    let port = listen_port();
    let hosts: Vec<&str> = routes.iter().map(|(h, _)| *h).collect();
    let mut parts = vec![http_gateway("gw", port, &hosts)];
    for (i, (host, addr)) in routes.iter().enumerate() {
        let svc = format!("svc{i}.local");
        let http = format!("  - route:\n    - destination:\n        host: {svc}\n");
        parts.push(virtual_service(&format!("vs{i}"), "gw", &[host], &http));
        parts.push(service_entry(&format!("svc{i}"), &svc, 80, &[addr.port()]));
    }
    let gw = gateway!(driver).file("gw.yaml", &docs(&parts)).start();
    (gw, format!("127.0.0.1:{port}").parse().unwrap())
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Reads up to and including the blank line; returns the head and the bytes read past it.
fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return (String::from_utf8(buf).unwrap(), rest);
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before the end of a head: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The value of header `name` in a raw head, compared case-insensitively.
fn head_value<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Bytes that show a reordering or a dropped chunk.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// One HTTP/2 stream as the blocking socket tungstenite reads and writes: DATA received (its
/// window given back as read), DATA sent within the window; each wait drives the connection.
struct H2Socket<'r> {
    rt: &'r tokio::runtime::Runtime,
    send: h2::SendStream<Bytes>,
    recv: h2::RecvStream,
    pending: Bytes,
}

impl Read for H2Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.is_empty() {
            match self.rt.block_on(self.recv.data()) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}

impl Write for H2Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let send = &mut self.send;
        send.reserve_capacity(buf.len());
        let room = match self.rt.block_on(std::future::poll_fn(|cx| send.poll_capacity(cx))) {
            Some(Ok(room)) => room.min(buf.len()),
            Some(Err(e)) => return Err(std::io::Error::other(e)),
            None => return Err(std::io::ErrorKind::BrokenPipe.into()),
        };
        send.send_data(Bytes::copy_from_slice(&buf[..room]), false).map_err(std::io::Error::other)?;
        Ok(room)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Opens an h2c connection to `addr` and a WebSocket on it by extended CONNECT (RFC 8441):
/// the connection's handle, the stream's halves, the answer checked.
fn h2_websocket(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
) -> (h2::client::SendRequest<Bytes>, h2::SendStream<Bytes>, h2::RecvStream) {
    let tcp = rt.block_on(tokio::net::TcpStream::connect(addr)).unwrap();
    let (client, connection) = rt.block_on(h2::client::handshake(tcp)).unwrap();
    rt.spawn(connection);
    let mut client = rt.block_on(client.ready()).unwrap();
    // The gateway's SETTINGS allow extended CONNECT (RFC 8441 §3) once they are read.
    for _ in 0..200 {
        if client.is_extended_connect_protocol_enabled() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        rt.block_on(tokio::task::yield_now());
    }
    assert!(client.is_extended_connect_protocol_enabled(), "SETTINGS_ENABLE_CONNECT_PROTOCOL");
    let mut request =
        http::Request::connect("http://ws.test/echo").header("sec-websocket-version", "13").body(()).unwrap();
    request.extensions_mut().insert(h2::ext::Protocol::from("websocket"));
    let (response, send) = client.send_request(request, false).unwrap();
    let response = rt.block_on(response).unwrap();
    // The backend's 101 is the stream's 200, its HTTP/1.1 handshake's proof left behind.
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("sec-websocket-accept").is_none());
    (client, send, response.into_body())
}

both_drivers! {
    fn websocket_over_http2_reaches_an_http1_backend(driver) {
        let (_gw, addr) = gateway(driver, &[("ws.test", backend(echo))]);
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
        let (_client, send, response) = h2_websocket(&rt, addr);
        let socket = H2Socket { rt: &rt, send, recv: response, pending: Bytes::new() };
        let mut ws = tungstenite::WebSocket::from_raw_socket(socket, tungstenite::protocol::Role::Client, None);
        // Small messages, and one larger than every window on the way (64 KiB per stream).
        let messages = [Message::text("hello"), Message::binary(pattern(1 << 20)), Message::text("")];
        for msg in messages {
            ws.send(msg.clone()).unwrap();
            assert!(ws.read().unwrap() == msg, "a message came back altered");
        }
        ws.close(None).unwrap();
        assert!(matches!(ws.read(), Ok(Message::Close(_))), "the server answers the close");
        // The backend's TCP close, passed on as END_STREAM, ends the client's read.
        assert!(matches!(ws.read(), Err(WsError::ConnectionClosed)));
    }

    fn an_http2_websocket_reset_by_the_client_releases_its_upstream(driver) {
        // A backend that takes the upgrade, then neither speaks nor closes.
        let silent = backend(|mut s| {
            read_head(&mut s);
            let answer = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n";
            s.write_all(answer.as_bytes()).unwrap();
            let mut sink = [0u8; 1024];
            while s.read(&mut sink).is_ok_and(|n| n > 0) {}
            std::thread::sleep(TIMEOUT);
        });
        let (gw, addr) = gateway(driver, &[("ws.test", silent)]);
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
        let (_client, mut send, _recv) = h2_websocket(&rt, addr);
        // The backend's endpoint's open connections, as /clusters counts them (a tunnel's too).
        let active = || {
            let (_, clusters) = gw.admin_get("/clusters");
            let line = clusters.lines().find(|l| l.contains("svc0.local") && l.contains("::cx_active::"))?;
            line.rsplit("::").next()?.parse::<u64>().ok()
        };
        assert!(support::wait_until(Duration::from_secs(5), || active() == Some(1)).is_some(), "{:?}", active());
        send.send_reset(h2::Reason::CANCEL);
        let released = support::wait_until(Duration::from_secs(5), || {
            // Lets the client's connection send the reset.
            rt.block_on(tokio::task::yield_now());
            active() == Some(0)
        });
        assert!(released.is_some(), "the upstream connection outlived the reset stream");
    }

    fn websocket_echo(driver) {
        let (_gw, addr) = gateway(driver, &[("ws.test", backend(echo))]);
        let (mut ws, resp) = tungstenite::client::client("ws://ws.test/echo", connect(addr)).expect("handshake");
        assert_eq!(resp.status(), 101);
        assert_eq!(resp.headers().get("upgrade").map(|v| v.as_bytes()), Some(&b"websocket"[..]));

        let small = [Message::text("hello"), Message::binary(vec![0u8, 1, 2, 255]), Message::text("")];
        for msg in &small {
            ws.send(msg.clone()).unwrap();
        }
        for msg in &small {
            assert_eq!(&ws.read().unwrap(), msg);
        }

        let big_text = "0123456789abcdef".repeat(64 * 1024);
        let big_binary = pattern(1 << 20);
        for msg in [Message::text(big_text), Message::binary(big_binary)] {
            ws.send(msg.clone()).unwrap();
            assert!(ws.read().unwrap() == msg, "a 1 MiB message came back altered");
        }

        ws.send(Message::Ping(Bytes::from_static(b"are you there"))).unwrap();
        assert_eq!(ws.read().unwrap(), Message::Pong(Bytes::from_static(b"are you there")));

        ws.close(None).unwrap();
        assert!(matches!(ws.read(), Ok(Message::Close(_))), "the server answers the close");
        // Only the server's TCP close, passed on by the gateway, ends the client's read.
        assert!(matches!(ws.read(), Err(WsError::ConnectionClosed)));
        let mut rest = Vec::new();
        assert_eq!(ws.get_mut().read_to_end(&mut rest).unwrap(), 0);
    }

    fn client_abort_reaches_the_backend(driver) {
        let (ended, ends) = mpsc::channel();
        let ws_backend = backend(move |s| {
            echo(s);
            ended.send(()).unwrap();
        });
        let (_gw, addr) = gateway(driver, &[("ws.test", ws_backend)]);
        let (mut ws, _) = tungstenite::client::client("ws://ws.test/", connect(addr)).expect("handshake");
        ws.send(Message::text("bye")).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text("bye"));
        // No close handshake: the TCP close alone must end the backend's side of the tunnel.
        drop(ws);
        ends.recv_timeout(Duration::from_secs(5)).expect("the backend connection ended");
    }

    fn other_upgrade_carries_raw_bytes_both_ways(driver) {
        let (heads, seen) = mpsc::channel();
        let raw = backend(move |mut s| {
            let (head, mut got) = read_head(&mut s);
            heads.send(head).unwrap();
            // Bytes after the 101 in the same segment must not be lost.
            s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\nbackend-early|")
                .unwrap();
            s.read_to_end(&mut got).unwrap();
            s.write_all(&got).unwrap();
        });
        let (_gw, addr) = gateway(driver, &[("raw.test", raw)]);

        let mut s = connect(addr);
        // Bytes the client sends right behind its request head wait in the gateway's read
        // window and go first once the tunnel is up.
        s.write_all(b"GET /raw HTTP/1.1\r\nHost: raw.test\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\nclient-early|")
            .unwrap();
        let (head, mut got) = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert_eq!(head_value(&head, "upgrade"), Some("foo"), "{head}");

        let sent = seen.recv_timeout(TIMEOUT).unwrap();
        assert_eq!(head_value(&sent, "upgrade"), Some("foo"), "{sent}");
        assert!(head_value(&sent, "connection").is_some_and(|v| v.eq_ignore_ascii_case("upgrade")), "{sent}");

        let payload = pattern(3 << 20);
        s.write_all(&payload).unwrap();
        // The client's half-close reaches the backend, which then answers and closes.
        s.shutdown(Shutdown::Write).unwrap();
        s.read_to_end(&mut got).unwrap();
        let mut want = b"backend-early|client-early|".to_vec();
        want.extend_from_slice(&payload);
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the tunnel altered the bytes");
    }

    fn declined_upgrade_is_a_plain_exchange(driver) {
        // A backend that answers an upgrade request with a plain response is relayed as one.
        let plain = Backend::start("plain");
        let (_gw, addr) = gateway(driver, &[("plain.test", plain.addr)]);
        let mut c = client::Conn::open(addr);
        c.send(b"GET /ws HTTP/1.1\r\nHost: plain.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
        let resp = c.read_response(false);
        assert_eq!((resp.status, resp.body_text().as_str()), (200, "plain"));
        assert_eq!(plain.last().header("upgrade"), Some("websocket"));
    }

    fn unasked_switching_protocols_is_502(driver) {
        let rogue = backend(|mut s| {
            read_head(&mut s);
            let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n");
            let _ = s.read_to_end(&mut Vec::new());
        });
        let (_gw, addr) = gateway(driver, &[("rogue.test", rogue)]);
        let resp = client::get(addr, "rogue.test", "/");
        assert_eq!(resp.status, 502);
        assert_eq!(resp.body_text(), "upstream sent an invalid response");
    }
}
