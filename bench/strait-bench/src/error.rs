//! The one error type of `strait-bench`, rendered once in `main`.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An I/O step the run cannot do without (binding, reading a file, starting a process).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// Flags or a URL that cannot describe a run.
    #[error("{0}")]
    Usage(String),
    /// A scenario file that cannot be run, naming the file and the field.
    #[error("{file}: {msg}")]
    Scenario { file: PathBuf, msg: String },
    /// TLS material or settings rustls refuses.
    #[error("TLS: {0}")]
    Tls(String),
    /// A process a scenario started (backend, proxy, load) that failed or did not come up.
    #[error("{name}: {msg}")]
    Process { name: String, msg: String },
    /// A load that ran, against a target that did not hold up: no operation succeeded.
    #[error("no operation succeeded ({errors})")]
    NothingSucceeded { errors: String },
    /// A load that ran, with more of its operations failing than `--max-error-rate` allows.
    #[error("{failed} of {tried} operations failed ({errors}), more than --max-error-rate {max} allows")]
    TooManyErrors { failed: u64, tried: u64, errors: String, max: f64 },
}

impl BenchError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> BenchError {
        let what = what.into();
        move |source| BenchError::Io { what, source }
    }
}
