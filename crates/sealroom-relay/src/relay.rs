//! The relay node: a quinn endpoint, one task per connection, and the mapping of the core's
//! decisions onto QUIC streams and datagrams (see `docs/TRANSPORT.md`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use quinn::{ConnectionError, ReadError, TransportErrorCode, VarInt};
use sealroom_frame::control::{ControlMessage, ErrorCode, LeaveReason, MAX_CONTROL_LEN};
use sealroom_frame::envelope::{Envelope, FrameRef, MemberId};
use sealroom_frame::stream::{DeframeError, Deframer};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::{Limits, RelayConfig};
use crate::engine::{
    AdminError, CheckedControl, ConnId, ControlOutcome, DropReason, JoinOutcome, MemberSummary,
    MemberTarget, Now, Output, RelayCore, RoomKey, RoomSummary, Violation,
};
use crate::gate::{Gate, GateMetrics, Handshake, HandshakeStats, resident_memory};
use crate::mask::IdMask;
use crate::metrics::{KeyframeSource, Metrics, RelayStats};
use crate::ticket::TicketVerifier;
use crate::tls::{self, Identity, StartError};
use crate::transport::ingress::{FrameDeadline, IncomingBudget};
use crate::transport::{Forwarded, Outbox, Pushed};

mod media;

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

struct State {
    core: RelayCore,
    outboxes: HashMap<ConnId, Arc<Outbox>>,
    /// The deadline the timer task sleeps until (`None`: no deadline).
    sleeping_until: Option<Instant>,
    /// Wakes the timer task when an input armed an earlier deadline.
    timers_changed: Arc<Notify>,
}

impl State {
    /// Carry out the core's outputs.
    fn flush(&mut self) {
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
        if let Some(next) = self.core.poll_timeout()
            && self.sleeping_until.is_none_or(|at| next < at)
        {
            self.sleeping_until = Some(next);
            self.timers_changed.notify_one();
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// The core's ticket verifier, used outside the lock.
    verifier: Arc<TicketVerifier>,
    metrics: Arc<Metrics>,
    limits: Limits,
    tap: RwLock<Option<PayloadTap>>,
    tap_set: AtomicBool,
    join_hook: RwLock<Option<JoinHook>>,
    next_conn: AtomicU64,
    draining: AtomicBool,
    connections: AtomicUsize,
    /// Which handshakes are taken on; open and half-open connections.
    gate: Mutex<Gate>,
    gate_metrics: GateMetrics,
    connection_gone: Notify,
    id_mask: IdMask,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
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
            ControlOutcome::Violation(violation) => {
                tracing::debug!(violation = violation.label(), "protocol violation");
                self.metrics.violation(violation);
            }
            ControlOutcome::Handled | ControlOutcome::Ignored => {}
        }
        outcome
    }

    fn joined(&self, outcome: JoinOutcome, unix_secs: u64) {
        match outcome {
            JoinOutcome::Joined => tracing::info!("joined"),
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
    cert_der: Vec<u8>,
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
        let cert_der = identity.leaf_der();
        let server_config = tls::server_config(identity, &config.limits)?;
        let (socket, recv_buffer, send_buffer) = tls::udp_socket(config.listen)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| std::io::Error::other("no async runtime for the QUIC endpoint"))?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server_config),
            socket,
            runtime,
        )?;
        let local_addr = endpoint.local_addr()?;
        config
            .limits
            .validate()
            .map_err(|err| StartError::Limits(err.to_string()))?;
        let mut metrics = Metrics::new();
        let gate_metrics = GateMetrics::register(metrics.registry_mut());
        let metrics = Arc::new(metrics);
        let core = RelayCore::new(&config.apps, config.limits, Instant::now());
        let timers_changed = Arc::new(Notify::new());
        let verifier = core.verifier();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                core,
                outboxes: HashMap::new(),
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
                loop {
                    interval.tick().await;
                    shared.sample();
                }
            }
        });
        tracing::info!(%local_addr, recv_buffer, send_buffer, "relay listening");
        Ok(Self {
            shared,
            endpoint,
            cert_der,
            local_addr,
            tasks: vec![accept, timers, sampler],
        })
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// DER of the leaf certificate the relay presents.
    pub fn cert_der(&self) -> Vec<u8> {
        self.cert_der.clone()
    }

    /// SHA-256 of the DER of the leaf certificate (what development clients pin).
    pub fn cert_sha256(&self) -> [u8; 32] {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.cert_der);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }

    /// A snapshot of the counters and the population.
    pub fn stats(&self) -> RelayStats {
        {
            let state = self.shared.state();
            self.shared.update_gauges(&state);
        }
        self.shared.metrics.snapshot()
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

async fn accept_loop(shared: Arc<Shared>, endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        // The first packet of this connection arrived about now: its one deadline (to
        // `Join`) runs from here.
        let arrived = Instant::now();
        let id = ConnId(shared.next_conn.fetch_add(1, Ordering::Relaxed));
        let remote = incoming.remote_address();
        let validated = incoming.remote_address_validated();
        let decision = lock(&shared.gate).decide(id, remote.ip(), validated);
        shared.gate_metrics.handshake(decision);
        match decision {
            Handshake::Accept => {}
            Handshake::Retry => {
                // Stateless: a real client comes back with a token proving its address;
                // a spoofed one never does.
                if incoming.may_retry() {
                    let _ = incoming.retry();
                } else {
                    incoming.refuse();
                }
                continue;
            }
            Handshake::Refuse(reason) => {
                tracing::debug!(%remote, reason = reason.label(), "handshake refused");
                incoming.refuse();
                if validated && reason.is_overload() {
                    // A client that proved its address was turned away by the relay's own
                    // overload: it counts against the join success rate.
                    shared.joined(JoinOutcome::Refused(ErrorCode::Overloaded), unix_now());
                }
                continue;
            }
        }
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let span = tracing::info_span!(
                "conn",
                id = %id,
                remote = %remote,
                member = tracing::field::Empty,
                user = tracing::field::Empty,
                room = tracing::field::Empty,
            );
            serve(Arc::clone(&shared), id, incoming, arrived)
                .instrument(span)
                .await;
            lock(&shared.gate).handle_closed(id, remote.ip());
            shared.connections.fetch_sub(1, Ordering::Relaxed);
            shared.connection_gone.notify_waiters();
        });
    }
}

