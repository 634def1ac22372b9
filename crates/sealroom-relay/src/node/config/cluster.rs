//! The `[cluster]` section of the node's config file: this node's place in a cluster (its
//! index, where it listens for and is reached by other nodes), the cluster secret that
//! authenticates node links, the directory on Redis and the link timers.
//!
//! The section is parsed with unknown keys refused, then resolved into a
//! [`ClusterConfig`] with every value checked; a refusal is a [`ClusterConfigError`] that
//! names the key and says what to give.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{FileConfig, Overrides, Secret, deserialize_addr};
use crate::cluster::directory::{RedisSource, redact};
use crate::cluster::{ClusterConfig, DirectoryConfig, MIN_SECRET_LEN, Peer};
use crate::engine::MAX_NODE_INDEX;

/// Default link idle timeout: a link silent this long is dead.
pub const DEFAULT_LINK_IDLE_TIMEOUT_MS: u64 = 3000;
/// Default wait before dialling a peer again.
pub const DEFAULT_LINK_RETRY_MS: u64 = 500;
/// Default cascade events queued towards one link.
pub const DEFAULT_LINK_QUEUE_LEN: usize = 4096;
/// Default directory lease.
pub const DEFAULT_LEASE_MS: u64 = 3000;
/// Default time for Redis to answer one command.
pub const DEFAULT_REDIS_TIMEOUT_MS: u64 = 1000;
/// Default prefix of the directory's keys.
pub const DEFAULT_PREFIX: &str = "sealroom:";
/// Shortest lease accepted: renewals come every third of it.
pub const MIN_LEASE_MS: u64 = 300;
/// Shortest link idle timeout accepted.
pub const MIN_LINK_IDLE_TIMEOUT_MS: u64 = 100;

/// `[cluster]` as written: every key optional, unknown keys refused.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// This node's index in the cluster, 1 to 4095, distinct per node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u16>,
    /// Where to listen for links from other nodes (UDP).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_addr"
    )]
    pub listen: Option<SocketAddr>,
    /// The link address other nodes dial (default: the bound `listen` address).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_addr"
    )]
    pub advertise: Option<SocketAddr>,
    /// The relay address members are redirected to (default: the relay's bound address).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_addr"
    )]
    pub advertise_relay: Option<SocketAddr>,
    /// The cluster secret, inline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// The file holding the cluster secret (a trailing newline is ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// Nodes to link to without the directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerSection>,
    /// Redirect new joins when this node has this many members more than the least loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_margin: Option<usize>,
    /// Milliseconds of silence after which a link is dead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_idle_timeout_ms: Option<u64>,
    /// Milliseconds before dialling a peer again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_retry_ms: Option<u64>,
    /// Cascade events queued towards one link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_queue_len: Option<usize>,
    /// `[cluster.redis]`: the directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSection>,
}

/// `[[cluster.peers]]`: another node, by index and link address.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSection {
    /// Its node index.
    pub node_id: u16,
    /// Its link address.
    #[serde(deserialize_with = "deserialize_peer_addr")]
    pub address: SocketAddr,
}

/// `[cluster.redis]`: one Redis by URL, or Redis Sentinel.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// `redis://` or `rediss://` URL, password or ACL user included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// The file holding the URL (keeps the password out of the config).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    /// The sentinels' URLs (with `service`, instead of `url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinels: Option<Vec<Secret>>,
    /// The service (primary) name the sentinels monitor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Prefix of every key and of the events channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The node's lease in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// Milliseconds Redis has to answer one command (and to connect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

fn deserialize_peer_addr<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<SocketAddr, D::Error> {
    deserialize_addr(deserializer)?.ok_or_else(|| serde::de::Error::custom("missing address"))
}

