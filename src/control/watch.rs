//! Certificates on disk, watched: when a file the running snapshot read its TLS material from
//! changes (rewritten, renamed over, a Kubernetes secret volume's symlink swapped), a reload
//! is asked for, as if by SIGHUP. The reload judges the new files; a bad one is refused with
//! the usual error and the old certificates keep serving.

use std::io;
use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use crate::publish::{ControlEvent, Shared};
use crate::snapshot::FileStamp;

/// How often the files are looked at; a change is acted on once it has held for one more
/// look, so that a certificate and its key replaced one after the other reload once.
const POLL: Duration = Duration::from_millis(500);

/// What changed, as seen at one look: each changed file and its stamp now.
type Seen = Vec<(Arc<Path>, Option<FileStamp>)>;

pub fn spawn(shared: Arc<Shared>, events: Sender<ControlEvent>) -> io::Result<()> {
    std::thread::Builder::new().name("strait-certs".into()).spawn(move || {
        let mut previous: Option<(u64, Seen)> = None;
        // The change last reloaded for: a refused reload is not asked for again until the
        // files change once more.
        let mut asked: Option<(u64, Seen)> = None;
        loop {
            std::thread::sleep(POLL);
            let snapshot = shared.snapshot();
            let seen: Seen = snapshot
                .watched
                .iter()
                .filter_map(|f| {
                    let now = FileStamp::of(&f.path);
                    (now != f.stamp).then(|| (f.path.clone(), now))
                })
                .collect();
            let look = Some((snapshot.generation, seen));
            let settled = look == previous;
            previous = look;
            let Some((_, seen)) = &previous else { continue };
            if seen.is_empty() || !settled || asked == previous {
                continue;
            }
            let names: Vec<String> = seen.iter().map(|(p, _)| p.display().to_string()).collect();
            info!("certificate files changed ({}): reloading", names.join(", "));
            asked = previous.clone();
            if events.send(ControlEvent::Reload(None)).is_err() {
                return;
            }
        }
    })?;
    Ok(())
}
