//! Log output of a node run as a command (`cli` feature): `tracing` events to standard
//! error, as human-readable lines by default or one JSON object per line.
//!
//! User and room ids never reach this layer in clear unless the operator asked for it: the
//! relay puts them through [`crate::mask::IdMask`] before it records them.

use tracing_subscriber::EnvFilter;

use super::config::LogFormat;

/// Why the log subscriber could not be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogInitError {
    /// The filter directive (from `RUST_LOG` or the config) does not parse.
    #[error("invalid log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// Another global subscriber is installed already.
    #[error("cannot install the log subscriber: {0}")]
    Install(String),
}

/// Install the global subscriber. `filter` is a `tracing` directive (`RUST_LOG` wins when
/// set, so a developer can raise verbosity without editing the config).
///
/// # Errors
/// [`LogInitError`] when the filter does not parse or a subscriber is installed already.
pub fn init(format: LogFormat, filter: &str) -> Result<(), LogInitError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directive) if !directive.trim().is_empty() => EnvFilter::try_new(directive)?,
        _ => EnvFilter::try_new(filter)?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let result = match format {
        LogFormat::Human => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    result.map_err(|err| LogInitError::Install(err.to_string()))
}