/// Why the `[cluster]` section was refused: each names the key and what to give.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterConfigError {
    /// `node_id` is missing.
    #[error(
        "[cluster] node_id is missing: give each node a distinct index from 1 to {MAX_NODE_INDEX}"
    )]
    NoNodeId,
    /// `node_id` is 0 or past [`MAX_NODE_INDEX`].
    #[error(
        "[cluster] node_id {0} is out of range: give each node a distinct index from 1 to {MAX_NODE_INDEX}"
    )]
    NodeId(u16),
    /// `listen` is missing.
    #[error(
        "[cluster] listen is missing: give the UDP address for links from other nodes, e.g. \"0.0.0.0:7433\""
    )]
    NoListen,
    /// Neither `secret` nor `secret_file`, or both.
    #[error(
        "[cluster]: give exactly one of secret and secret_file (the cluster secret, the same on every node)"
    )]
    SecretSource,
    /// The secret file cannot be read, or is empty.
    #[error("[cluster] secret_file: cannot read {}: {reason}", path.display())]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The secret is shorter than [`MIN_SECRET_LEN`].
    #[error(
        "[cluster] secret is {0} bytes: give at least {MIN_SECRET_LEN} random bytes (e.g. `openssl rand -hex 32`), the same on every node"
    )]
    SecretTooShort(usize),
    /// A peer has this node's own index.
    #[error(
        "[[cluster.peers]] {address} has this node's own node_id {node_id}: every node needs a distinct index"
    )]
    PeerIsSelf {
        /// The index.
        node_id: u16,
        /// The peer's address.
        address: SocketAddr,
    },
    /// Two peers share an index, or a peer's index is out of range.
    #[error(
        "[[cluster.peers]] node_id {0} is listed twice or out of range: list each other node once, with its index from 1 to {MAX_NODE_INDEX}"
    )]
    PeerIndex(u16),
    /// `[cluster.redis]` gives no URL, or both a URL and sentinels.
    #[error("[cluster.redis]: give exactly one of url, url_file and sentinels (with service)")]
    RedisSource,
    /// Sentinels without a service name, or a service without sentinels.
    #[error(
        "[cluster.redis]: sentinels need service, the name of the primary they monitor (and service needs sentinels)"
    )]
    SentinelService,
    /// A Redis URL does not parse.
    #[error(
        "[cluster.redis] {key}: `{url}` is not a Redis URL: give redis://host:port/db or rediss://user:password@host:port/db (TLS)"
    )]
    RedisUrl {
        /// `url`, `url_file` or `sentinels`.
        key: &'static str,
        /// The URL, its password masked.
        url: String,
    },
    /// The URL file cannot be read, or is empty.
    #[error("[cluster.redis] url_file: cannot read {}: {reason}", path.display())]
    RedisUrlFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The lease is too short.
    #[error(
        "[cluster.redis] lease_ms {0} is too short: give at least {MIN_LEASE_MS} (renewals come every third of it)"
    )]
    LeaseTooShort(u64),
    /// The command timeout is zero or not below the lease.
    #[error(
        "[cluster.redis] timeout_ms {timeout_ms} must be at least 1 and below lease_ms {lease_ms}, or a slow Redis lets leases run out"
    )]
    RedisTimeout {
        /// The timeout.
        timeout_ms: u64,
        /// The lease.
        lease_ms: u64,
    },
    /// The prefix is empty.
    #[error("[cluster.redis] prefix must not be empty: give e.g. \"sealroom:\"")]
    EmptyPrefix,
    /// The link idle timeout is too short.
    #[error(
        "[cluster] link_idle_timeout_ms {0} is too short: give at least {MIN_LINK_IDLE_TIMEOUT_MS}"
    )]
    LinkIdleTimeout(u64),
    /// The link retry is zero or not below the idle timeout.
    #[error(
        "[cluster] link_retry_ms {retry_ms} must be at least 1 and below link_idle_timeout_ms {idle_ms}"
    )]
    LinkRetry {
        /// The retry.
        retry_ms: u64,
        /// The idle timeout.
        idle_ms: u64,
    },
    /// The link queue is empty.
    #[error("[cluster] link_queue_len must be at least 1")]
    LinkQueueLen,
    /// A cluster that can find no other node: neither peers nor a directory.
    #[error(
        "[cluster]: no way to find other nodes: add [cluster.redis] (the directory) or [[cluster.peers]]"
    )]
    Alone,
}

