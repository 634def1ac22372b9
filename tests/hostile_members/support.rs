//! A relay on loopback, honest members from `sealroom-client`, raw quinn members that
//! break the rules, and the memory figures the tests report.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use quinn::crypto::rustls::QuicClientConfig;
use sealroom_client::{
    Client, ClientConfig, Event, Events, MemberId, ReceivedFrame, Room, RoomSecret, Trust,
};
use sealroom_frame::control::{ControlMessage, ErrorCode, JoinOptions};
use sealroom_frame::envelope::{Envelope, Frame};
use sealroom_frame::stream::Deframer;
use sealroom_relay::{AppConfig, Grants, Limits, Relay, RelayConfig, RelayStats, TicketClaims};

/// How long a wait may take before the test fails instead of hanging.
pub(crate) const SAFETY: Duration = Duration::from_secs(30);

/// The app the test relays serve.
pub(crate) const APP: &str = "app-h";
const KID: &str = "h1";
const SECRET: &[u8] = b"hostile-members test secret";

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A relay on 127.0.0.1:0 serving [`APP`] within `limits`.
pub(crate) async fn relay(limits: Limits) -> anyhow::Result<Relay> {
    let config = RelayConfig::default()
        .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .limits(limits)
        .app(AppConfig::new(APP, KID, SECRET.to_vec()));
    Relay::start(config).await.context("relay start")
}

/// A ticket for `user` in `room`, valid from now for `ttl_secs`.
pub(crate) fn ticket(user: &str, room: &str, grants: Grants, ttl_secs: u64) -> String {
    let claims = TicketClaims::new(APP, user, room, unix_now(), ttl_secs, grants);
    sealroom_relay::mint(&claims, KID, SECRET).expect("mint")
}

/// Wait until `cond` holds; fails after [`SAFETY`] with `what` and `detail()`.
pub(crate) async fn until(
    what: &str,
    mut cond: impl FnMut() -> bool,
    detail: impl Fn() -> String,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + SAFETY;
    loop {
        if cond() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("never happened: {what}; {}", detail());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Wait until the relay's stats satisfy `cond`.
pub(crate) async fn until_stats(
    relay: &Relay,
    what: &str,
    cond: impl Fn(&RelayStats) -> bool,
) -> anyhow::Result<()> {
    until(
        what,
        || cond(&relay.stats()),
        || format!("{:#?}", relay.stats()),
    )
    .await
}

/// Every event a member received, in order.
#[derive(Default)]
pub(crate) struct EventLog {
    events: Mutex<Vec<Event>>,
}

impl EventLog {
    /// A copy of the events so far.
    pub(crate) fn snapshot(&self) -> Vec<Event> {
        self.events.lock().expect("log").clone()
    }

    /// How many events satisfy `pick`.
    pub(crate) fn count(&self, pick: impl Fn(&Event) -> bool) -> usize {
        self.events
            .lock()
            .expect("log")
            .iter()
            .filter(|e| pick(e))
            .count()
    }

    /// The opened frames from `sender`.
    pub(crate) fn frames_from(&self, sender: MemberId) -> Vec<ReceivedFrame> {
        self.events
            .lock()
            .expect("log")
            .iter()
            .filter_map(|event| match event {
                Event::Frame(frame) if frame.sender == sender => Some(frame.clone()),
                _ => None,
            })
            .collect()
    }
}

/// A member joined through `sealroom-client`, whose events a task collects.
pub(crate) struct Member {
    /// Keeps the member's endpoint open.
    pub(crate) _client: Client,
    pub(crate) room: Room,
    pub(crate) log: Arc<EventLog>,
    pub(crate) id: MemberId,
}

impl Member {
    /// Join `room` as `user` with a ticket valid for an hour.
    pub(crate) async fn join(
        relay: &Relay,
        user: &str,
        room: &str,
        secret: &RoomSecret,
    ) -> anyhow::Result<Self> {
        let ticket = ticket(user, room, Grants::all(), 3600);
        let (client, room, events) = join_client(relay, ticket, secret, |c| c).await?;
        Ok(Self::collecting(client, room, events))
    }

    /// A joined member whose events a task drains into a log.
    pub(crate) fn collecting(client: Client, room: Room, mut events: Events) -> Self {
        let log = Arc::new(EventLog::default());
        let sink = Arc::clone(&log);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                sink.events.lock().expect("log").push(event);
            }
        });
        let id = room.member_id();
        Self {
            _client: client,
            room,
            log,
            id,
        }
    }
}

