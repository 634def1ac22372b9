//! The driver of node links: dialling, accepting, the authentication exchange, and one
//! task per link that carries cascade events and media in both directions until the link
//! fails; then its remote members leave and the dialler tries again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use quinn::VarInt;
use sealroom_frame::control::{ErrorCode, LeaveReason};
use sealroom_frame::stream::Deframer;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::auth::{self, EXPORTER_LABEL, EXPORTER_LEN, Role};
use super::metrics::{AuthFailure, ClusterMetrics, LinkSample};
use super::tls::{self, LINK_SERVER_NAME};
use super::wire::{self, Hello, MAX_LINK_MESSAGE};
use super::{ClusterConfig, ClusterError, LinkInfo, Peer};
use crate::engine::{CascadeEvent, ConnId};
use crate::relay::{Relay, Shared, media, system_now};
use crate::tls::StartError;
use crate::transport::Outbox;
use crate::transport::ingress::IncomingBudget;

/// The close code of a link refused for its credentials.
const AUTH_FAILED: u32 = 0x5a01;

/// The close code of a link replaced by a newer one to the same peer.
const REPLACED: u32 = 0x5a02;

/// How long a new link has for its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// How often link counters are sampled into the metrics.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One link up.
pub(super) struct LinkEntry {
    pub(super) id: ConnId,
    conn: quinn::Connection,
    dialled: bool,
    last: LinkSample,
}

/// What every link task shares.
pub(super) struct LinkContext {
    pub(super) node_index: u16,
    secret: Vec<u8>,
    retry: Duration,
    queue_len: usize,
    pub(super) shared: Arc<Shared>,
    pub(super) metrics: Arc<ClusterMetrics>,
    pub(super) endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    /// Links up, by peer index.
    pub(super) links: Mutex<HashMap<u16, LinkEntry>>,
    /// Peers from the configuration, and from the directory.
    peers: Mutex<Peers>,
}

#[derive(Default)]
struct Peers {
    configured: Vec<Peer>,
    discovered: Vec<Peer>,
    dialers: HashMap<Peer, tokio::task::JoinHandle<()>>,
    stopped: bool,
}

