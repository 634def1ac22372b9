//! The client endpoint and the room handle: connect, join, publish, subscribe, leave.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use sealroom_crypto::RoomSecret;
use sealroom_frame::ErrorCode;
use sealroom_frame::control::{
    ControlMessage, JoinOptions, MAX_CONTROL_LEN, SessionLimits, TrackInfo,
};
use sealroom_frame::envelope::{Envelope, Flags, MediaKind, MemberId, TrackId};
use sealroom_frame::stream::Deframer;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::config::{ClientConfig, JoinConfig, Trust};
use crate::error::{
    ClientError, ConnectError, ConnectionError, JoinError, ProtocolError, PublishError,
    RefreshError,
};
use crate::event::{Events, Member};
use crate::keys::{Keys, TrackSealer};
use crate::link::{self, Link, LinkState};
use crate::quality::Tracker;
use crate::session::Session;
use crate::stats::{Counters, RoomStats};
use crate::ticket::{TicketReason, TicketRequest, TicketSource};
use crate::track::{self, AudioTrack, DataTrack, VideoTrack};
use sealroom_tls::RefusedCert;

/// A client endpoint: one UDP socket and the TLS trust, from which rooms are joined.
///
/// Cheap to clone; every clone shares the socket.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: quinn::Endpoint,
    quic: quinn::ClientConfig,
    refused: RefusedCert,
    config: Arc<ClientConfig>,
}