impl ClusterSection {
    /// Check every value, read the secret files and build the cluster configuration.
    ///
    /// # Errors
    /// The first [`ClusterConfigError`] found.
    pub fn resolve(&self) -> Result<ClusterConfig, ClusterConfigError> {
        let node_id = self.node_id.ok_or(ClusterConfigError::NoNodeId)?;
        if node_id == 0 || node_id > MAX_NODE_INDEX {
            return Err(ClusterConfigError::NodeId(node_id));
        }
        let listen = self.listen.ok_or(ClusterConfigError::NoListen)?;
        let secret = match (&self.secret, &self.secret_file) {
            (Some(secret), None) => secret.expose().as_bytes().to_vec(),
            (None, Some(path)) => read_file(path)
                .map_err(|reason| ClusterConfigError::SecretFile {
                    path: path.clone(),
                    reason,
                })?
                .into_bytes(),
            _ => return Err(ClusterConfigError::SecretSource),
        };
        if secret.len() < MIN_SECRET_LEN {
            return Err(ClusterConfigError::SecretTooShort(secret.len()));
        }
        let mut config = ClusterConfig::new(node_id, listen, secret);
        for peer in &self.peers {
            if peer.node_id == node_id {
                return Err(ClusterConfigError::PeerIsSelf {
                    node_id,
                    address: peer.address,
                });
            }
            if peer.node_id == 0
                || peer.node_id > MAX_NODE_INDEX
                || config.peers.iter().any(|p| p.index == peer.node_id)
            {
                return Err(ClusterConfigError::PeerIndex(peer.node_id));
            }
            config.peers.push(Peer {
                index: peer.node_id,
                address: peer.address,
            });
        }
        config.advertise = self.advertise;
        config.advertise_relay = self.advertise_relay;
        config.redirect_margin = self.redirect_margin.unwrap_or(0);
        let idle_ms = self
            .link_idle_timeout_ms
            .unwrap_or(DEFAULT_LINK_IDLE_TIMEOUT_MS);
        if idle_ms < MIN_LINK_IDLE_TIMEOUT_MS {
            return Err(ClusterConfigError::LinkIdleTimeout(idle_ms));
        }
        let retry_ms = self.link_retry_ms.unwrap_or(DEFAULT_LINK_RETRY_MS);
        if retry_ms == 0 || retry_ms >= idle_ms {
            return Err(ClusterConfigError::LinkRetry { retry_ms, idle_ms });
        }
        config.link_idle_timeout = Duration::from_millis(idle_ms);
        config.link_retry = Duration::from_millis(retry_ms);
        config.link_queue_len = self.link_queue_len.unwrap_or(DEFAULT_LINK_QUEUE_LEN);
        if config.link_queue_len == 0 {
            return Err(ClusterConfigError::LinkQueueLen);
        }
        config.directory = self.redis.as_ref().map(RedisSection::resolve).transpose()?;
        if config.directory.is_none() && config.peers.is_empty() {
            return Err(ClusterConfigError::Alone);
        }
        Ok(config)
    }
}