impl LinkContext {
    pub(super) fn start(relay: &Relay, config: &ClusterConfig) -> Result<Arc<Self>, ClusterError> {
        let shared = Arc::clone(relay.shared());
        let limits = shared.limits;
        let server = tls::server_config(&limits, config.link_idle_timeout)?;
        let client = tls::client_config(&limits, config.link_idle_timeout)?;
        let (socket, _, _) = crate::tls::udp_socket(config.listen).map_err(StartError::Bind)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| StartError::Bind(std::io::Error::other("no async runtime")))?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            runtime,
        )
        .map_err(StartError::Bind)?;
        shared.state().core.enable_cascade(config.node_index);
        Ok(Arc::new(Self {
            node_index: config.node_index,
            secret: config.secret.clone(),
            retry: config.link_retry,
            queue_len: config.link_queue_len,
            shared,
            metrics: Arc::new(ClusterMetrics::new()),
            endpoint,
            client,
            links: Mutex::new(HashMap::new()),
            peers: Mutex::new(Peers::default()),
        }))
    }

    pub(super) fn set_static_peers(self: &Arc<Self>, peers: &[Peer]) {
        let mut state = lock(&self.peers);
        state.configured = peers.to_vec();
        self.redial(&mut state);
    }

    pub(super) fn set_discovered_peers(self: &Arc<Self>, peers: &[Peer]) {
        let mut state = lock(&self.peers);
        state.discovered = peers.to_vec();
        self.redial(&mut state);
    }

    /// Announce `address` as this node's relay with the MLS groups it holds.
    pub(super) fn set_relay_address(&self, address: SocketAddr) {
        let mut state = self.shared.state();
        state.core.set_relay_address(Some(address.to_string()));
    }

    /// Send new joins to `address` (or admit them here with `None`).
    pub(super) fn set_redirect(&self, address: Option<String>) {
        let mut state = self.shared.state();
        state.core.set_redirect(address);
    }

    pub(super) fn stop_dialling(&self) {
        let mut state = lock(&self.peers);
        state.stopped = true;
        for (_, task) in state.dialers.drain() {
            task.abort();
        }
    }

    /// Dial each listed peer with a higher index than this node's (lower ones dial this
    /// node); stop dialling those no longer listed (a link up to one stays until it fails).
    fn redial(self: &Arc<Self>, state: &mut Peers) {
        if state.stopped {
            return;
        }
        let wanted: Vec<Peer> = state
            .configured
            .iter()
            .chain(&state.discovered)
            .filter(|p| p.index > self.node_index)
            .copied()
            .collect();
        state.dialers.retain(|peer, task| {
            let keep = wanted.contains(peer) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for peer in wanted {
            state
                .dialers
                .entry(peer)
                .or_insert_with(|| tokio::spawn(dial_loop(Arc::clone(self), peer)));
        }
    }

    /// The relay's local population: (rooms with their member counts, members,
    /// connections, draining).
    pub(super) fn population(&self) -> (Vec<(crate::engine::RoomKey, usize)>, usize, bool) {
        let state = self.shared.state();
        let rooms = state
            .core
            .rooms()
            .into_iter()
            .map(|r| (crate::engine::RoomKey::new(r.app, r.room), r.members))
            .collect();
        let members = state.core.member_count();
        (rooms, members, state.core.is_draining())
    }

    pub(super) fn links(&self) -> Vec<LinkInfo> {
        let counters: HashMap<ConnId, _> = self.shared.state().core.links().into_iter().collect();
        let outboxes = {
            let state = self.shared.state();
            let links = lock(&self.links);
            links
                .values()
                .map(|e| (e.id, state.outboxes.get(&e.id).map_or(0, |o| o.dropped())))
                .collect::<HashMap<_, _>>()
        };
        let links = lock(&self.links);
        let mut out: Vec<LinkInfo> = links
            .iter()
            .map(|(peer, entry)| {
                let c = counters.get(&entry.id).copied().unwrap_or_default();
                let stats = entry.conn.stats();
                LinkInfo {
                    peer: *peer,
                    address: entry.conn.remote_address(),
                    dialled: entry.dialled,
                    frames_out: c.frames_out,
                    frames_in: c.frames_in,
                    bytes_out: stats.udp_tx.bytes,
                    bytes_in: stats.udp_rx.bytes,
                    drops: outboxes.get(&entry.id).copied().unwrap_or(0),
                    rtt_secs: entry.conn.rtt().as_secs_f64(),
                    members: c.members,
                }
            })
            .collect();
        out.sort_by_key(|l| l.peer);
        out
    }

    fn sample(&self) {
        let infos = self.links();
        let mut links = lock(&self.links);
        for info in infos {
            if let Some(entry) = links.get_mut(&info.peer) {
                let sample = LinkSample {
                    frames_out: info.frames_out,
                    frames_in: info.frames_in,
                    bytes_out: info.bytes_out,
                    bytes_in: info.bytes_in,
                    drops: info.drops,
                    rtt_secs: info.rtt_secs,
                };
                self.metrics
                    .sample_link(&info.peer.to_string(), &sample, &mut entry.last);
            }
        }
        self.metrics.set_links(links.len());
        drop(links);
        let moved = self.shared.state().core.mls_members_moved();
        self.metrics.set_mls_members_moved(moved);
    }

    pub(super) fn close_all(&self) {
        for entry in lock(&self.links).values() {
            entry.conn.close(VarInt::from_u32(0), b"node leaving");
        }
        self.endpoint.close(VarInt::from_u32(0), b"node leaving");
    }

    fn exporter(conn: &quinn::Connection) -> Option<[u8; EXPORTER_LEN]> {
        let mut out = [0u8; EXPORTER_LEN];
        conn.export_keying_material(&mut out, EXPORTER_LABEL, b"")
            .ok()
            .map(|()| out)
    }
}

pub(super) async fn sample_loop(ctx: Arc<LinkContext>) {
    let mut interval = tokio::time::interval(SAMPLE_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        ctx.sample();
    }
}

/// Keep a link to `peer` up: dial, run it, and after a failure or loss wait and dial again.
pub(super) async fn dial_loop(ctx: Arc<LinkContext>, peer: Peer) {
    loop {
        match dial(&ctx, peer).await {
            Ok(link) => {
                let span = tracing::info_span!("link", peer = peer.index, dialled = true);
                // The link runs as a task of its own, so that stopping this dialler (the
                // peer left the directory: its lease ran out, perhaps only because it is
                // cut off from Redis) does not drop a link that is up half-way through,
                // skipping its teardown and leaving the peer's members in the rooms for
                // good. A link up stays until it fails.
                let link_ctx = Arc::clone(&ctx);
                let running = tokio::spawn(
                    async move { run_link(&link_ctx, link, true).await }.instrument(span),
                );
                let _ = running.await;
            }
            Err(err) => {
                tracing::debug!(peer = peer.index, address = %peer.address, %err, "link not up");
            }
        }
        tokio::time::sleep(ctx.retry).await;
    }
}

/// An authenticated link, before it runs.
struct Authenticated {
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    deframer: Deframer,
    peer: u16,
}

/// Why a link did not come up.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("refused: {}", .0.label())]
    Refused(AuthFailure),
}

