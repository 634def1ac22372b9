//! The relay node's configuration: a TOML file, overridden field by field by flags and
//! `SEALROOM_*` environment variables (flag beats environment beats file beats default).
//!
//! The file is parsed with unknown keys refused (the error names the key and its line), then
//! merged with the overrides and resolved into [`NodeConfig`]: secrets read from their files,
//! every value checked. [`NodeConfig::effective_toml`] prints what is in force with every
//! secret replaced by `<redacted>`. The `[cluster]` section ([`cluster`]) makes the node
//! part of a cluster.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cluster::ClusterConfig;
use crate::config::{AppConfig, Limits, TicketSecret, TlsConfig};
use crate::sla::SlaConfig;

pub mod cluster;

use cluster::EffectiveCluster;
pub use cluster::{ClusterConfigError, ClusterSection, PeerSection, RedisSection};

/// Default QUIC listen address.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 4433);
/// Default internal (metrics, health, admin) listen address: loopback only.
pub const DEFAULT_INTERNAL_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9433);
/// Shortest ticket secret a relay accepts (and `sealroom token` signs with), in bytes.
pub const MIN_TICKET_SECRET_LEN: usize = 16;
/// Default drain time on shutdown.
pub const DEFAULT_DRAIN_SECS: u64 = 10;

/// A secret string from the file or the environment: never printed, zeroized on drop by
/// whoever converts it (the relay's `TicketSecret`).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret from its text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
    /// The secret text, for whoever must use it.
    pub fn expose(&self) -> &str {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The file as written: every key optional, unknown keys refused.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// QUIC (UDP) listen address.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_addr"
    )]
    pub listen: Option<SocketAddr>,
    /// Internal HTTP listener (metrics, health, SLA, admin API).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_addr"
    )]
    pub internal_listen: Option<SocketAddr>,
    /// Bearer token for the admin API; the admin API is off without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<Secret>,
    /// File holding the admin token (trailing newline ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    /// Seconds to wait for members to leave after GoAway on shutdown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_secs: Option<u64>,
    /// Seconds between the shutdown signal and the drain, during which `/ready` answers 503
    /// and the node keeps serving, so a load balancer takes it out of rotation first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_drain_delay_secs: Option<u64>,
    /// `[tls]`.
    #[serde(default)]
    pub tls: TlsSection,
    /// `[log]`.
    #[serde(default)]
    pub log: LogSection,
    /// `[sla]`.
    #[serde(default)]
    pub sla: SlaSection,
    /// Limits; merged key by key over the relay's defaults.
    #[serde(default)]
    pub limits: toml::Table,
    /// `[[apps]]`.
    #[serde(default)]
    pub apps: Vec<AppSection>,
    /// `[cluster]`: this node's part in a cluster (none: a node on its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterSection>,
}

/// `[tls]`: certificate and key files, or a self-signed certificate for these names.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Names of a self-signed certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_signed_names: Option<Vec<String>>,
}

/// `[log]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Log line format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<LogFormat>,
    /// A `tracing` filter directive such as `info` or `sealroom_relay=debug,info`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Log user and room ids in clear (development only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub show_ids: Option<bool>,
    /// Salt of the id mask; without it a random salt is drawn per process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask_salt: Option<Secret>,
}

/// `[sla]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlaSection {
    /// Length of an SLA window in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_secs: Option<u64>,
    /// SLA windows kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained_windows: Option<usize>,
    /// Join success rate a window must reach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
}

/// `[[apps]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppSection {
    /// The app id.
    pub app: String,
    /// Its ticket secrets.
    pub secrets: Vec<SecretSection>,
}

/// `[[apps.secrets]]`: a key id and its secret, inline or in a file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSection {
    /// The key id.
    pub kid: String,
    /// The secret, inline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// The file holding the secret (a trailing newline is ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
}

