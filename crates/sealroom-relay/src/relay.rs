//! The relay node: a quinn endpoint, one task per connection, and the mapping of the core's
//! decisions onto QUIC streams and datagrams (see `docs/TRANSPORT.md`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use quinn::VarInt;
use sealroom_frame::control::{ControlMessage, ErrorCode, LeaveReason};
use sealroom_frame::envelope::{Envelope, FrameRef, MemberId, TrackId};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::{Limits, RelayConfig, TlsConfig};
use crate::engine::{
    AdminError, CascadeEvent, CheckedControl, ConnId, ControlOutcome, DropReason, JoinOutcome,
    LinkTarget, MemberSummary, MemberTarget, Now, Output, RelayCore, RoomKey, RoomSummary,
    Violation,
};
use crate::gate::{Gate, GateMetrics, HandshakeStats, resident_memory};
use crate::mask::IdMask;
use crate::metrics::{KeyframeSource, Metrics, RelayStats};
use crate::quality::{ConnectionQuality, QUALITY_INTERVAL, QualityMetrics};
use crate::ticket::TicketVerifier;
use crate::tls::{self, Certificate, Identity, StartError, sha256};
use crate::transport::webtransport::{WebMetrics, WebStats};
use crate::transport::{Forwarded, Outbox, Pushed};

mod conn;
pub(crate) mod media;
mod web;

use conn::{accept_loop, run_timers};

/// A diagnostics hook that sees what the relay receives from clients, each byte once
/// ([`Relay::set_payload_tap`]). `sealroom demo` uses it to show that no plaintext reaches
/// the relay; an audit can do the same on a running node. It costs nothing while unset.
pub type PayloadTap = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Called with every join outcome and the wall-clock time (seconds since the Unix epoch) it
/// happened at; feeds the join success rate.
pub type JoinHook = Arc<dyn Fn(JoinOutcome, u64) + Send + Sync>;

/// How often the relay samples its resident memory (the gate's memory ceiling) and refreshes
/// the population gauges. A sampler, not a timer: the core's deadlines are slept until
/// ([`run_timers`]).
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// Largest chunk read from a stream at once.
const READ_CHUNK: usize = 64 * 1024;

/// Read both clocks. The driver is the only place that does: the core takes time as an
/// input.
pub(crate) fn system_now() -> Now {
    Now {
        instant: Instant::now(),
        unix_secs: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) struct State {
    pub(crate) core: RelayCore,
    pub(crate) outboxes: HashMap<ConnId, Arc<Outbox>>,
    /// Links to other nodes: the queue of cascade events towards each.
    pub(crate) links: HashMap<ConnId, LinkQueue>,
    /// The deadline the timer task sleeps until (`None`: no deadline).
    sleeping_until: Option<Instant>,
    /// Wakes the timer task when an input armed an earlier deadline.
    timers_changed: Arc<Notify>,
}

impl State {
    /// Carry out the core's outputs, and its cascade events towards the links.
    pub(crate) fn flush(&mut self) {
        loop {
            self.flush_outputs();
            if !self.flush_cascade() {
                break;
            }
        }
        if let Some(next) = self.core.poll_timeout()
            && self.sleeping_until.is_none_or(|at| next < at)
        {
            self.sleeping_until = Some(next);
            self.timers_changed.notify_one();
        }
    }

    /// Queue the core's cascade events to their links; a link whose queue is full is cut
    /// (its peer is not reading: the slow-consumer rule for links). Returns whether that
    /// produced more outputs.
    fn flush_cascade(&mut self) -> bool {
        let mut slow = Vec::new();
        while let Some((target, event)) = self.core.poll_cascade() {
            match target {
                LinkTarget::All => {
                    for (link, queue) in &self.links {
                        if queue.try_send(event.clone()).is_err() {
                            slow.push(*link);
                        }
                    }
                }
                LinkTarget::One(link) => {
                    if let Some(queue) = self.links.get(&link)
                        && queue.try_send(event).is_err()
                    {
                        slow.push(link);
                    }
                }
            }
        }
        slow.sort();
        slow.dedup();
        for link in &slow {
            self.links.remove(link);
            self.core.handle_link_down(*link, LeaveReason::TimedOut);
            if let Some(outbox) = self.outboxes.remove(link) {
                outbox.close(Some(ErrorCode::SlowConsumer));
            }
        }
        !slow.is_empty()
    }

    fn flush_outputs(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Send { conn, message } => {
                    let Some(outbox) = self.outboxes.get(&conn) else {
                        continue;
                    };
                    if !outbox.send_control(message) {
                        // It does not read its control stream: remove it (the reason cannot
                        // be queued, the close code carries it).
                        if let Some(outbox) = self.outboxes.remove(&conn) {
                            outbox.close(Some(ErrorCode::SlowConsumer));
                        }
                        self.core.remove_connection(
                            conn,
                            ErrorCode::SlowConsumer,
                            "control messages not read",
                        );
                    }
                }
                Output::Close { conn, code } => {
                    if let Some(outbox) = self.outboxes.remove(&conn) {
                        outbox.close(code);
                    }
                }
            }
        }
    }
}