async fn dial(ctx: &Arc<LinkContext>, peer: Peer) -> Result<Authenticated, LinkError> {
    let conn = ctx
        .endpoint
        .connect_with(ctx.client.clone(), peer.address, LINK_SERVER_NAME)?
        .await?;
    let (mut send, recv) = conn.open_bi().await?;
    let exporter = LinkContext::exporter(&conn).ok_or(LinkError::Refused(AuthFailure::NoHello))?;
    let hello = Hello {
        node: ctx.node_index,
        proof: auth::prove(&ctx.secret, Role::Dialer, ctx.node_index, &exporter),
    };
    write_message(&mut send, &hello).await?;
    let mut link = Authenticated {
        conn,
        send,
        recv,
        deframer: Deframer::new(MAX_LINK_MESSAGE),
        peer: peer.index,
    };
    let answer = read_hello(&mut link).await;
    let verdict = match answer {
        Some(hello) if hello.node != peer.index => Err(AuthFailure::BadIndex),
        Some(hello)
            if auth::verify(
                &ctx.secret,
                Role::Acceptor,
                hello.node,
                &exporter,
                &hello.proof,
            ) =>
        {
            Ok(())
        }
        Some(_) => Err(AuthFailure::BadProof),
        None => Err(AuthFailure::NoHello),
    };
    if let Err(reason) = verdict {
        ctx.metrics.auth_failure(reason);
        tracing::warn!(
            peer = peer.index,
            reason = reason.label(),
            "node link refused: its proof of the cluster secret failed; check that both nodes hold the same secret and distinct indices"
        );
        link.conn
            .close(VarInt::from_u32(AUTH_FAILED), reason.label().as_bytes());
        return Err(LinkError::Refused(reason));
    }
    Ok(link)
}

pub(super) async fn accept_loop(ctx: Arc<LinkContext>) {
    while let Some(incoming) = ctx.endpoint.accept().await {
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match accept(&ctx, incoming).await {
                Ok(link) => {
                    let span = tracing::info_span!("link", peer = link.peer, dialled = false);
                    run_link(&ctx, link, false).instrument(span).await;
                }
                Err(err) => tracing::debug!(%remote, %err, "incoming link not up"),
            }
        });
    }
}