impl Client {
    /// Bind the UDP socket and prepare TLS for `config`.
    ///
    /// # Errors
    /// [`ClientError`] when TLS cannot be set up or the socket cannot be bound.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let (crypto, refused) = sealroom_tls::quic_client_config(&config.trust)?;
        let mut quic = quinn::ClientConfig::new(Arc::new(crypto));
        quic.transport_config(Arc::new(transport_config(&config)));
        let endpoint = quinn::Endpoint::client(config.bind)?;
        Ok(Self {
            endpoint,
            quic,
            refused,
            config: Arc::new(config),
        })
    }

    /// The local UDP address.
    ///
    /// # Errors
    /// When the socket has no address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Connect to the relay at `relay` and join the room a ticket from `tickets` names,
    /// with default [`JoinConfig`].
    ///
    /// `server_name` is the relay's TLS name (checked with [`Trust::SystemRoots`](crate::Trust::SystemRoots)).
    /// Every frame this room publishes is sealed with keys derived from `secret`, and
    /// only members holding the same secret can open them.
    ///
    /// The attempt (QUIC handshake and join) is bounded by
    /// [`ClientConfig::connect_timeout`]; an address where nothing answers ends in
    /// [`JoinError::Unreachable`], a relay whose certificate is not the pinned one in
    /// [`JoinError::PinMismatch`].
    ///
    /// # Errors
    /// [`JoinError`], with the relay's typed reason when it refused the ticket.
    pub async fn join(
        &self,
        relay: SocketAddr,
        server_name: &str,
        tickets: impl TicketSource,
        secret: &RoomSecret,
    ) -> Result<(Room, Events), JoinError> {
        self.join_with(relay, server_name, tickets, secret, JoinConfig::default())
            .await
    }

    /// [`join`](Self::join) with options (for example the room the application expects).
    ///
    /// # Errors
    /// As [`join`](Self::join).
    pub async fn join_with(
        &self,
        relay: SocketAddr,
        server_name: &str,
        tickets: impl TicketSource,
        secret: &RoomSecret,
        options: JoinConfig,
    ) -> Result<(Room, Events), JoinError> {
        let mode = KeyMode::RoomSecret(secret.clone());
        self.join_with_mode(relay, server_name, tickets, mode, options)
            .await
    }

    /// Join through any of the nodes of a cluster at `relays` (the same room whichever
    /// takes the member): the first that admits the join is used, the next ones are tried
    /// when one does not answer or refuses in a way another node may not (shutting down,
    /// overloaded). A node's `Redirect` to another node is followed (at most 3 in a row).
    /// After a lost connection the session rejoins at the next node of the list first.
    ///
    /// # Errors
    /// As [`join`](Self::join), the last relay's; [`JoinError::Connect`] with no address.
    pub async fn join_any(
        &self,
        relays: &[SocketAddr],
        server_name: &str,
        tickets: impl TicketSource,
        secret: &RoomSecret,
        options: JoinConfig,
    ) -> Result<(Room, Events), JoinError> {
        let mode = KeyMode::RoomSecret(secret.clone());
        self.join_any_with_mode(relays, server_name, tickets, mode, options)
            .await
    }

    /// [`join_with`](Self::join_with), choosing how the room's keys are managed: from a
    /// room secret the application hands out, or by an MLS group the members run through
    /// the relay ([`KeyMode::Mls`], `docs/MLS.md`). In the MLS mode the member joins the
    /// group by itself after the join; it can send once [`Event::Mls`](crate::Event::Mls)
    /// announced its first epoch (before, sending fails with
    /// [`PublishError::NoGroupKeys`]).
    ///
    /// # Errors
    /// As [`join`](Self::join); [`JoinError::Mls`] when the MLS state cannot be set up
    /// (a user id that cannot be a credential).
    pub async fn join_with_mode(
        &self,
        relay: SocketAddr,
        server_name: &str,
        tickets: impl TicketSource,
        mode: KeyMode,
        options: JoinConfig,
    ) -> Result<(Room, Events), JoinError> {
        self.join_any_with_mode(&[relay], server_name, tickets, mode, options)
            .await
    }

    /// [`join_any`](Self::join_any) with a key mode, as in
    /// [`join_with_mode`](Self::join_with_mode).
    ///
    /// # Errors
    /// As [`join_any`](Self::join_any) and [`join_with_mode`](Self::join_with_mode).
    pub async fn join_any_with_mode(
        &self,
        relays: &[SocketAddr],
        server_name: &str,
        tickets: impl TicketSource,
        mode: KeyMode,
        options: JoinConfig,
    ) -> Result<(Room, Events), JoinError> {
        let keys = match &mode {
            KeyMode::RoomSecret(secret) => Keys::new(secret, self.config.max_remote_tracks),
            KeyMode::Mls(config) => Keys::Mls(Arc::new(
                crate::mls::MlsKeys::new(config).map_err(|err| JoinError::Mls(err.to_string()))?,
            )),
        };
        let tickets: Arc<dyn TicketSource> = Arc::new(tickets);
        let ticket = tickets.ticket(TicketRequest::join()).await?;
        let dialer = Dialer {
            endpoint: self.endpoint.clone(),
            quic: self.quic.clone(),
            relays: relays.to_vec(),
            preferred: AtomicUsize::new(0),
            server_name: server_name.to_owned(),
            options,
            config: self.config.clone(),
            refused: self.refused.clone(),
        };
        let (conn, joined) = dialer.dial(ticket.clone()).await?;
        let Joined {
            member,
            roster,
            limits,
            control_send,
            control_recv,
            deframer,
        } = joined;
        let (control_tx, control_rx) = mpsc::channel(self.config.control_queue);
        let (events_tx, events_rx) = mpsc::channel(self.config.event_queue);
        let mls_joined = keys.mls().map(|mls| mls.joined(member, &roster));
        let link = Link {
            conn: conn.clone(),
            member,
            max_frame_len: (limits.max_frame_len as usize).min(self.config.max_frame_len),
        };
        let suite = keys.suite();
        let shared = Arc::new(Shared {
            config: self.config.clone(),
            keys,
            dangerous_sealer: Mutex::new(None),
            link: watch::Sender::new(LinkState::Up(link)),
            control: control_tx,
            session: Mutex::new(Session::new(member, roster, limits, self.config.max_roster)),
            tracks: Mutex::new(HashMap::new()),
            data_flush: Mutex::new(HashMap::new()),
            subscriptions: Mutex::new(HashMap::new()),
            ticket_lifetime: watch::Sender::new(None),
            stats: Counters::default(),
            quality: Tracker::new(
                suite,
                self.config.max_remote_tracks,
                self.config.forgery_threshold,
            ),
            leave: Notify::new(),
            tickets,
            ticket_requests: AtomicU32::new(1),
        });
        shared.set_ticket_lifetime(limits.ticket_expires_in_secs);
        tokio::spawn(crate::refresh::run(
            shared.clone(),
            events_tx.clone(),
            ticket,
        ));
        if let Some(effects) = mls_joined {
            crate::mls::apply(&shared, &events_tx, effects).await;
            tokio::spawn(crate::mls::tick(shared.clone(), events_tx.clone()));
        }
        tokio::spawn(link::run(
            shared.clone(),
            dialer,
            conn,
            link::ControlStreams {
                send: control_send,
                recv: control_recv,
                deframer,
            },
            control_rx,
            events_tx,
        ));
        let guard = Arc::new(LeaveOnDrop(shared.clone()));
        Ok((
            Room {
                shared,
                _guard: guard,
            },
            Events { rx: events_rx },
        ))
    }

    /// Close every connection of this client and wait until the relay acknowledged.
    pub async fn close(&self) {
        self.endpoint.close(0u32.into(), b"client closed");
        self.endpoint.wait_idle().await;
    }
}

