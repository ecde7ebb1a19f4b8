//! HTTP/2 to upstreams, end to end on both drivers: an h2c backend (hyperium's h2 server, in
//! this test) reached through the real binary from HTTP/1.1 clients and from h2 clients, when
//! the ServiceEntry port's protocol is HTTP2 or GRPC, or a DestinationRule upgrades an HTTP
//! port; streams multiplexed on few connections; `http2MaxRequests`; gRPC unary calls with
//! their trailers, and a retry on a trailers-only `grpc-status: 14`. Request bodies that go
//! up while the response comes down (an upstream that answers as it reads), from HTTP/2 and
//! HTTP/1.1 clients, to HTTP/2 and HTTP/1.1 upstreams, and the copy of a streamed body that a
//! retry sends again; an authorization server's lines reaching an HTTP/2 upstream from an HTTP/2
//! client.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use strait_test_support::{self as support, both_drivers, gateway};

use support::backend::{Backend, Mode};
use support::client;
use support::config::{docs, head, http_gateway, service_entry, virtual_service};
use support::tls::{Ca, Leaf};
use support::{Driver, Gateway};

/// An h2c backend (prior knowledge only: an HTTP/1.1 request gets no answer) counting the
/// connections and the streams it is given. It answers by path:
/// - `/delay/MS`: after MS milliseconds, as `/` does;
/// - `/goaway`: as `/`, and GOAWAY on its connection;
/// - `/grpc/ok`: a gRPC answer, one message, `grpc-status: 0` in trailers;
/// - `/grpc/flaky`: a trailers-only `grpc-status: 14` the first time, then as `/grpc/ok`;
/// - `/echo`: 200 at once, then each DATA of the request sent back as it comes;
/// - `/fields`: 200, the request's fields as its body, a `name: value` line each, sorted;
/// - anything else: 200, no length, the body `h2 METHOD PATH te=… x-route=… body=N`.
struct H2Backend {
    port: u16,
    connections: Arc<AtomicUsize>,
    streams: Arc<AtomicUsize>,
    /// Over TLS, the protocol each connection's ALPN chose.
    alpn: Arc<Mutex<Vec<Option<Vec<u8>>>>>,
}

impl H2Backend {
    fn start() -> H2Backend {
        Self::serve(None)
    }

    /// Over TLS with `leaf`, offering ALPN `h2` only.
    fn start_tls(leaf: &Leaf) -> H2Backend {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.chain(), leaf.key())
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Self::serve(Some(Arc::new(config)))
    }

    fn serve(tls: Option<Arc<rustls::ServerConfig>>) -> H2Backend {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let streams = Arc::new(AtomicUsize::new(0));
        let alpn = Arc::new(Mutex::new(Vec::new()));
        let (conns, count, chosen) = (connections.clone(), streams.clone(), alpn.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let flaky = Arc::new(AtomicUsize::new(0));
                while let Ok((tcp, _)) = listener.accept().await {
                    conns.fetch_add(1, Relaxed);
                    let (count, flaky) = (count.clone(), flaky.clone());
                    let Some(config) = tls.clone() else {
                        tokio::spawn(serve_h2(tcp, count, flaky));
                        continue;
                    };
                    let chosen = chosen.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await else { return };
                        chosen.lock().unwrap().push(tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec));
                        serve_h2(tls, count, flaky).await;
                    });
                }
            });
        });
        H2Backend { port, connections, streams, alpn }
    }
}

/// Serves one h2 connection, counting its streams.
async fn serve_h2<T>(io: T, count: Arc<AtomicUsize>, flaky: Arc<AtomicUsize>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Ok(mut conn) = h2::server::handshake(io).await else { return };
    while let Some(Ok((request, respond))) = conn.accept().await {
        count.fetch_add(1, Relaxed);
        if request.uri().path() == "/goaway" {
            conn.graceful_shutdown();
        }
        tokio::spawn(answer(request, respond, flaky.clone()));
    }
}

