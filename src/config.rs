//! The relay node's configuration: a TOML file, overridden field by field by flags and
//! `SEALROOM_*` environment variables (flag beats environment beats file beats default).
//!
//! The file is parsed with unknown keys refused (the error names the key and its line), then
//! merged with the overrides and resolved into [`Settings`]: secrets read from their files,
//! every value checked. [`Settings::effective_toml`] prints what is in force with every
//! secret replaced by `<redacted>`.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use sealroom_relay::sla::SlaConfig;
use sealroom_relay::{AppConfig, Limits, TlsConfig};

/// Default QUIC listen address.
pub(crate) const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 4433);
/// Default internal (metrics, health, admin) listen address: loopback only.
pub(crate) const DEFAULT_INTERNAL_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9433);
/// Shortest ticket secret a relay accepts (and `sealroom token` signs with), in bytes.
pub(crate) const MIN_TICKET_SECRET_LEN: usize = 16;
/// Default drain time on shutdown.
pub(crate) const DEFAULT_DRAIN_SECS: u64 = 10;

/// A secret string from the file or the environment: never printed, zeroized on drop by
/// whoever converts it (the relay's `TicketSecret`).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The file as written: every key optional, unknown keys refused.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// QUIC (UDP) listen address.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_addr"
    )]
    pub(crate) listen: Option<SocketAddr>,
    /// Internal HTTP listener (metrics, health, SLA, admin API).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_addr"
    )]
    pub(crate) internal_listen: Option<SocketAddr>,
    /// Bearer token for the admin API; the admin API is off without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) admin_token: Option<Secret>,
    /// File holding the admin token (trailing newline ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) admin_token_file: Option<PathBuf>,
    /// Seconds to wait for members to leave after GoAway on shutdown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) drain_secs: Option<u64>,
    /// Seconds between the shutdown signal and the drain, during which `/ready` answers 503
    /// and the node keeps serving, so a load balancer takes it out of rotation first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ready_drain_delay_secs: Option<u64>,
    #[serde(default)]
    pub(crate) tls: TlsSection,
    #[serde(default)]
    pub(crate) log: LogSection,
    #[serde(default)]
    pub(crate) sla: SlaSection,
    /// Limits; merged key by key over the relay's defaults.
    #[serde(default)]
    pub(crate) limits: toml::Table,
    #[serde(default)]
    pub(crate) apps: Vec<AppSection>,
}

/// `[tls]`: certificate and key files, or a self-signed certificate for these names.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) self_signed_names: Option<Vec<String>>,
}

/// `[log]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) format: Option<LogFormat>,
    /// A `tracing` filter directive such as `info` or `sealroom_relay=debug,info`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) filter: Option<String>,
    /// Log user and room ids in clear (development only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) show_ids: Option<bool>,
    /// Salt of the id mask; without it a random salt is drawn per process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mask_salt: Option<Secret>,
}

/// `[sla]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SlaSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) window_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retained_windows: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) target: Option<f64>,
}

/// `[[apps]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppSection {
    pub(crate) app: String,
    pub(crate) secrets: Vec<SecretSection>,
}

/// `[[apps.secrets]]`: a key id and its secret, inline or in a file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretSection {
    pub(crate) kid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) secret: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) secret_file: Option<PathBuf>,
}

