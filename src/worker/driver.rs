//! Which I/O driver a worker's monoio runtime runs on: io_uring where the kernel allows it,
//! else epoll (Docker's default seccomp profile refuses io_uring), with one warning.

use std::io;
use std::sync::Once;

use monoio::time::TimeDriver;
use monoio::{FusionRuntime, IoUringDriver, LegacyDriver, RuntimeBuilder};
use tracing::warn;

/// What a runtime was built on is published for `/server_info`.
pub use crate::publish::Driver;

/// `--driver` / `STRAIT_DRIVER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DriverChoice {
    /// io_uring if the kernel allows it, else legacy.
    #[default]
    Auto,
    /// io_uring or refuse to start.
    #[value(alias = "io_uring", alias = "iouring")]
    Uring,
    /// epoll, even where io_uring works.
    #[value(alias = "epoll")]
    Legacy,
}

pub type WorkerRuntime = FusionRuntime<TimeDriver<IoUringDriver>, TimeDriver<LegacyDriver>>;

#[derive(Debug, thiserror::Error)]
#[error("io_uring is not available here ({0}); run with --driver legacy or auto")]
pub struct UringUnavailable(String);

/// The driver to try, decided once for the process.
pub fn resolve(choice: DriverChoice) -> Result<Driver, UringUnavailable> {
    match choice {
        DriverChoice::Legacy => Ok(Driver::Legacy),
        _ if monoio::utils::detect_uring() => Ok(Driver::IoUring),
        DriverChoice::Uring => Err(UringUnavailable("the kernel refuses io_uring or lacks its operations".into())),
        DriverChoice::Auto => {
            warn_fallback("the kernel refuses io_uring or lacks its operations");
            Ok(Driver::Legacy)
        }
    }
}

/// Builds a worker's runtime on `driver`. Under `auto`, an io_uring ring that cannot be set up
/// on this thread (e.g. RLIMIT_MEMLOCK on older kernels) falls back to legacy.
pub fn build(driver: Driver, choice: DriverChoice) -> io::Result<(WorkerRuntime, Driver)> {
    if driver == Driver::IoUring {
        let uring = RuntimeBuilder::<IoUringDriver>::new()
            .uring_builder(tuned_ring())
            .enable_timer()
            .build()
            .or_else(|_| RuntimeBuilder::<IoUringDriver>::new().enable_timer().build());
        match uring {
            Ok(rt) => return Ok((rt.into(), Driver::IoUring)),
            Err(e) if choice == DriverChoice::Auto => warn_fallback(&e.to_string()),
            Err(e) => return Err(e),
        }
    }
    let rt = RuntimeBuilder::<LegacyDriver>::new().enable_timer().build()?;
    Ok((rt.into(), Driver::Legacy))
}

/// Ring flags for a ring that only its own thread touches: the kernel runs completion work when
/// the worker next waits instead of interrupting it for each one (COOP/DEFER_TASKRUN, which
/// needs SINGLE_ISSUER). Kernels before 6.1 refuse them; `build` then sets up a plain ring.
/// COOP_TASKRUN without DEFER_TASKRUN measured no better (perf/http.md).
fn tuned_ring() -> io_uring::Builder {
    let mut ring = io_uring::IoUring::builder();
    ring.setup_coop_taskrun().setup_single_issuer().setup_defer_taskrun();
    ring
}

/// One warning per process, however many workers fall back.
fn warn_fallback(reason: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        warn!("io_uring unavailable ({reason}): using the legacy epoll driver; --driver legacy silences this");
    });
}