/// Overrides from flags and the environment (clap fills both).
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Overrides {
    /// QUIC (UDP) listen address, IP:port or host:port [default: 127.0.0.1:4433].
    #[cfg_attr(feature = "cli", arg(long, env = "SEALROOM_LISTEN", value_name = "ADDR", value_parser = parse_addr))]
    pub listen: Option<SocketAddr>,
    /// Internal HTTP listener for /metrics, /health, /ready, /sla and the admin API
    /// [default: 127.0.0.1:9433].
    #[cfg_attr(feature = "cli", arg(long, env = "SEALROOM_INTERNAL_LISTEN", value_name = "ADDR", value_parser = parse_addr))]
    pub internal_listen: Option<SocketAddr>,
    /// Bearer token of the admin API (prefer the environment variable to the flag: flags
    /// show in the process list).
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            env = "SEALROOM_ADMIN_TOKEN",
            value_name = "TOKEN",
            hide_env_values = true
        )
    )]
    pub admin_token: Option<String>,
    /// File holding the admin token.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "SEALROOM_ADMIN_TOKEN_FILE", value_name = "PATH")
    )]
    pub admin_token_file: Option<PathBuf>,
    /// Seconds to wait for members to leave on shutdown [default: 10].
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "SEALROOM_DRAIN_SECS", value_name = "SECS")
    )]
    pub drain_secs: Option<u64>,
    /// Seconds between the shutdown signal and the drain: /ready answers 503 while the node
    /// keeps serving, so a load balancer takes it out of rotation first [default: 0].
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "SEALROOM_READY_DRAIN_DELAY_SECS", value_name = "SECS")
    )]
    pub ready_drain_delay_secs: Option<u64>,
    /// PEM certificate chain (with --tls-key; otherwise a self-signed certificate).
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "SEALROOM_TLS_CERT", value_name = "PATH")
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "SEALROOM_TLS_KEY", value_name = "PATH")
    )]
    pub tls_key: Option<PathBuf>,
    /// Names of the self-signed certificate, comma-separated [default: localhost,127.0.0.1].
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            env = "SEALROOM_TLS_SELF_SIGNED_NAMES",
            value_name = "NAMES",
            value_delimiter = ','
        )
    )]
    pub tls_self_signed_names: Option<Vec<String>>,
    /// Log format [default: human].
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "SEALROOM_LOG_FORMAT", value_name = "FORMAT")
    )]
    pub log_format: Option<LogFormat>,
    /// Log filter directive, e.g. `info` or `sealroom_relay=debug,info` [default: info].
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "SEALROOM_LOG", value_name = "FILTER")
    )]
    pub log_filter: Option<String>,
    /// Log user and room ids in clear (development only).
    #[cfg_attr(feature = "cli", arg(long, env = "SEALROOM_SHOW_IDS", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true"))]
    pub show_ids: Option<bool>,
    /// Salt of the id mask, so masked ids are stable across restarts and nodes.
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            env = "SEALROOM_MASK_SALT",
            value_name = "SALT",
            hide_env_values = true
        )
    )]
    pub mask_salt: Option<String>,
    /// Length of an SLA window in seconds [default: 300].
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "SEALROOM_SLA_WINDOW_SECS", value_name = "SECS")
    )]
    pub sla_window_secs: Option<u64>,
    /// SLA windows kept [default: 288].
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "SEALROOM_SLA_RETAINED_WINDOWS", value_name = "N")
    )]
    pub sla_retained_windows: Option<usize>,
    /// Join success rate a window must reach [default: 0.99].
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "SEALROOM_SLA_TARGET", value_name = "RATE")
    )]
    pub sla_target: Option<f64>,
    /// A limit, `name=value` (repeatable; the environment variable takes a comma-separated
    /// list), e.g. `max_members_per_room=16`.
    #[cfg_attr(
        feature = "cli",
        arg(
            long = "limit",
            env = "SEALROOM_LIMITS",
            value_name = "NAME=VALUE",
            value_delimiter = ','
        )
    )]
    pub limits: Vec<String>,
    /// An app and one ticket secret, `app:kid:secret` (repeatable; the environment variable
    /// takes a comma-separated list). Adds to the apps of the file.
    #[cfg_attr(
        feature = "cli",
        arg(
            long = "app",
            env = "SEALROOM_APPS",
            value_name = "APP:KID:SECRET",
            value_delimiter = ',',
            hide_env_values = true
        )
    )]
    pub apps: Vec<String>,
    /// `[cluster] node_id`: this node's index in its cluster (so that nodes can share one
    /// config file).
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "SEALROOM_CLUSTER_NODE_ID", value_name = "N")
    )]
    pub cluster_node_id: Option<u16>,
    /// `[cluster] advertise`: the link address other nodes dial.
    #[cfg_attr(feature = "cli", arg(long, env = "SEALROOM_CLUSTER_ADVERTISE", value_name = "ADDR", value_parser = parse_addr))]
    pub cluster_advertise: Option<SocketAddr>,
    /// `[cluster] advertise_relay`: the relay address redirected members are sent to.
    #[cfg_attr(feature = "cli", arg(long, env = "SEALROOM_CLUSTER_ADVERTISE_RELAY", value_name = "ADDR", value_parser = parse_addr))]
    pub cluster_advertise_relay: Option<SocketAddr>,
    /// `[cluster] secret_file`: the file holding the cluster secret.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "SEALROOM_CLUSTER_SECRET_FILE", value_name = "PATH")
    )]
    pub cluster_secret_file: Option<PathBuf>,
    /// `[cluster.redis] url`: the directory's Redis, password included (prefer the
    /// environment variable to the flag: flags show in the process list).
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            env = "SEALROOM_CLUSTER_REDIS_URL",
            value_name = "URL",
            hide_env_values = true
        )
    )]
    pub cluster_redis_url: Option<String>,
}

