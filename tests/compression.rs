//! Response compression through the real binary, configured by EnvoyFilter as ASM's "Enable
//! data compression" page writes it: each library's output decompressed by the system's
//! `gzip`, `brotli` and `zstd` to the original, over HTTP/1.1 and HTTP/2 clients; Envoy's
//! negotiation and the responses it leaves alone; a large body streamed through in bounded
//! memory; and `validate`'s verdicts on recognised and other patches.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use strait_test_support::config::{docs, http_gateway, service_entry, virtual_service};
use strait_test_support::{both_drivers, free_port, gateway, Gateway};

/// ASM's example, as its page gives it: gzip before the router of the ingress gateway's HTTP
/// connection manager, request compression off. Brotli and zstd follow it here, each its own
/// filter, as Envoy's docs chain several compressors.
const ASM_GZIP: &str = r#"apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: gzip
  namespace: istio-system
spec:
  workloadSelector:
    labels:
      istio: ingressgateway
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter:
              name: envoy.filters.http.router
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.compressor
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor
          response_direction_config:
            common_config:
              min_content_length: 100
              content_type:
              - 'text/html'
              - 'application/json'
          request_direction_config:
            common_config:
              enabled:
                default_value: false
                runtime_key: request_compressor_enabled
          compressor_library:
            name: text_optimized
            typed_config:
              '@type': type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip
              memory_level: 3
              window_bits: 10
              compression_level: BEST_COMPRESSION
              compression_strategy: DEFAULT_STRATEGY
"#;

/// Brotli and zstd after gzip (Envoy's registration order breaks `*`'s ties).
fn more_libraries(disable_on_etag: bool, remove_accept_encoding: bool) -> String {
    let library = |name: &str, typed: &str| {
        format!(
            r#"  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter:
              name: envoy.filters.http.router
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.compressor
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor
          response_direction_config:
            common_config:
              min_content_length: 100
              content_type: [application/json]
            disable_on_etag_header: {disable_on_etag}
            remove_accept_encoding_header: {remove_accept_encoding}
          compressor_library:
            name: {name}
            typed_config:
{typed}"#
        )
    };
    format!(
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata:\n  name: more\n  namespace: istio-system\nspec:\n  priority: 1\n  configPatches:\n{}{}",
        library(
            "brotli",
            "              '@type': type.googleapis.com/envoy.extensions.compression.brotli.compressor.v3.Brotli\n              quality: 5\n"
        ),
        library(
            "zstd",
            "              '@type': type.googleapis.com/envoy.extensions.compression.zstd.compressor.v3.Zstd\n              compression_level: 3\n              enable_checksum: true\n"
        ),
    )
}

/// A JSON document of `n` bytes.
fn json(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 64);
    out.push(b'[');
    let mut i = 0;
    while out.len() < n {
        out.extend_from_slice(
            format!(r#"{{"id":{i},"name":"item-{i}","tags":["alpha","beta"],"price":{}}},"#, i * 7 % 1000).as_bytes(),
        );
        i += 1;
    }
    out.truncate(n);
    out
}

/// The body `/chunked/N` and `/stream/N` send: 64 KiB of JSON, repeated up to `n` bytes.
fn repeated(n: usize) -> Vec<u8> {
    json(64 * 1024).into_iter().cycle().take(n).collect()
}

/// An HTTP/1.1 backend that answers by path (see `answer`) and records each request's
/// `accept-encoding`.
struct Origin {
    addr: SocketAddr,
    accept_encoding: Arc<Mutex<Vec<Option<String>>>>,
}

impl Origin {
    fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = record.clone();
                std::thread::spawn(move || serve(stream, &record));
            }
        });
        Origin { addr, accept_encoding: seen }
    }
}

fn serve(stream: TcpStream, record: &Mutex<Vec<Option<String>>>) {
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let head = line.starts_with("HEAD ");
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut accept = None;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                if n.eq_ignore_ascii_case("accept-encoding") {
                    accept = Some(v.trim().to_string());
                }
            }
        }
        record.lock().unwrap().push(accept);
        if answer(&mut w, &path, head).is_err() {
            return;
        }
    }
}

