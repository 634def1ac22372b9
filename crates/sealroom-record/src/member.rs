//! The blind member: a room session that receives sealed frames and never opens them.
//!
//! It joins with a ticket carrying the `record` grant, so the relay sends it every track of
//! every member, present and future, and refuses anything it would publish. It hands out
//! each frame exactly as received (the envelope and the SFrame ciphertext, with its
//! arrival time) together with the room's membership events, and it reconnects on its own
//! when the connection is lost or the relay restarts. It needs no room secret and this
//! crate links no content cryptography (`scripts/check-relay-deps` checks it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use quinn::{Connection, RecvStream};
use sealroom_frame::control::{ControlMessage, ErrorCode, JoinOptions, MemberInfo};
use sealroom_frame::envelope::{Envelope, Frame, MemberId};
use sealroom_frame::stream::Deframer;
use sealroom_frame::transport::{StreamCode, StreamType};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use sealroom_tls::{TlsSetupError, Trust, quic_client_config};

/// Largest chunk read from a stream at once.
const READ_CHUNK: usize = 64 * 1024;

/// Where tickets for the recorder come from: called for the first join, for every rejoin
/// and to refresh the session before its ticket expires.
pub type TicketSource = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// How a blind member joins and keeps its session.
#[derive(Clone)]
pub struct BlindConfig {
    /// The relay's UDP address.
    pub relay: SocketAddr,
    /// The name the relay's certificate is checked against ([`Trust::SystemRoots`]).
    pub server_name: String,
    /// How the relay's certificate is checked.
    pub trust: Trust,
    /// Tickets with the `record` grant.
    pub tickets: TicketSource,
    /// The room the recorder means to enter (a ticket for another room is refused).
    pub room: Option<String>,
    /// Events held for the application; when full, stream reads wait (the relay then
    /// holds back or drops stale video groups) and datagram frames are dropped and counted
    /// ([`BlindStats::frames_dropped`]).
    pub event_queue: usize,
    /// Largest frame accepted on a stream, in bytes; the limit the relay announces in
    /// `Joined` applies when it is smaller.
    pub max_frame_len: usize,
    /// First delay before a reconnect; it doubles up to [`BlindConfig::reconnect_max`].
    pub reconnect_first: Duration,
    /// Longest delay between reconnect attempts.
    pub reconnect_max: Duration,
}

impl std::fmt::Debug for BlindConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlindConfig")
            .field("relay", &self.relay)
            .field("server_name", &self.server_name)
            .field("room", &self.room)
            .field("event_queue", &self.event_queue)
            .finish_non_exhaustive()
    }
}

impl BlindConfig {
    /// A recorder of the room `ticket` names, on `relay`, that always uses `ticket`.
    pub fn new(relay: SocketAddr, trust: Trust, ticket: impl Into<String>) -> Self {
        let ticket = ticket.into();
        Self {
            relay,
            server_name: String::from("localhost"),
            trust,
            tickets: Arc::new(move || Some(ticket.clone())),
            room: None,
            event_queue: 4096,
            max_frame_len: 16 * 1024 * 1024,
            reconnect_first: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
        }
    }

    /// Take tickets from `source` (for rejoins and refreshes of a long recording).
    #[must_use]
    pub fn ticket_source(mut self, source: TicketSource) -> Self {
        self.tickets = source;
        self
    }

    /// Check the relay's certificate against this server name.
    #[must_use]
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = name.into();
        self
    }
}

/// A frame as the recorder received it: never opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedFrame {
    /// When it arrived, microseconds since the Unix epoch on the recorder's clock.
    pub arrival_us: u64,
    /// The envelope (readable by anyone on the path, authenticated by members).
    pub envelope: Envelope,
    /// The whole frame as it crossed the wire: the 32-byte envelope header and the SFrame
    /// ciphertext.
    pub frame: Bytes,
}