fn unix_now() -> u64 {
    system_now().unix_secs
}

/// Why a member whose connection ended left: closing the connection itself is leaving;
/// anything else (idle timeout, reset, transport error) is a lost connection.
fn leave_reason(err: &ConnectionError) -> LeaveReason {
    match err {
        ConnectionError::ApplicationClosed(_) => LeaveReason::Left,
        _ => LeaveReason::TimedOut,
    }
}

/// The violation behind a connection quinn closed because the peer broke QUIC.
fn quic_violation(err: &ConnectionError) -> Option<Violation> {
    match err {
        ConnectionError::TransportError(err)
            if err.code == TransportErrorCode::STREAM_LIMIT_ERROR =>
        {
            Some(Violation::TooManyStreams)
        }
        ConnectionError::TransportError(_) => Some(Violation::Quic),
        _ => None,
    }
}

async fn serve(shared: Arc<Shared>, id: ConnId, incoming: quinn::Incoming, arrived: Instant) {
    // One deadline from the first packet to `Join`: the handshake and the control stream
    // spend from it, and the core's join timeout runs from the same instant.
    let deadline = tokio::time::Instant::from_std(arrived + shared.limits.join_timeout());
    let remote = incoming.remote_address();
    let conn = match tokio::time::timeout_at(deadline, async { incoming.accept()?.await }).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(err)) => {
            tracing::debug!(%err, "handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("handshake timed out");
            shared.metrics.violation(Violation::NoJoin);
            return;
        }
    };
    let control = tokio::select! {
        control = tokio::time::timeout_at(deadline, conn.accept_bi()) => control,
        // Datagrams before the control stream are dropped as they come, never buffered.
        () = media::discard_datagrams(&shared, &conn) => return,
    };
    let (send, recv) = match control {
        Ok(Ok(streams)) => streams,
        Ok(Err(err)) => {
            tracing::debug!(%err, "connection ended before a control stream");
            return;
        }
        Err(_) => {
            shared.metrics.violation(Violation::NoJoin);
            conn.close(
                VarInt::from_u32(ErrorCode::ProtocolViolation.close_code()),
                b"no control stream in time",
            );
            return;
        }
    };
    let outbox = Outbox::start(
        id,
        conn.clone(),
        send,
        shared.limits,
        Arc::clone(&shared.metrics),
    );
    {
        let mut state = shared.state();
        state.outboxes.insert(id, outbox);
        let now = system_now();
        let first_packet = Now {
            instant: arrived.min(now.instant),
            unix_secs: now.unix_secs,
        };
        state
            .core
            .handle_connect_from(id, remote.ip(), first_packet);
        if shared.draining.load(Ordering::Relaxed) {
            state.core.begin_drain();
        }
        state.flush();
    }
    let incoming_buffered = Arc::new(IncomingBudget::new(shared.limits.max_incoming_buffer_bytes));
    let mut reason = tokio::select! {
        reason = read_control(&shared, id, recv, &conn) => reason,
        reason = media::read_datagrams(&shared, id, &conn) => reason,
        reason = media::accept_streams(&shared, id, &conn, &incoming_buffered) => reason,
    };
    if let Some(violation) = conn.close_reason().as_ref().and_then(quic_violation) {
        // quinn closed the connection because the peer broke QUIC (more streams than the
        // relay allows, say).
        tracing::debug!(violation = violation.label(), "protocol violation");
        shared.metrics.violation(violation);
        reason = LeaveReason::Removed;
    }
    {
        let mut state = shared.state();
        state.core.handle_disconnect(id, reason);
        if let Some(outbox) = state.outboxes.remove(&id) {
            outbox.close(None);
        }
        state.flush();
        shared.update_gauges(&state);
    }
    // Let the outbox finish its close (it owns the control stream) before the task ends.
    let _ = tokio::time::timeout(Duration::from_secs(3), conn.closed()).await;
    tracing::debug!(?reason, "connection ended");
}