/// The resolved, checked configuration of a node: what [`crate::node::Node::load`] takes.
///
/// Build it with [`NodeConfig::prepare`] (what `sealroom relay` does), [`NodeConfig::from_toml`],
/// or [`parse`]/[`read_file`], [`FileConfig::apply`] and [`FileConfig::resolve`].
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// QUIC (UDP) listen address.
    pub listen: SocketAddr,
    /// Internal HTTP listener (metrics, health, readiness, SLA, admin API).
    pub internal_listen: SocketAddr,
    /// Bearer token of the admin API; the admin API is off without one.
    pub admin_token: Option<Secret>,
    /// How long members get to leave after GoAway on shutdown.
    pub drain: Duration,
    /// How long `/ready` answers 503 before the drain starts.
    pub ready_drain_delay: Duration,
    /// The TLS identity.
    pub tls: TlsConfig,
    /// Log line format (for the binary that installs the log subscriber).
    pub log_format: LogFormat,
    /// Log filter directive (for the binary that installs the log subscriber).
    pub log_filter: String,
    /// Log user and room ids in clear.
    pub show_ids: bool,
    /// Salt of the id mask; random per process without it.
    pub mask_salt: Option<Secret>,
    /// Join success rate windows and target.
    pub sla: SlaConfig,
    /// The relay's limits.
    pub limits: Limits,
    /// The apps served, with their ticket secrets.
    pub apps: Vec<AppConfig>,
    /// Where the SLA windows are kept across restarts ([`crate::sla_store`]): next to the
    /// config file; `None` (a node without a file) keeps them in memory only.
    pub sla_state_file: Option<PathBuf>,
    /// A development node: no file and no app, so an app secret was generated.
    pub(crate) development: bool,
    /// The admin token generated for a development node, to print once.
    pub(crate) generated_admin_token: Option<Secret>,
    /// The node's part in a cluster (`[cluster]`); `None` runs it on its own.
    pub cluster: Option<ClusterConfig>,
    /// The merged file view, for printing.
    merged: FileConfig,
}