async fn answer(
    request: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    flaky: Arc<AtomicUsize>,
) {
    let (parts, mut body) = request.into_parts();
    if parts.uri.path() == "/echo" {
        let mut stream = respond.send_response(Response::builder().status(200).body(()).unwrap(), false).unwrap();
        while let Some(Ok(data)) = body.data().await {
            let _ = body.flow_control().release_capacity(data.len());
            let _ = stream.send_data(data, false);
        }
        let _ = stream.send_data(Bytes::new(), true);
        return;
    }
    if parts.uri.path() == "/fields" {
        let mut lines: Vec<_> =
            parts.headers.iter().map(|(n, v)| format!("{n}: {}\n", v.to_str().unwrap_or("?"))).collect();
        lines.sort();
        let mut stream = respond.send_response(Response::new(()), false).unwrap();
        let _ = stream.send_data(Bytes::from(lines.concat()), true);
        return;
    }
    let mut received = 0;
    while let Some(Ok(data)) = body.data().await {
        received += data.len();
        let _ = body.flow_control().release_capacity(data.len());
    }
    let path = parts.uri.path().to_string();
    if path == "/short" {
        // Five bytes of the ten its head promises, then the stream's end.
        let head = Response::builder().status(200).header("content-length", "10").body(()).unwrap();
        let mut stream = respond.send_response(head, false).unwrap();
        let _ = stream.send_data(Bytes::from_static(b"hello"), true);
        return;
    }
    if let Some(ms) = path.strip_prefix("/delay/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
    }
    let grpc = |status: &str| {
        Response::builder().status(200).header("content-type", "application/grpc").header("grpc-status", status)
    };
    if path == "/grpc/flaky" && flaky.fetch_add(1, Relaxed) == 0 {
        let _ = respond.send_response(grpc("14").header("grpc-message", "down").body(()).unwrap(), true);
        return;
    }
    if path.starts_with("/grpc/") {
        let head = Response::builder().status(200).header("content-type", "application/grpc").body(()).unwrap();
        let mut stream = respond.send_response(head, false).unwrap();
        let _ = stream.send_data(Bytes::from_static(b"\0\0\0\0\x02hi"), false);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        trailers.insert("grpc-message", "fine".parse().unwrap());
        let _ = stream.send_trailers(trailers);
        return;
    }
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
    let text = format!(
        "h2 {} {} authority={} te={} x-route={} body={received}",
        parts.method,
        parts.uri.path_and_query().map_or("", |p| p.as_str()),
        parts.uri.authority().map_or("-", |a| a.as_str()),
        header("te"),
        header("x-route"),
    );
    // Fields for the route's response edits: `server` is overwritten, `x-drop` removed.
    let head =
        Response::builder().status(200).header("server", "h2-backend").header("x-drop", "1").header("x-keep", "k");
    let mut stream = respond.send_response(head.body(()).unwrap(), false).unwrap();
    let _ = stream.send_data(Bytes::from(text), true);
}

/// Routes for `app.test`: `/slow` held past its per-try timeout and tried twice, gRPC calls retried on `unavailable`, everything else to `app.local`
/// with a request header set.
const HTTP: &str = "  - name: slow
    match:
    - uri:
        exact: /slow
    rewrite:
      uri: /delay/1500
    retries:
      attempts: 1
      perTryTimeout: 300ms
      retryOn: 5xx
    route:
    - destination:
        host: app.local
  - name: grpc
    match:
    - uri:
        prefix: /grpc/
    retries:
      attempts: 2
      retryOn: unavailable
    route:
    - destination:
        host: app.local
  - name: app
    headers:
      request:
        set:
          x-route: on
      response:
        set:
          x-set: by-route
        remove:
        - x-drop
    route:
    - destination:
        host: app.local
";

/// A gateway for `app.test` whose `app.local` (port protocol `protocol`) is `backend`, under
/// a DestinationRule with `policy` (YAML under `trafficPolicy:`, indented 4) if any.
fn start(driver: Driver, backend: &H2Backend, protocol: &str, policy: Option<&str>) -> (Gateway, SocketAddr) {
    let port = support::free_port();
    let entry = service_entry("app", "app.local", 80, &[backend.port])
        .replace("protocol: HTTP", &format!("protocol: {protocol}"));
    let mut parts =
        vec![http_gateway("gw", port, &["app.test"]), virtual_service("app", "gw", &["app.test"], HTTP), entry];
    if let Some(policy) = policy {
        parts.push(format!("{}  host: app.local\n  trafficPolicy:\n{policy}", head("DestinationRule", "app")));
    }
    let gw = gateway!(driver).file("gw.yaml", &docs(&parts)).start();
    (gw, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Runs `f` with an h2c client connection to `addr`, on a runtime of its own.
fn with_h2<T>(addr: SocketAddr, f: impl AsyncFnOnce(h2::client::SendRequest<Bytes>) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        f(client).await
    })
}

/// What an h2 client got: status, head fields, body, trailers.
struct Got {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
    trailers: Option<HeaderMap>,
}

