//! The node layer: a whole relay node as an operator runs it, embeddable in any binary.
//!
//! A [`Node`] is a [`Relay`] (the QUIC listener) with its internal HTTP listener (metrics,
//! health, readiness, the SLA summary, the admin API), the join success rate fed from the
//! relay's admissions, and the graceful shutdown `sealroom relay` performs on SIGTERM or
//! Ctrl-C: `/ready` answers 503 for [`NodeConfig::ready_drain_delay`] (a second signal skips
//! the wait), then joins are refused and members are told to go away, for at most
//! [`NodeConfig::drain`], then everything closes. A [`NodeHandle`] triggers the same
//! shutdown from code.
//!
//! [`config`] holds the node configuration: the TOML file, its overrides (flags and
//! `SEALROOM_*` environment variables through clap, with the `cli` feature) and the checks.
//!
//! # Embedding a node
//!
//! ```
//! use sealroom_relay::node::{Node, NodeConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let runtime = tokio::runtime::Runtime::new()?;
//! # runtime.block_on(async {
//! let config = NodeConfig::from_toml(
//!     r#"
//!     listen = "127.0.0.1:0"
//!     internal_listen = "127.0.0.1:0"
//!     [[apps]]
//!     app = "my-app"
//!     secrets = [{ kid = "k1", secret = "a long random ticket secret" }]
//!     "#,
//! )?;
//! let node = Node::load(config).await?;
//! println!("relay on {}, metrics on http://{}", node.local_addr(), node.internal_addr());
//!
//! // Anything holding the handle can stop the node, as SIGTERM would.
//! let handle = node.handle();
//! # handle.shutdown();
//! node.run().await?; // until SIGTERM, Ctrl-C or `handle.shutdown()`
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::http::{InternalOptions, InternalServer, InternalState};
use crate::mask::IdMask;
use crate::sla::SlaOutcome;
use crate::sla_store::{Loaded, SAVE_EVERY, SlaStore};
use crate::{JoinOutcome, Relay, RelayConfig, StartError};

pub mod config;
#[cfg(feature = "cli")]
pub mod logging;

pub use config::{ConfigError, FileConfig, LogFormat, NodeConfig, Overrides, Secret};

/// Why a node could not start or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The QUIC (UDP) listen address cannot be bound; the message says what to change.
    #[error(
        "cannot bind the QUIC (UDP) listener on {addr}: {error}{}",
        bind_hint(error, "--listen or SEALROOM_LISTEN")
    )]
    BindQuic {
        /// The address.
        addr: SocketAddr,
        /// Why (shown in the message itself, not as a separate cause).
        error: std::io::Error,
    },
    /// The internal listener's address cannot be bound.
    #[error(
        "cannot bind the internal listener on {addr}: {error}{}",
        bind_hint(error, "--internal-listen or SEALROOM_INTERNAL_LISTEN")
    )]
    BindInternal {
        /// The address.
        addr: SocketAddr,
        /// Why (shown in the message itself, not as a separate cause).
        error: std::io::Error,
    },
    /// The relay failed to start for another reason (TLS identity, socket options).
    #[error("cannot start the relay")]
    Start(#[source] StartError),
    /// The cluster links could not start (the `[cluster]` listen address, its TLS identity).
    #[error("cannot start the cluster links ([cluster] listen {addr}): {source}")]
    Cluster {
        /// The link listen address.
        addr: SocketAddr,
        /// Why.
        source: crate::cluster::ClusterError,
    },
    /// The shutdown signals cannot be watched.
    #[error("cannot watch {signal}")]
    Signal {
        /// The signal.
        signal: &'static str,
        /// Why.
        source: std::io::Error,
    },
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

/// A running relay node: the relay, its internal listener and the SLA, until [`Node::run`]
/// shuts them down.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    relay: Arc<Relay>,
    /// The node's part in a cluster, with `[cluster]`.
    cluster: Option<Arc<Cluster>>,
    internal: InternalServer,
    /// Counts shutdown requests from handles: the first starts the shutdown, the second
    /// skips the ready-drain delay.
    shutdown: watch::Sender<u32>,
    /// Saves the SLA windows every [`SAVE_EVERY`] (with a state file).
    sla_saver: Option<tokio::task::JoinHandle<()>>,
}

/// Stops a [`Node`] from code, as SIGTERM would; cheap to clone.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    shutdown: watch::Sender<u32>,
}

impl NodeHandle {
    /// Start the node's shutdown; a second call skips the ready-drain delay.
    pub fn shutdown(&self) {
        self.shutdown.send_modify(|requests| *requests += 1);
    }
}

