//! Log output of the `sealroom relay` command: `tracing` events to standard error, as
//! human-readable lines by default or one JSON object per line.
//!
//! User and room ids never reach this layer in clear unless the operator asked for it: the
//! relay puts them through [`sealroom_relay::mask::IdMask`] before it records them.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Install the global subscriber. `filter` is a `tracing` directive (`RUST_LOG` wins when
/// set, so a developer can raise verbosity without editing the config).
pub(crate) fn init(format: LogFormat, filter: &str) -> anyhow::Result<()> {
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
    result.map_err(|err| anyhow::anyhow!("cannot install the log subscriber: {err}"))
}