fn transport_config(config: &ClientConfig) -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_uni_streams(config.max_incoming_streams.into());
    transport.max_concurrent_bidi_streams(0u32.into());
    transport.keep_alive_interval(Some(config.keep_alive));
    if let Ok(timeout) = quinn::IdleTimeout::try_from(config.idle_timeout) {
        transport.max_idle_timeout(Some(timeout));
    }
    transport.datagram_receive_buffer_size(Some(1024 * 1024));
    transport
}

/// What the relay's `Joined` carries, and the control stream to keep using.
pub(crate) struct Joined {
    pub(crate) member: MemberId,
    pub(crate) roster: Vec<sealroom_frame::control::MemberInfo>,
    pub(crate) limits: SessionLimits,
    pub(crate) control_send: quinn::SendStream,
    pub(crate) control_recv: quinn::RecvStream,
    pub(crate) deframer: Deframer,
}

/// Redirects followed for one join at one node of the list.
const MAX_REDIRECTS: usize = 3;

/// Where and how a room session connects: kept for rejoining after a lost connection.
pub(crate) struct Dialer {
    endpoint: quinn::Endpoint,
    quic: quinn::ClientConfig,
    /// The nodes to try, in order, from `preferred` on.
    relays: Vec<SocketAddr>,
    preferred: AtomicUsize,
    server_name: String,
    options: JoinConfig,
    config: Arc<ClientConfig>,
    refused: RefusedCert,
}

impl Dialer {
    /// Connect and join with `ticket`, the first join and every rejoin alike: at each node
    /// of the list in turn from the preferred one (each within
    /// [`ClientConfig::connect_timeout`]), following redirects.
    pub(crate) async fn dial(
        &self,
        ticket: String,
    ) -> Result<(quinn::Connection, Joined), JoinError> {
        let count = self.relays.len();
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last = None;
        for k in 0..count {
            let index = (start + k) % count;
            let mut target = self.relays[index];
            let mut hops = 0;
            loop {
                match self.dial_at(target, ticket.clone()).await {
                    Ok(joined) => {
                        self.preferred.store(index, Ordering::Relaxed);
                        return Ok(joined);
                    }
                    Err(JoinError::Redirected { to }) if hops < MAX_REDIRECTS => {
                        tracing::debug!(from = %target, %to, "join redirected");
                        hops += 1;
                        target = to;
                    }
                    Err(err) if count > 1 && err.worth_another_relay() => {
                        tracing::debug!(relay = %target, %err, "trying the next relay");
                        last = Some(err);
                        break;
                    }
                    Err(err) => return Err(err),
                }
            }
        }
        Err(last.unwrap_or(JoinError::Connect(ConnectError(
            quinn::ConnectError::InvalidRemoteAddress(SocketAddr::from(([0, 0, 0, 0], 0))),
        ))))
    }

    /// The connection to the preferred node was lost: rejoin at the next one first.
    pub(crate) fn relay_lost(&self) {
        let count = self.relays.len().max(1);
        let next = (self.preferred.load(Ordering::Relaxed) + 1) % count;
        self.preferred.store(next, Ordering::Relaxed);
    }

