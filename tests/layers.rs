//! The layers of `src/` run one way: each top-level module imports only modules listed below
//! it in `src/lib.rs`'s layout block, so no import circle can form and the picture in lib.rs
//! (and ARCHITECTURE.md) stays the code's; inside a module, sibling files import each other
//! one way too. `cargo test --test layers` is the check CI runs.
//!
//! Why not `cargo modules dependencies --acyclic`: it checks items, not modules, and refuses
//! any type whose method names the type (`Snapshot` ↔ `Snapshot::new`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use regex::Regex;

/// The layout block of `src/lib.rs`: the lines of its first ```text fence, top layer first.
/// Each line starts with its module(s) (`http/, tcp/` share a rank), then two spaces.
fn layers(lib: &str) -> Vec<Vec<String>> {
    let block: Vec<&str> = lib
        .lines()
        .map(|l| l.trim_start_matches("//!").trim_start())
        .skip_while(|l| *l != "```text")
        .skip(1)
        .take_while(|l| *l != "```")
        .collect();
    block
        .iter()
        .filter_map(|l| {
            let head = l.split("  ").next()?.trim();
            let names: Vec<String> = head
                .split(',')
                .map(|n| n.trim().trim_end_matches('/').trim_end_matches(".rs").to_string())
                .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                .collect();
            (!names.is_empty()).then_some(names)
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "tests") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") && path.file_name().is_some_and(|n| n != "tests.rs") {
            out.push(path);
        }
    }
}