/// Connect a fresh client (configured by `configure`) and join with `tickets`.
pub(crate) async fn join_client(
    relay: &Relay,
    tickets: impl sealroom_client::TicketSource,
    secret: &RoomSecret,
    configure: impl FnOnce(ClientConfig) -> ClientConfig,
) -> anyhow::Result<(Client, Room, Events)> {
    let config = configure(ClientConfig::new(Trust::Pinned(relay.cert_sha256())));
    let client = Client::new(config).context("client")?;
    let (room, events) = client
        .join(relay.local_addr(), "localhost", tickets, secret)
        .await
        .context("join")?;
    Ok((client, room, events))
}

/// Wait until `member`'s client has handed `frames` frames to QUIC (or given up on them).
///
/// A video track skips frames still queued behind a newer keyframe (they would arrive
/// late); a test that wants every frame delivered waits for this before each keyframe.
pub(crate) async fn flushed(member: &Member, frames: u64) -> anyhow::Result<()> {
    until(
        "the client sent what was queued",
        || {
            let stats = member.room.stats();
            stats.frames_sent + stats.frames_not_sent >= frames
        },
        || format!("{:?}", member.room.stats()),
    )
    .await
}

/// A raw quinn connection to the relay that speaks the wire format directly, for sending
/// what the client library never would.
pub(crate) struct Raw {
    pub(crate) conn: quinn::Connection,
    /// Keeps the endpoint open.
    pub(crate) _endpoint: quinn::Endpoint,
    control: quinn::SendStream,
    /// Control messages the relay sent, in order.
    pub(crate) received: Arc<Mutex<Vec<ControlMessage>>>,
    /// The member id from `Joined` (0 before).
    pub(crate) member: MemberId,
}

impl Raw {
    /// Connect and open the control stream; nothing is sent yet.
    pub(crate) async fn connect(relay: &Relay) -> anyhow::Result<Self> {
        Self::connect_from(relay, Ipv4Addr::LOCALHOST).await
    }

    /// Like [`Raw::connect`], from a socket bound to `ip` (any of 127.0.0.0/8 on Linux).
    pub(crate) async fn connect_from(relay: &Relay, ip: Ipv4Addr) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from(relay.cert_der()))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![sealroom_frame::ALPN.to_vec()];
        let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
        let mut transport = quinn::TransportConfig::default();
        transport.max_concurrent_uni_streams(1000u32.into());
        config.transport_config(Arc::new(transport));
        let mut endpoint = quinn::Endpoint::client(SocketAddr::from((ip, 0)))?;
        endpoint.set_default_client_config(config);
        let conn = endpoint
            .connect(relay.local_addr(), "localhost")?
            .await
            .context("handshake")?;
        let (control, recv) = conn.open_bi().await?;
        let received = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(read_control(recv, Arc::clone(&received)));
        // Whatever media the relay sends is read and thrown away, so this member is never
        // a slow receiver.
        tokio::spawn(discard_media(conn.clone()));
        Ok(Self {
            conn,
            _endpoint: endpoint,
            control,
            received,
            member: 0,
        })
    }

    /// Connect and join with `ticket`.
    pub(crate) async fn join(relay: &Relay, ticket: &str) -> anyhow::Result<Self> {
        let mut raw = Self::connect(relay).await?;
        raw.send_control(&join_message(ticket)).await?;
        until(
            "the raw member's Joined",
            || raw.first_answer().is_some(),
            || format!("{:?}", raw.messages()),
        )
        .await?;
        match raw.first_answer() {
            Some(ControlMessage::Joined { member, .. }) => raw.member = member,
            other => bail!("expected Joined, got {other:?}"),
        }
        Ok(raw)
    }

    fn first_answer(&self) -> Option<ControlMessage> {
        self.received.lock().expect("received").first().cloned()
    }

    /// The control messages received so far.
    pub(crate) fn messages(&self) -> Vec<ControlMessage> {
        self.received.lock().expect("received").clone()
    }

    /// How many `Error` messages with `code` arrived.
    pub(crate) fn errors(&self, code: ErrorCode) -> usize {
        self.messages()
            .iter()
            .filter(|m| matches!(m, ControlMessage::Error { code: c, .. } if *c == code))
            .count()
    }

    /// Send a control message, framed.
    pub(crate) async fn send_control(&mut self, message: &ControlMessage) -> anyhow::Result<()> {
        let mut buf = BytesMut::new();
        message.encode_framed(&mut buf)?;
        self.control.write_all(&buf).await?;
        Ok(())
    }

    /// Write raw bytes on the control stream.
    pub(crate) async fn send_control_bytes(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.control.write_all(bytes).await?;
        Ok(())
    }

    /// Wait for the connection to close; its application close code (`None`: not an
    /// application close).
    pub(crate) async fn closed(&self) -> anyhow::Result<Option<u64>> {
        let closed = tokio::time::timeout(SAFETY, self.conn.closed())
            .await
            .context("the relay never closed the connection")?;
        Ok(match closed {
            quinn::ConnectionError::ApplicationClosed(close) => Some(close.error_code.into_inner()),
            _ => None,
        })
    }
}