/// The bounded queue of cascade events towards one link.
pub(crate) type LinkQueue = tokio::sync::mpsc::Sender<CascadeEvent>;

pub(crate) struct Shared {
    state: Mutex<State>,
    /// The core's ticket verifier, used outside the lock.
    verifier: Arc<TicketVerifier>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: Limits,
    tap: RwLock<Option<PayloadTap>>,
    tap_set: AtomicBool,
    join_hook: RwLock<Option<JoinHook>>,
    pub(crate) next_conn: AtomicU64,
    draining: AtomicBool,
    connections: AtomicUsize,
    /// Which handshakes are taken on; open and half-open connections.
    gate: Mutex<Gate>,
    gate_metrics: GateMetrics,
    quality_metrics: QualityMetrics,
    web_metrics: WebMetrics,
    connection_gone: Notify,
    pub(crate) id_mask: IdMask,
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn tap(&self, bytes: &[u8]) {
        if !self.tap_set.load(Ordering::Relaxed) {
            return;
        }
        let tap = self
            .tap
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(tap) = tap {
            tap(bytes);
        }
    }

    fn update_gauges(&self, state: &State) {
        self.metrics.set_population(
            state.core.room_count(),
            state.core.member_count(),
            self.connections.load(Ordering::Relaxed),
        );
    }

    /// A control message from `conn`, acted on and counted.
    fn control(&self, conn: ConnId, message: ControlMessage) -> ControlOutcome {
        let now = system_now();
        // The ticket's HMAC is checked here, before the lock: joins verify in parallel on
        // their connections' tasks and never hold up forwarding.
        let checked = CheckedControl::check(&self.verifier, message, now.unix_secs);
        let outcome = {
            let mut state = self.state();
            let outcome = state.core.handle_control_checked(conn, checked, now);
            if let ControlOutcome::Join(JoinOutcome::Joined) = outcome
                && let Some((room, member, user)) = state.core.member_identity(conn)
            {
                // Every later line of this connection carries who it is, masked.
                let span = tracing::Span::current();
                span.record("member", member);
                span.record("user", tracing::field::display(self.id_mask.user(user)));
                span.record(
                    "room",
                    tracing::field::display(format_args!(
                        "{}/{}",
                        room.app,
                        self.id_mask.room(&room.room)
                    )),
                );
            }
            state.flush();
            if matches!(outcome, ControlOutcome::Join(_)) {
                self.update_gauges(&state);
            }
            outcome
        };
        match outcome {
            ControlOutcome::Join(join) => self.joined(join, now.unix_secs),
            ControlOutcome::Keyframe(keyframe) => {
                self.metrics
                    .keyframe_request(KeyframeSource::Member, keyframe);
            }
            ControlOutcome::RateLimited => self.metrics.control_rate_limited(),
            ControlOutcome::Mls(mls) => self.metrics.mls_message(mls),
            ControlOutcome::Violation(violation) => {
                tracing::debug!(violation = violation.label(), "protocol violation");
                self.metrics.violation(violation);
            }
            ControlOutcome::Handled | ControlOutcome::Ignored => {}
        }
        outcome
    }