    async fn dial_at(
        &self,
        relay: SocketAddr,
        ticket: String,
    ) -> Result<(quinn::Connection, Joined), JoinError> {
        let timeout = self.config.connect_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let connecting = self
            .endpoint
            .connect_with(self.quic.clone(), relay, &self.server_name)
            .map_err(ConnectError)?;
        let unreachable = JoinError::Unreachable {
            relay,
            after: timeout,
        };
        let conn = match tokio::time::timeout_at(deadline, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(quinn::ConnectionError::TimedOut)) | Err(_) => return Err(unreachable),
            Ok(Err(err)) => return Err(self.handshake_failure(relay, err)),
        };
        let joined = tokio::time::timeout_at(
            deadline,
            handshake(&conn, &self.config, &self.options, ticket),
        )
        .await
        .unwrap_or(Err(JoinError::NoAnswer {
            relay,
            after: timeout,
        }));
        match joined {
            Ok(joined) => Ok((conn, joined)),
            Err(err) => {
                conn.close(0u32.into(), b"join failed");
                Err(err)
            }
        }
    }

    /// What a failed QUIC/TLS handshake means: a TLS alert raised by this client's pin
    /// check is a pin mismatch, with the certificate the relay presented.
    fn handshake_failure(&self, relay: SocketAddr, err: quinn::ConnectionError) -> JoinError {
        let tls_alert = matches!(
            &err,
            quinn::ConnectionError::TransportError(e)
                if (0x100..0x200).contains(&u64::from(e.code))
        );
        if let (true, Trust::Pinned(pinned), Some(presented)) =
            (tls_alert, &self.config.trust, self.refused.last())
        {
            return JoinError::PinMismatch {
                relay,
                pinned: *pinned,
                presented,
            };
        }
        JoinError::Connection(ConnectionError(err))
    }
}

/// Open the control stream, send `Join`, read the answer.
async fn handshake(
    conn: &quinn::Connection,
    config: &ClientConfig,
    options: &JoinConfig,
    ticket: String,
) -> Result<Joined, JoinError> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(ConnectionError)?;
    let join = ControlMessage::Join {
        ticket,
        client_name: config.client_name.clone(),
        client_version: env!("CARGO_PKG_VERSION").to_owned(),
        options: JoinOptions {
            auto_subscribe: options.auto_subscribe,
            room: options.room.clone(),
        },
    };
    let mut buf = BytesMut::new();
    join.encode_framed(&mut buf)
        .map_err(ProtocolError::JoinMessage)?;
    if send.write_all(&buf).await.is_err() {
        return Err(refusal_or_lost(conn));
    }
    let mut deframer = Deframer::new(MAX_CONTROL_LEN);
    let answer = match link::read_control(&mut recv, &mut deframer).await {
        Ok(Some(message)) => message,
        Ok(None) | Err(link::ReadControlError::Stream) => return Err(refusal_or_lost(conn)),
        Err(link::ReadControlError::Malformed(error)) => return Err(error.into()),
    };
    match answer {
        ControlMessage::Joined {
            member,
            roster,
            limits,
        } => Ok(Joined {
            member,
            roster,
            limits,
            control_send: send,
            control_recv: recv,
            deframer,
        }),
        ControlMessage::Error { code, message } => Err(JoinError::Refused { code, message }),
        ControlMessage::Redirect { address } => match address.parse::<SocketAddr>() {
            Ok(to) => Err(JoinError::Redirected { to }),
            Err(_) => {
                Err(ProtocolError::Unexpected("redirect to an address that does not parse").into())
            }
        },
        other => Err(ProtocolError::Unexpected(link::message_name(&other)).into()),
    }
}

/// The join failed on the transport: the relay's close code says why, if it closed.
fn refusal_or_lost(conn: &quinn::Connection) -> JoinError {
    match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(close)) => {
            match ErrorCode::from_close_code(close.error_code.into_inner()) {
                Some(code) => JoinError::Refused {
                    code,
                    message: String::from_utf8_lossy(&close.reason).into_owned(),
                },
                None => JoinError::Connection(ConnectionError(
                    quinn::ConnectionError::ApplicationClosed(close),
                )),
            }
        }
        Some(err) => JoinError::Connection(ConnectionError(err)),
        None => ProtocolError::NoAnswer.into(),
    }
}