/// A `Join` for `ticket`.
pub(crate) fn join_message(ticket: &str) -> ControlMessage {
    ControlMessage::Join {
        ticket: ticket.to_owned(),
        client_name: "hostile-test".to_owned(),
        client_version: "0".to_owned(),
        options: JoinOptions {
            auto_subscribe: true,
            room: None,
        },
    }
}

/// Encode an envelope frame with `payload`.
pub(crate) fn frame(envelope: Envelope, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    Frame {
        envelope,
        payload: Bytes::copy_from_slice(payload),
    }
    .encode(&mut buf)
    .expect("encodable");
    buf.freeze()
}

async fn read_control(mut recv: quinn::RecvStream, into: Arc<Mutex<Vec<ControlMessage>>>) {
    let mut deframer = Deframer::new(sealroom_frame::control::MAX_CONTROL_LEN);
    while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
        deframer.push(chunk.bytes);
        while let Ok(Some(bytes)) = deframer.next_frame() {
            if let Ok(message) = ControlMessage::decode(&bytes) {
                into.lock().expect("received").push(message);
            }
        }
    }
}

async fn discard_media(conn: quinn::Connection) {
    let datagrams = {
        let conn = conn.clone();
        async move { while conn.read_datagram().await.is_ok() {} }
    };
    let streams = async move {
        while let Ok(mut recv) = conn.accept_uni().await {
            tokio::spawn(async move {
                while let Ok(Some(_)) = recv.read_chunk(64 * 1024, true).await {}
            });
        }
    };
    tokio::join!(datagrams, streams);
}

/// The bytes the relay may hold queued towards one connection within `limits`, by its
/// own accounting: a full datagram queue (frames of at most `max_datagram` bytes), all
/// video, all reliable data, and single-frame audio streams of at most `max_frame_len`.
pub(crate) fn connection_queue_bound(limits: &Limits, max_datagram: usize) -> usize {
    limits.datagram_queue_len * max_datagram
        + limits.video_queue_bytes
        + limits.reliable_queue_bytes
        + limits.max_audio_streams * limits.max_frame_len
}

/// This process's resident set now and at its peak, in KiB, from `/proc/self/status`
/// (`None` where it cannot be read). The process holds the relay and every client.
pub(crate) fn process_memory_kib() -> (Option<u64>, Option<u64>) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A small deterministic generator for garbage (xorshift64*).
pub(crate) struct Garbage(u64);

impl Garbage {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `len` bytes of noise.
    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
