//! One QUIC connection of a room session and the tasks that drive it: the control stream
//! in both directions, incoming datagrams and incoming media streams.
//!
//! Everything here is per connection; what must outlive a connection (keys, the published
//! tracks, the event queue, the control queue) lives in [`Shared`] so that a reconnect can
//! start a new link without the application noticing more than an event.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use quinn::{Connection, ConnectionError, RecvStream, SendStream, VarInt};
use sealroom_frame::control::{ControlMessage, ErrorCode, TrackInfo};
use sealroom_frame::envelope::{Envelope, Frame, MediaKind, MemberId, TrackId};
use sealroom_frame::stream::{Deframer, write_len_prefix};
use sealroom_frame::transport::{StreamCode, StreamType};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinSet;

use crate::error::{ConnectError, JoinError, ProtocolError, PublishError};
use crate::event::{DisconnectReason, Event, Member, ReceivedFrame, UnopenedFrame};
use crate::quality::{LocalDrop, Unopened};
use crate::room::{Dialer, Joined, Shared};
use crate::session::{Outcome, Session};
use crate::stats::bump;
use crate::ticket::{TicketReason, TicketRequest};

/// Largest chunk read from a stream at once.
const READ_CHUNK: usize = 64 * 1024;

/// The connection a room session currently runs on.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) conn: Connection,
    /// The member id the relay assigned on this connection.
    pub(crate) member: MemberId,
    /// Largest encoded frame accepted in both directions.
    pub(crate) max_frame_len: usize,
}

/// Where a room session stands.
#[derive(Debug, Clone)]
pub(crate) enum LinkState {
    /// Joined on this connection.
    Up(Link),
    /// The connection was lost; reconnecting.
    Down,
    /// The session is over.
    Ended,
}

impl Link {
    /// Whether an encoded frame of `len` bytes fits one datagram now.
    pub(crate) fn fits_datagram(&self, len: usize) -> bool {
        self.conn.max_datagram_size().is_some_and(|max| len <= max)
    }

    /// Send one encoded frame of `track` as a datagram.
    pub(crate) fn send_datagram(
        &self,
        shared: &Shared,
        (track, kind): (TrackId, MediaKind),
        frame: Bytes,
    ) -> Result<(), PublishError> {
        let len = frame.len();
        let sent = match self.conn.send_datagram(frame) {
            Ok(()) => {
                shared.stats.sent(len, true);
                shared.quality.sent(track, kind, len);
                return Ok(());
            }
            Err(quinn::SendDatagramError::TooLarge) => Err(PublishError::TooLarge {
                len,
                max: self.conn.max_datagram_size().unwrap_or(0),
            }),
            Err(_) => Err(PublishError::Closed),
        };
        bump(&shared.stats.frames_not_sent);
        shared.quality.send_dropped(track, kind, LocalDrop::NotSent);
        sent
    }

    /// Open a media stream with `priority`, send one frame on it and finish it.
    pub(crate) async fn send_on_new_stream(
        &self,
        shared: &Shared,
        (track, kind): (TrackId, MediaKind),
        frame: Bytes,
        priority: i32,
    ) -> Result<(), PublishError> {
        let sent = async {
            let mut stream = self.open_media_stream(priority).await?;
            write_frame(&mut stream, &frame).await?;
            stream.finish().ok()
        }
        .await;
        if sent.is_some() {
            shared.stats.sent(frame.len(), false);
            shared.quality.sent(track, kind, frame.len());
            Ok(())
        } else {
            bump(&shared.stats.frames_not_sent);
            shared.quality.send_dropped(track, kind, LocalDrop::NotSent);
            Err(PublishError::Closed)
        }
    }

    /// Open a unidirectional media stream and write its type byte.
    pub(crate) async fn open_media_stream(&self, priority: i32) -> Option<SendStream> {
        let mut stream = self.conn.open_uni().await.ok()?;
        stream.set_priority(priority).ok()?;
        stream.write_all(&[StreamType::Media.byte()]).await.ok()?;
        Some(stream)
    }
}