/// `/json/N`: N bytes of JSON with a length; `/chunked/N`: the same, chunked; `/stream/N`: N
/// bytes of JSON, chunked, made as they are sent; `/small`: 20 bytes; `/png`: an image;
/// `/no-transform`, `/encoded`, `/strong-etag`, `/weak-etag`, `/vary`: JSON with that line;
/// `/204`, `/304`.
fn answer(w: &mut TcpStream, path: &str, head: bool) -> std::io::Result<()> {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let what = parts.next().unwrap_or_default();
    let n: usize = parts.next().and_then(|n| n.parse().ok()).unwrap_or(4096);
    let fixed = |w: &mut TcpStream, extra: &str, ct: &str, body: &[u8]| {
        let head_bytes =
            format!("HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ncontent-length: {}\r\n{extra}\r\n", body.len());
        w.write_all(head_bytes.as_bytes())?;
        if !head {
            w.write_all(body)?;
        }
        Ok(())
    };
    match what {
        "json" => fixed(w, "", "application/json; charset=utf-8", &json(n)),
        "small" => fixed(w, "", "application/json", &json(20)),
        "png" => fixed(w, "", "image/png", &json(n)),
        "no-transform" => fixed(w, "cache-control: public, no-transform\r\n", "application/json", &json(n)),
        "encoded" => fixed(w, "content-encoding: identity\r\n", "application/json", &json(n)),
        "strong-etag" => fixed(w, "etag: \"v1\"\r\n", "application/json", &json(n)),
        "weak-etag" => fixed(w, "etag: W/\"v1\"\r\n", "application/json", &json(n)),
        "vary" => fixed(w, "vary: Origin\r\n", "application/json", &json(n)),
        "204" => w.write_all(b"HTTP/1.1 204 No Content\r\ncontent-type: application/json\r\n\r\n"),
        "304" => {
            w.write_all(b"HTTP/1.1 304 Not Modified\r\ncontent-type: application/json\r\ncontent-length: 4096\r\n\r\n")
        }
        "chunked" | "stream" => {
            w.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")?;
            if head {
                return Ok(());
            }
            let piece = json(64 * 1024);
            let mut left = n;
            while left > 0 {
                let k = left.min(piece.len());
                w.write_all(format!("{k:x}\r\n").as_bytes())?;
                w.write_all(&piece[..k])?;
                w.write_all(b"\r\n")?;
                left -= k;
            }
            w.write_all(b"0\r\n\r\n")
        }
        _ => fixed(w, "", "text/plain", b"not found"),
    }
}

/// A gateway on a fresh port for `app.test`, routed to `origin`, with `filters` (EnvoyFilter
/// documents).
fn start(driver: strait_test_support::Driver, origin: &Origin, filters: &[&str]) -> (Gateway, SocketAddr) {
    let port = free_port();
    let http = "  - route:\n    - destination:\n        host: origin.local\n        port:\n          number: 80\n";
    let mut parts = vec![
        http_gateway("gw", port, &["app.test"]),
        virtual_service("app", "gw", &["app.test"], http),
        service_entry("origin", "origin.local", 80, &[origin.addr.port()]),
    ];
    parts.extend(filters.iter().map(|f| f.to_string()));
    let gw = gateway!(driver).workers(1).file("gw.yaml", &docs(&parts)).start();
    (gw, SocketAddr::from(([127, 0, 0, 1], port)))
}

struct Fetched {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Fetched {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Fetches `path` with curl (HTTP/1.1, or HTTP/2 with prior knowledge), sending
/// `accept-encoding: accept` when given; the body as it came, never decoded.
fn fetch(addr: SocketAddr, path: &str, accept: Option<&str>, h2: bool, head: bool) -> Fetched {
    let dir = tempfile::tempdir().unwrap();
    let (headers, body) = (dir.path().join("h"), dir.path().join("b"));
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "60", "-H", "host: app.test", "-D"]).arg(&headers).arg("-o").arg(&body);
    cmd.arg(if h2 { "--http2-prior-knowledge" } else { "--http1.1" });
    if head {
        cmd.arg("-I");
    }
    if let Some(a) = accept {
        cmd.args(["-H", &format!("accept-encoding: {a}")]);
    }
    let out = cmd.arg(format!("http://{addr}{path}")).output().unwrap();
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    let raw = std::fs::read_to_string(&headers).unwrap();
    let mut lines = raw.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Fetched { status, headers, body: std::fs::read(&body).unwrap_or_default() }
}