/// The core's timer driver: sleep until the next deadline the core names, fire what is
/// due, and start over; an input that arms an earlier deadline wakes it early
/// ([`State::flush`]).
async fn run_timers(shared: Arc<Shared>, changed: Arc<Notify>) {
    let mut next = None;
    loop {
        match next {
            Some(at) => {
                let at = tokio::time::Instant::from_std(at);
                tokio::select! {
                    () = tokio::time::sleep_until(at) => next = shared.fire_timers(),
                    () = changed.notified() => next = shared.state().sleeping_until,
                }
            }
            None => {
                changed.notified().await;
                next = shared.state().sleeping_until;
            }
        }
    }
}

async fn read_control(
    shared: &Shared,
    id: ConnId,
    mut recv: quinn::RecvStream,
    conn: &quinn::Connection,
) -> LeaveReason {
    let mut deframer = Deframer::new(MAX_CONTROL_LEN);
    let mut deadline = FrameDeadline::new(shared.limits.incomplete_frame_timeout());
    loop {
        let read = recv.read_chunk(READ_CHUNK, true);
        let read = match deadline.deadline() {
            Some(at) => {
                match tokio::time::timeout_at(tokio::time::Instant::from_std(at), read).await {
                    Ok(read) => read,
                    Err(_) => {
                        // A control message started and never completed.
                        shared.violation(id, Violation::StalledFrame);
                        return LeaveReason::Removed;
                    }
                }
            }
            None => read.await,
        };
        let chunk = match read {
            Ok(Some(chunk)) => chunk.bytes,
            Ok(None) => {
                // The client finished its control stream: it is leaving.
                return LeaveReason::Left;
            }
            Err(ReadError::ConnectionLost(err)) => return leave_reason(&err),
            Err(_) => return LeaveReason::Left,
        };
        shared.tap(&chunk);
        deframer.push(chunk);
        let mut completed = false;
        loop {
            match deframer.next_frame() {
                Ok(Some(bytes)) => {
                    completed = true;
                    let outcome = match ControlMessage::decode(&bytes) {
                        Ok(message) => shared.control(id, message),
                        Err(err) => {
                            tracing::debug!(%err, "malformed control message");
                            shared.violation(id, Violation::MalformedControl);
                            return LeaveReason::Removed;
                        }
                    };
                    match outcome {
                        ControlOutcome::Violation(_) => return LeaveReason::Removed,
                        ControlOutcome::Join(JoinOutcome::Joined) => {
                            lock(&shared.gate).handle_joined(id);
                            tls::grant_joined(conn, &shared.limits);
                        }
                        _ => {}
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::debug!(%err, "broken control stream framing");
                    let violation = match err {
                        DeframeError::Oversize { .. } => Violation::ControlTooLarge,
                        _ => Violation::ControlFraming,
                    };
                    shared.violation(id, violation);
                    return LeaveReason::Removed;
                }
            }
        }
        deadline.update(completed, deframer.buffered_len() > 0, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quic_breaches_are_typed_violations() {
        let too_many =
            ConnectionError::TransportError(TransportErrorCode::STREAM_LIMIT_ERROR.into());
        assert_eq!(quic_violation(&too_many), Some(Violation::TooManyStreams));
        let flow = ConnectionError::TransportError(TransportErrorCode::FLOW_CONTROL_ERROR.into());
        assert_eq!(quic_violation(&flow), Some(Violation::Quic));
        assert_eq!(quic_violation(&ConnectionError::TimedOut), None);
        assert_eq!(
            leave_reason(&ConnectionError::TimedOut),
            LeaveReason::TimedOut
        );
    }
}