/// The text without its inline `#[cfg(test)] mod … { … }` blocks: tests may reach anywhere.
fn without_tests(text: &str) -> String {
    let start = Regex::new(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{").expect("a valid pattern");
    let (mut out, mut from) = (String::new(), 0);
    for m in start.find_iter(text) {
        if m.start() < from {
            continue;
        }
        out.push_str(&text[from..m.start()]);
        let mut depth = 1;
        let mut end = m.end();
        for (i, c) in text[m.end()..].char_indices() {
            depth += match c {
                '{' => 1,
                '}' => -1,
                _ => 0,
            };
            if depth == 0 {
                end = m.end() + i + 1;
                break;
            }
        }
        from = end;
    }
    out.push_str(&text[from..]);
    out
}

/// The top-level modules a file names through `crate::a…` or `crate::{a…, b…}`.
fn imported(text: &str) -> BTreeSet<String> {
    let single = Regex::new(r"\bcrate::([a-z_][a-z0-9_]*)").expect("a valid pattern");
    let group = Regex::new(r"\bcrate::\{").expect("a valid pattern");
    let mut out: BTreeSet<String> = single.captures_iter(text).map(|c| c[1].to_string()).collect();
    out.extend(group_names(text, &group));
    out
}

/// The names at depth one of each brace group `pattern` ends at (`crate::{a::X, b}` → a, b).
fn group_names(text: &str, pattern: &Regex) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for m in pattern.find_iter(text) {
        // The names at depth one of the brace group.
        let (mut depth, mut name, mut expect_name) = (1, String::new(), true);
        for c in text[m.end()..].chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 1 => expect_name = true,
                _ => {}
            }
            if depth == 0 {
                break;
            }
            if depth == 1 && expect_name {
                if c.is_ascii_alphanumeric() || c == '_' {
                    name.push(c);
                } else if !name.is_empty() {
                    out.insert(std::mem::take(&mut name));
                    expect_name = false;
                }
            }
        }
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

#[test]
fn top_level_modules_import_only_layers_below_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let lib = fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let order = layers(&lib);
    assert!(!order.is_empty(), "src/lib.rs has no ```text layout block listing the layers");
    let rank: BTreeMap<&str, usize> =
        order.iter().enumerate().flat_map(|(i, names)| names.iter().map(move |n| (n.as_str(), i))).collect();

    let declared = Regex::new(r"(?m)^pub mod ([a-z_]+);").expect("a valid pattern");
    let modules: BTreeSet<String> = declared.captures_iter(&lib).map(|c| c[1].to_string()).collect();
    let unlisted: Vec<&String> = modules.iter().filter(|m| !rank.contains_key(m.as_str())).collect();
    assert!(unlisted.is_empty(), "modules missing from src/lib.rs's layout block: {unlisted:?}");

    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src/");
        let top = rel.components().next().expect("a path").as_os_str().to_string_lossy();
        let top = top.trim_end_matches(".rs");
        let Some(&from) = rank.get(top) else { continue };
        let text = fs::read_to_string(&file).expect("a readable source file");
        for to in imported(&without_tests(&text)) {
            match rank.get(to.as_str()) {
                Some(&r) if to != top && r <= from => wrong.push(format!(
                    "{} imports `{to}` (layer {r}), at or above its own `{top}` (layer {from})",
                    rel.display()
                )),
                _ => {}
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers of src/lib.rs:\n{}", wrong.join("\n"));
}

/// `src/http/exchange/relay.rs` → `http::exchange::relay`; `src/admin/mod.rs` → `admin`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut path: Vec<String> = rel.with_extension("").iter().map(|c| c.to_string_lossy().into_owned()).collect();
    if path.last().is_some_and(|l| l == "mod") {
        path.pop();
    }
    path
}

/// Every module path a file in module `here` names through `crate::…` or `super::…` (groups
/// too), resolved from the crate root: the lowercase segments, where types begin.
fn referenced(text: &str, here: &[String]) -> Vec<Vec<String>> {
    let head = Regex::new(r"(?:^|[^:\w])(crate|super)::").expect("a valid pattern");
    let segment = Regex::new(r"^([a-z_][a-z0-9_]*)(::)?").expect("a valid pattern");
    let group = Regex::new(r"^\{").expect("a valid pattern");
    let mut out = Vec::new();
    for m in head.captures_iter(text) {
        let whole = m.get(0).expect("the match");
        let mut path: Vec<String> =
            if &m[1] == "crate" { Vec::new() } else { here[..here.len().saturating_sub(1)].to_vec() };
        let mut rest = &text[whole.end()..];
        loop {
            if group.is_match(rest) {
                let names = group_names(rest, &group);
                out.extend(names.into_iter().map(|n| [path.clone(), vec![n]].concat()));
                break;
            }
            let Some(c) = segment.captures(rest) else {
                out.push(path.clone());
                break;
            };
            let name = &c[1];
            if name == "super" {
                path.pop();
            } else {
                path.push(name.to_string());
            }
            rest = &rest[c.get(0).expect("the match").end()..];
            if c.get(2).is_none() {
                out.push(path.clone());
                break;
            }
        }
    }
    out
}

/// The circles among sibling modules (files or folders under one parent module), each as
/// its members: a parent and its children may name each other, siblings one way only.
fn sibling_circles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<BTreeSet<Vec<String>>> {
    let reach = |from: &Vec<String>| {
        let (mut seen, mut todo) = (BTreeSet::new(), vec![from.clone()]);
        while let Some(n) = todo.pop() {
            for next in edges.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let mut circles: Vec<BTreeSet<Vec<String>>> = Vec::new();
    for node in edges.keys() {
        let from = reach(node);
        if from.contains(node) && !circles.iter().any(|c| c.contains(node)) {
            circles.push(from.into_iter().filter(|n| reach(n).contains(node)).collect());
        }
    }
    circles
}

#[test]
fn sibling_modules_do_not_import_each_other_in_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in files {
        let here = module_path(file.strip_prefix(&src).expect("under src/"));
        let text = fs::read_to_string(&file).expect("a readable source file");
        for to in referenced(&without_tests(&text), &here) {
            // Where the two paths part below a shared top-level module: two siblings.
            let shared = here.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if shared >= 1 && shared < here.len() && shared < to.len() {
                edges.entry(here[..=shared].to_vec()).or_default().insert(to[..=shared].to_vec());
            }
        }
    }
    let circles: Vec<String> = sibling_circles(&edges)
        .iter()
        .map(|c| c.iter().map(|m| m.join("::")).collect::<Vec<_>>().join(" ⇄ "))
        .collect();
    assert!(circles.is_empty(), "sibling modules importing each other in a circle:\n{}", circles.join("\n"));
}

#[test]
fn the_layout_block_and_the_import_scan_read_what_they_should() {
    let lib = "//! ```text\n//! control/   top\n//! http/, tcp/  protocols\n//! buf.rs     a leaf\n//! ```\n";
    assert_eq!(layers(lib), vec![vec!["control"], vec!["http", "tcp"], vec!["buf"]]);
    let text =
        "use crate::{admin::X, http};\nuse crate::snapshot::Y;\n#[cfg(test)]\nmod tests { use crate::control; }\n";
    let names: Vec<String> = imported(&without_tests(text)).into_iter().collect();
    assert_eq!(names, ["admin", "http", "snapshot"]);
    let here = module_path(Path::new("http/exchange/relay.rs"));
    let text = "use super::attempt::Try;\nuse super::super::{plan::Meta, session};\nuse crate::upstream::live::X;\n";
    let paths: Vec<String> = referenced(text, &here).iter().map(|p| p.join("::")).collect();
    assert_eq!(paths, ["http::exchange::attempt", "http::plan", "http::session", "upstream::live"]);
}