/// Runs the system's `tool -dc` on `data`: the decompressed bytes, or `None` (with a message)
/// when the tool is missing here.
fn decompress(tool: &str, data: &[u8]) -> Option<Vec<u8>> {
    let child =
        Command::new(tool).arg("-dc").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let Ok(mut child) = child else {
        eprintln!("SKIPPED: `{tool}` is not installed here (.ci/run installs it); its output was not checked");
        return None;
    };
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success(), "{tool} -dc failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(out.stdout)
}

both_drivers! {
    fn each_library_decompresses_to_the_original(driver) {
        let origin = Origin::start();
        let more = more_libraries(false, false);
        let (gw, addr) = start(driver, &origin, &[ASM_GZIP, &more]);
        for h2 in [false, true] {
            for (path, original) in [("/json/100000", json(100_000)), ("/chunked/300000", repeated(300_000))] {
                for (accept, tool) in [("gzip", "gzip"), ("br", "brotli"), ("zstd", "zstd")] {
                    let r = fetch(addr, path, Some(accept), h2, false);
                    let what = format!("{path} {accept} h2={h2}");
                    assert_eq!(r.status, 200, "{what}\n{}", gw.logs());
                    assert_eq!(r.header("content-encoding"), Some(accept), "{what}: {:?}", r.headers);
                    assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{what}");
                    assert_eq!(r.header("content-length"), None, "{what}");
                    assert!(r.body.len() < original.len() / 3, "{what}: {} bytes compressed", r.body.len());
                    if let Some(plain) = decompress(tool, &r.body) {
                        assert!(plain == original, "{what}: decompressed body differs from the original");
                    }
                }
            }
        }
    }

    fn accept_encoding_is_negotiated_as_envoy_does(driver) {
        let origin = Origin::start();
        let more = more_libraries(false, false);
        let (_gw, addr) = start(driver, &origin, &[ASM_GZIP, &more]);
        let encoding = |accept: &str| fetch(addr, "/json/4096", Some(accept), false, false).header("content-encoding").map(str::to_owned);
        // The highest q-value wins; the first item on a tie.
        assert_eq!(encoding("gzip;q=0.5, br;q=0.8, zstd;q=0.1").as_deref(), Some("br"));
        assert_eq!(encoding("zstd, gzip").as_deref(), Some("zstd"));
        // `*` takes the first compressor registered (gzip: the root namespace's priority 0).
        assert_eq!(encoding("*").as_deref(), Some("gzip"));
        // An explicit q=0 beats `*`.
        assert_eq!(encoding("gzip;q=0, *").as_deref(), Some("br"));
        // identity preferred, an unknown coding, and nothing acceptable: no compression.
        assert_eq!(encoding("identity, gzip;q=0.5").as_deref(), None);
        assert_eq!(encoding("deflate").as_deref(), None);
        assert_eq!(encoding("gzip;q=0").as_deref(), None);
        // Codings compare case-sensitively in Envoy.
        assert_eq!(encoding("GZIP").as_deref(), None);
    }

    fn responses_envoy_leaves_alone(driver) {
        let origin = Origin::start();
        let more = more_libraries(false, false);
        let (_gw, addr) = start(driver, &origin, &[ASM_GZIP, &more]);
        let get = |path: &str| fetch(addr, path, Some("gzip"), false, false);
        // No accept-encoding: identity, yet `vary` tells caches the resource may be compressed.
        let r = fetch(addr, "/json/4096", None, false, false);
        assert_eq!((r.header("content-encoding"), r.header("vary")), (None, Some("Accept-Encoding")));
        assert_eq!(r.body, json(4096));
        // Shorter than min_content_length, a type not listed, no-transform, encoded already.
        for path in ["/small", "/png/4096", "/no-transform/4096", "/encoded/4096"] {
            let r = get(path);
            assert_eq!(r.header("content-encoding").filter(|e| *e != "identity"), None, "{path}");
            assert_eq!(r.header("vary"), None, "{path}");
            assert_eq!(r.header("content-length"), Some(r.body.len().to_string().as_str()), "{path}");
        }
        // HEAD, 204 and 304 have no body to compress.
        let r = fetch(addr, "/json/4096", Some("gzip"), false, true);
        assert_eq!((r.status, r.header("content-encoding")), (200, None));
        assert_eq!(r.header("content-length"), Some("4096"));
        for path in ["/204", "/304"] {
            let r = get(path);
            assert_eq!(r.header("content-encoding"), None, "{path}");
        }
        // A strong ETag is dropped from a compressed response; a weak one stays.
        let r = get("/strong-etag/4096");
        assert_eq!((r.header("content-encoding"), r.header("etag")), (Some("gzip"), None));
        let r = get("/weak-etag/4096");
        assert_eq!((r.header("content-encoding"), r.header("etag")), (Some("gzip"), Some("W/\"v1\"")));
        // The upstream's vary keeps its values.
        assert_eq!(get("/vary/4096").header("vary"), Some("Origin, Accept-Encoding"));
    }

    fn disable_on_etag_and_remove_accept_encoding(driver) {
        let origin = Origin::start();
        let more = more_libraries(true, true);
        let (_gw, addr) = start(driver, &origin, &[&more]);
        let r = fetch(addr, "/strong-etag/4096", Some("br"), false, false);
        assert_eq!((r.header("content-encoding"), r.header("etag")), (None, Some("\"v1\"")));
        let r = fetch(addr, "/json/4096", Some("br"), false, false);
        assert_eq!(r.header("content-encoding"), Some("br"));
        // The upstream never saw what the client accepts.
        let seen = origin.accept_encoding.lock().unwrap().clone();
        assert_eq!(seen, vec![None, None]);
    }

    fn a_large_body_streams_through_in_bounded_memory(driver) {
        let origin = Origin::start();
        let (gw, addr) = start(driver, &origin, &[ASM_GZIP]);
        let len: usize = 256 << 20;
        // curl | gzip -dc | wc -c: nothing here holds the body whole either.
        let script = format!(
            "curl -s --http1.1 -H 'host: app.test' -H 'accept-encoding: gzip' http://{addr}/stream/{len} | gzip -dc | wc -c"
        );
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        let count: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
        assert_eq!(count, len, "{}\n{}", String::from_utf8_lossy(&out.stderr), gw.logs());
        let status = std::fs::read_to_string(format!("/proc/{}/status", gw.child.id())).unwrap();
        let peak_kib: usize = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap();
        assert!(peak_kib < 128 << 10, "the gateway peaked at {peak_kib} KiB for a {len}-byte body");
    }
}

