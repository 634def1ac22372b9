//! The `sealroom token` subcommand (being built).

/// Arguments of the subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {}

/// Run the subcommand.
pub(crate) fn run(_args: TokenArgs) -> anyhow::Result<()> {
    anyhow::bail!("this subcommand is not built yet")
}