async fn accept(
    ctx: &Arc<LinkContext>,
    incoming: quinn::Incoming,
) -> Result<Authenticated, LinkError> {
    let conn = incoming.accept()?.await?;
    let refuse = |conn: &quinn::Connection, reason: AuthFailure| {
        ctx.metrics.auth_failure(reason);
        tracing::warn!(remote = %conn.remote_address(), reason = reason.label(), "node link refused: the peer did not prove the cluster secret; check that it holds the same secret and a distinct index");
        conn.close(VarInt::from_u32(AUTH_FAILED), reason.label().as_bytes());
        LinkError::Refused(reason)
    };
    let Ok(Ok((send, recv))) = tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi()).await else {
        return Err(refuse(&conn, AuthFailure::NoHello));
    };
    let Some(exporter) = LinkContext::exporter(&conn) else {
        return Err(refuse(&conn, AuthFailure::NoHello));
    };
    let mut link = Authenticated {
        conn,
        send,
        recv,
        deframer: Deframer::new(MAX_LINK_MESSAGE),
        peer: 0,
    };
    let Some(hello) = read_hello(&mut link).await else {
        return Err(refuse(&link.conn, AuthFailure::NoHello));
    };
    if !auth::verify(
        &ctx.secret,
        Role::Dialer,
        hello.node,
        &exporter,
        &hello.proof,
    ) {
        return Err(refuse(&link.conn, AuthFailure::BadProof));
    }
    // Lower indices dial higher ones: anything else is a misconfigured node.
    if hello.node == 0 || hello.node >= ctx.node_index {
        return Err(refuse(&link.conn, AuthFailure::BadIndex));
    }
    link.peer = hello.node;
    let answer = Hello {
        node: ctx.node_index,
        proof: auth::prove(&ctx.secret, Role::Acceptor, ctx.node_index, &exporter),
    };
    write_message(&mut link.send, &answer).await?;
    crate::tls::grant_joined(
        &link.conn,
        &ctx.shared.limits,
        crate::transport::webtransport::Flavour::Native,
    );
    Ok(link)
}

async fn write_message<T: serde::Serialize>(
    send: &mut quinn::SendStream,
    message: &T,
) -> Result<(), quinn::WriteError> {
    let mut buf = BytesMut::new();
    if wire::encode(message, &mut buf).is_err() {
        return Ok(());
    }
    send.write_all(&buf).await
}

/// The peer's hello, within [`HELLO_TIMEOUT`]; `None` when it does not come or is
/// malformed.
async fn read_hello(link: &mut Authenticated) -> Option<Hello> {
    let read = async {
        loop {
            match link.deframer.next_frame() {
                Ok(Some(bytes)) => return wire::decode::<Hello>(&bytes).ok(),
                Ok(None) => {}
                Err(_) => return None,
            }
            match link.recv.read_chunk(MAX_LINK_MESSAGE, true).await {
                Ok(Some(chunk)) => link.deframer.push(chunk.bytes),
                _ => return None,
            }
        }
    };
    tokio::time::timeout(HELLO_TIMEOUT, read)
        .await
        .ok()
        .flatten()
}