/// How a room's SFrame keys are managed, chosen at join.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum KeyMode {
    /// Keys derived from a room secret the application hands every member out of band.
    RoomSecret(RoomSecret),
    /// Keys from an MLS group the members run through the relay (RFC 9605 section 5.2).
    Mls(crate::mls::MlsConfig),
}

/// State shared by the room handle, its tracks and the connection driver.
pub(crate) struct Shared {
    pub(crate) config: Arc<ClientConfig>,
    /// Sealing and opening state; it outlives any one connection so that counters never
    /// repeat across reconnects.
    pub(crate) keys: Keys,
    /// The sending session of [`DangerousRoom::send_frame_as`], made on first use.
    pub(crate) dangerous_sealer: Mutex<Option<TrackSealer>>,
    pub(crate) link: watch::Sender<LinkState>,
    pub(crate) control: mpsc::Sender<ControlMessage>,
    pub(crate) session: Mutex<Session>,
    /// This member's published tracks, to re-announce after a reconnect.
    pub(crate) tracks: Mutex<HashMap<TrackId, MediaKind>>,
    /// The application's subscription choices by (user, track), restored when member ids
    /// change (a rejoin) and applied to a user who comes back. Bounded by
    /// [`ClientConfig::max_remote_tracks`].
    pub(crate) subscriptions: Mutex<HashMap<(String, TrackId), bool>>,
    /// When the current ticket was announced and how long it lives (from `Joined` or
    /// `TicketRefreshed`); the refresh task watches it.
    pub(crate) ticket_lifetime: watch::Sender<Option<(tokio::time::Instant, Duration)>>,
    pub(crate) stats: Counters,
    /// Per track and per connection quality.
    pub(crate) quality: Tracker,
    pub(crate) leave: Notify,
    /// The flush requests of the reliable data tracks' writers: before `Leave`, each sends
    /// what was queued, finishes its stream and waits until the relay holds it.
    pub(crate) data_flush: Mutex<HashMap<TrackId, mpsc::Sender<oneshot::Sender<()>>>>,
    /// Where fresh tickets come from (rejoin, refresh).
    pub(crate) tickets: Arc<dyn TicketSource>,
    /// Tickets asked for so far (the first join was number 0).
    pub(crate) ticket_requests: AtomicU32,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn session(&self) -> MutexGuard<'_, Session> {
        self.session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Deliver every reliable data message queued so far: each data track's writer sends
    /// its queue, finishes its stream and waits for the relay to acknowledge all of it.
    /// Returns when every writer is done (the caller bounds the wait).
    pub(crate) async fn flush_data_tracks(&self) {
        let writers: Vec<_> = self
            .data_flush
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .cloned()
            .collect();
        let mut done = Vec::with_capacity(writers.len());
        for writer in writers {
            let (tx, rx) = oneshot::channel();
            if writer.send(tx).await.is_ok() {
                done.push(rx);
            }
        }
        // A writer that ended meanwhile drops its answer: nothing left to wait for.
        futures::future::join_all(done).await;
    }

    pub(crate) fn tracks(&self) -> MutexGuard<'_, HashMap<TrackId, MediaKind>> {
        self.tracks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current connection, if the session is up.
    pub(crate) fn current_link(&self) -> Option<Link> {
        match &*self.link.borrow() {
            LinkState::Up(link) => Some(link.clone()),
            LinkState::Down | LinkState::Ended => None,
        }
    }

    /// Whether the connection is down and the client reconnecting.
    pub(crate) fn is_down(&self) -> bool {
        matches!(*self.link.borrow(), LinkState::Down)
    }

    /// The frame limit in force with the relay's announced `limits`.
    pub(crate) fn frame_limit(&self, limits: &SessionLimits) -> usize {
        (limits.max_frame_len as usize).min(self.config.max_frame_len)
    }

