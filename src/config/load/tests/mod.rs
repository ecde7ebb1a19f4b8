//! Loader tests: every seed example loads; every loader-level fault gives one exact diagnostic.

use std::path::PathBuf;

use crate::config::gateway::ServerTlsMode;
use crate::config::*;

const SEEDS: &str = "tests/fixtures/config/seeds";
const BROKEN: &str = "tests/fixtures/config/broken";

fn load_one(path: &str) -> Result<ConfigSet, Diagnostics> {
    load(&[PathBuf::from(path)])
}

fn seed(name: &str) -> ConfigSet {
    load_one(&format!("{SEEDS}/{name}")).unwrap_or_else(|d| panic!("{name} does not load:\n{d}"))
}

/// A scratch directory of YAML files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str, files: &[(&str, &str)]) -> Scratch {
        let dir = std::env::temp_dir().join(format!("strait-config-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

mod broken;
mod fields;
mod kinds;
mod seeds;