/// Why a node configuration was refused. Each message names the setting and what to give.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML of the expected shape (an unknown key, a wrong type).
    #[error("invalid config file {}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error, naming the key and its line.
        source: toml::de::Error,
    },
    /// A secret file (admin token, ticket secret) cannot be read.
    #[error("{what}: cannot read {}", path.display())]
    SecretFile {
        /// The setting that names the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A setting is missing, inconsistent or out of range; the message names it and says
    /// what to give.
    #[error("{0}")]
    Invalid(String),
    /// The effective configuration could not be written as TOML.
    #[error("cannot print the effective configuration: {0}")]
    Print(#[from] toml::ser::Error),
    /// The `[cluster]` section is invalid; the message names the key and what to give.
    #[error(transparent)]
    Cluster(#[from] ClusterConfigError),
}

/// App id of a development node.
pub const DEV_APP: &str = "dev";
/// Key id of a development node's ticket secret.
pub const DEV_KID: &str = "dev";

impl NodeConfig {
    /// What `sealroom relay` runs: the config file (if any) under the overrides, and, with
    /// neither a file nor an app, a development node (a generated app secret under
    /// [`DEV_APP`]/[`DEV_KID`] and, unless one is given, a generated admin token).
    ///
    /// # Errors
    /// A [`ConfigError`] naming what is wrong.
    pub fn prepare(config: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut file = match config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        file.apply(overrides)?;
        let development = config.is_none() && file.apps.is_empty();
        let mut generated_admin_token = None;
        if development {
            let secret = random_hex(32);
            file.apply(&Overrides {
                apps: vec![format!("{DEV_APP}:{DEV_KID}:{secret}")],
                ..Overrides::default()
            })?;
            if file.admin_token.is_none() && file.admin_token_file.is_none() {
                let token = Secret::new(random_hex(24));
                file.admin_token = Some(token.clone());
                generated_admin_token = Some(token);
            }
        }
        let sla_state_file =
            config.map(|path| crate::sla_store::SlaStore::next_to(path).path().to_owned());
        let mut config = file.resolve()?;
        config.development = development;
        config.generated_admin_token = generated_admin_token;
        config.sla_state_file = sla_state_file;
        Ok(config)
    }

    /// A configuration from TOML text, as a config file would give it.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a TOML error, else what [`FileConfig::resolve`] says.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        parse(text)
            .map_err(|err| ConfigError::Invalid(err.to_string()))?
            .resolve()
    }

    /// Whether this is a development node (see [`Self::prepare`]).
    pub const fn is_development(&self) -> bool {
        self.development
    }
}

/// `bytes` random bytes, hex-encoded.
fn random_hex(bytes: usize) -> String {
    use std::fmt::Write as _;
    let mut buf = vec![0u8; bytes];
    // The system generator fails only on a broken OS; a development secret from it then
    // is not worth running with.
    aws_lc_rs::rand::fill(&mut buf).expect("the system random generator works");
    buf.iter()
        .fold(String::with_capacity(bytes * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// Check a `tracing` filter directive the way the log subscriber will parse it.
#[cfg(feature = "cli")]
fn check_log_filter(filter: &str) -> Result<(), ConfigError> {
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(drop)
        .map_err(|err| {
            ConfigError::Invalid(format!(
                "[log] filter `{filter}` is not a valid directive: {err}"
            ))
        })
}

/// Without the `cli` feature the embedding binary installs its own log subscriber, and the
/// filter is its business.
#[cfg(not(feature = "cli"))]
#[allow(clippy::unnecessary_wraps)]
fn check_log_filter(_filter: &str) -> Result<(), ConfigError> {
    Ok(())
}

/// Read and parse a config file; unknown keys and type errors name the key and the line.
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// An address as IP:port, or host:port resolved now (the first IPv4 address it names, else
/// the first IPv6 one).
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
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
///
/// # Errors
/// The TOML error, naming the key and its line (unknown keys included).
pub fn parse(text: &str) -> Result<FileConfig, toml::de::Error> {
    toml::from_str(text)
}

impl FileConfig {
    /// Apply flag and environment overrides.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when a `--limit` or `--app` item is not of its form.
    pub fn apply(&mut self, o: &Overrides) -> Result<(), ConfigError> {
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
            let (name, value) = item.split_once('=').ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "limit `{item}` (--limit or SEALROOM_LIMITS) is not of the form name=value"
                ))
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
        self.apply_cluster(o);
        for item in o.apps.iter().filter(|s| !s.trim().is_empty()) {
            let mut parts = item.splitn(3, ':');
            let (Some(app), Some(kid), Some(secret)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(ConfigError::Invalid(format!(
                    "app `{}` (--app or SEALROOM_APPS) is not of the form app:kid:secret",
                    redact_app_arg(item)
                )));
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
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first setting that is missing, inconsistent or out of
    /// range, or the secret file that cannot be read.
    pub fn resolve(self) -> Result<NodeConfig, ConfigError> {
        let tls = self.tls.resolve()?;
        let admin_token = match (&self.admin_token, &self.admin_token_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "give either admin_token or admin_token_file, not both".to_owned(),
                ));
            }
            (Some(token), None) => Some(token.clone()),
            (None, Some(path)) => Some(Secret::new(read_secret_file(path, "admin_token_file")?)),
            (None, None) => None,
        };
        if let Some(token) = &admin_token
            && token.expose().len() < 16
        {
            return Err(ConfigError::Invalid(
                "admin_token (or --admin-token, SEALROOM_ADMIN_TOKEN, admin_token_file): use at \
                 least 16 characters"
                    .to_owned(),
            ));
        }
        let log_filter = self.log.filter.clone().unwrap_or_else(|| "info".to_owned());
        check_log_filter(&log_filter)?;
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
            return Err(ConfigError::Invalid(
                "[sla] window_secs and retained_windows must be at least 1".to_owned(),
            ));
        }
        if !(0.0..=1.0).contains(&sla.target) {
            return Err(ConfigError::Invalid(
                "[sla] target must be between 0 and 1".to_owned(),
            ));
        }
        let limits: Limits = toml::Value::Table(self.limits.clone())
            .try_into()
            .map_err(|err| ConfigError::Invalid(format!("[limits]: {err}")))?;
        limits
            .validate()
            .map_err(|err| ConfigError::Invalid(format!("[limits] {err}")))?;
        if self.apps.is_empty() {
            return Err(ConfigError::Invalid(
                "no apps configured: add an [[apps]] section with its ticket secrets, or pass \
                 --app app:kid:secret (SEALROOM_APPS)"
                    .to_owned(),
            ));
        }
        let apps = resolve_apps(&self.apps)?;
        let cluster = self
            .cluster
            .as_ref()
            .map(ClusterSection::resolve)
            .transpose()?;
        Ok(NodeConfig {
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
            sla_state_file: None,
            development: false,
            generated_admin_token: None,
            cluster,
            merged: self,
        })
    }
}

impl TlsSection {
    /// The TLS identity: certificate files that exist, or a self-signed certificate.
    fn resolve(&self) -> Result<TlsConfig, ConfigError> {
        let tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                if self.self_signed_names.is_some() {
                    return Err(ConfigError::Invalid(
                        "[tls]: give either cert and key or self_signed_names, not both".to_owned(),
                    ));
                }
                for (what, path) in [("cert", cert), ("key", key)] {
                    if !path.is_file() {
                        return Err(ConfigError::Invalid(format!(
                            "[tls] {what}: no such file {}",
                            path.display()
                        )));
                    }
                }
                TlsConfig::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                }
            }
            (None, None) => match &self.self_signed_names {
                Some(names) if names.is_empty() => {
                    return Err(ConfigError::Invalid(
                        "[tls] self_signed_names: give at least one name".to_owned(),
                    ));
                }
                Some(names) => TlsConfig::SelfSigned {
                    names: names.clone(),
                },
                None => TlsConfig::default(),
            },
            _ => {
                return Err(ConfigError::Invalid(
                    "[tls]: cert and key must be given together".to_owned(),
                ));
            }
        };
        Ok(tls)
    }
}