impl Node {
    /// Start the relay and the internal listener of `config`, and feed the SLA from the
    /// relay's admissions. The node serves from here on; [`Node::run`] waits for the
    /// shutdown and carries it out.
    ///
    /// # Errors
    /// [`NodeError`] when an address cannot be bound or the relay cannot start.
    pub async fn load(config: NodeConfig) -> Result<Self, NodeError> {
        let mask = if config.show_ids {
            IdMask::show()
        } else if let Some(salt) = &config.mask_salt {
            IdMask::with_salt(salt.expose().as_bytes())
        } else {
            IdMask::per_process()
        };
        if config.show_ids {
            tracing::warn!("user and room ids are logged in clear (show_ids): development only");
        }
        let relay_config = RelayConfig::default()
            .listen(config.listen)
            .limits(config.limits)
            .tls(config.tls.clone());
        let relay_config = config
            .apps
            .iter()
            .cloned()
            .fold(relay_config, RelayConfig::app);
        let relay = Arc::new(Relay::start(relay_config).await.map_err(|err| match err {
            StartError::Bind(error) => NodeError::BindQuic {
                addr: config.listen,
                error,
            },
            other => NodeError::Start(other),
        })?);
        // Before any member can join: the cascade changes how member ids are handed out.
        let cluster = match &config.cluster {
            Some(settings) => Some(Arc::new(Cluster::start(&relay, settings.clone()).map_err(
                |source| NodeError::Cluster {
                    addr: settings.listen,
                    source,
                },
            )?)),
            None => None,
        };
        let mut options = InternalOptions::default().sla(config.sla).mask(mask);
        options.admin_token = config.admin_token.as_ref().map(|t| t.expose().to_owned());
        let target: Arc<dyn crate::admin::AdminTarget> = relay.clone();
        let internal = InternalServer::start(config.internal_listen, target, options)
            .await
            .map_err(|error| NodeError::BindInternal {
                addr: config.internal_listen,
                error,
            })?;
        // The cluster's series on `/metrics` and `GET /admin/cluster`.
        if let Some(cluster) = &cluster {
            internal.state().attach_cluster(Arc::clone(cluster));
        }
        let sla_store = config.sla_state_file.as_deref().map(SlaStore::new);
        if let Some(store) = &sla_store {
            restore_sla(store, internal.state());
        }
        let state = Arc::clone(internal.state());
        relay.set_join_hook(Some(Arc::new(
            move |outcome: JoinOutcome, unix_secs: u64| {
                state.record_join_at(unix_secs, SlaOutcome::from_join(outcome));
            },
        )));
        tracing::info!(
            listen = %relay.local_addr(),
            internal = %internal.local_addr(),
            apps = config.apps.len(),
            "relay ready"
        );
        let sla_saver = sla_store.map(|store| {
            // Weak: a node dropped without `run` does not keep its state alive through this.
            let state = Arc::downgrade(internal.state());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(SAVE_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                every.tick().await;
                loop {
                    every.tick().await;
                    let Some(state) = state.upgrade() else {
                        return;
                    };
                    save_sla(&store, &state);
                }
            })
        });
        Ok(Self {
            config,
            relay,
            cluster,
            internal,
            shutdown: watch::Sender::new(0),
            sla_saver,
        })
    }

    /// The QUIC address the relay listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.relay.local_addr()
    }

    /// The address of the internal HTTP listener.
    pub fn internal_addr(&self) -> SocketAddr {
        self.internal.local_addr()
    }

    /// SHA-256 of the relay's certificate, for clients that pin it.
    pub fn cert_sha256(&self) -> [u8; 32] {
        self.relay.cert_sha256()
    }

    /// The relay itself (stats, metrics, admin actions).
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// The node's part in a cluster, when its configuration has `[cluster]`.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_deref()
    }

    /// The configuration the node runs with.
    pub const fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// A handle that shuts the node down from code.
    pub fn handle(&self) -> NodeHandle {
        NodeHandle {
            shutdown: self.shutdown.clone(),
        }
    }

    /// What `sealroom relay` prints on start: the addresses and the certificate's hash and,
    /// for a development node, the generated secrets and how to mint a ticket.
    pub fn banner(&self) -> String {
        banner(self)
    }

    /// Serve until SIGTERM, Ctrl-C or [`NodeHandle::shutdown`], then shut down gracefully:
    /// `/ready` answers 503 for the ready-drain delay (a second request skips it), joins
    /// are refused and members told to go away for at most the drain time, then the
    /// internal listener and the relay close.
    ///
    /// # Errors
    /// [`NodeError::Signal`] when the signals cannot be watched.
    pub async fn run(self) -> Result<(), NodeError> {
        let mut requests = self.shutdown.subscribe();
        let signal = tokio::select! {
            signal = shutdown_signal() => signal?,
            _ = requests.wait_for(|n| *n >= 1) => "shutdown request",
        };
        self.internal.state().set_ready(false);
        let delay = self.config.ready_drain_delay;
        if !delay.is_zero() {
            tracing::info!(
                signal,
                ready_drain_delay_secs = delay.as_secs(),
                "shutting down: /ready answers 503, still serving until the load balancer notices"
            );
            // A second signal (or request) skips the wait.
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                second = shutdown_signal() => {
                    tracing::info!(signal = second.unwrap_or("?"), "draining now");
                }
                _ = requests.wait_for(|n| *n >= 2) => {
                    tracing::info!(signal = "shutdown request", "draining now");
                }
            }
        }
        tracing::info!(
            signal,
            drain_secs = self.config.drain.as_secs(),
            "shutting down: refusing joins, telling members to go away"
        );
        let remaining = self.relay.drain(self.config.drain).await;
        tracing::info!(remaining, "drain finished");
        // The links stayed up through the drain, so the other nodes heard each member
        // leave; now give up the lease so they stop dialling this node at once.
        if let Some(cluster) = &self.cluster {
            cluster.leave().await;
            tracing::info!("left the cluster");
        }
        // The hook holds the internal listener's state, which holds the relay: break the cycle.
        self.relay.set_join_hook(None);
        if let Some(saver) = &self.sla_saver {
            saver.abort();
        }
        if let Some(path) = &self.config.sla_state_file {
            save_sla(&SlaStore::new(path), self.internal.state());
        }
        self.internal.shutdown().await;
        match Arc::try_unwrap(self.relay) {
            Ok(relay) => relay.shutdown().await,
            Err(_) => tracing::warn!("relay still referenced at exit; closing without waiting"),
        }
        tracing::info!("relay stopped");
        Ok(())
    }
}

