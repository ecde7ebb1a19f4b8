//! Graceful shutdown: wait, bounded, for the workers' connections to finish.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::reload::ReloadError;
use crate::publish::{ControlEvent, Shared};

/// How often the connection counts are looked at.
const POLL: Duration = Duration::from_millis(50);

/// Returns once every worker has stopped accepting and closed its last connection, when
/// `timeout` has passed, or at a second SIGTERM/SIGINT. Draining must already be published.
pub fn wait(shared: &Shared, timeout: Duration, events: &Receiver<ControlEvent>) {
    let deadline = Instant::now() + timeout;
    loop {
        if shared.drained() {
            info!("drained: no connection left");
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            warn!("drain timeout ({timeout:?}) passed with {} connections open: exiting", shared.active_connections());
            return;
        }
        match events.recv_timeout(POLL.min(deadline - now)) {
            Ok(ControlEvent::Shutdown(signal)) => {
                warn!("{signal} while draining: exiting now");
                return;
            }
            Ok(ControlEvent::Reload(reply)) => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(ReloadError::Draining.to_string()));
                }
            }
            // No key set is fetched while draining.
            Ok(ControlEvent::JwksRefetch(_)) | Err(RecvTimeoutError::Timeout) => {}
            // Nothing can send any more (signals and admin are gone): only the deadline is left.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(POLL.min(deadline - now)),
        }
    }
}
