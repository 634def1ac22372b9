//! The `sealroom` command: run a relay, mint tickets, run the demo.

use clap::{Parser, Subcommand};

mod config;
mod demo;
mod logging;
mod relay_cmd;
mod token;

/// End-to-end encrypted real-time rooms over QUIC relays that never hold a key.
#[derive(Debug, Parser)]
#[command(name = "sealroom", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a relay node.
    Relay(relay_cmd::RelayArgs),
    /// Mint an entry ticket.
    Token(token::TokenArgs),
    /// Run members on an embedded relay and report what they exchanged.
    Demo(demo::DemoArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Relay(args) => relay_cmd::run(args).await,
            Command::Token(args) => token::run(args),
            Command::Demo(args) => demo::run(args).await,
        }
    })
}