/// Run an authenticated link until it fails: register it with the core (which sends the
/// peer every local member), then carry events and media both ways.
async fn run_link(ctx: &Arc<LinkContext>, link: Authenticated, dialled: bool) {
    let Authenticated {
        conn,
        send,
        recv,
        deframer,
        peer,
    } = link;
    let shared = &ctx.shared;
    let id = ConnId(shared.next_conn.fetch_add(1, Ordering::Relaxed));
    // A link carries media as a native connection does: wrapped as a raw session (no
    // HTTP/3), so the relay's media readers and outboxes serve it unchanged.
    let session = web_transport_quinn::Session::raw(conn.clone());
    let outbox = Outbox::start_media_only(
        id,
        session.clone(),
        shared.limits,
        Arc::clone(&shared.metrics),
    );
    let (queue, events) = mpsc::channel(ctx.queue_len);
    {
        let replaced = lock(&ctx.links).insert(
            peer,
            LinkEntry {
                id,
                conn: conn.clone(),
                dialled,
                last: LinkSample::default(),
            },
        );
        let mut state = shared.state();
        if let Some(old) = replaced {
            // A newer link to the same node (the old one is dead but not yet noticed).
            state.links.remove(&old.id);
            state.core.handle_link_down(old.id, LeaveReason::TimedOut);
            if let Some(outbox) = state.outboxes.remove(&old.id) {
                outbox.close(None);
            }
            old.conn.close(VarInt::from_u32(REPLACED), b"replaced");
        }
        state.outboxes.insert(id, outbox);
        state.links.insert(id, queue);
        state.core.handle_link_up(id);
        state.flush();
    }
    ctx.metrics.set_links(lock(&ctx.links).len());
    tracing::info!(%id, remote = %conn.remote_address(), "node link up");
    let budget = Arc::new(IncomingBudget::new(shared.limits.max_incoming_buffer_bytes));
    // An authenticated link's media streams are read at once (the sender stays alive for
    // the whole select, so the readers never see the channel closed).
    let (_authenticated, authenticated_rx) = tokio::sync::watch::channel(true);
    // A node link never leaves as a member does: nothing waits on its streams.
    let unfinished = Arc::new(media::Unfinished::default());
    tokio::select! {
        () = write_events(send, events) => {}
        () = read_events(ctx, id, recv, deframer) => {}
        _ = media::read_datagrams(shared, id, &session) => {}
        _ = media::accept_streams(shared, id, &session, &budget, &unfinished, authenticated_rx) => {}
    }
    {
        let mut links = lock(&ctx.links);
        if links.get(&peer).is_some_and(|e| e.id == id) {
            links.remove(&peer);
        }
        ctx.metrics.set_links(links.len());
    }
    {
        let mut state = shared.state();
        state.links.remove(&id);
        state.core.handle_link_down(id, LeaveReason::TimedOut);
        if let Some(outbox) = state.outboxes.remove(&id) {
            outbox.close(Some(ErrorCode::ShuttingDown));
        }
        state.flush();
    }
    conn.close(VarInt::from_u32(0), b"link ended");
    tracing::info!(%id, reason = ?conn.close_reason(), "node link down");
}

async fn write_events(mut send: quinn::SendStream, mut events: mpsc::Receiver<CascadeEvent>) {
    let mut buf = BytesMut::new();
    while let Some(event) = events.recv().await {
        buf.clear();
        let _ = wire::encode(&event, &mut buf);
        // Whatever else is queued goes in the same write.
        while let Ok(event) = events.try_recv() {
            let _ = wire::encode(&event, &mut buf);
        }
        if send.write_all(&buf).await.is_err() {
            return;
        }
    }
}

async fn read_events(
    ctx: &Arc<LinkContext>,
    id: ConnId,
    mut recv: quinn::RecvStream,
    mut deframer: Deframer,
) {
    loop {
        loop {
            match deframer.next_frame() {
                Ok(Some(bytes)) => {
                    let event = match wire::decode::<CascadeEvent>(&bytes) {
                        Ok(event) => event,
                        Err(err) => {
                            tracing::warn!(%err, "malformed cascade event; cutting the link");
                            return;
                        }
                    };
                    let mut state = ctx.shared.state();
                    let result = state.core.handle_link_event(id, event, system_now());
                    state.flush();
                    drop(state);
                    if let Err(err) = result {
                        tracing::debug!(%err, "cascade event refused");
                        ctx.metrics.refused(err);
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(%err, "broken cascade stream framing; cutting the link");
                    return;
                }
            }
        }
        match recv.read_chunk(MAX_LINK_MESSAGE, true).await {
            Ok(Some(chunk)) => deframer.push(chunk.bytes),
            _ => return,
        }
    }
}