/// Write one encoded frame with its length prefix.
pub(crate) async fn write_frame(stream: &mut SendStream, frame: &Bytes) -> Option<()> {
    let mut prefix = BytesMut::with_capacity(8);
    write_len_prefix(frame.len(), &mut prefix);
    let mut chunks = [prefix.freeze(), frame.clone()];
    stream.write_all_chunks(&mut chunks).await.ok()
}

/// Why a control message could not be read.
#[derive(Debug)]
pub(crate) enum ReadControlError {
    /// The stream failed (reset or connection lost).
    Stream,
    /// The relay sent bytes that are not a control message.
    Malformed(ProtocolError),
}

/// Read the next control message; `Ok(None)` when the relay finished the stream.
pub(crate) async fn read_control(
    recv: &mut RecvStream,
    deframer: &mut Deframer,
) -> Result<Option<ControlMessage>, ReadControlError> {
    loop {
        match deframer.next_frame() {
            Ok(Some(bytes)) => {
                return ControlMessage::decode(&bytes)
                    .map(Some)
                    .map_err(|err| ReadControlError::Malformed(ProtocolError::Control(err)));
            }
            Ok(None) => {}
            Err(err) => return Err(ReadControlError::Malformed(ProtocolError::Framing(err))),
        }
        match recv.read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => deframer.push(chunk.bytes),
            Ok(None) => {
                return match deframer.finish() {
                    Ok(()) => Ok(None),
                    Err(err) => Err(ReadControlError::Malformed(ProtocolError::Framing(err))),
                };
            }
            Err(_) => return Err(ReadControlError::Stream),
        }
    }
}

/// A short name of a control message for diagnostics (no ticket or other content).
pub(crate) fn message_name(message: &ControlMessage) -> &'static str {
    match message {
        ControlMessage::Join { .. } => "join",
        ControlMessage::Joined { .. } => "joined",
        ControlMessage::MemberJoined(_) => "member joined",
        ControlMessage::MemberLeft { .. } => "member left",
        ControlMessage::TrackPublished { .. } => "track published",
        ControlMessage::TrackUnpublished { .. } => "track unpublished",
        ControlMessage::Subscribe { .. } => "subscribe",
        ControlMessage::Unsubscribe { .. } => "unsubscribe",
        ControlMessage::KeyframeRequest { .. } => "keyframe request",
        ControlMessage::RefreshTicket { .. } => "refresh ticket",
        ControlMessage::TicketRefreshed { .. } => "ticket refreshed",
        ControlMessage::Leave => "leave",
        ControlMessage::Error { .. } => "error",
        ControlMessage::GoAway { .. } => "go away",
        ControlMessage::MlsSync => "mls sync",
        ControlMessage::MlsState { .. } => "mls state",
        ControlMessage::MlsPublish { .. } => "mls publish",
        ControlMessage::MlsCommit { .. } => "mls commit",
        ControlMessage::MlsCommitted { .. } => "mls committed",
        ControlMessage::MlsAccepted { .. } => "mls accepted",
        ControlMessage::MlsRefused { .. } => "mls refused",
        ControlMessage::RecorderPresent { .. } => "recorder present",
        ControlMessage::Redirect { .. } => "redirect",
        ControlMessage::MlsGroupInfoPart { .. } => "mls group info part",
    }
}

/// The control stream of a joined connection.
pub(crate) struct ControlStreams {
    pub(crate) send: SendStream,
    pub(crate) recv: RecvStream,
    /// Holds whatever arrived after `Joined`.
    pub(crate) deframer: Deframer,
}

/// How one connection ended.
struct ConnectionEnd {
    closed: ConnectionError,
    announced: Option<DisconnectReason>,
    leaving: bool,
    /// The relay's suggested delay before reconnecting (`GoAway`).
    retry_after: Option<Duration>,
}

/// What the relay announced before the connection ended.
#[derive(Default)]
struct Ending {
    reason: Option<DisconnectReason>,
    retry_after: Option<Duration>,
}

type SharedEnding = Arc<std::sync::Mutex<Ending>>;