/// `strait validate` on EnvoyFilters: a malformed compressor is invalid (file, document,
/// field), any patch Strait does not act on is listed as not enforced, naming the file.
#[test]
fn validate_judges_envoy_filters() {
    let dir = tempfile::tempdir().unwrap();
    let bad = ASM_GZIP.replace("window_bits: 10", "window_bits: 20");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, &bad).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strait")).args(["validate", "--config"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("bad.yaml"), "{text}");
    assert!(text.contains("compressor_library.typed_config.window_bits"), "{text}");

    let other = r#"apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: lua
  namespace: istio-system
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.lua
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          inlineCode: "function envoy_on_request(h) end"
"#;
    let path = dir.path().join("lua.yaml");
    std::fs::write(&path, format!("{other}---\n{ASM_GZIP}")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strait")).args(["validate", "--config"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("lua.yaml") && text.contains("not enforced"), "{text}");
    assert!(text.contains("HTTP_FILTER patch is accepted"), "{text}");
    // ASM's example is acted on; its memory_level has no counterpart in zlib-rs's API.
    let about_gzip: Vec<&str> = text.lines().filter(|l| l.contains("EnvoyFilter istio-system/gzip")).collect();
    assert_eq!(about_gzip.len(), 1, "{text}");
    assert!(about_gzip[0].contains("memory_level"), "{text}");
}