/// The apps and their ticket secrets: each app once, each key id once per app, every secret
/// read and long enough.
fn resolve_apps(sections: &[AppSection]) -> Result<Vec<AppConfig>, ConfigError> {
    let mut apps = Vec::with_capacity(sections.len());
    for section in sections {
        if section.app.is_empty() {
            return Err(ConfigError::Invalid(
                "[[apps]]: app must not be empty".to_owned(),
            ));
        }
        if apps.iter().any(|a: &AppConfig| a.app == section.app) {
            return Err(ConfigError::Invalid(format!(
                "[[apps]]: app `{}` is listed twice",
                section.app
            )));
        }
        if section.secrets.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "app `{}`: give at least one secret",
                section.app
            )));
        }
        let mut secrets = Vec::with_capacity(section.secrets.len());
        for s in &section.secrets {
            let bytes = match (&s.secret, &s.secret_file) {
                (Some(secret), None) => secret.expose().as_bytes().to_vec(),
                (None, Some(path)) => read_secret_file(path, "secret_file")?.into_bytes(),
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "app `{}` kid `{}`: give exactly one of secret and secret_file",
                        section.app, s.kid
                    )));
                }
            };
            if bytes.len() < MIN_TICKET_SECRET_LEN {
                return Err(ConfigError::Invalid(format!(
                    "app `{}` kid `{}`: a ticket secret needs at least {MIN_TICKET_SECRET_LEN} bytes",
                    section.app, s.kid
                )));
            }
            if secrets.iter().any(|t: &TicketSecret| t.kid == s.kid) {
                return Err(ConfigError::Invalid(format!(
                    "app `{}`: kid `{}` is listed twice",
                    section.app, s.kid
                )));
            }
            secrets.push(TicketSecret::new(s.kid.clone(), bytes));
        }
        apps.push(AppConfig {
            app: section.app.clone(),
            secrets,
        });
    }
    Ok(apps)
}

