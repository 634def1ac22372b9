//! Command line errors that name their source: the environment variable behind a bad
//! value when it came from one, rather than the flag clap would otherwise name.

/// Report a command line error, naming the environment variable when the bad value came
/// from one rather than from the flag clap would otherwise name.
pub(crate) fn exit_naming_the_source<C: clap::CommandFactory>(err: clap::Error) -> ! {
    use std::error::Error as _;

    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if matches!(
        err.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation | ErrorKind::ArgumentConflict
    ) && let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg)
        && let Some(var) = env_source(&C::command(), arg)
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
fn env_source(command: &clap::Command, arg: &str) -> Option<String> {
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
    let mut commands = vec![command];
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
