//! MeshConfig `pathNormalization` end to end, as Envoy normalizes under istiod's settings:
//! the normalized path is what routing and AuthorizationPolicy see and what the backend
//! receives, so no spelling of a denied path slips past a DENY (CVE-2021-31920); `%00` and
//! malformed escapes get 400.

use strait_test_support::{self as support, both_drivers, gateway};

use std::net::SocketAddr;

use support::backend::Backend;
use support::client;
use support::config::{docs, service_entry};
use support::{Driver, Gateway};

const DENY_ADMIN: &str =
    "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-admin\n  \
                          namespace: istio-system\nspec:\n  action: DENY\n  rules:\n  - to:\n    - operation:\n        \
                          paths: [/admin, \"/admin/*\"]\n";

/// The gateway for `app.test` under `mode` (`None`: no MeshConfig, the default).
fn start(driver: Driver, app: &Backend, mode: Option<&str>) -> (Gateway, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut builder = gateway!(driver).file("policies.yaml", &docs(&[DENY_ADMIN.to_owned()]));
    if let Some(mode) = mode {
        let mesh = dir.path().join("mesh.yaml");
        std::fs::write(&mesh, format!("pathNormalization:\n  normalization: {mode}\n")).unwrap();
        builder = builder.arg("--mesh").arg(mesh.to_str().unwrap());
    }
    let http = "  - route:\n    - destination:\n        host: app.local\n";
    let (gw, addr) = builder.start_app(http, vec![service_entry("app", "app.local", 80, &[app.port()])]);
    (gw, addr, dir)
}

/// Each spelling's answer under `mode`, and the path the backend got when it got one:
/// `(spelling, status, path upstream)`.
fn check(driver: Driver, mode: Option<&str>, cases: &[(&str, u16, &str)]) {
    let app = Backend::start("app");
    let (gw, addr, _dir) = start(driver, &app, mode);
    for (spelling, status, upstream) in cases {
        let before = app.count();
        let got = client::request(
            addr,
            &format!("GET {spelling}?q=1 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(got.status, *status, "{mode:?} {spelling}\n{}", gw.logs());
        if *status == 200 {
            assert_eq!(app.last().target, format!("{upstream}?q=1"), "{mode:?} {spelling}");
        } else {
            assert_eq!(app.count(), before, "{mode:?} {spelling} reached the backend");
        }
    }
}

/// Spellings every normalizing mode reads as `/admin`.
const DOTS: [&str; 6] = ["/admin", "/./admin", "/a/../admin", "/%61dmin", "/%2e%2e/admin", "/x/..\\admin"];

both_drivers! {
    fn base_the_default_resolves_dots_escapes_and_backslashes(driver) {
        let mut cases: Vec<(&str, u16, &str)> = DOTS.iter().map(|s| (*s, 403, "")).collect();
        cases.extend([
            ("/a/./b/../c", 200, "/a/c"),
            ("/%7Euser", 200, "/~user"),
            ("//admin", 200, "//admin"),
            ("/admin%2F", 200, "/admin%2F"),
            ("/a%00b", 400, ""),
            ("/a%zz", 400, ""),
        ]);
        check(driver, None, &cases);
    }

    fn merge_slashes_also_merges_slashes(driver) {
        let mut cases: Vec<(&str, u16, &str)> = DOTS.iter().map(|s| (*s, 403, "")).collect();
        cases.extend([("//admin", 403, ""), ("/a//b", 200, "/a/b"), ("/admin%2F", 200, "/admin%2F")]);
        check(driver, Some("MERGE_SLASHES"), &cases);
    }

    fn decode_and_merge_slashes_also_decodes_escaped_slashes(driver) {
        let mut cases: Vec<(&str, u16, &str)> = DOTS.iter().map(|s| (*s, 403, "")).collect();
        cases.extend([("//admin", 403, ""), ("/admin%2F", 403, ""), ("/x%2F..%2Fadmin", 403, ""), ("/a%2fb", 200, "/a/b")]);
        check(driver, Some("DECODE_AND_MERGE_SLASHES"), &cases);
    }

    fn none_passes_the_path_as_sent(driver) {
        check(driver, Some("NONE"), &[("/admin", 403, ""), ("/./admin", 200, "/./admin"), ("/%61dmin", 200, "/%61dmin")]);
    }
}