    /// The stream of a reliable data track from `conn` ended cleanly: the track ends.
    fn end_data_track(&self, conn: ConnId, track: TrackId) {
        let mut state = self.state();
        state.core.end_data_track(conn, track);
        state.flush();
    }

    fn joined(&self, outcome: JoinOutcome, unix_secs: u64) {
        match outcome {
            JoinOutcome::Joined => tracing::info!("joined"),
            JoinOutcome::Redirected => tracing::info!("join redirected to another node"),
            JoinOutcome::Refused(code) => tracing::info!(reason = ?code, "join refused"),
        }
        self.metrics.join(outcome);
        let hook = self
            .join_hook
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(hook) = hook {
            hook(outcome, unix_secs);
        }
    }

    /// `conn` broke the protocol in a way that ends it: count, tell, remove.
    fn violation(&self, conn: ConnId, violation: Violation) {
        tracing::debug!(violation = violation.label(), "protocol violation");
        self.metrics.violation(violation);
        let mut state = self.state();
        state.core.handle_violation(conn, violation);
        state.flush();
    }

    /// `conn` opened an incoming stream; `false` when it must be refused.
    fn incoming_stream(&self, conn: ConnId) -> bool {
        let result = {
            let mut state = self.state();
            let result = state.core.handle_incoming_stream(conn, system_now());
            state.flush();
            result
        };
        match result {
            Ok(()) => true,
            Err(violation) => {
                self.metrics.violation(violation);
                false
            }
        }
    }

    fn remove(&self, conn: ConnId, code: ErrorCode, message: &str) {
        let mut state = self.state();
        state.core.remove_connection(conn, code, message);
        state.flush();
    }

    /// Decide about one received frame and queue it to its receivers; returns the receivers
    /// (for video group bookkeeping) in `targets`.
    fn forward(
        &self,
        conn: ConnId,
        bytes: Bytes,
        targets: &mut Vec<Arc<Outbox>>,
    ) -> Option<Envelope> {
        targets.clear();
        // One clock read per frame, taken before the lock: arrival time and core time.
        let now = system_now();
        self.tap(&bytes);
        let envelope = match FrameRef::decode(&bytes) {
            Ok(frame) => frame.envelope,
            Err(_) => {
                self.metrics.frame_dropped(DropReason::Malformed);
                self.bad_frame(conn, now);
                return None;
            }
        };
        self.metrics.frame_received(envelope.kind, bytes.len());
        {
            let mut state = self.state();
            let state = &mut *state;
            match state.core.handle_frame(conn, &envelope, bytes.len(), now) {
                Ok(receivers) => {
                    for receiver in receivers {
                        if let Some(outbox) = state.outboxes.get(receiver) {
                            targets.push(Arc::clone(outbox));
                        } else {
                            self.metrics.frame_dropped(DropReason::ReceiverGone);
                        }
                    }
                }
                Err(reason) => {
                    if reason == DropReason::ForgedSender {
                        tracing::debug!(claimed = envelope.sender, "forged sender dropped");
                    }
                    self.metrics.frame_dropped(reason);
                    if reason.is_bad()
                        && let Some(violation) = state.core.handle_bad_frame(conn, now)
                    {
                        tracing::debug!(violation = violation.label(), "protocol violation");
                        self.metrics.violation(violation);
                    }
                }
            }
            state.flush();
        }
        if targets.is_empty() {
            return Some(envelope);
        }
        self.deliver(Forwarded::new(bytes, envelope, now.instant), targets, now);
        Some(envelope)
    }

    /// Queue `frame` to each of `targets`, and act on what their egress says: a receiver
    /// behind on a video group gets a keyframe asked for on its behalf, a receiver that
    /// cannot keep up with reliable data is removed.
    fn deliver(&self, frame: Forwarded, targets: &[Arc<Outbox>], now: Now) {
        let envelope = &frame.envelope;
        let mut slow = Vec::new();
        let mut stale = Vec::new();
        for outbox in targets.iter() {
            match outbox.push(&frame) {
                Pushed::SlowConsumer => slow.push(outbox.id),
                Pushed::Stale => stale.push(outbox.id),
                Pushed::Queued | Pushed::SendNow | Pushed::Dropped => {}
            }
        }
        if !stale.is_empty() {
            // Those receivers lose the rest of the group: ask the publisher for a keyframe
            // on their behalf so they recover at the next group.
            let mut state = self.state();
            for receiver in stale {
                let outcome =
                    state
                        .core
                        .handle_stale_group(receiver, envelope.sender, envelope.track, now);
                self.metrics
                    .keyframe_request(KeyframeSource::Relay, outcome);
            }
            state.flush();
        }
        for conn in slow {
            self.remove(
                conn,
                ErrorCode::SlowConsumer,
                "reliable data backlog over the limit",
            );
        }
    }