fn ending_lock(ending: &SharedEnding) -> std::sync::MutexGuard<'_, Ending> {
    ending
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Run a room session from its first joined connection to its end: drive each connection,
/// reconnect (with backoff, a fresh ticket and the tracks published again) when one is
/// lost for a reason the client recovers from, and emit [`Event::Disconnected`] as the
/// last event.
pub(crate) async fn run(
    shared: Arc<Shared>,
    dialer: Dialer,
    conn: Connection,
    control: ControlStreams,
    control_rx: mpsc::Receiver<ControlMessage>,
    events: mpsc::Sender<Event>,
) {
    let control_rx = Arc::new(tokio::sync::Mutex::new(control_rx));
    let reporter = shared
        .config
        .stats_interval
        .map(|every| tokio::spawn(report_stats(shared.clone(), events.clone(), every)));
    let mut current = (conn, control);
    let reason = loop {
        let (conn, control) = current;
        let end = drive(&shared, conn, control, &control_rx, &events).await;
        let reason = disconnect_reason(end.closed, end.announced, end.leaving);
        if !reason.is_recoverable() || shared.config.reconnect_max_attempts == 0 {
            break reason;
        }
        tracing::info!(%reason, "connection lost, reconnecting");
        shared.link.send_replace(LinkState::Down);
        let _ = events.send(Event::ConnectionLost(reason.clone())).await;
        // Whatever was queued for the old connection names old member ids; nothing is
        // queued while the link is down.
        if let Ok(mut rx) = control_rx.try_lock() {
            while rx.try_recv().is_ok() {}
        }
        match reconnect(&shared, &dialer, reason, end.retry_after, &events).await {
            Ok(rejoined) => current = rejoined,
            Err(reason) => break reason,
        }
    };
    tracing::debug!(%reason, "room session ended");
    if let Some(reporter) = reporter {
        // Stopped and awaited, so that no report follows `Disconnected`.
        reporter.abort();
        let _ = reporter.await;
    }
    shared.link.send_replace(LinkState::Ended);
    let _ = events.send(Event::Disconnected(reason)).await;
}

/// Report [`Event::Stats`] every `every` until aborted. A report that finds the event
/// queue full is dropped: the next one carries the same totals.
async fn report_stats(shared: Arc<Shared>, events: mpsc::Sender<Event>, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let stats = shared.stats_snapshot(true);
        if let Err(TrySendError::Closed(_)) = events.try_send(Event::Stats(Box::new(stats))) {
            return;
        }
    }
}

/// Reconnect attempts after a lost connection, until one rejoins, the relay refuses this
/// member for good, the application leaves, or the attempts run out.
async fn reconnect(
    shared: &Arc<Shared>,
    dialer: &Dialer,
    lost: DisconnectReason,
    retry_after: Option<Duration>,
    events: &mpsc::Sender<Event>,
) -> Result<(Connection, ControlStreams), DisconnectReason> {
    let config = &shared.config;
    // The node this session was on may be gone: a cluster's next node is tried first.
    dialer.relay_lost();
    let started = Instant::now();
    let mut delay = config
        .reconnect_initial
        .max(retry_after.unwrap_or_default())
        .min(config.reconnect_max_delay);
    let mut last = lost;
    let mut attempts = 0;
    while attempts < config.reconnect_max_attempts {
        tokio::select! {
            () = tokio::time::sleep(jitter(delay, attempts)) => {}
            () = shared.leave.notified() => return Err(DisconnectReason::Left),
        }
        if started.elapsed() >= config.reconnect_give_up_after {
            break;
        }
        attempts += 1;
        delay = delay.saturating_mul(2).min(config.reconnect_max_delay);
        let _ = events.send(Event::Reconnecting { attempt: attempts }).await;
        let attempt = async {
            let request = shared.ticket_requests.fetch_add(1, Ordering::Relaxed);
            let ticket = shared
                .tickets
                .ticket(TicketRequest::new(TicketReason::Rejoin, request))
                .await?;
            dialer.dial(ticket).await
        };
        let result = tokio::select! {
            result = attempt => result,
            () = shared.leave.notified() => return Err(DisconnectReason::Left),
        };
        let (conn, joined) = match result {
            Ok(joined) => joined,
            Err(err) if err.is_permanent() => {
                // Refused for good, or not the pinned relay: another attempt cannot help.
                tracing::info!(%err, attempt = attempts, "rejoin failed for good");
                return Err(join_failure(err));
            }
            Err(JoinError::Connect(ConnectError(quinn::ConnectError::EndpointStopping))) => {
                // The application closed the client: no attempt can succeed.
                return Err(DisconnectReason::Left);
            }
            Err(err) => {
                tracing::debug!(%err, attempt = attempts, "reconnect attempt failed");
                last = join_failure(err);
                continue;
            }
        };
        match install(shared, &conn, joined).await {
            Some((control, member, members)) => {
                bump(&shared.stats.reconnects);
                tracing::info!(member, attempts, "reconnected");
                let _ = events.send(Event::Recovered { member, members }).await;
                // The others' decoders need a keyframe to pick up this member's video
                // again: the next group starts on a new stream.
                let mut video: Vec<TrackId> = shared
                    .tracks()
                    .iter()
                    .filter(|(_, kind)| **kind == MediaKind::Video)
                    .map(|(track, _)| *track)
                    .collect();
                video.sort_unstable();
                for track in video {
                    let _ = events
                        .send(Event::KeyframeRequested { track, by: member })
                        .await;
                }
                return Ok((conn, control));
            }
            None => {
                conn.close(0u32.into(), b"rejoin failed");
                last = DisconnectReason::ConnectionLost {
                    detail: String::from("connection lost while rejoining"),
                };
            }
        }
    }
    Err(DisconnectReason::GaveUp {
        attempts,
        last: Box::new(last),
    })
}

