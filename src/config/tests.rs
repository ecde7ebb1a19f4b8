//! The model's own tests: documents split and numbered, fields located, durations read.

use super::source::split_documents;
use super::*;

#[test]
fn locate_paths() {
    let text = "metadata:\n  labels:\n    app.kubernetes.io/name: x\n    \"a\\\"b\": y\nspec:\n  \
                hosts:\n  - a\n  -\n    b\n  base: &base\n    port: 1\n  derived:\n    <<: *base\n";
    let at = |path| locate(text, 10, path);
    assert_eq!(at(""), Some(10));
    assert_eq!(at("metadata.labels[\"app.kubernetes.io/name\"]"), Some(12));
    assert_eq!(at("metadata.labels[\"a\\\"b\"]"), Some(13));
    assert_eq!(at("spec.hosts[0]"), Some(16));
    assert_eq!(at("spec.hosts[1]"), Some(18));
    assert_eq!(at("spec.derived.port"), Some(20));
    assert_eq!(at("spec.nothing.here"), Some(14));
    assert_eq!(locate("a: [", 1, "a"), None);
}

#[test]
fn documents_are_split_and_numbered() {
    let docs = split_documents(
        "# header\n\n--- # first\napiVersion: v1\n---\n---\n# c\n\nkind: X\n...\n# trailer\n\
         --- {a: 1}\n...\n%YAML 1.2\n---\nb: 1\n...\nc: 2\n",
    );
    let got: Vec<(usize, usize, &str)> = docs.iter().map(|d| (d.index, d.line, &*d.text)).collect();
    assert_eq!(
        got,
        [
            (1, 4, "apiVersion: v1\n"),
            (2, 6, ""),
            (3, 9, "kind: X\n"),
            (4, 12, "--- {a: 1}\n"),
            (5, 16, "b: 1\n"),
            (6, 18, "c: 2\n"),
        ]
    );
    // No marker at all: one document from the first content line.
    let docs = split_documents("\u{feff}\n# c\nkind: X\r\n");
    assert_eq!((docs.len(), docs[0].line, &*docs[0].text), (1, 3, "kind: X\n"));
    assert!(split_documents("# nothing\n").is_empty());
}

#[test]
fn durations() {
    let canonical = |s: &str| s.parse::<Duration>().map(|d| d.to_string());
    for (input, expected) in [
        ("1s", "1s"),
        ("0.5s", "500ms"),
        ("100ms", "100ms"),
        ("1m30s", "1m30s"),
        ("90s", "1m30s"),
        ("1h", "1h"),
        ("2.5us", "2.5us"),
        ("2.5µs", "2.5us"),
        ("1h0m0.25s", "1h0.25s"),
        ("1.000000001s", "1.000000001s"),
        ("+3ns", "3ns"),
        ("0", "0s"),
        (".5m", "30s"),
    ] {
        assert_eq!(canonical(input).as_deref(), Ok(expected), "{input}");
        // The canonical form reads back as the same value.
        assert_eq!(canonical(expected).as_deref(), Ok(expected));
    }
    for (input, reason) in [
        ("abc", "expected a number"),
        ("5", "missing unit (one of ns, us, ms, s, m, h)"),
        ("1d", "unknown unit (expected one of ns, us, ms, s, m, h)"),
        ("-1s", "negative durations are not allowed"),
        ("", "empty duration"),
        ("1s.", "expected a number"),
        ("99999999999999999999h", "duration out of range"),
    ] {
        let err = input.parse::<Duration>().unwrap_err().to_string();
        assert_eq!(err, format!("invalid duration {input:?}: {reason}"));
    }
    let d: Duration = serde_yaml::from_str("1.5s").unwrap();
    assert_eq!(d.get(), std::time::Duration::from_millis(1500));
    assert_eq!(serde_yaml::to_string(&d).unwrap(), "1.5s\n");
}
