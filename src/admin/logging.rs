//! `/logging`: the log level, listed and changed at runtime under Envoy's level names.
//!
//! Strait has one filter for every target, so it lists one "logger", `all`, where Envoy lists
//! one per component; a filter with several directives (`--log-level strait=debug,info`) is
//! listed as it was given.

use std::fmt;
use std::str::FromStr;

use tracing::info;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Envoy's log levels (spdlog's), in order of detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
    Critical,
    Off,
}

/// The names a bad `level=` is answered with.
pub const LEVEL_NAMES: &str = "trace debug info warning error critical off";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log level `{0}`")]
pub struct UnknownLevel(pub String);

impl FromStr for LogLevel {
    type Err = UnknownLevel;

    /// Envoy's names, plus `warn`, which Envoy's `--log-level` also takes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warning" | "warn" => LogLevel::Warning,
            "error" => LogLevel::Error,
            "critical" => LogLevel::Critical,
            "off" => LogLevel::Off,
            _ => return Err(UnknownLevel(s.to_string())),
        })
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
            LogLevel::Off => "off",
        })
    }
}

/// What `--log-level` takes: one of Envoy's level names, or a tracing filter whose every
/// directive names its level (`strait=debug,info`), Envoy's names allowed there too.
///
/// tracing reads a bare word as a target with every level on, so `infoo` would silence every
/// log but that target's; refusing a directive without a level turns the typo into an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadLogFilter {
    #[error(
        "`{0}` names no log level: the levels are {LEVEL_NAMES} (or warn), alone or after a target as in strait=debug"
    )]
    Level(String),
    #[error("`{0}`: {1}")]
    Filter(String, String),
}

impl FromStr for LogFilter {
    type Err = BadLogFilter;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let level = |directive: &str, level: &str| {
            level
                .parse::<LogLevel>()
                .map(LogLevel::level_filter)
                .map_err(|_| BadLogFilter::Level(directive.to_string()))
        };
        // Split as tracing's EnvFilter splits, so that each piece is one of its directives.
        let directives = s
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|directive| match directive.rsplit_once('=') {
                Some((target, name)) => Ok(format!("{target}={}", level(directive, name)?)),
                None => Ok(level(directive, directive)?.to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if directives.is_empty() {
            return Err(BadLogFilter::Level(s.to_string()));
        }
        let filter = directives.join(",");
        EnvFilter::try_new(&filter).map_err(|e| BadLogFilter::Filter(s.to_string(), e.to_string()))?;
        Ok(Self(filter))
    }
}

impl LogFilter {
    /// The filter to install, in tracing's level names (`warning` becomes `warn`).
    pub fn env_filter(&self) -> EnvFilter {
        // Checked by `from_str`: `new` would only drop (and print) directives it cannot parse.
        EnvFilter::new(&self.0)
    }
}

impl LogLevel {
    /// tracing has no level above error: critical keeps errors only, as error does.
    pub fn level_filter(self) -> LevelFilter {
        match self {
            LogLevel::Trace => LevelFilter::TRACE,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Warning => LevelFilter::WARN,
            LogLevel::Error | LogLevel::Critical => LevelFilter::ERROR,
            LogLevel::Off => LevelFilter::OFF,
        }
    }

    /// A filter applying this level to every target.
    pub fn env_filter(self) -> EnvFilter {
        EnvFilter::default().add_directive(self.level_filter().into())
    }
}

/// The installed subscriber's filter, behind the `reload` layer `init_logging` puts it in.
///
/// `strait run` hands it to the admin server as a parameter rather than through a static:
/// everything the admin can act on then arrives through [`super::Admin::spawn`], and each test
/// admin gets a filter of its own. Only log events pay for the reload layer's lock; disabled
/// `debug!`s on the request path stop at tracing's global level check, as before.
#[derive(Debug, Clone)]
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
}

impl LogControl {
    pub fn new(handle: reload::Handle<EnvFilter, Registry>) -> Self {
        Self { handle }
    }

    /// Sets every target to `level`, replacing any finer filter.
    pub fn set(&self, level: LogLevel) -> Result<(), reload::Error> {
        // Logged before the change, as Envoy does, so that turning logs down is on record too.
        info!("change all log levels: level='{level}'");
        self.handle.reload(level.env_filter())
    }

    /// The filter in force, as `EnvFilter` prints it (`debug`, `strait=debug,info`).
    pub fn current(&self) -> Result<String, reload::Error> {
        self.handle.with_current(|filter| filter.to_string())
    }
}

/// Envoy's `active loggers:` listing of a filter as [`LogControl::current`] gives it.
pub fn active_loggers(filter: &str) -> String {
    match filter.parse::<LevelFilter>() {
        Ok(level) => format!("active loggers:\n  all: {}\n", envoy_level(level)),
        Err(_) => format!("active loggers:\n  all: {filter}\n"),
    }
}

/// The Envoy level a tracing level is listed as (error, never critical: they filter alike).
fn envoy_level(level: LevelFilter) -> LogLevel {
    match level.into_level() {
        None => LogLevel::Off,
        Some(tracing::Level::TRACE) => LogLevel::Trace,
        Some(tracing::Level::DEBUG) => LogLevel::Debug,
        Some(tracing::Level::INFO) => LogLevel::Info,
        Some(tracing::Level::WARN) => LogLevel::Warning,
        Some(tracing::Level::ERROR) => LogLevel::Error,
    }
}

#[cfg(test)]
mod tests;