/// A random 50 to 100 % of `delay`, so that the members of a restarted relay spread out.
fn jitter(delay: Duration, salt: u32) -> Duration {
    let random = RandomState::new().hash_one(salt);
    let permille = 500 + u32::try_from(random % 501).unwrap_or(500);
    delay.mul_f64(f64::from(permille) / 1000.0)
}

/// The reason a failed rejoin attempt reports (in [`DisconnectReason::GaveUp`]).
fn join_failure(err: JoinError) -> DisconnectReason {
    match err {
        JoinError::Refused { code, message } => DisconnectReason::Relay { code, message },
        JoinError::Ticket(error) => DisconnectReason::NoTicket(error),
        JoinError::Protocol(error) => DisconnectReason::Protocol {
            detail: error.to_string(),
        },
        JoinError::Connect(err) => DisconnectReason::ConnectionLost {
            detail: err.to_string(),
        },
        JoinError::Connection(err) => DisconnectReason::ConnectionLost {
            detail: err.to_string(),
        },
        err @ (JoinError::Unreachable { .. }
        | JoinError::NoAnswer { .. }
        | JoinError::Redirected { .. }) => DisconnectReason::ConnectionLost {
            detail: err.to_string(),
        },
        err @ JoinError::PinMismatch { .. } => DisconnectReason::PinMismatch {
            detail: err.to_string(),
        },
        // Set up once before the first join; a rejoin never meets it.
        JoinError::Mls(detail) => DisconnectReason::Protocol { detail },
    }
}

/// Make a rejoined connection the session's link: the new member id and roster, the
/// tracks published again and the subscription choices restored (written on the control
/// stream before anything else), the ticket's new lifetime. `None` when the connection
/// broke meanwhile.
async fn install(
    shared: &Arc<Shared>,
    conn: &Connection,
    joined: Joined,
) -> Option<(ControlStreams, MemberId, Vec<Member>)> {
    let Joined {
        member,
        roster,
        limits,
        mut control_send,
        control_recv,
        deframer,
    } = joined;
    let mls_joined = shared.keys.mls().map(|mls| mls.joined(member, &roster));
    let session = Session::new(member, roster, limits, shared.config.max_roster);
    let mut buf = BytesMut::new();
    let mut tracks: Vec<(TrackId, MediaKind)> =
        shared.tracks().iter().map(|(t, k)| (*t, *k)).collect();
    tracks.sort_unstable_by_key(|(track, _)| *track);
    for (track, kind) in tracks {
        let message = ControlMessage::TrackPublished {
            member,
            track: TrackInfo { track, kind },
        };
        let _ = message.encode_framed(&mut buf);
    }
    let members = session.members();
    for message in shared.subscription_messages(&members) {
        let _ = message.encode_framed(&mut buf);
    }
    // MLS mode: ask for the group state again (the agent compares positions, keeps its
    // group or rejoins). Rejoining raises no event by itself.
    for message in mls_joined.map(|(transmit, _)| transmit).unwrap_or_default() {
        let _ = message.encode_framed(&mut buf);
    }
    if !buf.is_empty() && control_send.write_all(&buf).await.is_err() {
        return None;
    }
    *shared.session() = session;
    shared.set_ticket_lifetime(limits.ticket_expires_in_secs);
    shared.link.send_replace(LinkState::Up(Link {
        conn: conn.clone(),
        member,
        max_frame_len: shared.frame_limit(&limits),
    }));
    Some((
        ControlStreams {
            send: control_send,
            recv: control_recv,
            deframer,
        },
        member,
        members,
    ))
}