    /// `conn` sent bytes that do not decode as a frame: charged to its bad-frame budget.
    fn bad_frame(&self, conn: ConnId, now: Now) {
        let mut state = self.state();
        if let Some(violation) = state.core.handle_bad_frame(conn, now) {
            tracing::debug!(violation = violation.label(), "protocol violation");
            self.metrics.violation(violation);
        }
        state.flush();
    }

    fn oversize(&self, conn: ConnId) {
        self.metrics.frame_dropped(DropReason::TooLarge);
        let mut state = self.state();
        state.core.report_oversize(conn, system_now());
        state.flush();
    }

    /// Fire the core's timers that are due; returns the next deadline.
    fn fire_timers(&self) -> Option<Instant> {
        let mut state = self.state();
        let outcome = state.core.handle_timeout(system_now());
        state.flush();
        let next = state.core.poll_timeout();
        state.sleeping_until = next;
        drop(state);
        for _ in 0..outcome.no_join {
            self.metrics.violation(Violation::NoJoin);
        }
        next
    }

    /// Sample memory for the gate's ceiling and refresh the gauges.
    /// Sample every connection's quality into the node's histograms. The outboxes are
    /// taken under the lock and sampled outside it.
    fn sample_quality(&self) {
        let outboxes: Vec<Arc<Outbox>> = self.state().outboxes.values().cloned().collect();
        let samples: Vec<_> = outboxes
            .iter()
            .filter(|outbox| !outbox.is_closed())
            .map(|outbox| outbox.sample_quality())
            .collect();
        self.quality_metrics.observe(&samples);
    }

    fn sample(&self) {
        // Read before the lock: the file read is a system call.
        let memory = resident_memory();
        let (over, half_open) = {
            let mut gate = lock(&self.gate);
            let over = memory.is_some_and(|bytes| gate.handle_memory(bytes));
            (over, gate.half_open())
        };
        self.gate_metrics.set(half_open, memory.unwrap_or(0));
        let mut state = self.state();
        state.core.set_overloaded(over);
        self.update_gauges(&state);
    }
}

