//! The admin server's pages and the per-worker metrics they export.

mod clusters;
mod config_dump;
mod metrics;
mod stats;

pub use config_dump::to_json;
pub use metrics::{ControlStats, Counter, Gauge, Totals, WorkerStats, STATUS_SLOTS};