/// Drive one joined connection until it ends.
async fn drive(
    shared: &Arc<Shared>,
    conn: Connection,
    control: ControlStreams,
    control_rx: &Arc<tokio::sync::Mutex<mpsc::Receiver<ControlMessage>>>,
    events: &mpsc::Sender<Event>,
) -> ConnectionEnd {
    let ending = SharedEnding::default();
    let mut tasks = JoinSet::new();
    tasks.spawn(control_writer(control.send, control_rx.clone()));
    tasks.spawn(control_reader(
        shared.clone(),
        conn.clone(),
        control.recv,
        control.deframer,
        events.clone(),
        ending.clone(),
    ));
    tasks.spawn(datagram_reader(
        shared.clone(),
        conn.clone(),
        events.clone(),
    ));
    tasks.spawn(stream_acceptor(
        shared.clone(),
        conn.clone(),
        events.clone(),
    ));

    let mut leaving = false;
    let closed = tokio::select! {
        err = conn.closed() => err,
        () = shared.leave.notified() => {
            leaving = true;
            // Reliable messages sent before leaving reach the relay first; then the writer
            // sends Leave and finishes the control stream, and the relay closes.
            let left = async {
                shared.flush_data_tracks().await;
                let _ = shared.control.send(ControlMessage::Leave).await;
                conn.closed().await
            };
            let wait = tokio::time::timeout(shared.config.leave_timeout, left).await;
            wait.unwrap_or_else(|_| {
                conn.close(0u32.into(), b"left");
                ConnectionError::LocallyClosed
            })
        }
    };
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}

    let mut ending = ending_lock(&ending);
    ConnectionEnd {
        closed,
        announced: ending.reason.take(),
        leaving,
        retry_after: ending.retry_after.take(),
    }
}

/// What the application is told when a connection ends.
fn disconnect_reason(
    closed: ConnectionError,
    announced: Option<DisconnectReason>,
    leaving: bool,
) -> DisconnectReason {
    if leaving {
        return DisconnectReason::Left;
    }
    match closed {
        ConnectionError::ApplicationClosed(close) => {
            let raw = close.error_code.into_inner();
            match (ErrorCode::from_close_code(raw), announced) {
                // The relay's Error message carries the explanation the close repeats.
                (
                    Some(code),
                    Some(DisconnectReason::Relay {
                        code: said,
                        message,
                    }),
                ) if said == code => DisconnectReason::Relay { code, message },
                (Some(code), _) => DisconnectReason::Relay {
                    code,
                    message: String::from_utf8_lossy(&close.reason).into_owned(),
                },
                (None, Some(announced)) => announced,
                (None, None) if raw == 0 => DisconnectReason::Closed,
                (None, None) => DisconnectReason::Protocol {
                    detail: format!("unknown close code {raw}"),
                },
            }
        }
        ConnectionError::LocallyClosed => announced.unwrap_or(DisconnectReason::Left),
        ConnectionError::TimedOut => DisconnectReason::ConnectionLost {
            detail: String::from("timed out"),
        },
        other => announced.unwrap_or(DisconnectReason::ConnectionLost {
            detail: other.to_string(),
        }),
    }
}