async fn ask(client: &mut h2::client::SendRequest<Bytes>, request: Request<()>, body: &[u8]) -> Got {
    *client = client.clone().ready().await.unwrap();
    let (response, mut stream) = client.send_request(request, body.is_empty()).unwrap();
    if !body.is_empty() {
        stream.send_data(Bytes::copy_from_slice(body), true).unwrap();
    }
    let (parts, mut recv) = response.await.unwrap().into_parts();
    let mut got = Vec::new();
    while let Some(data) = recv.data().await {
        let data = data.unwrap();
        let _ = recv.flow_control().release_capacity(data.len());
        got.extend_from_slice(&data);
    }
    let trailers = recv.trailers().await.unwrap();
    Got { status: parts.status.as_u16(), headers: parts.headers, body: got, trailers }
}

/// Sends `pieces` as the DATA of one POST to `path`, each only once the one before came back
/// (the upstream echoes as it reads), as a bidirectional gRPC call does: what came back, piece by piece, then the rest after the
/// request's end. A gateway that held the body until its end never answers: the client's
/// wait for the first piece times out.
async fn ping_pong(client: &mut h2::client::SendRequest<Bytes>, path: &str, pieces: &[&str]) -> Vec<String> {
    let wait = Duration::from_secs(5);
    *client = client.clone().ready().await.unwrap();
    // A gRPC call: the default retry policy retries its `unavailable`, so would hold its body.
    let call = Request::post(format!("http://app.test{path}")).header("content-type", "application/grpc");
    let (response, mut up) = client.send_request(call.body(()).unwrap(), false).unwrap();
    up.send_data(Bytes::copy_from_slice(pieces[0].as_bytes()), false).unwrap();
    let response = tokio::time::timeout(wait, response).await.expect("no response head while the body streams");
    let mut down = response.unwrap().into_body();
    let mut got = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            up.send_data(Bytes::copy_from_slice(piece.as_bytes()), false).unwrap();
        }
        let mut back = Vec::new();
        while back.len() < piece.len() {
            let data =
                tokio::time::timeout(wait, down.data()).await.expect("the piece did not come back").unwrap().unwrap();
            let _ = down.flow_control().release_capacity(data.len());
            back.extend_from_slice(&data);
        }
        got.push(String::from_utf8(back).unwrap());
    }
    up.send_data(Bytes::new(), true).unwrap();
    let mut rest = Vec::new();
    while let Some(data) = tokio::time::timeout(wait, down.data()).await.expect("no end of response") {
        rest.extend_from_slice(&data.unwrap());
    }
    got.push(String::from_utf8(rest).unwrap());
    got
}

/// A gateway for `app.test` routing everything to `app.local` at `port` (its protocol
/// `protocol`), `more` YAML on the route (indented for it).
fn start_one(driver: Driver, port: u16, protocol: &str, more: &str) -> (Gateway, SocketAddr) {
    let entry =
        service_entry("app", "app.local", 80, &[port]).replace("protocol: HTTP", &format!("protocol: {protocol}"));
    gateway!(driver).start_app(&format!("  - route:\n    - destination:\n        host: app.local\n{more}"), vec![entry])
}

/// A POST of `pieces`, each its own DATA frame sent 100 ms after the one before (so the
/// gateway cannot have the body whole when it sends the head up): the status and body back.
async fn post_slowly(client: &mut h2::client::SendRequest<Bytes>, pieces: &[Vec<u8>]) -> (u16, Vec<u8>) {
    *client = client.clone().ready().await.unwrap();
    let (response, mut up) = client.send_request(Request::post("http://app.test/up").body(()).unwrap(), false).unwrap();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        up.reserve_capacity(piece.len());
        up.send_data(Bytes::copy_from_slice(piece), i + 1 == pieces.len()).unwrap();
    }
    let (parts, mut down) = response.await.unwrap().into_parts();
    let mut body = Vec::new();
    while let Some(data) = down.data().await {
        let data = data.unwrap();
        let _ = down.flow_control().release_capacity(data.len());
        body.extend_from_slice(&data);
    }
    (parts.status.as_u16(), body)
}