    /// The relay announced a ticket lifetime (join, rejoin or refresh).
    pub(crate) fn set_ticket_lifetime(&self, expires_in_secs: u64) {
        self.ticket_lifetime.send_replace(Some((
            tokio::time::Instant::now(),
            Duration::from_secs(expires_in_secs),
        )));
    }

    fn subscriptions(&self) -> MutexGuard<'_, HashMap<(String, TrackId), bool>> {
        self.subscriptions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Remember the application's choice for `member`'s `track` by the member's user id.
    fn remember_subscription(&self, member: MemberId, track: TrackId, subscribed: bool) {
        let Some(user) = self
            .session()
            .members()
            .into_iter()
            .find(|m| m.id == member)
            .map(|m| m.user)
        else {
            return;
        };
        let mut choices = self.subscriptions();
        let key = (user, track);
        if !choices.contains_key(&key) && choices.len() >= self.config.max_remote_tracks {
            tracing::warn!("subscription choices full, this one is not restored on rejoin");
            return;
        }
        choices.insert(key, subscribed);
    }

    /// The `Subscribe`/`Unsubscribe` messages that restore the application's choices for
    /// `members` (under their current ids).
    pub(crate) fn subscription_messages(&self, members: &[Member]) -> Vec<ControlMessage> {
        let choices = self.subscriptions();
        if choices.is_empty() {
            return Vec::new();
        }
        let mut messages = Vec::new();
        for member in members {
            for ((user, track), subscribed) in choices.iter() {
                if *user != member.user {
                    continue;
                }
                let (member, track) = (member.id, *track);
                messages.push(if *subscribed {
                    ControlMessage::Subscribe { member, track }
                } else {
                    ControlMessage::Unsubscribe { member, track }
                });
            }
        }
        messages
    }

    /// The counters and call quality now; `advance` starts a new rate interval.
    pub(crate) fn stats_snapshot(&self, advance: bool) -> RoomStats {
        let link = self.current_link();
        let quality = {
            let session = self.session();
            self.quality.snapshot(
                link.as_ref().map(|link| &link.conn),
                |id| session.user_of(id),
                advance,
            )
        };
        RoomStats {
            quality,
            ..self.stats.snapshot()
        }
    }

    pub(crate) fn is_ended(&self) -> bool {
        matches!(*self.link.borrow(), LinkState::Ended)
    }

    pub(crate) async fn send_control(&self, message: ControlMessage) -> Result<(), PublishError> {
        if self.is_ended() {
            return Err(PublishError::Closed);
        }
        if self.is_down() {
            // Member ids change on rejoin: what matters (published tracks, subscription
            // choices) is restored from this client's state once it is back.
            return Ok(());
        }
        self.control
            .send(message)
            .await
            .map_err(|_| PublishError::Closed)
    }
}

/// A joined room. Cheap to clone; every clone is the same session.
///
/// Frames published through its tracks are sealed before they leave the process; frames
/// from other members arrive, opened, on the [`Events`] returned with it. Dropping the
/// last clone leaves the room, as [`leave`](Self::leave) does without waiting.
#[derive(Clone)]
pub struct Room {
    pub(crate) shared: Arc<Shared>,
    _guard: Arc<LeaveOnDrop>,
}

/// Leaves the room when the last [`Room`] clone is dropped (tracks and the driver hold
/// the shared state, not this).
struct LeaveOnDrop(Arc<Shared>);

impl Drop for LeaveOnDrop {
    fn drop(&mut self) {
        self.0.leave.notify_one();
    }
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room")
            .field("member", &self.member_id())
            .finish_non_exhaustive()
    }
}

impl Room {
    /// MLS mode: the current epoch (`None` before this member is in the group, and in the
    /// room-secret mode).
    pub fn mls_epoch(&self) -> Option<u64> {
        self.shared.keys.mls().and_then(|mls| mls.epoch())
    }

    /// MLS mode: the group's members, each with the user id its credential names and
    /// whether a member of the room has that user id (empty in the room-secret mode).
    pub fn mls_members(&self) -> Vec<sealroom_mls::CheckedMember> {
        self.shared
            .keys
            .mls()
            .map(|mls| mls.members())
            .unwrap_or_default()
    }