/// Overrides from flags and the environment (clap fills both).
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct Overrides {
    /// QUIC (UDP) listen address, IP:port or host:port [default: 127.0.0.1:4433].
    #[arg(long, env = "SEALROOM_LISTEN", value_name = "ADDR", value_parser = parse_addr)]
    pub(crate) listen: Option<SocketAddr>,
    /// Internal HTTP listener for /metrics, /health, /ready, /sla and the admin API
    /// [default: 127.0.0.1:9433].
    #[arg(long, env = "SEALROOM_INTERNAL_LISTEN", value_name = "ADDR", value_parser = parse_addr)]
    pub(crate) internal_listen: Option<SocketAddr>,
    /// Bearer token of the admin API (prefer the environment variable to the flag: flags
    /// show in the process list).
    #[arg(
        long,
        env = "SEALROOM_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub(crate) admin_token: Option<String>,
    /// File holding the admin token.
    #[arg(long, env = "SEALROOM_ADMIN_TOKEN_FILE", value_name = "PATH")]
    pub(crate) admin_token_file: Option<PathBuf>,
    /// Seconds to wait for members to leave on shutdown [default: 10].
    #[arg(long, env = "SEALROOM_DRAIN_SECS", value_name = "SECS")]
    pub(crate) drain_secs: Option<u64>,
    /// Seconds between the shutdown signal and the drain: /ready answers 503 while the node
    /// keeps serving, so a load balancer takes it out of rotation first [default: 0].
    #[arg(long, env = "SEALROOM_READY_DRAIN_DELAY_SECS", value_name = "SECS")]
    pub(crate) ready_drain_delay_secs: Option<u64>,
    /// PEM certificate chain (with --tls-key; otherwise a self-signed certificate).
    #[arg(long, env = "SEALROOM_TLS_CERT", value_name = "PATH")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, env = "SEALROOM_TLS_KEY", value_name = "PATH")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Names of the self-signed certificate, comma-separated [default: localhost,127.0.0.1].
    #[arg(
        long,
        env = "SEALROOM_TLS_SELF_SIGNED_NAMES",
        value_name = "NAMES",
        value_delimiter = ','
    )]
    pub(crate) tls_self_signed_names: Option<Vec<String>>,
    /// Log format [default: human].
    #[arg(long, env = "SEALROOM_LOG_FORMAT", value_name = "FORMAT")]
    pub(crate) log_format: Option<LogFormat>,
    /// Log filter directive, e.g. `info` or `sealroom_relay=debug,info` [default: info].
    #[arg(long, env = "SEALROOM_LOG", value_name = "FILTER")]
    pub(crate) log_filter: Option<String>,
    /// Log user and room ids in clear (development only).
    #[arg(long, env = "SEALROOM_SHOW_IDS", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true")]
    pub(crate) show_ids: Option<bool>,
    /// Salt of the id mask, so masked ids are stable across restarts and nodes.
    #[arg(
        long,
        env = "SEALROOM_MASK_SALT",
        value_name = "SALT",
        hide_env_values = true
    )]
    pub(crate) mask_salt: Option<String>,
    /// Length of an SLA window in seconds [default: 300].
    #[arg(long, env = "SEALROOM_SLA_WINDOW_SECS", value_name = "SECS")]
    pub(crate) sla_window_secs: Option<u64>,
    /// SLA windows kept [default: 288].
    #[arg(long, env = "SEALROOM_SLA_RETAINED_WINDOWS", value_name = "N")]
    pub(crate) sla_retained_windows: Option<usize>,
    /// Join success rate a window must reach [default: 0.99].
    #[arg(long, env = "SEALROOM_SLA_TARGET", value_name = "RATE")]
    pub(crate) sla_target: Option<f64>,
    /// A limit, `name=value` (repeatable; the environment variable takes a comma-separated
    /// list), e.g. `max_members_per_room=16`.
    #[arg(
        long = "limit",
        env = "SEALROOM_LIMITS",
        value_name = "NAME=VALUE",
        value_delimiter = ','
    )]
    pub(crate) limits: Vec<String>,
    /// An app and one ticket secret, `app:kid:secret` (repeatable; the environment variable
    /// takes a comma-separated list). Adds to the apps of the file.
    #[arg(
        long = "app",
        env = "SEALROOM_APPS",
        value_name = "APP:KID:SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub(crate) apps: Vec<String>,
}

/// The resolved, checked configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) listen: SocketAddr,
    pub(crate) internal_listen: SocketAddr,
    pub(crate) admin_token: Option<Secret>,
    pub(crate) drain: Duration,
    pub(crate) ready_drain_delay: Duration,
    pub(crate) tls: TlsConfig,
    pub(crate) log_format: LogFormat,
    pub(crate) log_filter: String,
    pub(crate) show_ids: bool,
    pub(crate) mask_salt: Option<Secret>,
    pub(crate) sla: SlaConfig,
    pub(crate) limits: Limits,
    pub(crate) apps: Vec<AppConfig>,
    /// The merged file view, for printing.
    merged: FileConfig,
}

