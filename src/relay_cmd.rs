//! The `sealroom relay` subcommand: run a relay node from a TOML config (flags and
//! `SEALROOM_*` environment variables override it), with its internal listener for metrics,
//! health, the SLA summary and the admin API, and a graceful drain on SIGTERM or Ctrl-C.
//!
//! Without a config and without apps it runs a development node: loopback only, a fresh
//! self-signed certificate, a generated app secret and admin token, and it prints what a
//! client needs to connect.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use sealroom_relay::http::{InternalOptions, InternalServer};
use sealroom_relay::mask::IdMask;
use sealroom_relay::sla::SlaOutcome;
use sealroom_relay::{JoinOutcome, Relay, RelayConfig, StartError};

use crate::config::{self, FileConfig, Overrides, Secret, Settings};
use crate::logging;

/// App id of the development node.
const DEV_APP: &str = "dev";
/// Key id of the development node's ticket secret.
const DEV_KID: &str = "dev";

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

/// A configuration ready to serve, as startup and `--check-config` both build it.
struct Prepared {
    settings: Settings,
    dev: bool,
    generated_admin_token: Option<String>,
}

/// Read the config file (if any), apply the overrides, fill in a development node when
/// there is neither a file nor an app, and validate everything.
fn prepare(config: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Prepared> {
    let mut file = match config {
        Some(path) => config::read_file(path)?,
        None => FileConfig::default(),
    };
    file.apply(overrides)?;
    let dev = config.is_none() && file.apps.is_empty();
    let mut generated_admin_token = None;
    if dev {
        let secret = random_hex(32);
        file.apply(&Overrides {
            apps: vec![format!("{DEV_APP}:{DEV_KID}:{secret}")],
            ..Overrides::default()
        })?;
        if file.admin_token.is_none() && file.admin_token_file.is_none() {
            let token = random_hex(24);
            file.admin_token = Some(Secret::new(token.clone()));
            generated_admin_token = Some(token);
        }
    }
    let settings = file.resolve()?;
    Ok(Prepared {
        settings,
        dev,
        generated_admin_token,
    })
}

/// Run the subcommand.
pub(crate) async fn run(args: RelayArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.check_config {
        let prepared = prepare(Some(path), &args.overrides)?;
        print!("{}", prepared.settings.effective_toml()?);
        println!(
            "# {}: valid: `sealroom relay --config {}` will start with this configuration \
             (if its ports are free)",
            path.display(),
            path.display()
        );
        return Ok(());
    }
    let config = match &args.config {
        Some(path) => Some(path.clone()),
        None => std::env::var_os("SEALROOM_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
    };
    let Prepared {
        settings,
        dev,
        generated_admin_token,
    } = prepare(config.as_deref(), &args.overrides)?;
    logging::init(settings.log_format, &settings.log_filter)?;
    serve(settings, dev, generated_admin_token).await
}

/// What to do about a failed bind.
fn bind_hint(err: &std::io::Error, setting: &str) -> String {
    match err.kind() {
        std::io::ErrorKind::AddrInUse => {
            format!(
                " (another process holds it, perhaps another relay: choose another port with {setting})"
            )
        }
        std::io::ErrorKind::AddrNotAvailable => {
            format!(
                " (no interface of this machine has that IP: give one it has, or 0.0.0.0, with {setting})"
            )
        }
        std::io::ErrorKind::PermissionDenied => String::from(
            " (ports below 1024 need privileges: choose a higher one or grant CAP_NET_BIND_SERVICE)",
        ),
        _ => String::new(),
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

fn id_mask(settings: &Settings) -> IdMask {
    if settings.show_ids {
        IdMask::show()
    } else if let Some(salt) = &settings.mask_salt {
        IdMask::with_salt(salt.expose().as_bytes())
    } else {
        IdMask::per_process()
    }
}

async fn serve(
    settings: Settings,
    dev: bool,
    generated_admin_token: Option<String>,
) -> anyhow::Result<()> {
    let mask = id_mask(&settings);
    if settings.show_ids {
        tracing::warn!("user and room ids are logged in clear (show_ids): development only");
    }
    let relay_config = RelayConfig::default()
        .listen(settings.listen)
        .limits(settings.limits)
        .tls(settings.tls.clone());
    let relay_config = settings
        .apps
        .iter()
        .cloned()
        .fold(relay_config, RelayConfig::app);
    let relay = Arc::new(Relay::start(relay_config).await.map_err(|err| match err {
        // The io error alone: the context names the address, and no cause line repeats it.
        StartError::Bind(io) => anyhow::anyhow!(
            "cannot bind the QUIC (UDP) listener on {}: {io}{}",
            settings.listen,
            bind_hint(&io, "--listen or SEALROOM_LISTEN")
        ),
        other => anyhow::Error::new(other).context("cannot start the relay"),
    })?);
    let mut options = InternalOptions::default().sla(settings.sla).mask(mask);
    options.admin_token = settings.admin_token.as_ref().map(|t| t.expose().to_owned());
    let target: Arc<dyn sealroom_relay::admin::AdminTarget> = relay.clone();
    let internal = InternalServer::start(settings.internal_listen, target, options)
        .await
        .map_err(|io| {
            anyhow::anyhow!(
                "cannot bind the internal listener on {}: {io}{}",
                settings.internal_listen,
                bind_hint(&io, "--internal-listen or SEALROOM_INTERNAL_LISTEN")
            )
        })?;
    let state = Arc::clone(internal.state());
    relay.set_join_hook(Some(Arc::new(
        move |outcome: JoinOutcome, unix_secs: u64| {
            state.record_join_at(unix_secs, SlaOutcome::from_join(outcome));
        },
    )));

    print_banner(
        &settings,
        &relay,
        internal.local_addr(),
        dev,
        generated_admin_token,
    );
    tracing::info!(
        listen = %relay.local_addr(),
        internal = %internal.local_addr(),
        apps = settings.apps.len(),
        "relay ready"
    );

    let signal = shutdown_signal().await?;
    internal.state().set_ready(false);
    if !settings.ready_drain_delay.is_zero() {
        tracing::info!(
            signal,
            ready_drain_delay_secs = settings.ready_drain_delay.as_secs(),
            "shutting down: /ready answers 503, still serving until the load balancer notices"
        );
        // A second signal skips the wait.
        tokio::select! {
            () = tokio::time::sleep(settings.ready_drain_delay) => {}
            second = shutdown_signal() => {
                tracing::info!(signal = second.unwrap_or("?"), "draining now");
            }
        }
    }
    tracing::info!(
        signal,
        drain_secs = settings.drain.as_secs(),
        "shutting down: refusing joins, telling members to go away"
    );
    let remaining = relay.drain(settings.drain).await;
    tracing::info!(remaining, "drain finished");
    // The hook holds the internal listener's state, which holds the relay: break the cycle.
    relay.set_join_hook(None);
    internal.shutdown().await;
    match Arc::try_unwrap(relay) {
        Ok(relay) => relay.shutdown().await,
        Err(_) => tracing::warn!("relay still referenced at exit; closing without waiting"),
    }
    tracing::info!("relay stopped");
    Ok(())
}

fn print_banner(
    settings: &Settings,
    relay: &Relay,
    internal: std::net::SocketAddr,
    dev: bool,
    generated_admin_token: Option<String>,
) {
    let cert = hex::encode(relay.cert_sha256());
    println!("sealroom relay");
    println!("  listen:      {}", relay.local_addr());
    println!("  internal:    http://{internal}");
    println!("  cert-sha256: {cert}");
    if let Some(token) = generated_admin_token {
        println!("  admin-token: {token}");
    }
    if dev {
        let secret = settings
            .apps
            .first()
            .and_then(|a| a.secrets.first())
            .map(|s| String::from_utf8_lossy(&s.secret).into_owned())
            .unwrap_or_default();
        println!();
        println!("development node: a fresh certificate and app secret every start.");
        println!("mint a ticket and join with:");
        println!(
            "  SEALROOM_TICKET_SECRET={secret} sealroom token --app {DEV_APP} --kid {DEV_KID} --user alice --room demo"
        );
        println!(
            "  (from the source tree: `cargo run --release -- token ...` for `sealroom token ...`)"
        );
        println!(
            "  connect to {} pinning certificate sha256 {cert}",
            relay.local_addr()
        );
    }
}

/// Wait for SIGTERM or Ctrl-C (SIGINT); returns the signal's name.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        tokio::select! {
            _ = term.recv() => Ok("SIGTERM"),
            result = tokio::signal::ctrl_c() => result.map(|()| "SIGINT").context("cannot watch Ctrl-C"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("cannot watch Ctrl-C")?;
        Ok("Ctrl-C")
    }
}