/// What the blind member tells its owner, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlindEvent {
    /// Joined (again, after a reconnect: `rejoin`) with this member id and roster.
    Joined {
        /// The recorder's member id on this connection.
        member: MemberId,
        /// The members present (the recorder itself included, as the relay lists it).
        roster: Vec<MemberInfo>,
        /// Whether this is a rejoin after a lost connection.
        rejoin: bool,
        /// Arrival time, microseconds since the Unix epoch.
        at_us: u64,
    },
    /// A membership or track event from the relay (`MemberJoined`, `MemberLeft`,
    /// `TrackPublished`, `TrackUnpublished`, `RecorderPresent`).
    Room {
        /// The message.
        message: ControlMessage,
        /// Arrival time, microseconds since the Unix epoch.
        at_us: u64,
    },
    /// A sealed frame.
    Frame(SealedFrame),
    /// The connection was lost; the member reconnects.
    ConnectionLost {
        /// What happened.
        detail: String,
        /// When, microseconds since the Unix epoch.
        at_us: u64,
    },
    /// The session is over for good (left, or refused for a reason a retry cannot fix).
    Ended(BlindEnd),
}

/// Why a blind session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlindEnd {
    /// [`BlindMember::leave`] was called.
    #[error("left the room")]
    Left,
    /// The relay refused or removed the recorder with a code a retry cannot fix.
    #[error("the relay refused the recorder: {code:?}: {message}")]
    Refused {
        /// The reason.
        code: ErrorCode,
        /// The relay's explanation.
        message: String,
    },
    /// The ticket source gave no ticket.
    #[error("no ticket for the recorder: the ticket source gave none")]
    NoTicket,
}

/// Why the first join failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlindError {
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// No local UDP socket could be bound.
    #[error("could not bind a local udp socket: {0}")]
    Bind(std::io::Error),
    /// The relay could not be reached or the handshake failed.
    #[error(
        "could not connect to the relay at {addr}: {detail}; check the address and the certificate pin"
    )]
    Connect {
        /// The relay's address.
        addr: SocketAddr,
        /// What failed.
        detail: String,
    },
    /// The relay refused the join.
    #[error("the relay refused the recorder's join: {code:?}: {message}")]
    Refused {
        /// The reason.
        code: ErrorCode,
        /// The relay's explanation.
        message: String,
    },
    /// The relay broke the protocol during the join.
    #[error("the relay broke the protocol during the join: {0}")]
    Protocol(String),
    /// The ticket source gave no ticket.
    #[error("no ticket for the recorder: the ticket source gave none")]
    NoTicket,
    /// The connection was lost during the join.
    #[error("the connection to the relay was lost during the join: {0}")]
    Lost(String),
    /// The relay's cluster sent the join to another node (`Redirect`) more than
    /// [`MAX_REDIRECTS`] times in a row.
    #[error("the relay redirected the join to {to}, after too many redirects; retry later")]
    Redirected {
        /// Where the last redirect pointed.
        to: SocketAddr,
    },
}

/// Redirects followed for one join, as the client does.
pub const MAX_REDIRECTS: usize = 3;

/// Counters of a blind member.
#[derive(Debug, Default)]
pub struct BlindStats {
    /// Frames handed to the owner.
    pub frames_received: AtomicU64,
    /// Datagram frames dropped because the event queue was full.
    pub frames_dropped: AtomicU64,
    /// Bytes of media that did not decode as an envelope frame (dropped).
    pub malformed_frames: AtomicU64,
    /// Successful rejoins after a lost connection.
    pub rejoins: AtomicU64,
}

