//! Files on disk, watched: when a file the running snapshot read its TLS material from changes
//! (rewritten, renamed over, a Kubernetes secret volume's symlink swapped), or, under `--watch`,
//! a config input does (a plain edit, a file added to or removed from a config directory, a
//! mounted ConfigMap's `..data` symlink swapped by the kubelet), a reload is asked for, as if by
//! SIGHUP. The reload judges the new files; a bad one is refused with the usual error and the
//! old config keeps serving.
//!
//! Polled, not inotify: a `..data` swap renames a symlink in the mount's directory, which an
//! inotify watch on the files the config names never sees, and a stat per file a few times a
//! second costs nothing beside a reload.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use crate::config::config_files;
use crate::publish::{ControlEvent, Shared};
use crate::snapshot::FileStamp;

/// How often the files are looked at; a change is acted on once it has held for one more
/// look (the debounce), so that a certificate and its key replaced one after the other, or an
/// editor's several writes, reload once, within two looks of the last change.
const POLL: Duration = Duration::from_millis(200);

/// Each file that changed and its stamp now.
type Changed = Vec<(Arc<Path>, Option<FileStamp>)>;

/// Each file a config input contributes, with its stamp: a directory's files as the loader
/// reads them (symlinks followed, so a `..data` swap shows as new inodes), a file itself.
type Inputs = Vec<(PathBuf, Option<FileStamp>)>;

/// What one look saw: the generation serving, the certificate files changed since it read them,
/// and the config inputs (under `--watch`).
#[derive(Clone, PartialEq)]
struct Look {
    generation: u64,
    certificates: Changed,
    inputs: Option<Inputs>,
}

/// The config inputs under `--watch` (see [`super::BuildOptions::inputs`]), with their stamps
/// as last loaded.
pub struct ConfigInputs {
    paths: Vec<PathBuf>,
    loaded: Inputs,
}

impl ConfigInputs {
    /// Stamps `paths` now: called before the first build reads them, so that an edit racing
    /// the start is reloaded for, not missed.
    pub fn before_load(paths: Vec<PathBuf>) -> Self {
        let loaded = stamps(&paths);
        Self { paths, loaded }
    }
}

/// Watches the serving snapshot's certificate files, and the config inputs when given.
pub fn spawn(shared: Arc<Shared>, events: Sender<ControlEvent>, config: Option<ConfigInputs>) -> io::Result<()> {
    let (inputs, mut loaded) = match config {
        Some(c) => (Some(c.paths), Some(c.loaded)),
        None => (None, None),
    };
    std::thread::Builder::new().name("strait-watch".into()).spawn(move || {
        let mut previous: Option<Look> = None;
        // The change last reloaded for: a refused reload is not asked for again until the
        // files change once more.
        let mut asked: Option<Look> = None;
        loop {
            std::thread::sleep(POLL);
            let snapshot = shared.snapshot();
            let certificates: Changed = snapshot
                .watched
                .iter()
                .filter_map(|f| {
                    let now = FileStamp::of(&f.path);
                    (now != f.stamp).then(|| (f.path.clone(), now))
                })
                .collect();
            let look = Look { generation: snapshot.generation, certificates, inputs: inputs.as_deref().map(stamps) };
            let settled = previous.as_ref() == Some(&look);
            previous = Some(look.clone());
            let mut names: Vec<String> = look.certificates.iter().map(|(p, _)| p.display().to_string()).collect();
            names.extend(changed_inputs(loaded.as_deref(), look.inputs.as_deref()));
            if names.is_empty() || !settled || asked.as_ref() == Some(&look) {
                continue;
            }
            info!("watched files changed ({}): reloading", names.join(", "));
            // The reload reads the inputs as they are now, or newer: a later change is a new one.
            loaded = look.inputs.clone();
            asked = Some(look);
            if events.send(ControlEvent::Reload(None)).is_err() {
                return;
            }
        }
    })?;
    Ok(())
}

/// The files `inputs` contribute, with their stamps.
fn stamps(inputs: &[PathBuf]) -> Inputs {
    let mut out = Inputs::new();
    for input in inputs {
        match config_files(input) {
            Ok(files) => out.extend(files.into_iter().map(|f| {
                let stamp = FileStamp::of(&f);
                (f, stamp)
            })),
            // A file, or a directory gone (its absence is a change like any other).
            Err(_) => out.push((input.clone(), FileStamp::of(input))),
        }
    }
    out
}

/// The files added, removed or changed between two sets of stamps.
fn changed_inputs(
    before: Option<&[(PathBuf, Option<FileStamp>)]>,
    now: Option<&[(PathBuf, Option<FileStamp>)]>,
) -> Vec<String> {
    let (Some(before), Some(now)) = (before, now) else { return Vec::new() };
    let differs = |a: &[(PathBuf, Option<FileStamp>)], b: &[(PathBuf, Option<FileStamp>)], out: &mut Vec<String>| {
        for entry in a {
            if !b.contains(entry) && !out.contains(&entry.0.display().to_string()) {
                out.push(entry.0.display().to_string());
            }
        }
    };
    let mut out = Vec::new();
    differs(now, before, &mut out);
    differs(before, now, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ConfigMap volume as the kubelet lays it out: `KEY -> ..data/KEY`,
    /// `..data -> ..TIMESTAMP`, and a swap that renames a new `..data` over the old.
    fn mount(dir: &Path, version: &str, yaml: &str) {
        let target = dir.join(format!("..{version}"));
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("gw.yaml"), yaml).unwrap();
        let tmp = dir.join("..data_tmp");
        std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
        if !dir.join("gw.yaml").exists() {
            std::os::unix::fs::symlink("..data/gw.yaml", dir.join("gw.yaml")).unwrap();
        }
    }

    #[test]
    fn a_data_swap_and_a_plain_edit_change_the_stamps_and_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = vec![dir.path().to_path_buf()];
        mount(dir.path(), "1", "a: 1\n");
        let first = stamps(&inputs);
        assert_eq!(first.len(), 1, "only the key: {first:?}");
        assert_eq!(stamps(&inputs), first, "nothing changed");
        // Same length, same file name: only the inode tells the swap.
        mount(dir.path(), "2", "a: 2\n");
        let swapped = stamps(&inputs);
        assert_ne!(swapped, first);
        let file = dir.path().join("gw.yaml").display().to_string();
        assert_eq!(changed_inputs(Some(&first), Some(&swapped)), vec![file.clone()]);

        let plain = dir.path().join("extra.yml");
        std::fs::write(&plain, "b: 1\n").unwrap();
        let added = stamps(&inputs);
        assert_eq!(changed_inputs(Some(&swapped), Some(&added)), vec![plain.display().to_string()]);
        std::fs::write(dir.path().join("notes.txt"), "not config").unwrap();
        assert_eq!(stamps(&inputs), added, "a file the loader does not read is no change");
        assert!(changed_inputs(None, Some(&added)).is_empty(), "not watching");
    }
}