/// Read and parse a config file; unknown keys and type errors name the key and the line.
pub(crate) fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    parse(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// An address as IP:port, or host:port resolved now (the first IPv4 address it names, else
/// the first IPv6 one).
pub(crate) fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let text = text.trim();
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let hint = "give an IP:port such as 127.0.0.1:4433, 0.0.0.0:4433 or [::]:4433";
    if text
        .rsplit_once(':')
        .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
    {
        return Err(format!("`{text}` is not an address: {hint}"));
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|err| format!("`{text}` does not resolve ({err}): {hint}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("`{text}` resolves to no address: {hint}"))
}

fn deserialize_addr<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_addr(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Parse config text.
pub(crate) fn parse(text: &str) -> anyhow::Result<FileConfig> {
    toml::from_str(text).map_err(|err| anyhow::anyhow!("{err}"))
}

impl FileConfig {
    /// Apply flag and environment overrides.
    pub(crate) fn apply(&mut self, o: &Overrides) -> anyhow::Result<()> {
        fn set<T: Clone>(slot: &mut Option<T>, value: Option<&T>) {
            if let Some(v) = value {
                *slot = Some(v.clone());
            }
        }
        set(&mut self.listen, o.listen.as_ref());
        set(&mut self.internal_listen, o.internal_listen.as_ref());
        if let Some(token) = &o.admin_token {
            self.admin_token = Some(Secret::new(token.clone()));
            self.admin_token_file = None;
        }
        if let Some(path) = &o.admin_token_file {
            self.admin_token_file = Some(path.clone());
            self.admin_token = None;
        }
        set(&mut self.drain_secs, o.drain_secs.as_ref());
        set(
            &mut self.ready_drain_delay_secs,
            o.ready_drain_delay_secs.as_ref(),
        );
        set(&mut self.tls.cert, o.tls_cert.as_ref());
        set(&mut self.tls.key, o.tls_key.as_ref());
        set(
            &mut self.tls.self_signed_names,
            o.tls_self_signed_names.as_ref(),
        );
        set(&mut self.log.format, o.log_format.as_ref());
        set(&mut self.log.filter, o.log_filter.as_ref());
        set(&mut self.log.show_ids, o.show_ids.as_ref());
        if let Some(salt) = &o.mask_salt {
            self.log.mask_salt = Some(Secret::new(salt.clone()));
        }
        set(&mut self.sla.window_secs, o.sla_window_secs.as_ref());
        set(
            &mut self.sla.retained_windows,
            o.sla_retained_windows.as_ref(),
        );
        set(&mut self.sla.target, o.sla_target.as_ref());
        for item in o.limits.iter().filter(|s| !s.trim().is_empty()) {
            let (name, value) = item.split_once('=').with_context(|| {
                format!("limit `{item}` (--limit or SEALROOM_LIMITS) is not of the form name=value")
            })?;
            // Whole numbers for counts and durations, `true`/`false` or a word
            // (`address_validation=auto`) for the rest; the limits' own parser says which
            // key takes what.
            let value = value.trim();
            let value = match (value.parse::<i64>(), value.parse::<bool>()) {
                (Ok(number), _) => toml::Value::Integer(number),
                (_, Ok(flag)) => toml::Value::Boolean(flag),
                _ => toml::Value::String(value.to_owned()),
            };
            self.limits.insert(name.trim().to_owned(), value);
        }
        for item in o.apps.iter().filter(|s| !s.trim().is_empty()) {
            let mut parts = item.splitn(3, ':');
            let (Some(app), Some(kid), Some(secret)) = (parts.next(), parts.next(), parts.next())
            else {
                bail!(
                    "app `{}` (--app or SEALROOM_APPS) is not of the form app:kid:secret",
                    redact_app_arg(item)
                );
            };
            let secret = SecretSection {
                kid: kid.to_owned(),
                secret: Some(Secret::new(secret)),
                secret_file: None,
            };
            match self.apps.iter_mut().find(|a| a.app == app) {
                Some(existing) => existing.secrets.push(secret),
                None => self.apps.push(AppSection {
                    app: app.to_owned(),
                    secrets: vec![secret],
                }),
            }
        }
        Ok(())
    }

    /// Check everything and read secret files.
    pub(crate) fn resolve(self) -> anyhow::Result<Settings> {
        let tls = match (&self.tls.cert, &self.tls.key) {
            (Some(cert), Some(key)) => {
                if self.tls.self_signed_names.is_some() {
                    bail!("[tls]: give either cert and key or self_signed_names, not both");
                }
                for (what, path) in [("cert", cert), ("key", key)] {
                    if !path.is_file() {
                        bail!("[tls] {what}: no such file {}", path.display());
                    }
                }
                TlsConfig::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                }
            }
            (None, None) => match &self.tls.self_signed_names {
                Some(names) if names.is_empty() => {
                    bail!("[tls] self_signed_names: give at least one name")
                }
                Some(names) => TlsConfig::SelfSigned {
                    names: names.clone(),
                },
                None => TlsConfig::default(),
            },
            _ => bail!("[tls]: cert and key must be given together"),
        };
        let admin_token = match (&self.admin_token, &self.admin_token_file) {
            (Some(_), Some(_)) => bail!("give either admin_token or admin_token_file, not both"),
            (Some(token), None) => Some(token.clone()),
            (None, Some(path)) => Some(Secret::new(read_secret_file(path, "admin_token_file")?)),
            (None, None) => None,
        };
        if let Some(token) = &admin_token
            && token.expose().len() < 16
        {
            bail!(
                "admin_token (or --admin-token, SEALROOM_ADMIN_TOKEN, admin_token_file): use at \
                 least 16 characters"
            );
        }
        let log_filter = self.log.filter.clone().unwrap_or_else(|| "info".to_owned());
        tracing_subscriber::EnvFilter::try_new(&log_filter)
            .with_context(|| format!("[log] filter `{log_filter}` is not a valid directive"))?;
        let defaults = SlaConfig::default();
        let sla = SlaConfig {
            window_secs: self.sla.window_secs.unwrap_or(defaults.window_secs),
            retained_windows: self
                .sla
                .retained_windows
                .unwrap_or(defaults.retained_windows),
            target: self.sla.target.unwrap_or(defaults.target),
        };
        if sla.window_secs == 0 || sla.retained_windows == 0 {
            bail!("[sla] window_secs and retained_windows must be at least 1");
        }
        if !(0.0..=1.0).contains(&sla.target) {
            bail!("[sla] target must be between 0 and 1");
        }
        let limits: Limits = toml::Value::Table(self.limits.clone())
            .try_into()
            .map_err(|err| anyhow::anyhow!("[limits]: {err}"))?;
        limits
            .validate()
            .map_err(|err| anyhow::anyhow!("[limits] {err}"))?;
        if self.apps.is_empty() {
            bail!(
                "no apps configured: add an [[apps]] section with its ticket secrets, or pass \
                 --app app:kid:secret (SEALROOM_APPS)"
            );
        }
        let mut apps = Vec::with_capacity(self.apps.len());
        for section in &self.apps {
            if section.app.is_empty() {
                bail!("[[apps]]: app must not be empty");
            }
            if apps.iter().any(|a: &AppConfig| a.app == section.app) {
                bail!("[[apps]]: app `{}` is listed twice", section.app);
            }
            if section.secrets.is_empty() {
                bail!("app `{}`: give at least one secret", section.app);
            }
            let mut secrets = Vec::with_capacity(section.secrets.len());
            for s in &section.secrets {
                let bytes = match (&s.secret, &s.secret_file) {
                    (Some(secret), None) => secret.expose().as_bytes().to_vec(),
                    (None, Some(path)) => read_secret_file(path, "secret_file")?.into_bytes(),
                    _ => bail!(
                        "app `{}` kid `{}`: give exactly one of secret and secret_file",
                        section.app,
                        s.kid
                    ),
                };
                if bytes.len() < MIN_TICKET_SECRET_LEN {
                    bail!(
                        "app `{}` kid `{}`: a ticket secret needs at least {MIN_TICKET_SECRET_LEN} bytes",
                        section.app,
                        s.kid
                    );
                }
                if secrets
                    .iter()
                    .any(|t: &sealroom_relay::TicketSecret| t.kid == s.kid)
                {
                    bail!("app `{}`: kid `{}` is listed twice", section.app, s.kid);
                }
                secrets.push(sealroom_relay::TicketSecret::new(s.kid.clone(), bytes));
            }
            apps.push(AppConfig {
                app: section.app.clone(),
                secrets,
            });
        }
        Ok(Settings {
            listen: self.listen.unwrap_or(DEFAULT_LISTEN),
            internal_listen: self.internal_listen.unwrap_or(DEFAULT_INTERNAL_LISTEN),
            admin_token,
            drain: Duration::from_secs(self.drain_secs.unwrap_or(DEFAULT_DRAIN_SECS)),
            ready_drain_delay: Duration::from_secs(self.ready_drain_delay_secs.unwrap_or(0)),
            tls,
            log_format: self.log.format.unwrap_or_default(),
            log_filter,
            show_ids: self.log.show_ids.unwrap_or(false),
            mask_salt: self.log.mask_salt.clone(),
            sla,
            limits,
            apps,
            merged: self,
        })
    }
}

fn redact_app_arg(item: &str) -> String {
    let mut parts = item.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(app), Some(kid), Some(_)) => format!("{app}:{kid}:<redacted>"),
        _ => "<redacted>".to_owned(),
    }
}

