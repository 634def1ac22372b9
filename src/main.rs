//! The `sealroom` command: run a relay, mint tickets, run the demo, record rooms and open
//! recordings.

use clap::{Parser, Subcommand};

mod cli_error;
mod demo;
mod recording;
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
    ///
    /// Relays accept a ticket from 30 s before its start to 30 s after its expiry
    /// (`limits.ticket_leeway_secs`, for clock skew between the backend and the relays), so a
    /// `--ttl 1s` ticket still joins for about 31 s, and a member whose ticket expires is
    /// removed 30 s after `exp` unless the client refreshed it.
    Token(token::TokenArgs),
    /// Run members on an embedded relay and report what they exchanged.
    Demo(demo::DemoArgs),
    /// Record a room, sealed, into the customer's storage (a blind recorder: it holds no
    /// room secret; its ticket needs the `record` grant).
    Record(recording::RecordArgs),
    /// Work with recordings: `open` one offline with the room secret.
    Recording(recording::RecordingArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::try_parse().unwrap_or_else(|err| cli_error::exit_naming_the_source::<Cli>(err));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Relay(args) => relay_cmd::run(args).await,
            Command::Token(args) => token::run(args),
            Command::Demo(args) => demo::run(args).await,
            Command::Record(args) => recording::record(args).await,
            Command::Recording(args) => recording::recording(args).await,
        }
    })
}
