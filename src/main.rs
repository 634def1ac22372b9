//! The `sealroom` command: run a relay, mint tickets, run the demo.

use clap::{Parser, Subcommand};

mod demo;
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::try_parse().unwrap_or_else(|err| exit_naming_the_source(err));
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

/// Report a command line error, naming the environment variable when the bad value came
/// from one rather than from the flag clap would otherwise name.
fn exit_naming_the_source(err: clap::Error) -> ! {
    use std::error::Error as _;

    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if matches!(
        err.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation | ErrorKind::ArgumentConflict
    ) && let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg)
        && let Some(var) = env_source(arg)
    {
        let value = match err.get(ContextKind::InvalidValue) {
            Some(ContextValue::String(value)) => format!(" `{value}`"),
            _ => String::new(),
        };
        let reason = err
            .source()
            .map(|cause| format!(": {cause}"))
            .unwrap_or_default();
        eprintln!(
            "error: the environment variable {var} has an invalid value{value}{reason}\n\
             (it stands for {arg}; fix or unset it)"
        );
        std::process::exit(2);
    }
    err.exit()
}

/// The environment variable behind `arg` (as clap names it, `--listen <ADDR>`), when the
/// flag itself was not on the command line and the variable is set.
fn env_source(arg: &str) -> Option<String> {
    use clap::CommandFactory;
    let long = arg
        .split_whitespace()
        .next()?
        .strip_prefix("--")?
        .to_owned();
    let on_command_line = std::env::args().any(|a| {
        a.strip_prefix("--")
            .is_some_and(|rest| rest == long || rest.starts_with(&format!("{long}=")))
    });
    if on_command_line {
        return None;
    }
    let command = Cli::command();
    let mut commands = vec![&command];
    while let Some(cmd) = commands.pop() {
        for a in cmd.get_arguments() {
            if a.get_long() == Some(long.as_str())
                && let Some(var) = a.get_env()
                && std::env::var_os(var).is_some()
            {
                return Some(var.to_string_lossy().into_owned());
            }
        }
        commands.extend(cmd.get_subcommands());
    }
    None
}