fn read_secret_file(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{what}: cannot read {}", path.display()))?;
    let text = text.trim_end_matches(['\r', '\n']).to_owned();
    if text.is_empty() {
        bail!("{what}: {} is empty", path.display());
    }
    Ok(text)
}

/// The effective configuration as printed by `--check-config`.
#[derive(Serialize)]
struct Effective<'a> {
    listen: SocketAddr,
    internal_listen: SocketAddr,
    admin_token: &'a str,
    drain_secs: u64,
    ready_drain_delay_secs: u64,
    tls: &'a TlsSection,
    log: EffectiveLog<'a>,
    sla: SlaConfig,
    limits: Limits,
    apps: &'a [AppSection],
}

#[derive(Serialize)]
struct EffectiveLog<'a> {
    format: LogFormat,
    filter: &'a str,
    show_ids: bool,
    mask_salt: &'a str,
}

impl Settings {
    /// The configuration in force as TOML, every secret replaced by `<redacted>`.
    pub(crate) fn effective_toml(&self) -> anyhow::Result<String> {
        let mut tls = self.merged.tls.clone();
        if let TlsConfig::SelfSigned { names } = &self.tls {
            tls.self_signed_names = Some(names.clone());
        }
        let effective = Effective {
            listen: self.listen,
            internal_listen: self.internal_listen,
            admin_token: if self.admin_token.is_some() {
                "<redacted>"
            } else {
                "<none: admin API off>"
            },
            drain_secs: self.drain.as_secs(),
            ready_drain_delay_secs: self.ready_drain_delay.as_secs(),
            tls: &tls,
            log: EffectiveLog {
                format: self.log_format,
                filter: &self.log_filter,
                show_ids: self.show_ids,
                mask_salt: if self.mask_salt.is_some() {
                    "<redacted>"
                } else {
                    "<random per process>"
                },
            },
            sla: self.sla,
            limits: self.limits,
            apps: &self.merged.apps,
        };
        Ok(toml::to_string(&effective)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        listen = "0.0.0.0:4433"
        internal_listen = "127.0.0.1:9500"
        admin_token = "0123456789abcdef-admin"
        drain_secs = 3
        [log]
        format = "json"
        [limits]
        max_members_per_room = 5
        [[apps]]
        app = "acme"
        secrets = [
            { kid = "k1", secret = "acme-ticket-secret-one" },
            { kid = "k2", secret = "acme-ticket-secret-two" },
        ]
    "#;

    #[test]
    fn a_good_file_resolves() {
        let settings = parse(GOOD).unwrap().resolve().unwrap();
        assert_eq!(settings.listen, "0.0.0.0:4433".parse().unwrap());
        assert_eq!(settings.internal_listen.port(), 9500);
        assert_eq!(settings.drain, Duration::from_secs(3));
        assert_eq!(settings.log_format, LogFormat::Json);
        assert_eq!(settings.limits.max_members_per_room, 5);
        assert_eq!(
            settings.limits.max_rooms_per_app,
            Limits::default().max_rooms_per_app
        );
        assert_eq!(settings.apps.len(), 1);
        assert_eq!(settings.apps[0].secrets.len(), 2);
        assert_eq!(
            settings.apps[0].secrets[1].secret,
            b"acme-ticket-secret-two"
        );
        assert!(!settings.show_ids);
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        for (text, key) in [
            ("listn = \"127.0.0.1:1\"", "listn"),
            ("[log]\nfromat = \"json\"", "fromat"),
            ("[tls]\ncertificate = \"x\"", "certificate"),
            (
                "[[apps]]\napp = \"a\"\nsecrets = []\nsecret = \"x\"",
                "secret",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
        let err = parse("[limits]\nmax_member_per_room = 3")
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_member_per_room"), "{err}");
    }

    #[test]
    fn overrides_beat_the_file() {
        let mut file = parse(GOOD).unwrap();
        file.apply(&Overrides {
            listen: Some("127.0.0.1:5000".parse().unwrap()),
            log_format: Some(LogFormat::Human),
            show_ids: Some(true),
            limits: vec![
                "max_members_per_room=9".into(),
                "max_rooms_per_app=2".into(),
            ],
            apps: vec![
                "acme:k3:acme-ticket-secret-three".into(),
                "other:a:other-ticket-secret".into(),
            ],
            ..Overrides::default()
        })
        .unwrap();
        let settings = file.resolve().unwrap();
        assert_eq!(settings.listen.port(), 5000);
        assert_eq!(settings.log_format, LogFormat::Human);
        assert!(settings.show_ids);
        assert_eq!(settings.limits.max_members_per_room, 9);
        assert_eq!(settings.limits.max_rooms_per_app, 2);
        assert_eq!(settings.apps[0].secrets.len(), 3);
        assert_eq!(settings.apps[1].app, "other");
    }

    #[test]
    fn effective_config_redacts_every_secret() {
        let mut file = parse(GOOD).unwrap();
        file.apply(&Overrides {
            mask_salt: Some("salty-salt".into()),
            ..Overrides::default()
        })
        .unwrap();
        let text = file.resolve().unwrap().effective_toml().unwrap();
        for secret in ["acme-ticket-secret", "0123456789abcdef-admin", "salty-salt"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("<redacted>"));
        assert!(text.contains("kid = \"k2\""), "{text}");
        assert!(text.contains("max_members_per_room = 5"), "{text}");
        // The printed config parses back (secrets aside, it is a valid file).
        let reparsed: toml::Table = toml::from_str(&text).unwrap();
        assert!(reparsed.contains_key("limits"));
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        for (text, needle) in [
            ("admin_token = \"short\"", "16 characters"),
            ("[tls]\ncert = \"/nonexistent/cert.pem\"", "together"),
            (
                "[tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"",
                "no such file",
            ),
            ("[sla]\ntarget = 1.5", "between 0 and 1"),
            ("[log]\nfilter = \"==\"", "filter"),
            (
                "[[apps]]\napp = \"a\"\nsecrets = [{ kid = \"k\", secret = \"short\" }]",
                "16 bytes",
            ),
            (
                "[[apps]]\napp = \"a\"\nsecrets = [{ kid = \"k\" }]",
                "exactly one of",
            ),
        ] {
            let err = parse(text).unwrap().resolve().unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let mut file = FileConfig::default();
        let err = file
            .apply(&Overrides {
                apps: vec!["nokid".into()],
                ..Overrides::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("app:kid:secret"));
    }

    #[test]
    fn secret_files_are_read_without_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("sealroom-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, "from-a-file-secret-value\n").unwrap();
        let text = format!(
            "admin_token_file = {0:?}\n[[apps]]\napp = \"a\"\nsecrets = [{{ kid = \"k\", secret_file = {0:?} }}]",
            path.display().to_string()
        );
        let settings = parse(&text).unwrap().resolve().unwrap();
        assert_eq!(
            settings.admin_token.unwrap().expose(),
            "from-a-file-secret-value"
        );
        assert_eq!(
            settings.apps[0].secrets[0].secret,
            b"from-a-file-secret-value"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