/// Send queued control messages; finish the stream after `Leave`. The queue outlives the
/// connection: the writer of the next connection takes it over.
async fn control_writer(
    mut send: SendStream,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<ControlMessage>>>,
) {
    let mut rx = rx.lock_owned().await;
    let mut buf = BytesMut::new();
    while let Some(message) = rx.recv().await {
        buf.clear();
        if let Err(err) = message.encode_framed(&mut buf) {
            tracing::warn!(%err, "control message not sent");
            continue;
        }
        if send.write_all(&buf).await.is_err() {
            return;
        }
        if message == ControlMessage::Leave {
            let _ = send.finish();
            return;
        }
    }
}

/// Read control messages from the relay and turn them into events.
async fn control_reader(
    shared: Arc<Shared>,
    conn: Connection,
    mut recv: RecvStream,
    mut deframer: Deframer,
    events: mpsc::Sender<Event>,
    ending: SharedEnding,
) {
    let violation = loop {
        let message = match read_control(&mut recv, &mut deframer).await {
            Ok(Some(message)) => message,
            // The relay closes the connection after finishing; the close says why.
            Ok(None) | Err(ReadControlError::Stream) => return,
            Err(ReadControlError::Malformed(error)) => break error.to_string(),
        };
        if let Some(mls) = shared.keys.mls() {
            let effects = mls.handle_control(&message);
            crate::mls::apply(&shared, &events, effects).await;
        }
        let outcome = shared.session().handle_control(message);
        match outcome {
            Outcome::Nothing => {}
            Outcome::Event(event) => {
                match &event {
                    Event::TicketRefreshed { expires_in_secs } => {
                        shared.set_ticket_lifetime(*expires_in_secs);
                    }
                    Event::KeyframeRequested { track, .. } => {
                        shared.quality.keyframe_asked(*track);
                    }
                    Event::MemberJoined(member) => {
                        for message in shared.subscription_messages(std::slice::from_ref(member)) {
                            let _ = shared.control.try_send(message);
                        }
                    }
                    _ => {}
                }
                if events.send(event).await.is_err() {
                    return;
                }
            }
            Outcome::Ending(reason) => {
                ending_lock(&ending).reason = Some(reason);
            }
            Outcome::GoAway {
                reason,
                retry_after,
            } => {
                // The relay is draining: leave now and reconnect (elsewhere, or here once
                // it is back) rather than wait to be closed at its deadline.
                {
                    let mut ending = ending_lock(&ending);
                    ending.reason = Some(reason);
                    ending.retry_after = Some(retry_after);
                }
                conn.close(0u32.into(), b"going away");
                return;
            }
            Outcome::Violation(detail) => break detail,
        }
    };
    tracing::warn!(%violation, "relay broke the control protocol");
    ending_lock(&ending).reason = Some(DisconnectReason::Protocol { detail: violation });
    conn.close(
        ErrorCode::ProtocolViolation.close_code().into(),
        b"protocol violation",
    );
}

/// Open a received frame and turn it into an event; `None` when it is dropped.
fn handle_frame(
    shared: &Shared,
    bytes: &Bytes,
    link_member: MemberId,
    max_len: usize,
) -> Option<Event> {
    bump(&shared.stats.frames_received);
    let max_payload = max_len.saturating_sub(Envelope::HEADER_LEN);
    let frame = match Frame::decode_with_limit(bytes, max_payload) {
        Ok(frame) => frame,
        Err(err) => {
            bump(&shared.stats.malformed);
            tracing::debug!(%err, "malformed frame dropped");
            return None;
        }
    };
    let envelope = frame.envelope;
    if envelope.sender == link_member {
        // Members never receive their own frames; a relay that reflects them is ignored.
        bump(&shared.stats.malformed);
        return None;
    }
    let user_of = || shared.session().user_of(envelope.sender);
    if shared.quality.is_blocked(envelope.sender, user_of) {
        shared
            .quality
            .receive_dropped(&envelope, LocalDrop::BlockedSender);
        return None;
    }
    match shared.keys.open(&envelope, &frame.payload) {
        Ok(payload) => {
            bump(&shared.stats.frames_opened);
            shared.quality.received(&envelope, bytes.len());
            Some(Event::Frame(ReceivedFrame {
                sender: envelope.sender,
                track: envelope.track,
                kind: envelope.kind,
                envelope,
                payload,
            }))
        }
        Err(reason) => {
            bump(&shared.stats.open_failures);
            let user = if reason == sealroom_crypto::OpenError::AuthenticationFailed {
                user_of()
            } else {
                None
            };
            match shared.quality.unopenable(&envelope, &reason, user.clone()) {
                Unopened::Report => Some(Event::CouldNotOpen(UnopenedFrame {
                    sender: envelope.sender,
                    envelope,
                    reason,
                })),
                Unopened::Blocked { failures } => {
                    tracing::warn!(
                        member = envelope.sender,
                        failures,
                        "sender blocked after frames that failed authentication"
                    );
                    Some(Event::SenderBlocked {
                        member: envelope.sender,
                        user,
                        failures,
                    })
                }
            }
        }
    }
}