/// A running blind member; dropping it leaves the room.
#[derive(Debug)]
pub struct BlindMember {
    leave: watch::Sender<bool>,
    stats: Arc<BlindStats>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The events of a blind member.
#[derive(Debug)]
pub struct BlindEvents {
    rx: mpsc::Receiver<BlindEvent>,
}

impl BlindEvents {
    /// The next event; `None` after [`BlindEvent::Ended`].
    pub async fn recv(&mut self) -> Option<BlindEvent> {
        self.rx.recv().await
    }
}

impl BlindMember {
    /// Join the room and start receiving; the first join is attempted once and its
    /// failure returned, later connections are retried with backoff.
    ///
    /// # Errors
    /// [`BlindError`] when the first join fails.
    pub async fn join(config: BlindConfig) -> Result<(Self, BlindEvents), BlindError> {
        let (client, _) = quic_client_config(&config.trust)?;
        let mut quic = quinn::ClientConfig::new(Arc::new(client));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(2)));
        transport.max_idle_timeout(quinn::IdleTimeout::try_from(Duration::from_secs(10)).ok());
        quic.transport_config(Arc::new(transport));
        let bind = if config.relay.is_ipv6() {
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
        };
        let mut endpoint = quinn::Endpoint::client(bind).map_err(BlindError::Bind)?;
        endpoint.set_default_client_config(quic);
        let (tx, rx) = mpsc::channel(config.event_queue.max(16));
        let stats = Arc::new(BlindStats::default());
        let joined = connect_and_join(&endpoint, &config).await?;
        let (leave, leave_rx) = watch::channel(false);
        let run = Runner {
            endpoint,
            config,
            tx,
            stats: Arc::clone(&stats),
            leave: leave_rx,
        };
        let task = tokio::spawn(run.run(joined));
        Ok((
            Self {
                leave,
                stats,
                task: Some(task),
            },
            BlindEvents { rx },
        ))
    }

    /// The member's counters.
    pub fn stats(&self) -> &BlindStats {
        &self.stats
    }

    /// Ask the member to leave without waiting: the events still in flight are handed
    /// out, then [`BlindEvent::Ended`] with [`BlindEnd::Left`].
    pub fn request_leave(&self) {
        let _ = self.leave.send(true);
    }

    /// Leave the room and wait until the session is over; the events end with
    /// [`BlindEnd::Left`]. Keep draining the events meanwhile.
    pub async fn leave(mut self) {
        let _ = self.leave.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for BlindMember {
    fn drop(&mut self) {
        let _ = self.leave.send(true);
    }
}

/// A joined connection.
struct Joined {
    conn: Connection,
    control: RecvStream,
    send: quinn::SendStream,
    deframer: Deframer,
    member: MemberId,
    roster: Vec<MemberInfo>,
    expires_in_secs: u64,
    max_frame_len: usize,
}

/// Microseconds since the Unix epoch now.
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Why one connection attempt failed, and whether another may succeed.
fn retryable(err: &BlindError) -> bool {
    match err {
        BlindError::Refused { code, .. } => code.is_recoverable(),
        BlindError::Connect { .. }
        | BlindError::Protocol(_)
        | BlindError::Bind(_)
        | BlindError::Lost(_)
        | BlindError::Redirected { .. } => true,
        BlindError::Tls(_) | BlindError::NoTicket => false,
    }
}

/// Join at the configured relay, following its cluster's redirects to other nodes (at most
/// [`MAX_REDIRECTS`] in a row, with the same ticket source).
async fn connect_and_join(
    endpoint: &quinn::Endpoint,
    config: &BlindConfig,
) -> Result<Joined, BlindError> {
    let mut relay = config.relay;
    let mut hops = 0;
    loop {
        match join_at(endpoint, config, relay).await? {
            Attempt::Joined(joined) => return Ok(*joined),
            Attempt::Redirected(to) if hops < MAX_REDIRECTS => {
                tracing::info!(from = %relay, %to, "the recorder's join was redirected");
                hops += 1;
                relay = to;
            }
            Attempt::Redirected(to) => return Err(BlindError::Redirected { to }),
        }
    }
}

/// What one join at one node gave.
enum Attempt {
    Joined(Box<Joined>),
    Redirected(SocketAddr),
}

async fn join_at(
    endpoint: &quinn::Endpoint,
    config: &BlindConfig,
    relay: SocketAddr,
) -> Result<Attempt, BlindError> {
    let ticket = (config.tickets)().ok_or(BlindError::NoTicket)?;
    let connect_err = |detail: String| BlindError::Connect {
        addr: relay,
        detail,
    };
    let conn = endpoint
        .connect(relay, &config.server_name)
        .map_err(|e| connect_err(e.to_string()))?
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    let join = ControlMessage::Join {
        ticket,
        client_name: String::from("sealroom-record"),
        client_version: String::from(env!("CARGO_PKG_VERSION")),
        options: JoinOptions {
            auto_subscribe: true,
            room: config.room.clone(),
        },
    };
    let mut buf = BytesMut::new();
    join.encode_framed(&mut buf)
        .map_err(|e| BlindError::Protocol(e.to_string()))?;
    send.write_all(&buf)
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    let mut deframer = Deframer::new(sealroom_frame::control::MAX_CONTROL_LEN);
    match read_control(&mut recv, &mut deframer).await {
        Ok(Some(ControlMessage::Joined {
            member,
            roster,
            limits,
        })) => Ok(Attempt::Joined(Box::new(Joined {
            conn,
            control: recv,
            send,
            deframer,
            member,
            roster,
            expires_in_secs: limits.ticket_expires_in_secs,
            max_frame_len: usize::try_from(limits.max_frame_len)
                .unwrap_or(usize::MAX)
                .min(config.max_frame_len),
        }))),
        Ok(Some(ControlMessage::Redirect { address })) => {
            conn.close(0u32.into(), b"redirected");
            address.parse().map(Attempt::Redirected).map_err(|_| {
                BlindError::Protocol(format!("redirect to {address:?}, not a socket address"))
            })
        }
        Ok(Some(ControlMessage::Error { code, message })) => {
            Err(BlindError::Refused { code, message })
        }
        Ok(Some(other)) => Err(BlindError::Protocol(format!(
            "expected joined, got {other:?}"
        ))),
        Ok(None) => Err(match conn.close_reason() {
            Some(reason) => connect_err(reason.to_string()),
            None => BlindError::Protocol(String::from("the control stream ended before joined")),
        }),
        Err(err) => Err(err),
    }
}

async fn read_control(
    recv: &mut RecvStream,
    deframer: &mut Deframer,
) -> Result<Option<ControlMessage>, BlindError> {
    loop {
        match deframer.next_frame() {
            Ok(Some(bytes)) => {
                return ControlMessage::decode(&bytes)
                    .map(Some)
                    .map_err(|e| BlindError::Protocol(e.to_string()));
            }
            Ok(None) => {}
            Err(e) => return Err(BlindError::Protocol(e.to_string())),
        }
        match recv.read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => deframer.push(chunk.bytes),
            Ok(None) => return Ok(None),
            Err(e) => return Err(BlindError::Lost(e.to_string())),
        }
    }
}

