//! `strait validate` and `strait run` judging configs, through the real binary: exit codes and
//! what a user reads on stderr.

use strait_test_support::{self as support, both_drivers, gateway};

use std::path::Path;
use std::process::{Command, Output};

use support::config::{docs, http_gateway};
use support::free_port;

fn strait(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strait")).args(args).output().expect("strait runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn lines_starting<'a>(text: &'a str, prefix: &'a str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn every_broken_fixture_fails_with_one_error_naming_its_file() {
    let mut fixtures: Vec<_> = std::fs::read_dir("tests/fixtures/config/broken")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 25, "{} fixtures", fixtures.len());
    for path in &fixtures {
        // The secrets the fixtures' credentialNames resolve to, as the unit test has them.
        let secrets = "tests/fixtures/snapshot/secrets";
        let out = strait(&["validate", "--config", path.to_str().unwrap(), "--secrets-dir", secrets]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", path.display());
        let errors = lines_starting(&err, "error: ");
        assert_eq!(errors.len(), 1, "{}: {err}", path.display());
        assert!(errors[0].starts_with(&format!("error: {}:", path.display())), "{}", errors[0]);
        assert!(out.stdout.is_empty(), "no ok line for {}", path.display());
    }
}

#[test]
fn a_dangling_reference_fails_validate_and_names_the_field() {
    let out = strait(&["validate", "--config", "tests/fixtures/config/broken/22-missing-gateway.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        lines_starting(&stderr(&out), "error: "),
        ["error: tests/fixtures/config/broken/22-missing-gateway.yaml:8: document 1: VirtualService default/reviews: \
          spec.gateways[0]: referenced gateway not found: edge/gw"]
    );
}

#[test]
fn the_bundled_configs_validate_clean() {
    for (dir, listeners) in [("config", 2), ("config/examples/bookinfo", 1)] {
        let out = strait(&["validate", "--config", dir]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{dir}: {err}");
        assert!(err.is_empty(), "{dir}: {err}");
        let ok = format!("ok: {listeners} listeners");
        assert!(String::from_utf8_lossy(&out.stdout).starts_with(&ok), "{dir}");
    }
}

/// The first example of Istio's Gateway reference selects `app: my-gateway-controller`.
const OTHER_WORKLOAD: &str = "tests/fixtures/config/seeds/001-namespace-restricted-gateway.yaml";

#[test]
fn a_gateway_selecting_another_workload_fails_validate_naming_both_label_sets() {
    let out = strait(&["validate", "--config", OTHER_WORKLOAD]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no ok line");
    assert_eq!(
        lines_starting(&stderr(&out), "error: "),
        [format!(
            "error: {OTHER_WORKLOAD}:8: document 1: Gateway some-config-namespace/my-gateway: spec.selector: \
             referenced selector not found: \"app=my-gateway-controller\" (IST0101): this instance's labels \
             (--label) are istio=ingressgateway, so none of this Gateway's servers is served"
        )]
    );
    let out = strait(&["validate", "--config", OTHER_WORKLOAD, "--label", "app=my-gateway-controller"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: 1 listeners"));
}

/// Istio kinds Strait does not act on yet, and one of another API group.
const POLICY: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: deny-all\n  \
                      namespace: istio-system\nspec: {}\n---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\n\
                      metadata:\n  name: mesh-default\nspec:\n  accessLogging: [{providers: [{name: envoy}]}]\n---\n\
                      apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\n";

both_drivers! {
    fn run_serves_with_a_warning_for_each_analyze_finding_and_kind_not_enforced(driver) {
        let config = std::fs::read_to_string(OTHER_WORKLOAD).unwrap();
        let port = free_port();
        let conflict = docs(&[http_gateway("bookinfo", port, &["*"]), http_gateway("httpbin", port, &["*"])]);
        let gw = gateway!(driver)
            .file("gw.yaml", &config)
            .file("policy.yaml", POLICY)
            .file("conflict.yaml", &conflict)
            .start();
        let logs = gw.logs();
        for what in [
            "spec.selector: referenced selector not found",
            "Gateway default/bookinfo: spec.servers[0]: conflict with gateways default/httpbin",
            "Gateway default/httpbin: spec.servers[0]: conflict with gateways default/bookinfo",
            "PeerAuthentication istio-system/deny-all: PeerAuthentication is accepted, not enforced yet",
            "Telemetry default/mesh-default: Telemetry is accepted, not enforced yet",
        ] {
            let warning = logs.lines().find(|l| l.contains(what));
            assert!(warning.is_some_and(|l| l.contains("WARN")), "{what}: {logs}");
        }
    }
}

#[test]
fn gateways_claiming_one_port_and_host_fail_validate_as_istioctl_analyze_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.yaml");
    std::fs::write(&file, docs(&[http_gateway("bookinfo", 8080, &["*"]), http_gateway("httpbin", 8080, &["*"])]))
        .unwrap();
    let out = strait(&["validate", "--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let f = file.display();
    assert_eq!(
        lines_starting(&stderr(&out), "error: "),
        [
            format!(
                "error: {f}:10: document 1: Gateway default/bookinfo: spec.servers[0]: conflict with gateways \
                 default/httpbin (workload selector istio=ingressgateway, port 8080, hosts *) (IST0145)"
            ),
            format!(
                "error: {f}:26: document 2: Gateway default/httpbin: spec.servers[0]: conflict with gateways \
                 default/bookinfo (workload selector istio=ingressgateway, port 8080, hosts *) (IST0145)"
            ),
        ]
    );
}

#[test]
fn kinds_not_enforced_yet_are_listed_naming_the_file_and_pass() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("config/quickstart.yaml", dir.path().join("gw.yaml")).unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let out = strait(&["validate", "--config", dir.path().to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let p = policy.display();
    assert_eq!(
        lines_starting(&err, "warning: "),
        [
            format!(
                "warning: {p}:1: document 1: PeerAuthentication istio-system/deny-all: PeerAuthentication is \
                 accepted, not enforced yet"
            ),
            format!(
                "warning: {p}:8: document 2: Telemetry default/mesh-default: Telemetry is accepted, not enforced yet"
            ),
        ]
    );
}

#[test]
fn fields_not_enforced_are_warnings_and_pass() {
    let dir = tempfile::tempdir().unwrap();
    let quickstart = std::fs::read_to_string("config/quickstart.yaml").unwrap();
    let with_localities = quickstart.replacen(
        "  - name: demo\n",
        "  - name: demo\n    retries:\n      attempts: 1\n      retryRemoteLocalities: true\n",
        1,
    );
    assert_ne!(with_localities, quickstart);
    let file = dir.path().join("gw.yaml");
    std::fs::write(&file, with_localities).unwrap();
    let out = strait(&["validate", "--config", file.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let warnings = lines_starting(&err, "warning: ");
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].ends_with("spec.http[0].retries.retryRemoteLocalities: accepted, not enforced yet"),
        "{}",
        warnings[0]
    );
}

#[test]
fn weights_are_relative_and_only_a_zero_total_is_refused() {
    let fixture = "tests/fixtures/config/broken/11-weights-all-zero.yaml";
    let zero = std::fs::read_to_string(fixture).unwrap();
    let weighted = zero.replacen("      weight: 0\n", "      weight: 1\n", 1).replacen(
        "    - destination: {host: reviews.example.com}\n---",
        "    - destination: {host: reviews.example.com}\n      weight: 3\n---",
        1,
    );
    assert_ne!(weighted, zero);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weights.yaml");
    std::fs::write(&file, weighted).unwrap();
    let out = strait(&["validate", "--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "weights 1 and 3: {}", stderr(&out));
    let out = strait(&["validate", "--config", fixture]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("spec.http[0].route: total destination weight = 0"), "{}", stderr(&out));
}

#[test]
fn a_config_with_nothing_strait_reads_fails_validate_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let app = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\n";
    std::fs::write(dir.path().join("app.yaml"), app).unwrap();
    let out = strait(&["validate", "--config", path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no ok line");
    assert_eq!(
        lines_starting(&stderr(&out), "error: "),
        [format!(
            "error: --config {path}: nothing Strait reads: 1 document, not an Istio resource (*.istio.io) or a v1 \
             Secret"
        )]
    );
    let out = strait(&["run", "--config", path, "--admin", "127.0.0.1:0"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("error: --config {path}: nothing Strait reads")), "{err}");
}

#[test]
fn run_refuses_an_invalid_config_before_listening() {
    let fixture = "tests/fixtures/config/broken/11-weights-all-zero.yaml";
    assert!(Path::new(fixture).exists());
    let out = strait(&["run", "--config", fixture, "--admin", "127.0.0.1:0"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(lines_starting(&err, "error: ").len(), 1, "{err}");
    assert!(!err.contains("listening on"), "{err}");
}

#[test]
fn a_proxy_config_lists_the_fields_not_enforced_and_refuses_a_bad_value_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gw.yaml");
    std::fs::write(&config, docs(&[http_gateway("gw", free_port(), &["*"])])).unwrap();
    let proxy = dir.path().join("proxy.yml");
    let resource = "apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nmetadata:\n  name: gw\nspec:\n";
    let args = |proxy: &Path| {
        strait(&["validate", "--config", config.to_str().unwrap(), "--proxy-config", proxy.to_str().unwrap()])
    };
    std::fs::write(&proxy, format!("{resource}  concurrency: 2\n  httpsHttp2Disabled: true\n")).unwrap();
    let out = args(&proxy);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let p = proxy.display();
    assert_eq!(
        lines_starting(&stderr(&out), "warning: "),
        [format!("warning: {p}:6: ProxyConfig: spec.concurrency: accepted, not enforced yet")]
    );
    std::fs::write(&proxy, format!("{resource}  httpsHttp2Disabled: sometimes\n")).unwrap();
    let out = args(&proxy);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        lines_starting(&stderr(&out), "error: "),
        [format!("error: {p}:6: ProxyConfig: spec.httpsHttp2Disabled: expected true or false")]
    );
    let out = args(&dir.path().join("missing.yml"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.yml"), "{}", stderr(&out));
}