impl FileConfig {
    /// The `[cluster]` overrides; any of them makes a `[cluster]` section if the file has
    /// none (the checks then say what else it needs).
    pub(super) fn apply_cluster(&mut self, o: &Overrides) {
        let any = o.cluster_node_id.is_some()
            || o.cluster_advertise.is_some()
            || o.cluster_advertise_relay.is_some()
            || o.cluster_secret_file.is_some()
            || o.cluster_redis_url.is_some();
        if !any {
            return;
        }
        let cluster = self.cluster.get_or_insert_with(ClusterSection::default);
        if let Some(id) = o.cluster_node_id {
            cluster.node_id = Some(id);
        }
        if let Some(addr) = o.cluster_advertise {
            cluster.advertise = Some(addr);
        }
        if let Some(addr) = o.cluster_advertise_relay {
            cluster.advertise_relay = Some(addr);
        }
        if let Some(path) = &o.cluster_secret_file {
            cluster.secret_file = Some(path.clone());
            cluster.secret = None;
        }
        if let Some(url) = &o.cluster_redis_url {
            let redis = cluster.redis.get_or_insert_with(RedisSection::default);
            redis.url = Some(Secret::new(url.clone()));
            redis.url_file = None;
            redis.sentinels = None;
            redis.service = None;
        }
    }
}

impl RedisSection {
    fn resolve(&self) -> Result<DirectoryConfig, ClusterConfigError> {
        let source = match (&self.url, &self.url_file, &self.sentinels) {
            (Some(url), None, None) => {
                RedisSource::Url(check_url("url", url.expose().trim())?.to_owned())
            }
            (None, Some(path), None) => {
                let url = read_file(path).map_err(|reason| ClusterConfigError::RedisUrlFile {
                    path: path.clone(),
                    reason,
                })?;
                RedisSource::Url(check_url("url_file", url.trim())?.to_owned())
            }
            (None, None, Some(sentinels)) => {
                let service = match &self.service {
                    Some(service) if !service.is_empty() && !sentinels.is_empty() => service,
                    _ => return Err(ClusterConfigError::SentinelService),
                };
                let sentinels = sentinels
                    .iter()
                    .map(|s| check_url("sentinels", s.expose().trim()).map(str::to_owned))
                    .collect::<Result<_, _>>()?;
                RedisSource::Sentinel {
                    sentinels,
                    service: service.clone(),
                }
            }
            _ => return Err(ClusterConfigError::RedisSource),
        };
        if self.service.is_some() && !matches!(source, RedisSource::Sentinel { .. }) {
            return Err(ClusterConfigError::SentinelService);
        }
        let lease_ms = self.lease_ms.unwrap_or(DEFAULT_LEASE_MS);
        if lease_ms < MIN_LEASE_MS {
            return Err(ClusterConfigError::LeaseTooShort(lease_ms));
        }
        let timeout_ms = self.timeout_ms.unwrap_or(DEFAULT_REDIS_TIMEOUT_MS);
        if timeout_ms == 0 || timeout_ms >= lease_ms {
            return Err(ClusterConfigError::RedisTimeout {
                timeout_ms,
                lease_ms,
            });
        }
        let prefix = self
            .prefix
            .clone()
            .unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        if prefix.is_empty() {
            return Err(ClusterConfigError::EmptyPrefix);
        }
        Ok(DirectoryConfig {
            redis: source,
            prefix,
            lease: Duration::from_millis(lease_ms),
            timeout: Duration::from_millis(timeout_ms),
        })
    }
}

fn check_url<'a>(key: &'static str, url: &'a str) -> Result<&'a str, ClusterConfigError> {
    redis::parse_redis_url(url)
        .map(|_| url)
        .ok_or_else(|| ClusterConfigError::RedisUrl {
            key,
            url: redact(url),
        })
}

/// A secret-bearing file's text without its trailing newline; an empty file is an error.
fn read_file(path: &Path) -> Result<String, String> {
    super::secret_file_text(path)
        .map_err(|err| err.to_string())?
        .ok_or_else(|| "the file is empty".to_owned())
}

