//! The `sealroom demo` subcommand (being built).

/// Arguments of the subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {}

/// Run the subcommand.
pub(crate) async fn run(_args: DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("this subcommand is not built yet")
}