fn redact_app_arg(item: &str) -> String {
    let mut parts = item.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(app), Some(kid), Some(_)) => format!("{app}:{kid}:<redacted>"),
        _ => "<redacted>".to_owned(),
    }
}

fn read_secret_file(path: &Path, what: &'static str) -> Result<String, ConfigError> {
    let text = secret_file_text(path).map_err(|source| ConfigError::SecretFile {
        what,
        path: path.to_owned(),
        source,
    })?;
    text.ok_or_else(|| ConfigError::Invalid(format!("{what}: {} is empty", path.display())))
}

/// A secret-bearing file's text without its trailing newline; `None` when nothing is left.
pub(super) fn secret_file_text(path: &Path) -> std::io::Result<Option<String>> {
    let text = std::fs::read_to_string(path)?;
    let text = text.trim_end_matches(['\r', '\n']);
    Ok((!text.is_empty()).then(|| text.to_owned()))
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
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<EffectiveCluster>,
}

#[derive(Serialize)]
struct EffectiveLog<'a> {
    format: LogFormat,
    filter: &'a str,
    show_ids: bool,
    mask_salt: &'a str,
}

impl NodeConfig {
    /// The configuration in force as TOML, every secret replaced by `<redacted>`.
    ///
    /// # Errors
    /// [`ConfigError::Print`] if the TOML writer fails.
    pub fn effective_toml(&self) -> Result<String, ConfigError> {
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
            cluster: self.cluster.as_ref().map(EffectiveCluster::of),
        };
        Ok(toml::to_string(&effective)?)
    }
}

#[cfg(test)]
mod tests;