/// `[cluster]` as `--check-config` prints it: what is in force, secrets redacted.
#[derive(Debug, Serialize)]
pub(super) struct EffectiveCluster {
    node_id: u16,
    listen: SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    advertise: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    advertise_relay: Option<SocketAddr>,
    secret: &'static str,
    peers: Vec<EffectivePeer>,
    redirect_margin: usize,
    link_idle_timeout_ms: u64,
    link_retry_ms: u64,
    link_queue_len: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<EffectiveRedis>,
}

#[derive(Debug, Serialize)]
struct EffectivePeer {
    node_id: u16,
    address: SocketAddr,
}

#[derive(Debug, Serialize)]
struct EffectiveRedis {
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sentinels: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    prefix: String,
    lease_ms: u64,
    timeout_ms: u64,
}

impl EffectiveCluster {
    pub(super) fn of(config: &ClusterConfig) -> Self {
        let redis = config.directory.as_ref().map(|d| {
            let (url, sentinels, service) = match &d.redis {
                RedisSource::Url(url) => (Some(redact(url)), None, None),
                RedisSource::Sentinel { sentinels, service } => (
                    None,
                    Some(sentinels.iter().map(|s| redact(s)).collect()),
                    Some(service.clone()),
                ),
            };
            EffectiveRedis {
                url,
                sentinels,
                service,
                prefix: d.prefix.clone(),
                lease_ms: ms(d.lease),
                timeout_ms: ms(d.timeout),
            }
        });
        Self {
            node_id: config.node_index,
            listen: config.listen,
            advertise: config.advertise,
            advertise_relay: config.advertise_relay,
            secret: "<redacted>",
            peers: config
                .peers
                .iter()
                .map(|p| EffectivePeer {
                    node_id: p.index,
                    address: p.address,
                })
                .collect(),
            redirect_margin: config.redirect_margin,
            link_idle_timeout_ms: ms(config.link_idle_timeout),
            link_retry_ms: ms(config.link_retry),
            link_queue_len: config.link_queue_len,
            redis,
        }
    }
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::super::{ConfigError, NodeConfig, parse};
    use super::*;

    const APPS: &str = r#"
        [[apps]]
        app = "acme"
        secrets = [{ kid = "k1", secret = "acme-ticket-secret-one" }]
    "#;

    fn node(cluster: &str) -> Result<NodeConfig, ConfigError> {
        parse(&format!("{APPS}\n{cluster}")).unwrap().resolve()
    }