    /// This member's id, the `sender` of every envelope it publishes. The relay may assign
    /// a new one on a reconnect ([`Event::Recovered`](crate::Event::Recovered)).
    pub fn member_id(&self) -> MemberId {
        self.shared.session().me()
    }

    /// The other members currently in the room.
    pub fn members(&self) -> Vec<Member> {
        self.shared.session().members()
    }

    /// The user id of member `member`: one in the room, or one of the last
    /// [`max_roster`](crate::ClientConfig::max_roster) members that left during this
    /// session. A member's last frames travel on streams and datagrams of their own and can
    /// arrive after its [`Event::MemberLeft`](crate::Event::MemberLeft), so name a frame's
    /// sender with this rather than with [`Room::members`]. `None` for a member this client
    /// never knew (and after a reconnect, which starts a new session, for the old one's).
    pub fn user_of(&self, member: MemberId) -> Option<String> {
        self.shared.session().user_of(member)
    }

    /// The limits the relay announced for this session.
    pub fn limits(&self) -> SessionLimits {
        self.shared.session().limits()
    }

    /// Counters of what this session sent and received, and how the call is going
    /// ([`RoomStats::quality`]): the same as the periodic
    /// [`Event::Stats`](crate::Event::Stats), on demand. Its rates cover the time since
    /// the last periodic report (or, with reports off, since the previous call).
    pub fn stats(&self) -> RoomStats {
        let advance = self.shared.config.stats_interval.is_none();
        self.shared.stats_snapshot(advance)
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.is_ended()
    }

    async fn announce(&self, track: TrackId, kind: MediaKind) -> Result<(), PublishError> {
        {
            let mut tracks = self.shared.tracks();
            if tracks.contains_key(&track) {
                return Err(PublishError::TrackInUse(track));
            }
            tracks.insert(track, kind);
        }
        let member = self.member_id();
        let announced = self
            .shared
            .send_control(ControlMessage::TrackPublished {
                member,
                track: TrackInfo { track, kind },
            })
            .await;
        if announced.is_err() {
            self.shared.tracks().remove(&track);
        }
        announced
    }

    /// Start publishing an audio track.
    ///
    /// # Errors
    /// [`PublishError::TrackInUse`] when the id is taken, [`PublishError::Closed`] after the
    /// session ended. A relay that refuses (no audio grant) answers with
    /// [`Event::Refused`](crate::Event::Refused).
    pub async fn publish_audio(&self, track: TrackId) -> Result<AudioTrack, PublishError> {
        self.announce(track, MediaKind::Audio).await?;
        Ok(track::spawn_audio(self.shared.clone(), track))
    }

    /// Start publishing a video track; see [`publish_audio`](Self::publish_audio).
    ///
    /// # Errors
    /// As [`publish_audio`](Self::publish_audio).
    pub async fn publish_video(&self, track: TrackId) -> Result<VideoTrack, PublishError> {
        self.announce(track, MediaKind::Video).await?;
        Ok(track::spawn_video(self.shared.clone(), track))
    }

    /// Start publishing a data track (messages, reliable or unreliable); see
    /// [`publish_audio`](Self::publish_audio).
    ///
    /// # Errors
    /// As [`publish_audio`](Self::publish_audio).
    pub async fn publish_data(&self, track: TrackId) -> Result<DataTrack, PublishError> {
        self.announce(track, MediaKind::Data).await?;
        Ok(track::spawn_data(self.shared.clone(), track))
    }

    /// Receive `member`'s `track` again after [`unsubscribe`](Self::unsubscribe).
    ///
    /// The choice is remembered by the member's user id and track, and restored after a
    /// reconnect (when member ids change) and when the user comes back.
    ///
    /// # Errors
    /// [`PublishError::Closed`] after the session ended.
    pub async fn subscribe(&self, member: MemberId, track: TrackId) -> Result<(), PublishError> {
        self.shared.remember_subscription(member, track, true);
        self.shared
            .send_control(ControlMessage::Subscribe { member, track })
            .await
    }