/// Read the SLA windows a previous run saved; the node starts whatever the file holds.
fn restore_sla(store: &SlaStore, state: &InternalState) {
    let path = store.path().display();
    match state.with_sla(|sla| store.load(sla)) {
        Loaded::Restored { windows } => {
            tracing::info!(%path, windows, "SLA windows restored");
        }
        Loaded::Missing => {
            tracing::info!(%path, "no SLA state file yet: the windows start empty");
        }
        Loaded::OtherWindow { window_secs } => tracing::warn!(
            %path,
            window_secs,
            "SLA state file has another window length: ignored, it will be replaced"
        ),
        Loaded::Corrupt { reason, moved_to } => tracing::warn!(
            %path,
            %reason,
            moved_to = %moved_to.map_or_else(|| "(could not move it)".into(), |p| p.display().to_string()),
            "SLA state file unreadable: the windows start empty; the file was moved aside"
        ),
    }
}

/// Write the SLA windows; a failure is logged (the node keeps serving).
fn save_sla(store: &SlaStore, state: &InternalState) {
    if let Err(err) = state.with_sla(|sla| store.save(sla)) {
        tracing::warn!(
            path = %store.path().display(),
            %err,
            "cannot save the SLA windows: make the config file's directory writable"
        );
    }
}

fn banner(node: &Node) -> String {
    use config::{DEV_APP, DEV_KID};
    let cert: String = node
        .cert_sha256()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line("sealroom relay".to_owned());
    line(format!("  listen:      {}", node.local_addr()));
    line(format!("  internal:    http://{}", node.internal_addr()));
    line(format!("  cert-sha256: {cert}"));
    if let Some(cluster) = &node.cluster {
        line(format!(
            "  cluster:     node {} links {}",
            cluster.node_index(),
            cluster.local_addr()
        ));
    }
    if let Some(token) = &node.config.generated_admin_token {
        line(format!("  admin-token: {}", token.expose()));
    }
    if node.config.development {
        let secret = node
            .config
            .apps
            .first()
            .and_then(|a| a.secrets.first())
            .map(|s| String::from_utf8_lossy(&s.secret).into_owned())
            .unwrap_or_default();
        line(String::new());
        line("development node: a fresh certificate and app secret every start.".to_owned());
        line("mint a ticket and join with:".to_owned());
        line(format!(
            "  SEALROOM_TICKET_SECRET={secret} sealroom token --app {DEV_APP} --kid {DEV_KID} --user alice --room demo"
        ));
        line(
            "  (from the source tree: `cargo run --release -- token ...` for `sealroom token ...`)"
                .to_owned(),
        );
        line(format!(
            "  connect to {} pinning certificate sha256 {cert}",
            node.local_addr()
        ));
        line(format!(
            "  browsers: WebTransport to https://{}{} with serverCertificateHashes sha-256 {cert}",
            node.local_addr(),
            crate::WEB_PATH
        ));
        line(format!(
            "  (the certificate is ECDSA P-256, valid {} days, and replaced before it expires: the hash changes)",
            crate::SELF_SIGNED_VALIDITY.whole_days()
        ));
    }
    out
}

/// Wait for SIGTERM or Ctrl-C (SIGINT); returns the signal's name.
async fn shutdown_signal() -> Result<&'static str, NodeError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(|source| NodeError::Signal {
            signal: "SIGTERM",
            source,
        })?;
        tokio::select! {
            _ = term.recv() => Ok("SIGTERM"),
            result = tokio::signal::ctrl_c() => result.map(|()| "SIGINT").map_err(|source| NodeError::Signal { signal: "Ctrl-C", source }),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .map_err(|source| NodeError::Signal {
                signal: "Ctrl-C",
                source,
            })?;
        Ok("Ctrl-C")
    }
}
