//! The `sealroom relay_cmd` subcommand (being built).

/// Arguments of the subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct RelayArgs {}

/// Run the subcommand.
pub(crate) async fn run(_args: RelayArgs) -> anyhow::Result<()> {
    anyhow::bail!("this subcommand is not built yet")
}