    /// Stop receiving `member`'s `track`; remembered like [`subscribe`](Self::subscribe).
    ///
    /// # Errors
    /// [`PublishError::Closed`] after the session ended.
    pub async fn unsubscribe(&self, member: MemberId, track: TrackId) -> Result<(), PublishError> {
        self.shared.remember_subscription(member, track, false);
        self.shared
            .send_control(ControlMessage::Unsubscribe { member, track })
            .await
    }

    /// Ask `member` for a keyframe on its video `track`.
    ///
    /// # Errors
    /// [`PublishError::Closed`] after the session ended.
    pub async fn request_keyframe(
        &self,
        member: MemberId,
        track: TrackId,
    ) -> Result<(), PublishError> {
        self.shared
            .send_control(ControlMessage::KeyframeRequest { member, track })
            .await
    }

    /// Ask the ticket source for a fresh ticket ([`TicketReason::Refresh`]) and send it to
    /// the relay to extend the session. The answer arrives as
    /// [`Event::TicketRefreshed`](crate::Event::TicketRefreshed) or
    /// [`Event::Refused`](crate::Event::Refused).
    ///
    /// # Errors
    /// [`RefreshError`] when the ticket source fails or the session has ended.
    pub async fn refresh_ticket(&self) -> Result<(), RefreshError> {
        let attempt = self.shared.ticket_requests.fetch_add(1, Ordering::Relaxed);
        let ticket = self
            .shared
            .tickets
            .ticket(TicketRequest::new(TicketReason::Refresh, attempt))
            .await?;
        self.shared
            .send_control(ControlMessage::RefreshTicket { ticket })
            .await
            .map_err(|_| RefreshError::Closed)
    }

    /// Leave the room and wait until the session has ended. The event stream ends with
    /// [`DisconnectReason::Left`](crate::DisconnectReason::Left).
    ///
    /// Reliable data messages sent before `leave` reach the relay first: each data track
    /// sends what it has queued, finishes its stream and waits for the relay to acknowledge
    /// it before `Leave` goes out (all within [`ClientConfig::leave_timeout`]). Audio and
    /// video still queued are not waited for.
    ///
    /// [`ClientConfig::leave_timeout`]: crate::ClientConfig::leave_timeout
    pub async fn leave(&self) {
        let mut link = self.shared.link.subscribe();
        self.shared.leave.notify_one();
        // The driver ends the session; waiting on the link state does not depend on the
        // application draining its events.
        let _ = link
            .wait_for(|state| matches!(state, LinkState::Ended))
            .await;
    }

    /// Options that break the guarantees of this API, for tests of the relay's defences.
    pub fn dangerous(&self) -> DangerousRoom<'_> {
        DangerousRoom { room: self }
    }
}

/// Risky operations on a room, behind a clearly named door (like rustls' `dangerous()`).
#[derive(Debug)]
pub struct DangerousRoom<'a> {
    room: &'a Room,
}

impl DangerousRoom<'_> {
    /// Seal `payload` under this member's key with `envelope` exactly as given (its
    /// `sender` is not replaced by this member's id) and send it on a datagram when it
    /// fits, otherwise on a fresh stream. An honest relay drops frames whose sender is not
    /// the connection's member.
    ///
    /// # Errors
    /// [`PublishError`] when sealing or sending fails.
    pub async fn send_frame_as(
        &self,
        envelope: Envelope,
        payload: &[u8],
    ) -> Result<(), PublishError> {
        let shared = &self.room.shared;
        let link = shared.current_link().ok_or(PublishError::Closed)?;
        let frame = {
            let mut sealer = shared
                .dangerous_sealer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            sealer
                .get_or_insert_with(|| shared.keys.sealer())
                .seal(&envelope, payload)?
        };
        let flags = envelope.flags;
        let datagram = envelope.kind == MediaKind::Audio
            || (envelope.kind == MediaKind::Data && flags.contains(Flags::UNRELIABLE));
        let track = (envelope.track, envelope.kind);
        if datagram && link.fits_datagram(frame.len()) {
            link.send_datagram(shared, track, frame)
        } else {
            link.send_on_new_stream(shared, track, frame, 0).await
        }
    }
}
