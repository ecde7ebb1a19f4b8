//! `strait-bench scenario`: a whole comparison end to end (the built-in backend, Strait as
//! cargo built it, the load), a peer that fails beside one that works, and a bad file.

use std::fs;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use super::{bench, strait};

/// Two seconds of 16 connections against the backend directly and through Strait.
const TINY: &str = "name: tiny\ndescription: the end-to-end test\nrounds: 1\nduration: 2s\nwarmup: 0s\n\
                    peers: [direct, strait]\nbackend: {size: 5}\nload: {connections: [16]}\n";

/// Runs `strait-bench scenario ARGS`, killed if it runs past a minute.
fn scenario(args: &[&str]) -> Output {
    let mut child = bench()
        .arg("scenario")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strait-bench starts");
    let until = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            child.kill().unwrap();
            panic!("strait-bench scenario {args:?} ran past a minute: {:?}", child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let file = dir.join(name);
    fs::write(&file, text).unwrap();
    file.display().to_string()
}

#[test]
fn a_two_second_scenario_compares_strait_with_direct() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "tiny.yaml", TINY);
    let out = scenario(&[&file, "--strait", &strait(), "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(summary["scenario"], "tiny");
    let rows = summary["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{summary:#}");
    let (direct, strait) = (&rows[0], &rows[1]);
    assert_eq!((direct["peer"].as_str(), strait["peer"].as_str()), (Some("direct"), Some("strait")));
    for row in rows {
        assert_eq!(row["connections"], 16);
        assert_eq!(row["rounds_ok"], 1, "{row:#}\n{stderr}");
        assert!(row["ops_per_second"].as_f64().unwrap() > 0.0, "{row:#}");
        assert!(row["p99_us"].as_f64().unwrap() > 0.0, "{row:#}");
    }
    assert!(direct["cpu_us_per_op"].is_null() && direct["rss_mib"].is_null(), "{direct:#}");
    assert!(strait["cpu_us_per_op"].as_f64().unwrap() > 0.0, "{strait:#}");
    assert!(strait["rss_mib"].as_f64().unwrap() > 0.0, "{strait:#}");
    assert!(strait["pss_mib"].as_f64().unwrap() > 0.0, "{strait:#}");
    assert!(strait["vs_direct"].as_f64().unwrap() > 0.0, "{strait:#}");
    let commands = summary["commands"].as_array().unwrap();
    let strait_start = commands.iter().find(|c| c["what"] == "strait").expect("Strait's command line");
    assert!(strait_start["command"].as_str().unwrap().contains(" run --config "), "{strait_start}");
}

#[test]
fn http2_and_grpc_scenarios_run_streams_through_strait() {
    let dir = tempfile::tempdir().unwrap();
    for mode in ["h2", "grpc"] {
        let text = format!(
            "name: tiny-{mode}\nrounds: 1\nduration: 1s\nwarmup: 0s\npeers: [direct, strait]\n\
             load: {{mode: {mode}, connections: [1, 2], streams: [4]}}\n"
        );
        let file = write(dir.path(), &format!("{mode}.yaml"), &text);
        let work = dir.path().join(mode);
        let out = scenario(&[&file, "--strait", &strait(), "--json", "--work-dir", &work.display().to_string()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let rows = summary["rows"].as_array().unwrap();
        let points: Vec<_> =
            rows.iter().map(|r| (r["peer"].as_str(), r["connections"].as_u64(), r["streams"].as_u64())).collect();
        let want = [(Some("direct"), Some(1), Some(4)), (Some("direct"), Some(2), Some(4))];
        assert_eq!(points[..2], want, "{summary:#}");
        for row in rows {
            assert_eq!((row["rounds_ok"].as_u64(), row["errors"].as_u64()), (Some(1), Some(0)), "{row:#}\n{stderr}");
        }
        assert!(rows[3]["cpu_us_per_op"].as_f64().unwrap() > 0.0, "{summary:#}");
        // Strait reaches the HTTP/2 backend over HTTP/2, as the ServiceEntry port's protocol says.
        let entry = fs::read_to_string(work.join("strait/config/serviceentry.yaml")).unwrap();
        let protocol = if mode == "h2" { "protocol: HTTP2" } else { "protocol: GRPC" };
        assert!(entry.contains(protocol), "{entry}");
        let load = summary["commands"].as_array().unwrap().iter().find(|c| c["what"] == "load strait c=2 s=4").cloned();
        assert!(
            load.is_some_and(|c| c["command"].as_str().unwrap().contains(&format!("{mode} http://"))),
            "{summary:#}"
        );
    }
}

#[test]
fn a_peer_that_fails_is_a_row_and_the_others_still_print() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "tiny.yaml", TINY);
    // `false` starts and exits at once, as a proxy refusing its config would.
    let out = scenario(&[&file, "--strait", "/bin/false", "--peers", "direct,strait,envoy"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let direct = stdout.lines().find(|l| l.starts_with("direct ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(!direct.contains("FAILED"), "{stdout}");
    let strait = stdout.lines().find(|l| l.starts_with("strait ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(strait.contains("FAILED: strait exit status: 1"), "{stdout}");
    // Envoy is either installed (and then a row) or skipped with a note, never an error.
    assert!(stdout.lines().any(|l| l.starts_with("envoy ") || l.contains("envoy: skipped")), "{stdout}");
}

#[test]
fn a_bad_scenario_names_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "bad.yaml", "name: bad\nload:\n  connections: [16]\n  conections: [64]\n");
    let out = scenario(&[&file]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&file) && stderr.contains("load.conections: unknown field `conections`"), "{stderr}");
    let zero = write(dir.path(), "zero.yaml", "name: zero\nrounds: 0\n");
    let stderr = String::from_utf8_lossy(&scenario(&[&zero]).stderr).to_string();
    assert!(stderr.contains(&zero) && stderr.contains("rounds: must be at least 1"), "{stderr}");
}