    fn refused(cluster: &str) -> String {
        match node(cluster) {
            Err(ConfigError::Cluster(err)) => err.to_string(),
            other => panic!("expected a [cluster] refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_full_section_resolves_into_the_cluster_config() {
        let config = node(
            r#"
            [cluster]
            node_id = 7
            listen = "0.0.0.0:7433"
            advertise = "10.0.0.7:7433"
            advertise_relay = "10.0.0.7:4433"
            secret = "a cluster secret of 32 bytes ok!"
            redirect_margin = 20
            link_idle_timeout_ms = 2000
            link_retry_ms = 250
            link_queue_len = 100
            peers = [{ node_id = 8, address = "10.0.0.8:7433" }]
            [cluster.redis]
            url = "rediss://sealroom:hunter2hunter2@redis.internal:6380/2"
            prefix = "prod:"
            lease_ms = 4500
            timeout_ms = 800
            "#,
        )
        .unwrap();
        let cluster = config.cluster.expect("a cluster");
        assert_eq!(cluster.node_index, 7);
        assert_eq!(cluster.listen, "0.0.0.0:7433".parse().unwrap());
        assert_eq!(cluster.advertise, Some("10.0.0.7:7433".parse().unwrap()));
        assert_eq!(
            cluster.advertise_relay,
            Some("10.0.0.7:4433".parse().unwrap())
        );
        assert_eq!(cluster.secret, b"a cluster secret of 32 bytes ok!");
        assert_eq!(cluster.redirect_margin, 20);
        assert_eq!(cluster.link_idle_timeout, Duration::from_secs(2));
        assert_eq!(cluster.link_retry, Duration::from_millis(250));
        assert_eq!(cluster.link_queue_len, 100);
        assert_eq!(
            cluster.peers,
            vec![Peer {
                index: 8,
                address: "10.0.0.8:7433".parse().unwrap()
            }]
        );
        assert!(cluster.validate().is_ok());
        let directory = cluster.directory.expect("a directory");
        assert_eq!(
            directory.redis,
            RedisSource::Url("rediss://sealroom:hunter2hunter2@redis.internal:6380/2".to_owned())
        );
        assert_eq!(directory.prefix, "prod:");
        assert_eq!(directory.lease, Duration::from_millis(4500));
        assert_eq!(directory.timeout, Duration::from_millis(800));
    }

    #[test]
    fn the_example_cluster_config_parses_and_names_every_key() {
        let text = include_str!("../../../../../examples/cluster-node.toml");
        let file = parse(text).expect("examples/cluster-node.toml parses");
        let section = file.cluster.expect("a [cluster] section");
        assert_eq!(section.node_id, Some(1));
        assert!(section.secret_file.is_some());
        let redis = section.redis.expect("[cluster.redis]");
        assert!(redis.url_file.is_some());
        assert_eq!(redis.lease_ms, Some(DEFAULT_LEASE_MS));
    }

    #[test]
    fn defaults_fill_what_is_not_given_and_no_section_means_no_cluster() {
        assert!(node("").unwrap().cluster.is_none());
        let cluster = node(
            r#"
            [cluster]
            node_id = 1
            listen = "127.0.0.1:7433"
            secret = "sixteen bytes ok"
            [cluster.redis]
            url = "redis://127.0.0.1:6379"
            "#,
        )
        .unwrap()
        .cluster
        .unwrap();
        assert_eq!(
            cluster.link_idle_timeout,
            Duration::from_millis(DEFAULT_LINK_IDLE_TIMEOUT_MS)
        );
        assert_eq!(cluster.link_queue_len, DEFAULT_LINK_QUEUE_LEN);
        assert_eq!(cluster.redirect_margin, 0);
        let directory = cluster.directory.unwrap();
        assert_eq!(directory.prefix, DEFAULT_PREFIX);
        assert_eq!(directory.lease, Duration::from_millis(DEFAULT_LEASE_MS));
    }

    #[test]
    fn secrets_and_the_redis_url_come_from_files() {
        let dir = std::env::temp_dir().join(format!("sealroom-cluster-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("cluster.secret");
        let url = dir.join("redis.url");
        std::fs::write(&secret, "a secret from a file, 30 bytes\n").unwrap();
        std::fs::write(&url, "redis://:pw@127.0.0.1:6390/0\n").unwrap();
        let config = node(&format!(
            r#"
            [cluster]
            node_id = 2
            listen = "127.0.0.1:0"
            secret_file = "{}"
            [cluster.redis]
            url_file = "{}"
            "#,
            secret.display(),
            url.display()
        ))
        .unwrap();
        let cluster = config.cluster.as_ref().unwrap();
        assert_eq!(cluster.secret, b"a secret from a file, 30 bytes");
        assert_eq!(
            cluster.directory.as_ref().unwrap().redis,
            RedisSource::Url("redis://:pw@127.0.0.1:6390/0".to_owned())
        );
        // The printed configuration shows neither the secret nor the Redis password.
        let printed = config.effective_toml().unwrap();
        assert!(printed.contains("[cluster]"), "{printed}");
        assert!(printed.contains("node_id = 2"), "{printed}");
        assert!(!printed.contains("from a file"), "{printed}");
        assert!(!printed.contains(":pw@"), "{printed}");
        assert!(printed.contains(":***@"), "{printed}");
        std::fs::remove_file(&secret).unwrap();
        let err = refused(&format!(
            "[cluster]\nnode_id = 2\nlisten = \"127.0.0.1:0\"\nsecret_file = \"{}\"\npeers = [{{ node_id = 1, address = \"127.0.0.1:1\" }}]",
            secret.display()
        ));
        assert!(err.contains("secret_file: cannot read"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn flags_and_environment_override_the_section_so_nodes_can_share_one_file() {
        use super::super::Overrides;
        let shared = r#"
            [cluster]
            node_id = 1
            listen = "0.0.0.0:7433"
            secret = "the shared cluster secret, 32 b"
            [cluster.redis]
            sentinels = ["redis://10.0.0.11:26379"]
            service = "sealroom"
        "#;
        let mut file = parse(&format!("{APPS}\n{shared}")).unwrap();
        file.apply(&Overrides {
            cluster_node_id: Some(3),
            cluster_advertise: Some("10.0.0.3:7433".parse().unwrap()),
            cluster_advertise_relay: Some("10.0.0.3:4433".parse().unwrap()),
            cluster_redis_url: Some("redis://:pw@10.0.0.10:6379".to_owned()),
            ..Overrides::default()
        })
        .unwrap();
        let cluster = file.resolve().unwrap().cluster.unwrap();
        assert_eq!(cluster.node_index, 3);
        assert_eq!(cluster.advertise, Some("10.0.0.3:7433".parse().unwrap()));
        assert_eq!(
            cluster.advertise_relay,
            Some("10.0.0.3:4433".parse().unwrap())
        );
        // The URL replaces the file's sentinels rather than conflicting with them.
        assert_eq!(
            cluster.directory.unwrap().redis,
            RedisSource::Url("redis://:pw@10.0.0.10:6379".to_owned())
        );
        // An override alone makes a section, and the checks say what it still needs.
        let mut file = parse(APPS).unwrap();
        file.apply(&Overrides {
            cluster_node_id: Some(2),
            ..Overrides::default()
        })
        .unwrap();
        let err = file.resolve().unwrap_err().to_string();
        assert!(err.contains("[cluster] listen is missing"), "{err}");
        // Without any, a file without the section stays a single node.
        let mut file = parse(APPS).unwrap();
        file.apply(&Overrides::default()).unwrap();
        assert!(file.resolve().unwrap().cluster.is_none());
    }

    #[test]
    fn sentinels_need_a_service() {
        let base = "[cluster]\nnode_id = 1\nlisten = \"127.0.0.1:0\"\nsecret = \"sixteen bytes ok\"\n[cluster.redis]\n";
        let cluster = node(&format!(
            "{base}sentinels = [\"redis://10.0.0.1:26379\", \"redis://10.0.0.2:26379\"]\nservice = \"sealroom\""
        ))
        .unwrap()
        .cluster
        .unwrap();
        assert!(matches!(
            cluster.directory.unwrap().redis,
            RedisSource::Sentinel { ref sentinels, ref service }
                if sentinels.len() == 2 && service == "sealroom"
        ));
        let err = refused(&format!("{base}sentinels = [\"redis://10.0.0.1:26379\"]"));
        assert!(err.contains("need service"), "{err}");
        let err = refused(&format!("{base}url = \"redis://h:1\"\nservice = \"x\""));
        assert!(err.contains("need service"), "{err}");
    }

    #[test]
    fn each_mistake_is_named_with_what_to_give() {
        let ok = "listen = \"127.0.0.1:0\"\nsecret = \"sixteen bytes ok\"\npeers = [{ node_id = 2, address = \"127.0.0.1:1\" }]";
        for (section, says) in [
            (format!("[cluster]\n{ok}"), "node_id is missing"),
            (format!("[cluster]\nnode_id = 0\n{ok}"), "node_id 0 is out of range"),
            (format!("[cluster]\nnode_id = 4096\n{ok}"), "from 1 to 4095"),
            (
                "[cluster]\nnode_id = 1\nsecret = \"sixteen bytes ok\"".to_owned(),
                "listen is missing",
            ),
            (
                "[cluster]\nnode_id = 1\nlisten = \"127.0.0.1:0\"\nsecret = \"short\"\npeers = [{ node_id = 2, address = \"127.0.0.1:1\" }]".to_owned(),
                "secret is 5 bytes: give at least 16",
            ),
            (
                "[cluster]\nnode_id = 1\nlisten = \"127.0.0.1:0\"\npeers = [{ node_id = 2, address = \"127.0.0.1:1\" }]".to_owned(),
                "exactly one of secret and secret_file",
            ),
            (
                "[cluster]\nnode_id = 1\nlisten = \"127.0.0.1:0\"\nsecret = \"sixteen bytes ok\"".to_owned(),
                "no way to find other nodes",
            ),
            (
                "[cluster]\nnode_id = 2\nlisten = \"127.0.0.1:0\"\nsecret = \"sixteen bytes ok\"\npeers = [{ node_id = 2, address = \"127.0.0.1:1\" }]".to_owned(),
                "own node_id 2",
            ),
            (
                "[cluster]\nnode_id = 1\nlisten = \"127.0.0.1:0\"\nsecret = \"sixteen bytes ok\"\npeers = [{ node_id = 2, address = \"127.0.0.1:1\" }, { node_id = 2, address = \"127.0.0.1:2\" }]".to_owned(),
                "node_id 2 is listed twice",
            ),
            (
                format!("[cluster]\nnode_id = 1\n{ok}\nlink_retry_ms = 3000"),
                "link_retry_ms 3000 must be at least 1 and below link_idle_timeout_ms 3000",
            ),
            (
                format!("[cluster]\nnode_id = 1\n{ok}\nlink_idle_timeout_ms = 10"),
                "link_idle_timeout_ms 10 is too short",
            ),
            (
                format!("[cluster]\nnode_id = 1\n{ok}\nlink_queue_len = 0"),
                "link_queue_len must be at least 1",
            ),
            (
                format!("[cluster]\nnode_id = 1\n{ok}\n[cluster.redis]\nurl = \"http://x:1\""),
                "is not a Redis URL",
            ),
            (
                format!("[cluster]\nnode_id = 1\n{ok}\n[cluster.redis]\nprefix = \"p:\""),
                "exactly one of url, url_file and sentinels",
            ),
            (
                format!("[cluster]\nnode_id = 1\n{ok}\n[cluster.redis]\nurl = \"redis://h:1\"\nlease_ms = 100"),
                "lease_ms 100 is too short",
            ),
            (
                format!("[cluster]\nnode_id = 1\n{ok}\n[cluster.redis]\nurl = \"redis://h:1\"\nlease_ms = 1000\ntimeout_ms = 1000"),
                "below lease_ms 1000",
            ),
            (
                format!("[cluster]\nnode_id = 1\n{ok}\n[cluster.redis]\nurl = \"redis://h:1\"\nprefix = \"\""),
                "prefix must not be empty",
            ),
        ] {
            let err = refused(&section);
            assert!(err.contains(says), "{section}\n=> {err}\n(expected `{says}`)");
        }
    }

    #[test]
    fn a_bad_url_is_shown_with_its_password_masked_and_unknown_keys_are_named() {
        let err = refused(
            "[cluster]\nnode_id = 1\nlisten = \"127.0.0.1:0\"\nsecret = \"sixteen bytes ok\"\n[cluster.redis]\nurl = \"redis://user:topsecret@host:notaport\"",
        );
        assert!(!err.contains("topsecret"), "{err}");
        for (text, key) in [
            ("[cluster]\nnode = 1", "node"),
            ("[cluster.redis]\nurls = \"x\"", "urls"),
            (
                "[cluster]\npeers = [{ index = 1, address = \"127.0.0.1:1\" }]",
                "index",
            ),
        ] {
            let err = parse(&format!("{APPS}\n{text}")).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }
}