/// The session's driver: runs each connection, reconnects, ends on leave or refusal.
struct Runner {
    endpoint: quinn::Endpoint,
    config: BlindConfig,
    tx: mpsc::Sender<BlindEvent>,
    stats: Arc<BlindStats>,
    leave: watch::Receiver<bool>,
}

/// How one connection ended.
enum LinkEnd {
    Leave,
    Lost(String),
    Final(BlindEnd),
}

impl Runner {
    async fn run(mut self, first: Joined) {
        let mut joined = Some(first);
        let mut rejoin = false;
        let end = loop {
            let Some(link) = joined.take() else {
                match self.reconnect().await {
                    Ok(link) => {
                        joined = Some(link);
                        self.stats.rejoins.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(end) => break end,
                }
            };
            let _ = self
                .tx
                .send(BlindEvent::Joined {
                    member: link.member,
                    roster: link.roster.clone(),
                    rejoin,
                    at_us: now_us(),
                })
                .await;
            rejoin = true;
            match self.drive(link).await {
                LinkEnd::Leave => break BlindEnd::Left,
                LinkEnd::Final(end) => break end,
                LinkEnd::Lost(detail) => {
                    tracing::warn!(%detail, "recorder lost its connection; reconnecting");
                    let _ = self
                        .tx
                        .send(BlindEvent::ConnectionLost {
                            detail,
                            at_us: now_us(),
                        })
                        .await;
                }
            }
        };
        let _ = self.tx.send(BlindEvent::Ended(end)).await;
        self.endpoint.close(0u32.into(), b"");
    }

    /// Try to join again with backoff until it works, the owner leaves or a refusal is
    /// final.
    async fn reconnect(&mut self) -> Result<Joined, BlindEnd> {
        let mut delay = self.config.reconnect_first;
        loop {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = self.leave.changed() => return Err(BlindEnd::Left),
            }
            match connect_and_join(&self.endpoint, &self.config).await {
                Ok(joined) => return Ok(joined),
                Err(BlindError::Refused { code, message }) if !code.is_recoverable() => {
                    return Err(BlindEnd::Refused { code, message });
                }
                Err(BlindError::NoTicket) => return Err(BlindEnd::NoTicket),
                Err(err) => {
                    debug_assert!(retryable(&err));
                    tracing::debug!(error = %err, "recorder rejoin failed; retrying");
                }
            }
            delay = (delay * 2).min(self.config.reconnect_max);
        }
    }