fn grpc_call(path: &str) -> Request<()> {
    Request::post(format!("http://app.test{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

both_drivers! {
    fn http1_and_h2_clients_reach_an_http2_service_entry(driver) {
        let backend = H2Backend::start();
        let (_gw, addr) = start(driver, &backend, "HTTP2", None);
        let r = client::get(addr, "app.test", "/a?b=1");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body_text(), "h2 GET /a?b=1 authority=app.test te=- x-route=on body=0");
        // Bodies in either HTTP/1.1 framing go up as DATA.
        let r = client::request(addr, "POST /up HTTP/1.1\r\nHost: app.test\r\ncontent-length: 5\r\nConnection: close\r\n\r\nhello");
        assert_eq!(r.body_text(), "h2 POST /up authority=app.test te=- x-route=on body=5", "{r:?}");
        let r = client::request(
            addr,
            "POST /up HTTP/1.1\r\nHost: app.test\r\ntransfer-encoding: chunked\r\nConnection: close\r\n\r\n\
             3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
        );
        assert_eq!(r.body_text(), "h2 POST /up authority=app.test te=- x-route=on body=7", "{r:?}");
        let got = with_h2(addr, async |mut c| {
            let big = vec![b'x'; 200_000];
            let post = Request::post("http://app.test/big").body(()).unwrap();
            (ask(&mut c, Request::get("http://app.test/h2").body(()).unwrap(), b"").await, ask(&mut c, post, &big).await)
        });
        assert_eq!(got.0.status, 200);
        assert_eq!(String::from_utf8_lossy(&got.0.body), "h2 GET /h2 authority=app.test te=- x-route=on body=0");
        // The upstream's fields reach an HTTP/2 client with the gateway's and the route's
        // edits, as they reach an HTTP/1.1 one.
        let fields = &got.0.headers;
        let field = |name: &str| fields.get(name).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(field("server").as_deref(), Some("istio-envoy"), "{fields:?}");
        assert_eq!((field("x-keep").as_deref(), field("x-set").as_deref(), field("x-drop")), (Some("k"), Some("by-route"), None));
        assert!(field("x-envoy-upstream-service-time").is_some() && field("date").is_some(), "{fields:?}");
        let r = client::get(addr, "app.test", "/h1");
        assert_eq!((r.header("server"), r.header("x-keep"), r.header("x-set"), r.header("x-drop")), (Some("istio-envoy"), Some("k"), Some("by-route"), None), "{r:?}");
        assert_eq!(String::from_utf8_lossy(&got.1.body), "h2 POST /big authority=app.test te=- x-route=on body=200000");
    }

    fn an_authorization_servers_lines_reach_an_http2_upstream_from_an_http2_client(driver) {
        // The allowing answer's lines are written into the request's HTTP/1.1 text after the
        // plan made its HTTP/2 head: that head must give way to the text.
        let backend = H2Backend::start();
        let authz = Backend::start("authz");
        let dir = tempfile::tempdir().unwrap();
        let mesh = dir.path().join("mesh.yaml");
        std::fs::write(
            &mesh,
            "extensionProviders:\n- name: checker\n  envoyExtAuthzHttp:\n    service: authz.local\n    port: 9000\n    \
             headersToUpstreamOnAllow: [x-backend]\n",
        )
        .unwrap();
        let policy = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: ext\n  \
                      namespace: istio-system\nspec:\n  action: CUSTOM\n  provider:\n    name: checker\n  rules:\n  \
                      - to:\n    - operation:\n        paths: [\"/fields\"]\n";
        let port = support::free_port();
        let parts = [
            http_gateway("gw", port, &["app.test"]),
            virtual_service("app", "gw", &["app.test"], HTTP),
            service_entry("app", "app.local", 80, &[backend.port]).replace("protocol: HTTP", "protocol: HTTP2"),
            service_entry("authz", "authz.local", 9000, &[authz.port()]),
            policy.to_string(),
        ];
        let gw = gateway!(driver).arg("--mesh").arg(mesh.to_str().unwrap()).file("gw.yaml", &docs(&parts)).start();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let got = with_h2(addr, async |mut c| ask(&mut c, Request::get("http://app.test/fields").body(()).unwrap(), b"").await);
        let fields = String::from_utf8_lossy(&got.body);
        assert_eq!(got.status, 200, "{}", gw.logs());
        assert!(fields.contains("x-backend: authz\n") && fields.contains("x-route: on\n"), "{fields}");
        assert_eq!(authz.count(), 1);
    }

    fn an_answer_shorter_than_its_length_is_cut_off_not_ended(driver) {
        let backend = H2Backend::start();
        let (_gw, addr) = start(driver, &backend, "HTTP2", None);
        // The DATA pass to an HTTP/2 client as they come: the upstream's short stream must reach
        // it as a reset or an error, never as a whole answer.
        let got = with_h2(addr, async |c| {
            let mut c = c.ready().await.unwrap();
            let (response, _) = c.send_request(Request::get("http://app.test/short").body(()).unwrap(), true).unwrap();
            let (parts, mut recv) = response.await?.into_parts();
            let mut body = Vec::new();
            while let Some(data) = recv.data().await {
                body.extend_from_slice(&data?);
            }
            Ok::<_, h2::Error>((parts.status.as_u16(), body))
        });
        assert!(!matches!(got, Ok((200, _))), "a short answer ended as if whole: {got:?}");
        // An HTTP/1.1 client gets the head and fewer bytes than it says, then the close.
        let mut c = client::Conn::open(addr);
        c.send(b"GET /short HTTP/1.1\r\nHost: app.test\r\n\r\n");
        let raw = String::from_utf8_lossy(&c.read_to_close()).into_owned();
        let body = raw.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        assert!(body.len() < 10, "{raw:?}");
    }

    fn h2_upgrade_policy_upgrades_an_http_port_and_do_not_upgrade_leaves_it(driver) {
        let backend = H2Backend::start();
        let upgrade = "    connectionPool:\n      http:\n        h2UpgradePolicy: UPGRADE\n";
        let (_gw, addr) = start(driver, &backend, "HTTP", Some(upgrade));
        let r = client::get(addr, "app.test", "/up");
        assert_eq!(r.body_text(), "h2 GET /up authority=app.test te=- x-route=on body=0", "{r:?}");
        // Not upgraded, HTTP/1.1 reaches an h2c-only backend, which cannot answer it.
        let keep = "    connectionPool:\n      http:\n        h2UpgradePolicy: DO_NOT_UPGRADE\n      tcp:\n        connectTimeout: 1s\n";
        let (_gw, addr) = start(driver, &backend, "HTTP", Some(keep));
        let r = client::get(addr, "app.test", "/down");
        assert_ne!(r.status, 200, "{r:?}");
    }

    fn meshconfig_h2_upgrade_policy_is_the_default_a_destination_rule_overrides(driver) {
        let backend = H2Backend::start();
        let dir = tempfile::tempdir().unwrap();
        let mesh = dir.path().join("mesh.yaml");
        std::fs::write(&mesh, "h2UpgradePolicy: UPGRADE\n").unwrap();
        let start = |rule: Option<&str>| {
            let port = support::free_port();
            let mut parts = vec![
                http_gateway("gw", port, &["app.test"]),
                virtual_service("app", "gw", &["app.test"], HTTP),
                service_entry("app", "app.local", 80, &[backend.port]),
            ];
            parts.extend(rule.map(|p| format!("{}  host: app.local\n  trafficPolicy:\n{p}", head("DestinationRule", "app"))));
            let gw = gateway!(driver).file("gw.yaml", &docs(&parts)).arg("--mesh").arg(mesh.to_str().unwrap()).start();
            (gw, SocketAddr::from(([127, 0, 0, 1], port)))
        };
        let (_gw, addr) = start(None);
        let r = client::get(addr, "app.test", "/mesh");
        assert_eq!(r.body_text(), "h2 GET /mesh authority=app.test te=- x-route=on body=0", "{r:?}");
        let keep = "    connectionPool:\n      http:\n        h2UpgradePolicy: DO_NOT_UPGRADE\n      tcp:\n        connectTimeout: 1s\n";
        let (_gw, addr) = start(Some(keep));
        assert_ne!(client::get(addr, "app.test", "/rule").status, 200, "the rule's DO_NOT_UPGRADE wins");
    }

    fn concurrent_streams_share_few_upstream_connections(driver) {
        let backend = H2Backend::start();
        let (gw, addr) = start(driver, &backend, "GRPC", None);
        let statuses = with_h2(addr, async |mut c| {
            let mut waiting = Vec::new();
            for i in 0..40 {
                c = c.ready().await.unwrap();
                let request = Request::get(format!("http://app.test/delay/300?n={i}")).body(()).unwrap();
                waiting.push(c.send_request(request, true).unwrap().0);
            }
            let mut statuses = Vec::new();
            for response in waiting {
                statuses.push(response.await.unwrap().status().as_u16());
            }
            statuses
        });
        assert_eq!(statuses, vec![200; 40], "{}", gw.logs());
        assert_eq!(backend.streams.load(Relaxed), 40);
        // One connection per worker carries them all.
        assert!(backend.connections.load(Relaxed) <= 2, "{} connections", backend.connections.load(Relaxed));
    }

    fn max_concurrent_streams_opens_more_connections(driver) {
        let backend = H2Backend::start();
        let policy = "    connectionPool:\n      http:\n        maxConcurrentStreams: 5\n";
        let (_gw, addr) = start(driver, &backend, "HTTP2", Some(policy));
        let threads: Vec<_> = (0..20)
            .map(|_| std::thread::spawn(move || client::get(addr, "app.test", "/delay/400").status))
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 200);
        }
        assert!(backend.connections.load(Relaxed) >= 4, "{} connections", backend.connections.load(Relaxed));
    }

    fn http2_max_requests_overflows_with_503(driver) {
        let backend = H2Backend::start();
        let policy = "    connectionPool:\n      http:\n        http2MaxRequests: 2\n";
        let (_gw, addr) = start(driver, &backend, "HTTP2", Some(policy));
        let threads: Vec<_> = (0..5)
            .map(|_| std::thread::spawn(move || client::get(addr, "app.test", "/delay/800")))
            .collect();
        let answers: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let ok = answers.iter().filter(|r| r.status == 200).count();
        let overflowed: Vec<_> = answers.iter().filter(|r| r.status == 503).collect();
        assert!((1..=2).contains(&ok), "{answers:?}");
        assert_eq!(ok + overflowed.len(), 5, "{answers:?}");
        assert!(overflowed.iter().all(|r| r.header("x-envoy-overloaded") == Some("true")), "{answers:?}");
        assert_eq!(backend.streams.load(Relaxed), ok);
    }

    fn grpc_unary_calls_carry_their_trailers_and_unavailable_is_retried(driver) {
        let backend = H2Backend::start();
        let (_gw, addr) = start(driver, &backend, "GRPC", None);
        let (ok, flaky) = with_h2(addr, async |mut c| {
            let body = b"\0\0\0\0\x02yo";
            (ask(&mut c, grpc_call("/grpc/ok"), body).await, ask(&mut c, grpc_call("/grpc/flaky"), body).await)
        });
        for got in [&ok, &flaky] {
            assert_eq!(got.status, 200);
            assert_eq!(got.headers.get("content-type").unwrap(), "application/grpc");
            assert_eq!(got.body, b"\0\0\0\0\x02hi");
            let trailers = got.trailers.as_ref().expect("trailers");
            assert_eq!(trailers.get("grpc-status").unwrap(), "0");
            assert_eq!(trailers.get("grpc-message").unwrap(), "fine");
        }
        // The trailers-only 14 was tried again, never relayed.
        assert_eq!(backend.streams.load(Relaxed), 3);
    }

    fn upstream_tls_offers_alpn_h2_to_http2_and_client_protocol_services(driver) {
        let ca = Ca::new("upstream ca");
        let backend = H2Backend::start_tls(&ca.server(&["app.local"]));
        let dir = tempfile::tempdir().unwrap();
        let ca_file = ca.write(dir.path(), "ca.pem");
        let policy = format!("    tls:\n      mode: SIMPLE\n      caCertificates: \"{}\"\n", ca_file.display());
        let (_gw, addr) = start(driver, &backend, "HTTP2", Some(&policy));
        let r = client::get(addr, "app.test", "/tls");
        assert_eq!(r.body_text(), "h2 GET /tls authority=app.test te=- x-route=on body=0", "{r:?}");
        assert_eq!(*backend.alpn.lock().unwrap(), [Some(b"h2".to_vec())]);
        // Under useClientProtocol, an h2 client's request goes up over TLS offering h2 too.
        let client_protocol = format!("    connectionPool:\n      http:\n        useClientProtocol: true\n{policy}");
        let (_gw, addr) = start(driver, &backend, "HTTP", Some(&client_protocol));
        let got = with_h2(addr, async |mut c| ask(&mut c, Request::get("http://app.test/c").body(()).unwrap(), b"").await);
        assert_eq!(String::from_utf8_lossy(&got.body), "h2 GET /c authority=app.test te=- x-route=on body=0");
        assert_eq!(*backend.alpn.lock().unwrap(), [Some(b"h2".to_vec()), Some(b"h2".to_vec())]);
    }

    fn use_client_protocol_speaks_the_clients_protocol(driver) {
        let backend = H2Backend::start();
        let policy = "    connectionPool:\n      http:\n        useClientProtocol: true\n        h2UpgradePolicy: UPGRADE\n";
        let (_gw, addr) = start(driver, &backend, "HTTP2", Some(policy));
        let got = with_h2(addr, async |mut c| ask(&mut c, Request::get("http://app.test/mine").body(()).unwrap(), b"").await);
        assert_eq!(String::from_utf8_lossy(&got.body), "h2 GET /mine authority=app.test te=- x-route=on body=0");
        // An HTTP/1.1 client's request goes up as HTTP/1.1, which this h2c-only backend cannot read.
        let r = client::get(addr, "app.test", "/theirs");
        assert_ne!(r.status, 200, "{r:?}");
        assert_eq!(backend.streams.load(Relaxed), 1);
    }

    fn max_requests_per_connection_and_idle_timeout_close_upstream_connections(driver) {
        let backend = H2Backend::start();
        let policy = "    connectionPool:\n      http:\n        maxRequestsPerConnection: 2\n        idleTimeout: 1s\n";
        let (gw, addr) = start(driver, &backend, "HTTP2", Some(policy));
        // One client connection: one worker, so one pool.
        let mut conn = client::Conn::open(addr);
        for _ in 0..3 {
            assert_eq!(conn.get("/seq", "app.test").status, 200);
        }
        assert_eq!(backend.connections.load(Relaxed), 2, "{}", gw.logs());
        // Idle past its timeout, the second connection, which had room left, is closed: the
        // next request opens another.
        std::thread::sleep(Duration::from_millis(2500));
        assert_eq!(conn.get("/later", "app.test").status, 200);
        assert_eq!(backend.connections.load(Relaxed), 3);
    }

    fn a_connection_the_upstream_sends_goaway_on_leaves_the_pool(driver) {
        let backend = H2Backend::start();
        let (_gw, addr) = start(driver, &backend, "HTTP2", None);
        let mut conn = client::Conn::open(addr);
        assert_eq!(conn.get("/goaway", "app.test").status, 200);
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..3 {
            assert_eq!(conn.get("/after", "app.test").status, 200);
        }
        assert_eq!(backend.connections.load(Relaxed), 2);
        assert_eq!(backend.streams.load(Relaxed), 4);
    }

    fn a_mirror_on_an_http2_service_gets_its_copy_over_http2(driver) {
        let (app, shadow) = (H2Backend::start(), H2Backend::start());
        let port = support::free_port();
        let http = "  - mirror:\n      host: shadow.local\n    route:\n    - destination:\n        host: app.local\n";
        let h2_entry = |name: &str, host: &str, backend: &H2Backend| {
            service_entry(name, host, 80, &[backend.port]).replace("protocol: HTTP", "protocol: HTTP2")
        };
        let yaml = docs(&[
            http_gateway("gw", port, &["app.test"]),
            virtual_service("app", "gw", &["app.test"], http),
            h2_entry("app", "app.local", &app),
            h2_entry("shadow", "shadow.local", &shadow),
        ]);
        let _gw = gateway!(driver).file("gw.yaml", &yaml).start();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let r = client::request(addr, "POST /m HTTP/1.1\r\nHost: app.test\r\ncontent-length: 3\r\nConnection: close\r\n\r\nabc");
        assert_eq!(r.body_text(), "h2 POST /m authority=app.test te=- x-route=- body=3", "{r:?}");
        let copied = support::wait_until(Duration::from_secs(5), || shadow.streams.load(Relaxed) == 1);
        assert!(copied.is_some(), "the mirror got no HTTP/2 stream");
    }

    fn a_try_past_its_per_try_timeout_is_retried_on_another_stream(driver) {
        let backend = H2Backend::start();
        let (gw, addr) = start(driver, &backend, "HTTP2", None);
        // One client connection: one worker, so one pool.
        let mut conn = client::Conn::open(addr);
        conn.send(b"GET /slow HTTP/1.1\r\nHost: app.test\r\n\r\n");
        // Once, under a loaded CI run, the connection closed here with no answer: the log says why.
        let r = conn.try_read_response(false).unwrap_or_else(|| panic!("no answer to /slow:\n{}", gw.logs()));
        assert_eq!(r.status, 504, "{r:?}");
        assert_eq!(backend.streams.load(Relaxed), 2);
        // The streams cut short left the connection usable.
        assert_eq!(conn.get("/after", "app.test").status, 200);
        assert_eq!(backend.connections.load(Relaxed), 1);
    }

    fn a_request_body_streams_up_while_an_http2_upstream_echoes_it(driver) {
        let backend = H2Backend::start();
        // The default retry policy: a body it might replay is not waited for.
        let (_gw, addr) = start_one(driver, backend.port, "HTTP2", "");
        let got = with_h2(addr, async |mut c| ping_pong(&mut c, "/echo", &["ping-0", "ping-1", "ping-2"]).await);
        assert_eq!(got, ["ping-0", "ping-1", "ping-2", ""]);
    }

    fn a_request_body_streams_up_while_an_http1_upstream_echoes_it(driver) {
        let echo = Backend::with_mode("echo", Mode::Echo);
        let (_gw, addr) = start_one(driver, echo.port(), "HTTP", "");
        let got = with_h2(addr, async |mut c| ping_pong(&mut c, "/echo", &["ping-0", "ping-1", "ping-2"]).await);
        assert_eq!(got, ["ping-0", "ping-1", "ping-2", ""]);
        // The backend records the request once it has sent its end back.
        assert!(support::wait_until(Duration::from_secs(5), || echo.count() == 1).is_some());
        assert_eq!(echo.last().body, b"ping-0ping-1ping-2");
    }

    fn a_streamed_body_cut_off_upstream_is_sent_again_whole_by_a_retry(driver) {
        let retry = "    retries:\n      attempts: 2\n      retryOn: reset\n";
        let pieces = [b"first-half|".to_vec(), b"second-half".to_vec()];
        // The first connection closes before any answer: after the body's first bytes (its
        // chunk's size line and a few of its data), or after all of it (37 bytes as chunked):
        // the retry sends the body once, its end once.
        for cut in [8, 37] {
            let app = Backend::with_mode("app", Mode::CutFirst(cut));
            let (_gw, addr) = start_one(driver, app.port(), "HTTP", retry);
            let (status, body) = with_h2(addr, async |mut c| post_slowly(&mut c, &pieces).await);
            assert_eq!((status, body.as_slice()), (200, &b"app"[..]), "cut at {cut}");
            assert_eq!(app.connections.load(Relaxed), 2, "cut at {cut}");
            assert_eq!(app.last().body, b"first-half|second-half", "cut at {cut}");
            // Nothing followed the body on the second connection, which the backend would have
            // read as a request of its own.
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(app.count(), 2, "cut at {cut}: {:?}", app.requests());
        }
    }

    fn an_http1_body_cut_off_upstream_is_sent_again_whole_by_a_retry(driver) {
        // A chunked body in two pieces, the first ending inside a chunk (a streaming client:
        // not waited for); the first connection closes after its first 5 bytes, and the retry
        // goes on from inside that chunk.
        let app = Backend::with_mode("app", Mode::CutFirst(5));
        let retry = "    retries:\n      attempts: 2\n      retryOn: reset\n";
        let (_gw, addr) = start_one(driver, app.port(), "HTTP", retry);
        let mut conn = client::Conn::open(addr);
        conn.send(b"POST /up HTTP/1.1\r\nHost: app.test\r\ntransfer-encoding: chunked\r\n\r\nb\r\nfirst-");
        std::thread::sleep(Duration::from_millis(300));
        conn.send(b"half|\r\nb\r\nsecond-half\r\n0\r\n\r\n");
        let r = conn.try_read_response(false).expect("an answer");
        assert_eq!((r.status, r.body_text().as_str()), (200, "app"));
        assert_eq!(app.connections.load(Relaxed), 2);
        assert_eq!(app.last().body, b"first-half|second-half");
    }

    fn a_streamed_body_past_the_replay_bound_is_not_retried_and_is_counted(driver) {
        // 24 KiB in three pieces: past the 16 KiB copy before the upstream cuts it off.
        let app = Backend::with_mode("app", Mode::CutFirst(20_000));
        let retry = "    retries:\n      attempts: 2\n      retryOn: reset\n";
        let (gw, addr) = start_one(driver, app.port(), "HTTP", retry);
        let pieces = vec![vec![b'x'; 8192]; 3];
        let (status, _) = with_h2(addr, async |mut c| post_slowly(&mut c, &pieces).await);
        assert_eq!(status, 503);
        assert_eq!(app.connections.load(Relaxed), 1, "not retried");
        // Counted as the exchange ends, which may be just after the client has the answer.
        let abandoned = || support::metric_sum(&gw.admin_get("/stats/prometheus").1, "envoy_cluster_retry_or_shadow_abandoned");
        assert!(support::wait_until(Duration::from_secs(5), || abandoned() == 1.0).is_some(), "counted {}", abandoned());
    }

    fn an_http1_chunked_upload_streams_up_while_an_http1_upstream_echoes_it(driver) {
        let echo = Backend::with_mode("echo", Mode::Echo);
        let (_gw, addr) = start_one(driver, echo.port(), "HTTP", "");
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // A gRPC call: the default retry policy would hold its body.
        let head = "POST /echo HTTP/1.1\r\nHost: app.test\r\ncontent-type: application/grpc\r\ntransfer-encoding: chunked\r\n\r\n";
        conn.write_all(head.as_bytes()).unwrap();
        let mut seen = Vec::new();
        // Each chunk goes only once the one before came back.
        for i in 0..3 {
            let chunk = format!("6\r\nping-{i}\r\n");
            conn.write_all(chunk.as_bytes()).unwrap();
            while !seen.windows(chunk.len()).any(|w| w == chunk.as_bytes()) {
                let mut buf = [0; 4096];
                let n = conn.read(&mut buf).unwrap_or_else(|e| panic!("chunk {i} did not come back: {e}; got {seen:?}"));
                assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
                seen.extend_from_slice(&buf[..n]);
            }
        }
        conn.write_all(b"0\r\n\r\n").unwrap();
        while !seen.ends_with(b"0\r\n\r\n") {
            let mut buf = [0; 4096];
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(seen).unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        // The head came while the body was still going up: it said the connection ends after
        // (an answer that ends before the body leaves it unread).
        assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
        // The backend records the request once it has sent its end back.
        assert!(support::wait_until(Duration::from_secs(5), || echo.count() == 1).is_some());
        assert_eq!(echo.last().body, b"ping-0ping-1ping-2");
    }
}
