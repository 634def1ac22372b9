//! The `sealroom token` subcommand: mint an entry ticket the way an app backend would.
//!
//! The ticket (an HS256 JWT) goes to stdout alone, so it can be captured by a script; a
//! one-line summary of its claims goes to stderr.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use sealroom_ticket::{Grants, TicketClaims, mint};

use sealroom_relay::node::config::MIN_TICKET_SECRET_LEN;

/// Arguments of the subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    /// App id (the relay must serve it).
    #[arg(long, env = "SEALROOM_APP")]
    app: String,
    /// User id of the member.
    #[arg(long)]
    user: String,
    /// Room id.
    #[arg(long)]
    room: String,
    /// Key id of the secret, as configured on the relay (`kid` in the JWT header).
    #[arg(long, env = "SEALROOM_TICKET_KID")]
    kid: String,
    /// The app's ticket secret. Prefer the environment variable or --secret-file: command
    /// lines are visible to other users of the machine.
    #[arg(
        long,
        env = "SEALROOM_TICKET_SECRET",
        hide_env_values = true,
        conflicts_with = "secret_file"
    )]
    secret: Option<String>,
    /// File holding the app's ticket secret (a trailing newline is ignored).
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Lifetime: seconds, or a number with s, m, h or d (90s, 10m, 2h, 1d). Relays add 30 s
    /// of leeway for clock skew (limits.ticket_leeway_secs).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: u64,
    /// Comma-separated grants: audio, video, data, subscribe, record (a blind recorder that
    /// receives everything and publishes nothing); or all, or none.
    #[arg(long, default_value = "all", value_parser = parse_grants)]
    grants: Grants,
}

/// Run the subcommand.
pub(crate) fn run(args: TokenArgs) -> anyhow::Result<()> {
    let secret = match (&args.secret, &args.secret_file) {
        (Some(secret), None) => secret.clone(),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the secret file {}", path.display()))?;
            text.trim_end_matches(['\r', '\n']).to_owned()
        }
        _ => bail!("give the app's ticket secret with --secret-file or SEALROOM_TICKET_SECRET"),
    };
    if secret.len() < MIN_TICKET_SECRET_LEN {
        bail!(
            "the ticket secret is {} bytes, and relays refuse secrets shorter than {MIN_TICKET_SECRET_LEN} \
             bytes, so no relay could accept this ticket: use the secret the app has on its \
             relays (`sealroom relay` prints one for its development app)",
            secret.len()
        );
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let claims = TicketClaims::new(
        &args.app,
        &args.user,
        &args.room,
        now,
        args.ttl,
        args.grants,
    );
    let ticket = mint(&claims, &args.kid, secret.as_bytes()).context("cannot mint the ticket")?;
    println!("{ticket}");
    eprintln!(
        "ticket for user {} in room {} of app {} (kid {}), grants {}, valid {} s",
        args.user,
        args.room,
        args.app,
        args.kid,
        grants_text(args.grants),
        args.ttl
    );
    Ok(())
}

/// Parse a lifetime such as `600`, `90s`, `10m`, `2h` or `1d` into seconds.
fn parse_ttl(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a lifetime like 90s, 10m, 2h or 1d"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit `{unit}`: use s, m, h or d")),
    };
    match value.checked_mul(scale) {
        Some(0) => Err(String::from("the lifetime must be positive")),
        Some(secs) => Ok(secs),
        None => Err(String::from("the lifetime is too long")),
    }
}

/// Parse a grant list such as `audio,data,subscribe`, `all` or `none`.
fn parse_grants(text: &str) -> Result<Grants, String> {
    let mut grants = Grants::none();
    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match word {
            "all" => grants = Grants::all(),
            "none" => {}
            "audio" => grants.publish_audio = true,
            "video" => grants.publish_video = true,
            "data" => grants.publish_data = true,
            "subscribe" => grants.subscribe = true,
            "record" => grants.record = true,
            other => {
                return Err(format!(
                    "unknown grant `{other}`: use audio, video, data, subscribe, record, all or none"
                ));
            }
        }
    }
    Ok(grants)
}

fn grants_text(grants: Grants) -> String {
    let names = [
        (grants.publish_audio, "audio"),
        (grants.publish_video, "video"),
        (grants.publish_data, "data"),
        (grants.subscribe, "subscribe"),
        (grants.record, "record"),
    ];
    let list: Vec<&str> = names
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
    if list.is_empty() {
        String::from("none")
    } else {
        list.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_parse_with_units() {
        assert_eq!(parse_ttl("600"), Ok(600));
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("10m"), Ok(600));
        assert_eq!(parse_ttl("2h"), Ok(7200));
        assert_eq!(parse_ttl("1d"), Ok(86_400));
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("5w").is_err());
        assert!(parse_ttl("h").is_err());
    }

    #[test]
    fn grants_parse_from_lists() {
        assert_eq!(parse_grants("all"), Ok(Grants::all()));
        assert_eq!(parse_grants("none"), Ok(Grants::none()));
        let some = parse_grants("audio, subscribe").expect("valid list");
        assert!(some.publish_audio && some.subscribe);
        assert!(!some.publish_video && !some.publish_data);
        assert!(parse_grants("audio,screen").is_err());
        assert_eq!(grants_text(some), "audio,subscribe");
    }
}