/// The member id and frame limit of the link a task runs on.
fn link_params(shared: &Shared) -> (MemberId, usize) {
    shared
        .current_link()
        .map_or((0, 0), |link| (link.member, link.max_frame_len))
}

/// Receive datagrams: each is one frame. A full event queue drops (and counts) the frame
/// rather than stalling the connection: datagram media is worthless late.
async fn datagram_reader(shared: Arc<Shared>, conn: Connection, events: mpsc::Sender<Event>) {
    let (member, max_len) = link_params(&shared);
    while let Ok(datagram) = conn.read_datagram().await {
        let Some(event) = handle_frame(&shared, &datagram, member, max_len) else {
            continue;
        };
        match events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(event)) => {
                bump(&shared.stats.events_dropped);
                if let Event::Frame(frame) = event {
                    shared
                        .quality
                        .receive_dropped(&frame.envelope, LocalDrop::EventQueueFull);
                }
            }
            Err(TrySendError::Closed(_)) => return,
        }
    }
}

/// Accept media streams from the relay, one reading task each. QUIC's stream limit
/// ([`ClientConfig::max_incoming_streams`](crate::ClientConfig::max_incoming_streams))
/// bounds how many run at once.
async fn stream_acceptor(shared: Arc<Shared>, conn: Connection, events: mpsc::Sender<Event>) {
    let mut readers = JoinSet::new();
    while let Ok(recv) = conn.accept_uni().await {
        while readers.try_join_next().is_some() {}
        readers.spawn(media_stream_reader(shared.clone(), recv, events.clone()));
    }
}

