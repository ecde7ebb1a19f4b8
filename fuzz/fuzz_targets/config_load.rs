//! The config pipeline `strait validate` runs (`strait::control::build`: load, validate,
//! compile) on a file of arbitrary bytes: it never panics, reports faults as diagnostics that
//! point into the file, and never both fails and serves.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strait::config::Diagnostics;
use strait::control::{build, BuildOptions};

/// `build` reads its config from files: one scratch file per fuzzing process.
fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| std::env::temp_dir().join(format!("strait-fuzz-config-{}.yaml", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    // Certificate fields are paths the loader reads: a device or FIFO there would block or
    // never end, which says nothing about the parser.
    if [&b"/dev/"[..], b"/proc/", b"/sys/", b"/run/"].iter().any(|p| data.windows(p.len()).any(|w| w == *p)) {
        return;
    }
    let path = scratch();
    std::fs::write(path, data).expect("write the scratch config");
    let opts = BuildOptions { paths: vec![path.clone()], ..BuildOptions::default() };
    match build(&opts, 1) {
        Ok(built) => {
            assert!(!built.warnings.has_errors(), "served despite errors");
            check(&built.warnings, data, path);
        }
        Err(diagnostics) => {
            assert!(diagnostics.has_errors(), "failed without an error: {diagnostics:?}");
            check(&diagnostics, data, path);
        }
    }
});

/// Every diagnostic names this file, points at one of its lines and prints.
fn check(diagnostics: &Diagnostics, data: &[u8], path: &Path) {
    // Lines as YAML counts them: CRLF, a lone CR and LF each end one (libyaml also counts NEL,
    // LS and PS), so a line number may go past what `\n`s alone would give.
    let text = String::from_utf8_lossy(data).replace("\r\n", "\n");
    let lines = text.chars().filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')).count() + 1;
    for d in diagnostics.iter() {
        if let Some(file) = &d.file {
            assert_eq!(&**file, path);
        }
        if let Some(line) = d.line {
            assert!((1..=lines).contains(&line), "line {line} of {lines}: {d}");
        }
        assert!(d.document.is_none_or(|n| n >= 1), "{d}");
        assert!(!d.message.is_empty(), "{d:?}");
        assert!(d.to_string().ends_with(&d.message));
    }
}
