//! Names the commit a binary was built from, for `strait --version`: `STRAIT_COMMIT` is git's
//! short hash, `-dirty` when tracked files differ from it, `unknown` outside a git checkout.

use std::path::Path;
use std::process::Command;

fn main() {
    let commit = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(hash) if git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty()) => {
            format!("{hash}-dirty")
        }
        Some(hash) => hash,
        None => "unknown".to_string(),
    };
    println!("cargo:rustc-env=STRAIT_COMMIT={commit}");
    // Again when HEAD moves (a commit, a checkout) or the index changes. A path that does not
    // exist would rerun the script on every build, so only existing ones are named.
    let head_ref = git(&["rev-parse", "--symbolic-full-name", "HEAD"]).filter(|r| r.starts_with("refs/"));
    let watched = ["HEAD", "logs/HEAD", "index", "packed-refs"].into_iter().map(str::to_string).chain(head_ref);
    for path in watched.filter_map(|p| git(&["rev-parse", "--git-path", &p])) {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    // And when the sources do, for the dirty mark.
    for path in ["src", "bench", "build.rs", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={path}");
    }
}

/// git's trimmed output in this package's directory; `None` where git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    // No optional locks: `git status` would otherwise refresh the index, racing a git command of
    // the user's and touching the index this script is rerun on.
    let out = Command::new("git").args(args).current_dir(dir).env("GIT_OPTIONAL_LOCKS", "0").output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
