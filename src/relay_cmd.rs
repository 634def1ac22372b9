//! The `sealroom relay` subcommand: run a relay node from a TOML config (flags and
//! `SEALROOM_*` environment variables override it), with its internal listener for metrics,
//! health, the SLA summary and the admin API, and a graceful drain on SIGTERM or Ctrl-C.
//!
//! Without a config and without apps it runs a development node: loopback only, a fresh
//! self-signed certificate, a generated app secret and admin token, and it prints what a
//! client needs to connect. The node itself is [`sealroom_relay::node::Node`].

use std::path::PathBuf;

use sealroom_relay::node::{Node, NodeConfig, Overrides, logging};

/// Arguments of the subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct RelayArgs {
    /// TOML config file (see examples/relay.toml) [env: SEALROOM_CONFIG]. Without it, and
    /// without --app, a development node runs on loopback.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check FILE exactly as `--config FILE` would at start (with the flag and environment
    /// overrides applied), print the effective config with secrets redacted, and exit: 0
    /// when the node would start with it. SEALROOM_CONFIG is ignored.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Box<Overrides>,
}

/// Run the subcommand.
pub(crate) async fn run(args: RelayArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.check_config {
        let config = NodeConfig::prepare(Some(path), &args.overrides)?;
        print!("{}", config.effective_toml()?);
        println!(
            "# {}: valid: `sealroom relay --config {}` will start with this configuration \
             (if its ports are free)",
            path.display(),
            path.display()
        );
        return Ok(());
    }
    let path = args.config.or_else(|| {
        std::env::var_os("SEALROOM_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let config = NodeConfig::prepare(path.as_deref(), &args.overrides)?;
    logging::init(config.log_format, &config.log_filter)?;
    let node = Node::load(config).await?;
    print!("{}", node.banner());
    node.run().await?;
    Ok(())
}