/// A running relay node.
pub struct Relay {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    certificate: Arc<Certificate>,
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Bind the endpoint and start serving. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`StartError`] when the certificate cannot be made or loaded, or the socket cannot
    /// be bound.
    pub async fn start(config: RelayConfig) -> Result<Self, StartError> {
        let identity = Identity::load(&config.tls)?;
        let certificate = Arc::new(Certificate {
            tls: config.tls.clone(),
            limits: config.limits,
            der: RwLock::new(identity.leaf_der()),
        });
        let server_config = tls::server_config(identity, &config.limits)?;
        let (socket, recv_buffer, send_buffer) = tls::udp_socket(config.listen)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| std::io::Error::other("no async runtime for the QUIC endpoint"))?;
        let endpoint = crate::transport::batch::endpoint(
            socket,
            server_config,
            runtime,
            config.limits.send_batch_packets,
        )?;
        let local_addr = endpoint.local_addr()?;
        config
            .limits
            .validate()
            .map_err(|err| StartError::Limits(err.to_string()))?;
        let mut metrics = Metrics::new();
        let gate_metrics = GateMetrics::register(metrics.registry_mut());
        let quality_metrics = QualityMetrics::register(metrics.registry_mut());
        let web_metrics = WebMetrics::register(metrics.registry_mut());
        let metrics = Arc::new(metrics);
        let core = RelayCore::new(&config.apps, config.limits, Instant::now());
        let timers_changed = Arc::new(Notify::new());
        let verifier = core.verifier();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                core,
                outboxes: HashMap::new(),
                links: HashMap::new(),
                sleeping_until: None,
                timers_changed: Arc::clone(&timers_changed),
            }),
            verifier,
            metrics,
            limits: config.limits,
            tap: RwLock::new(None),
            tap_set: AtomicBool::new(false),
            join_hook: RwLock::new(None),
            next_conn: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            gate: Mutex::new(Gate::new(config.limits)),
            gate_metrics,
            quality_metrics,
            web_metrics,
            connection_gone: Notify::new(),
            id_mask: config.id_mask,
        });
        let accept = tokio::spawn(accept_loop(Arc::clone(&shared), endpoint.clone()));
        let timers = tokio::spawn(run_timers(Arc::clone(&shared), timers_changed));
        let sampler = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                let mut interval = tokio::time::interval(SAMPLE_EVERY);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let quality_every = QUALITY_INTERVAL.as_millis() / SAMPLE_EVERY.as_millis();
                for tick in 1u128.. {
                    interval.tick().await;
                    shared.sample();
                    if tick % quality_every == 0 {
                        shared.sample_quality();
                    }
                }
            }
        });
        let mut tasks = vec![accept, timers, sampler];
        if matches!(config.tls, TlsConfig::SelfSigned { .. }) {
            tasks.push(tokio::spawn(tls::rotate_certificates(
                Arc::clone(&certificate),
                endpoint.clone(),
            )));
        }
        tracing::info!(%local_addr, recv_buffer, send_buffer, "relay listening");
        Ok(Self {
            shared,
            endpoint,
            certificate,
            local_addr,
            tasks,
        })
    }

    /// The driver's shared state, for the cluster's links.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// DER of the leaf certificate the relay presents to new connections.
    pub fn cert_der(&self) -> Vec<u8> {
        self.certificate.der()
    }

    /// SHA-256 of the DER of the leaf certificate (what development clients pin, and what
    /// a browser passes in `serverCertificateHashes`).
    pub fn cert_sha256(&self) -> [u8; 32] {
        sha256(&self.certificate.der())
    }

    /// Present a new certificate to new connections (open ones keep theirs) and return its
    /// hash. A relay with a generated certificate does this by itself before the
    /// certificate expires (`SELF_SIGNED_ROTATE_AFTER`); one with certificate files reads
    /// them again, so an operator can call it after renewing them.
    ///
    /// # Errors
    /// [`StartError`] when the certificate cannot be made or loaded; the old one stays.
    pub fn rotate_certificate(&self) -> Result<[u8; 32], StartError> {
        self.certificate.rotate(&self.endpoint)
    }

    /// A snapshot of the counters and the population.
    pub fn stats(&self) -> RelayStats {
        {
            let state = self.shared.state();
            self.shared.update_gauges(&state);
        }
        self.shared.metrics.snapshot()
    }

    /// WebTransport sessions (browsers) set up, and refused by reason.
    pub fn webtransport_stats(&self) -> WebStats {
        self.shared.web_metrics.snapshot()
    }

    /// What the relay did with new handshakes, and its half-open and memory gauges.
    pub fn handshake_stats(&self) -> HandshakeStats {
        self.shared.gate_metrics.snapshot()
    }

    /// The relay's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// The relay's Prometheus registry, locked (to encode it alongside other registries).
    pub fn metrics_registry(&self) -> &prometheus_client::registry::Registry {
        self.shared.metrics.registry()
    }

    /// The relay's metrics in the Prometheus / OpenMetrics text format.
    pub fn encode_metrics(&self) -> String {
        {
            let state = self.shared.state();
            self.shared.update_gauges(&state);
        }
        self.shared.metrics.encode()
    }

    /// Install (or remove) the diagnostics hook that sees what the relay receives from clients,
    /// each byte once: every media frame as it arrived (a datagram, or a frame completed on
    /// a media stream, before it is decoded) and every control stream chunk. Stream framing
    /// and a frame a client never completed are not shown.
    pub fn set_payload_tap(&self, tap: Option<PayloadTap>) {
        let set = tap.is_some();
        *self
            .shared
            .tap
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tap;
        self.shared.tap_set.store(set, Ordering::Relaxed);
    }

    /// Install (or remove) the hook called with every join outcome.
    pub fn set_join_hook(&self, hook: Option<JoinHook>) {
        *self
            .shared
            .join_hook
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = hook;
    }

    /// Every room with its member count.
    pub fn rooms(&self) -> Vec<RoomSummary> {
        self.shared.state().core.rooms()
    }

    /// The members of a room; `None` when the room does not exist.
    pub fn members(&self, room: &RoomKey) -> Option<Vec<MemberSummary>> {
        self.shared.state().core.members(room)
    }

    /// The connection quality of each member of a room (by member id); `None` when the
    /// room does not exist.
    pub fn member_quality(&self, room: &RoomKey) -> Option<Vec<(MemberId, ConnectionQuality)>> {
        let outboxes: Vec<(MemberId, Arc<Outbox>)> = {
            let state = self.shared.state();
            let members = state.core.members(room)?;
            members
                .iter()
                .filter_map(|m| Some((m.member, Arc::clone(state.outboxes.get(&m.conn)?))))
                .collect()
        };
        Some(
            outboxes
                .into_iter()
                .map(|(member, outbox)| (member, outbox.connection_quality()))
                .collect(),
        )
    }

    /// Remove a member: it hears `Error{Kicked, reason}` and is disconnected; the others
    /// see it leave with reason kicked.
    ///
    /// # Errors
    /// [`AdminError`] when the room or the member is not there.
    pub fn kick(
        &self,
        room: &RoomKey,
        target: &MemberTarget,
        reason: &str,
    ) -> Result<MemberId, AdminError> {
        let mut state = self.shared.state();
        let result = state.core.kick(room, target, reason);
        state.flush();
        result
    }

    /// Dismiss a room: every member hears `Error{RoomDismissed, reason}` and is
    /// disconnected. Returns how many members were removed.
    ///
    /// # Errors
    /// [`AdminError::UnknownRoom`] when the room does not exist.
    pub fn dismiss(&self, room: &RoomKey, reason: &str) -> Result<usize, AdminError> {
        let mut state = self.shared.state();
        let result = state.core.dismiss(room, reason);
        state.flush();
        result
    }

    /// Whether the relay is draining.
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Relaxed)
    }

    /// Connections currently open.
    pub fn connection_count(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Drain: stop admitting (new connections are refused, joins get `ShuttingDown`), send
    /// `GoAway{ShuttingDown}` to every connection, wait up to `timeout` for them to leave,
    /// then remove the rest with `Error{ShuttingDown}`. Returns how many were still
    /// connected at the deadline.
    pub async fn drain(&self, timeout: Duration) -> usize {
        self.shared.draining.store(true, Ordering::Relaxed);
        lock(&self.shared.gate).begin_drain();
        {
            let mut state = self.shared.state();
            state.core.begin_drain();
            state.flush();
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while self.connection_count() > 0 {
            let gone = self.shared.connection_gone.notified();
            if tokio::time::timeout_at(deadline, gone).await.is_err() {
                break;
            }
        }
        let remaining = self.connection_count();
        {
            let mut state = self.shared.state();
            state.core.close_all();
            state.flush();
        }
        remaining
    }

    /// Close every connection (members hear `ShuttingDown`) and the endpoint, and wait a
    /// short while for the closes to reach the peers.
    pub async fn shutdown(self) {
        self.shared.draining.store(true, Ordering::Relaxed);
        lock(&self.shared.gate).begin_drain();
        {
            let mut state = self.shared.state();
            state.core.close_all();
            state.flush();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.connection_count() > 0 {
            let gone = self.shared.connection_gone.notified();
            if tokio::time::timeout_at(deadline, gone).await.is_err() {
                break;
            }
        }
        self.endpoint.close(
            VarInt::from_u32(ErrorCode::ShuttingDown.close_code()),
            b"shutting down",
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Without a shutdown, connections end at once rather than at their idle timeout.
        self.endpoint.close(
            VarInt::from_u32(ErrorCode::ShuttingDown.close_code()),
            b"shutting down",
        );
    }
}
