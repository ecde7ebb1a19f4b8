//! What ships beside the code keeps its word: the configs in config/ answer as their comments
//! (and README) say, run by the real binary with the test's own ports put in place of the ones
//! the files name; README names only files of the repository; LICENSE is the license Cargo.toml
//! declares.

use strait_test_support::{self as support, both_drivers, gateway};

use std::net::SocketAddr;

use support::backend::Backend;
use support::client::{self, Conn};
use support::free_port;

/// The file at `path` with each `(from, to)` replaced.
fn bundled(path: &str, replace: &[(&str, String)]) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let out = replace.iter().fold(text.clone(), |text, (from, to)| text.replace(from, to));
    for (from, _) in replace {
        assert!(text.contains(from), "{path} no longer holds `{from}`");
    }
    out
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The quickstart with its ports 8080, 8081 and 9000 (demo.local) moved to `http`, `tcp`, `demo`.
fn quickstart(http: u16, tcp: u16, demo: u16) -> String {
    bundled(
        "config/quickstart.yaml",
        &[("8080", http.to_string()), ("8081", tcp.to_string()), ("9000", demo.to_string())],
    )
}

both_drivers! {
    fn the_quickstart_serves_its_routes(driver) {
        let demo = Backend::start("demo");
        let (http, tcp) = (free_port(), free_port());
        let _gw = gateway!(driver).file("quickstart.yaml", &quickstart(http, tcp, demo.port())).start();

        let hello = client::get(local(http), "localhost", "/");
        assert_eq!(hello.status, 200);
        assert!(hello.body_text().starts_with("Hello from Strait"), "{}", hello.body_text());
        let spliced = client::get(local(tcp), "localhost", "/");
        assert_eq!((spliced.status, spliced.body_text()), (200, hello.body_text()), "the TCP route to the same answer");
        assert_eq!(client::get(local(http), "localhost", "/nowhere").status, 404);

        // The prefix is rewritten, so a server of files (python3 -m http.server) finds them.
        assert_eq!(client::get(local(http), "localhost", "/demo/").status, 200);
        assert_eq!(demo.last().target, "/");
        assert_eq!(client::get(local(http), "localhost", "/demo/a.txt").status, 200);
        assert_eq!(demo.last().target, "/a.txt");
    }

    fn the_quickstart_names_the_503_it_sends(driver) {
        let (http, tcp, demo) = (free_port(), free_port(), support::closed_port());
        let _gw = gateway!(driver).file("quickstart.yaml", &quickstart(http, tcp, demo)).start();
        let refused = client::get(local(http), "localhost", "/demo/");
        assert_eq!(refused.status, 503);
        let file = std::fs::read_to_string("config/quickstart.yaml").unwrap();
        let body = refused.body_text();
        assert!(file.contains(body.trim_end()), "config/quickstart.yaml does not promise the body sent: {body}");
    }

    fn bookinfo_serves_the_hosts_its_virtual_service_names(driver) {
        let (prod, qa, special) = (Backend::start("prod"), Backend::start("qa"), Backend::start("qa-special"));
        let port = free_port();
        let yaml = bundled(
            "config/examples/bookinfo/bookinfo.yaml",
            &[
                ("number: 9080 # gateway port", format!("number: {port}")),
                ("http: 19080", format!("http: {}", prod.port())),
                ("http: 29080", format!("http: {}", qa.port())),
                ("special: 27777", format!("special: {}", special.port())),
            ],
        );
        let _gw = gateway!(driver).file("bookinfo.yaml", &yaml).start();
        for host in ["uk.bookinfo.com", "eu.bookinfo.com", "reviews.prod.svc.cluster.local"] {
            let answer = client::get(local(port), host, "/reviews/1");
            assert_eq!(answer.status, 200, "{host}");
            assert!(matches!(answer.header("x-backend"), Some("prod" | "qa")), "{host}: {:?}", answer.header("x-backend"));
        }
        assert_eq!(client::get(local(port), "bookinfo.example", "/reviews/1").status, 404, "not any host");
        let mut conn = Conn::open(local(port));
        conn.send(b"GET /reviews/1 HTTP/1.1\r\nHost: uk.bookinfo.com\r\nCookie: user=dev-123\r\n\r\n");
        assert_eq!(conn.read_response(false).header("x-backend"), Some("qa-special"));
    }
}

#[test]
fn readme_names_only_files_of_the_repository() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let named: Vec<&str> = readme.split('`').skip(1).step_by(2).filter(|t| !t.contains(char::is_whitespace)).collect();
    for path in &named {
        assert!(!path.starts_with("../"), "README names `{path}`, outside the repository");
    }
    let tops = ["config/", "perf/", "src/", "tests/", "bench/", "fuzz/", "vendor/", "LICENSE"];
    let files: Vec<&&str> =
        named.iter().filter(|p| tops.iter().any(|top| p.starts_with(top)) && !p.contains('*')).collect();
    assert!(files.len() > 20, "{files:?}");
    for path in files {
        assert!(std::path::Path::new(path).exists(), "README names `{path}`, which does not exist");
    }
}

#[test]
fn the_license_file_is_the_one_cargo_toml_declares() {
    let manifest = std::fs::read_to_string("Cargo.toml").unwrap();
    assert!(manifest.lines().any(|l| l == "license = \"Apache-2.0\""), "Cargo.toml's license changed");
    let license = std::fs::read_to_string("LICENSE").expect("a LICENSE file");
    let words: Vec<&str> = license.split_whitespace().collect();
    assert_eq!(words[..4], ["Apache", "License", "Version", "2.0,"]);
    assert!(license.contains("END OF TERMS AND CONDITIONS"), "the whole text");
}