/// Read one media stream: a type byte, then length-prefixed frames. Stream frames are
/// delivered in order, waiting for room in the event queue (backpressure, no loss).
///
/// When the relay resets a video group this member fell behind on, the member asks the
/// group's publisher for a keyframe so that the picture recovers without waiting for the
/// next scheduled one.
async fn media_stream_reader(
    shared: Arc<Shared>,
    mut recv: RecvStream,
    events: mpsc::Sender<Event>,
) {
    let (member, max_len) = link_params(&shared);
    let mut deframer = Deframer::new(max_len);
    let mut typed = false;
    let mut video_from = None;
    loop {
        let mut chunk = match recv.read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => chunk.bytes,
            Ok(None) => {
                if deframer.finish().is_err() {
                    bump(&shared.stats.malformed);
                }
                return;
            }
            Err(quinn::ReadError::Reset(code))
                if StreamCode::from_code(code.into_inner()) == Some(StreamCode::StaleGroup) =>
            {
                if let Some((publisher, track)) = video_from {
                    bump(&shared.stats.keyframes_requested);
                    shared.quality.keyframe_requested(publisher, track);
                    let _ = shared.control.try_send(ControlMessage::KeyframeRequest {
                        member: publisher,
                        track,
                    });
                }
                return;
            }
            // Reset by the publisher, or the connection is gone.
            Err(_) => return,
        };
        if !typed {
            let Some(&first) = chunk.first() else {
                continue;
            };
            if StreamType::from_byte(first) != Some(StreamType::Media) {
                bump(&shared.stats.malformed);
                let _ = recv.stop(VarInt::from_u32(StreamCode::Refused.code()));
                return;
            }
            chunk.advance(1);
            typed = true;
        }
        deframer.push(chunk);
        loop {
            match deframer.next_frame() {
                Ok(Some(bytes)) => {
                    let Some(event) = handle_frame(&shared, &bytes, member, max_len) else {
                        continue;
                    };
                    if let Event::Frame(frame) = &event
                        && frame.kind == MediaKind::Video
                    {
                        video_from = Some((frame.sender, frame.track));
                    }
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    bump(&shared.stats.malformed);
                    let _ = recv.stop(VarInt::from_u32(StreamCode::Refused.code()));
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_close(code: u32, reason: &'static [u8]) -> ConnectionError {
        ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: VarInt::from_u32(code),
            reason: Bytes::from_static(reason),
        })
    }

    #[test]
    fn jitter_stays_within_half_and_all_of_the_delay() {
        let delay = Duration::from_millis(400);
        for salt in 0..200 {
            let wait = jitter(delay, salt);
            assert!(wait >= delay / 2 && wait <= delay, "{wait:?}");
        }
    }

    #[test]
    fn a_refused_rejoin_keeps_its_reason() {
        let reason = join_failure(JoinError::Refused {
            code: ErrorCode::BadSignature,
            message: "bad".into(),
        });
        assert_eq!(reason.code(), Some(ErrorCode::BadSignature));
        assert!(!ErrorCode::BadSignature.is_recoverable());
        assert!(ErrorCode::ShuttingDown.is_recoverable());
    }

    #[test]
    fn permanent_failures_are_not_retried_and_transient_ones_are() {
        let relay: std::net::SocketAddr = "127.0.0.1:4433".parse().expect("address");
        let mismatch = JoinError::PinMismatch {
            relay,
            pinned: [0xaa; 32],
            presented: [0xbb; 32],
        };
        assert!(mismatch.is_permanent());
        let text = mismatch.to_string();
        assert!(
            text.contains("aaaaaaaaaaaaaaaa") && text.contains("bbbbbbbbbbbbbbbb"),
            "{text}"
        );
        assert!(text.contains("does not match the pinned"), "{text}");
        let reason = join_failure(mismatch);
        assert!(!reason.is_recoverable(), "{reason}");
        for code in [
            ErrorCode::BadSignature,
            ErrorCode::Expired,
            ErrorCode::WrongRoom,
        ] {
            let refused = JoinError::Refused {
                code,
                message: String::new(),
            };
            assert!(refused.is_permanent(), "{code:?}");
        }
        for transient in [
            JoinError::Refused {
                code: ErrorCode::ShuttingDown,
                message: String::new(),
            },
            JoinError::Unreachable {
                relay,
                after: Duration::from_secs(5),
            },
            JoinError::Connection(crate::error::ConnectionError(ConnectionError::TimedOut)),
        ] {
            assert!(!transient.is_permanent(), "{transient}");
        }
    }

    #[test]
    fn close_code_names_the_reason() {
        let reason = disconnect_reason(
            app_close(ErrorCode::Replaced.close_code(), b"replaced"),
            None,
            false,
        );
        assert_eq!(reason.code(), Some(ErrorCode::Replaced));
    }

    #[test]
    fn announced_message_is_kept_when_the_close_agrees() {
        let announced = DisconnectReason::Relay {
            code: ErrorCode::Kicked,
            message: "by operator".into(),
        };
        let reason = disconnect_reason(
            app_close(ErrorCode::Kicked.close_code(), b""),
            Some(announced.clone()),
            false,
        );
        assert_eq!(reason, announced);
    }

    #[test]
    fn leaving_and_plain_closes() {
        assert_eq!(
            disconnect_reason(app_close(0, b""), None, true),
            DisconnectReason::Left
        );
        assert_eq!(
            disconnect_reason(app_close(0, b""), None, false),
            DisconnectReason::Closed
        );
        assert!(matches!(
            disconnect_reason(ConnectionError::TimedOut, None, false),
            DisconnectReason::ConnectionLost { .. }
        ));
    }
}