    /// Run one joined connection until it ends.
    async fn drive(&mut self, link: Joined) -> LinkEnd {
        let Joined {
            conn,
            control,
            mut send,
            deframer,
            expires_in_secs,
            max_frame_len,
            ..
        } = link;
        let mut tasks = JoinSet::new();
        let (end_tx, mut end_rx) = mpsc::channel::<LinkEnd>(4);
        tasks.spawn(control_reader(
            control,
            deframer,
            self.tx.clone(),
            end_tx.clone(),
        ));
        tasks.spawn(datagram_reader(
            conn.clone(),
            self.tx.clone(),
            Arc::clone(&self.stats),
        ));
        let mut refresh_in = refresh_delay(expires_in_secs);
        let end = loop {
            tokio::select! {
                _ = self.leave.changed() => {
                    let mut buf = BytesMut::new();
                    if ControlMessage::Leave.encode_framed(&mut buf).is_ok() {
                        let _ = send.write_all(&buf).await;
                    }
                    conn.close(0u32.into(), b"left");
                    break LinkEnd::Leave;
                }
                Some(end) = end_rx.recv() => {
                    conn.close(0u32.into(), b"");
                    break end;
                }
                reason = conn.closed() => {
                    break closed_end(&reason);
                }
                // Each media stream gets a reader in this link's own set, so that ending the
                // link stops (and waits for) every reader of it.
                accepted = conn.accept_uni() => match accepted {
                    Ok(recv) => {
                        tasks.spawn(stream_reader(
                            recv,
                            self.tx.clone(),
                            Arc::clone(&self.stats),
                            max_frame_len,
                        ));
                    }
                    Err(reason) => break closed_end(&reason),
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = tokio::time::sleep(refresh_in) => {
                    refresh_in = Duration::from_secs(60);
                    if let Some(ticket) = (self.config.tickets)() {
                        let mut buf = BytesMut::new();
                        let refresh = ControlMessage::RefreshTicket { ticket };
                        if refresh.encode_framed(&mut buf).is_ok() {
                            let _ = send.write_all(&buf).await;
                        }
                    }
                }
            }
        };
        // Wait for the readers to stop, not only ask them to: a reader being polled on
        // another worker at this moment could otherwise hand over a frame of this link
        // after the `ConnectionLost` or `Joined` that follows, under an old member id.
        tasks.shutdown().await;
        end
    }
}

/// Refresh at four fifths of the ticket's remaining life.
fn refresh_delay(expires_in_secs: u64) -> Duration {
    Duration::from_secs(expires_in_secs.saturating_mul(4) / 5).max(Duration::from_secs(1))
}

fn closed_end(reason: &quinn::ConnectionError) -> LinkEnd {
    if let quinn::ConnectionError::ApplicationClosed(close) = reason
        && let Some(code) = ErrorCode::from_close_code(close.error_code.into_inner())
        && !code.is_recoverable()
    {
        return LinkEnd::Final(BlindEnd::Refused {
            code,
            message: String::from_utf8_lossy(&close.reason).into_owned(),
        });
    }
    LinkEnd::Lost(reason.to_string())
}

async fn control_reader(
    mut recv: RecvStream,
    mut deframer: Deframer,
    tx: mpsc::Sender<BlindEvent>,
    end: mpsc::Sender<LinkEnd>,
) {
    loop {
        let message = match read_control(&mut recv, &mut deframer).await {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(BlindError::Protocol(detail)) => {
                let _ = end
                    .send(LinkEnd::Lost(format!("bad control message: {detail}")))
                    .await;
                return;
            }
            Err(_) => return,
        };
        match message {
            ControlMessage::MemberJoined(_)
            | ControlMessage::MemberLeft { .. }
            | ControlMessage::TrackPublished { .. }
            | ControlMessage::TrackUnpublished { .. }
            | ControlMessage::RecorderPresent { .. } => {
                let at_us = now_us();
                if tx.send(BlindEvent::Room { message, at_us }).await.is_err() {
                    return;
                }
            }
            ControlMessage::Error { code, message } if code.ends_session() => {
                let end_reason = if code.is_recoverable() {
                    LinkEnd::Lost(format!("{code:?}: {message}"))
                } else {
                    LinkEnd::Final(BlindEnd::Refused { code, message })
                };
                let _ = end.send(end_reason).await;
                return;
            }
            ControlMessage::Error { code, message } => {
                tracing::warn!(?code, %message, "the relay refused a request of the recorder");
            }
            ControlMessage::GoAway { code, .. } => {
                let _ = end
                    .send(LinkEnd::Lost(format!("relay going away: {code:?}")))
                    .await;
                return;
            }
            // The recorder is no member of an MLS group: it keeps the sealed frames only.
            ControlMessage::KeyframeRequest { .. }
            | ControlMessage::TicketRefreshed { .. }
            | ControlMessage::MlsState { .. }
            | ControlMessage::MlsCommitted { .. }
            | ControlMessage::MlsAccepted { .. }
            | ControlMessage::MlsRefused { .. }
            | ControlMessage::MlsGroupInfoPart { .. } => {}
            // A redirect answers a join only; after it, the relay breaks the protocol.
            ControlMessage::Redirect { .. } => {
                let _ = end
                    .send(LinkEnd::Lost(String::from(
                        "the relay sent a redirect after the join",
                    )))
                    .await;
                return;
            }
            ControlMessage::Join { .. }
            | ControlMessage::MlsSync
            | ControlMessage::MlsPublish { .. }
            | ControlMessage::MlsCommit { .. }
            | ControlMessage::Joined { .. }
            | ControlMessage::Subscribe { .. }
            | ControlMessage::Unsubscribe { .. }
            | ControlMessage::RefreshTicket { .. }
            | ControlMessage::Leave => {
                let _ = end
                    .send(LinkEnd::Lost(String::from(
                        "the relay sent a client message",
                    )))
                    .await;
                return;
            }
        }
    }
}

fn refused() -> quinn::VarInt {
    quinn::VarInt::from_u32(StreamCode::Refused.code())
}

fn decode(bytes: Bytes, stats: &BlindStats) -> Option<SealedFrame> {
    let arrival_us = now_us();
    match Frame::decode(&bytes) {
        Ok(frame) => Some(SealedFrame {
            arrival_us,
            envelope: frame.envelope,
            frame: bytes,
        }),
        Err(_) => {
            stats.malformed_frames.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

async fn datagram_reader(conn: Connection, tx: mpsc::Sender<BlindEvent>, stats: Arc<BlindStats>) {
    while let Ok(bytes) = conn.read_datagram().await {
        let Some(frame) = decode(bytes, &stats) else {
            continue;
        };
        match tx.try_send(BlindEvent::Frame(frame)) {
            Ok(()) => {
                stats.frames_received.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

async fn stream_reader(
    mut recv: RecvStream,
    tx: mpsc::Sender<BlindEvent>,
    stats: Arc<BlindStats>,
    max_frame_len: usize,
) {
    let mut deframer = Deframer::new(max_frame_len);
    let mut typed = false;
    loop {
        let chunk = match recv.read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => chunk.bytes,
            Ok(None) | Err(_) => return,
        };
        let mut chunk = chunk;
        if !typed {
            if chunk.is_empty() {
                continue;
            }
            if chunk[0] != StreamType::Media.byte() {
                let _ = recv.stop(refused());
                return;
            }
            chunk.advance(1);
            typed = true;
        }
        deframer.push(chunk);
        loop {
            match deframer.next_frame() {
                Ok(Some(bytes)) => {
                    let Some(frame) = decode(bytes, &stats) else {
                        continue;
                    };
                    if tx.send(BlindEvent::Frame(frame)).await.is_err() {
                        return;
                    }
                    stats.frames_received.fetch_add(1, Ordering::Relaxed);
                }
                Ok(None) => break,
                Err(_) => {
                    stats.malformed_frames.fetch_add(1, Ordering::Relaxed);
                    let _ = recv.stop(refused());
                    return;
                }
            }
        }
    }
}
