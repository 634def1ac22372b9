//! A raw quinn client speaking the sealroom wire format, with fake payloads (no crypto), for
//! testing the relay alone: every event it sees goes into a channel, read in order.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Buf, Bytes, BytesMut};
use sealroom_frame::control::{ControlMessage, ErrorCode, MemberInfo};
use sealroom_frame::envelope::{Envelope, Flags, Frame, MediaKind, MemberId};
use sealroom_frame::stream::{Deframer, write_frame};
use sealroom_relay::{Grants, Limits, Relay, RelayConfig};
use tokio::sync::mpsc;

use crate::TestApp;
pub use crate::unix_now;

pub const APP_A: &str = "app-a";
pub const APP_B: &str = "app-b";
pub const SECRET_A: &[u8] = b"secret-of-app-a";
pub const SECRET_B: &[u8] = b"secret-of-app-b";
const A: TestApp = TestApp {
    app: APP_A,
    kid: "k1",
    secret: SECRET_A,
};
const B: TestApp = TestApp {
    app: APP_B,
    kid: "k1",
    secret: SECRET_B,
};

/// How long a test waits for something that should happen; generous, never asserted on.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a test waits to be fairly sure something does not happen.
pub const QUIET: Duration = Duration::from_millis(300);

pub fn config(limits: Limits) -> RelayConfig {
    RelayConfig::default()
        .listen("127.0.0.1:0".parse().expect("addr"))
        .app(A.config().secret("k2", b"rotated-secret-a".to_vec()))
        .app(B.config())
        .limits(limits)
}

pub async fn relay() -> Relay {
    relay_with(Limits::default().unlimited_rates()).await
}

pub async fn relay_with(limits: Limits) -> Relay {
    Relay::start(config(limits)).await.expect("relay starts")
}

pub fn ticket(app: &str, user: &str, room: &str) -> String {
    ticket_with(app, user, room, Grants::all())
}

pub fn ticket_with(app: &str, user: &str, room: &str, grants: Grants) -> String {
    let app = if app == APP_B { B } else { A };
    app.ticket_at(user, room, grants, unix_now() - 5, 600)
}

/// How a test client behaves.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    /// Whether it reads the unidirectional streams the relay opens (a stalled receiver
    /// does not).
    pub read_streams: bool,
    /// Unidirectional streams the relay may open towards it at once.
    pub max_uni_streams: u32,
    /// Its QUIC receive windows (stream, connection).
    pub windows: Option<(u32, u32)>,
    /// Whether it keeps reading its control stream after the first answer.
    pub read_control: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            read_streams: true,
            max_uni_streams: 1000,
            windows: None,
            read_control: true,
        }
    }
}

impl ClientOptions {
    /// A receiver that never reads media streams and gives the relay little room.
    pub fn stalled() -> Self {
        Self {
            read_streams: false,
            max_uni_streams: 4,
            windows: Some((16 * 1024, 64 * 1024)),
            read_control: true,
        }
    }

    /// A client that stops reading its control stream after `Joined`.
    pub fn deaf() -> Self {
        Self {
            read_control: false,
            ..Self::stalled()
        }
    }
}

fn client_endpoint(relay: &Relay, options: ClientOptions) -> anyhow::Result<quinn::Endpoint> {
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_uni_streams(options.max_uni_streams.into());
    if let Some((stream, connection)) = options.windows {
        transport.stream_receive_window(stream.into());
        transport.receive_window(connection.into());
    }
    let config = crate::tls::pinned_client_config(&relay.cert_der(), transport)?;
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// What a test client observed.
#[derive(Debug, Clone)]
pub enum Event {
    Control(ControlMessage),
    Frame(Frame),
    /// The connection closed with this application code (0 = normal), or `None` when it
    /// closed some other way.
    Closed(Option<u64>),
}

/// A raw client connection.
pub struct Client {
    pub conn: quinn::Connection,
    pub endpoint: quinn::Endpoint,
    control: quinn::SendStream,
    events: mpsc::UnboundedReceiver<Event>,
    /// Control messages skipped while waiting for frames, and frames skipped while waiting
    /// for control messages, in arrival order.
    skipped_control: std::collections::VecDeque<ControlMessage>,
    skipped_frames: std::collections::VecDeque<Frame>,
    pub member: MemberId,
    pub roster: Vec<MemberInfo>,
}

impl Client {
    /// Connect and send `Join`; returns the client and the first control answer.
    pub async fn connect(relay: &Relay, ticket: &str) -> anyhow::Result<(Self, ControlMessage)> {
        Self::connect_with(relay, ticket, ClientOptions::default()).await
    }

    /// Connect with `options` and send `Join`; returns the client and the first answer.
    pub async fn connect_with(
        relay: &Relay,
        ticket: &str,
        options: ClientOptions,
    ) -> anyhow::Result<(Self, ControlMessage)> {
        let endpoint = client_endpoint(relay, options)?;
        let conn = endpoint
            .connect(relay.local_addr(), "localhost")?
            .await
            .context("handshake")?;
        let (mut send, recv) = conn.open_bi().await?;
        let join = crate::raw::join_as(ticket, "relay-test");
        let mut buf = BytesMut::new();
        join.encode_framed(&mut buf)?;
        send.write_all(&buf).await?;
        let (tx, mut events) = mpsc::unbounded_channel();
        let control = tokio::spawn(read_control(
            recv,
            tx.clone(),
            conn.clone(),
            options.read_control,
        ));
        tokio::spawn(read_datagrams(conn.clone(), tx.clone(), control));
        if options.read_streams {
            tokio::spawn(read_streams(conn.clone(), tx.clone()));
        }
        let first = loop {
            match tokio::time::timeout(WAIT, events.recv()).await? {
                Some(Event::Control(message)) => break message,
                Some(Event::Frame(_)) => continue,
                Some(Event::Closed(code)) => bail!("closed before an answer: {code:?}"),
                None => bail!("event channel closed"),
            }
        };
        let (member, roster) = match &first {
            ControlMessage::Joined { member, roster, .. } => (*member, roster.clone()),
            _ => (0, Vec::new()),
        };
        Ok((
            Self {
                conn,
                endpoint,
                control: send,
                events,
                skipped_control: Default::default(),
                skipped_frames: Default::default(),
                member,
                roster,
            },
            first,
        ))
    }

    /// Connect and expect `Joined`.
    pub async fn join(relay: &Relay, ticket: &str) -> anyhow::Result<Self> {
        let (client, first) = Self::connect(relay, ticket).await?;
        match first {
            ControlMessage::Joined { .. } => Ok(client),
            other => bail!("expected Joined, got {other:?}"),
        }
    }

    /// Connect with `options` and expect `Joined`.
    pub async fn join_with(
        relay: &Relay,
        ticket: &str,
        options: ClientOptions,
    ) -> anyhow::Result<Self> {
        let (client, first) = Self::connect_with(relay, ticket, options).await?;
        match first {
            ControlMessage::Joined { .. } => Ok(client),
            other => bail!("expected Joined, got {other:?}"),
        }
    }

    /// Connect and expect a refusal: returns the error code and the close code.
    pub async fn refused(relay: &Relay, ticket: &str) -> anyhow::Result<(ErrorCode, Option<u64>)> {
        let (mut client, first) = Self::connect(relay, ticket).await?;
        let ControlMessage::Error { code, .. } = first else {
            bail!("expected a refusal, got {first:?}");
        };
        let close = client.closed().await?;
        Ok((code, close))
    }

    pub async fn send_control(&mut self, message: &ControlMessage) -> anyhow::Result<()> {
        let mut buf = BytesMut::new();
        message.encode_framed(&mut buf)?;
        self.control.write_all(&buf).await?;
        Ok(())
    }

    pub fn envelope(&self, kind: MediaKind, track: u32, group: u32, seq: u32) -> Envelope {
        Envelope {
            kind,
            flags: Flags::empty(),
            sender: self.member,
            track,
            group,
            seq,
            timestamp_us: 0,
        }
    }

    pub fn encode(envelope: Envelope, payload: &[u8]) -> Bytes {
        crate::raw::frame(envelope, payload)
    }

    /// Send one frame as a datagram.
    pub fn send_datagram(&self, envelope: Envelope, payload: &[u8]) -> anyhow::Result<()> {
        self.conn.send_datagram(Self::encode(envelope, payload))?;
        Ok(())
    }

    /// Send frames on one new unidirectional media stream, then finish it.
    pub async fn send_stream(&self, frames: &[(Envelope, Vec<u8>)]) -> anyhow::Result<()> {
        let mut send = self.conn.open_uni().await?;
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[sealroom_frame::StreamType::Media.byte()]);
        for (envelope, payload) in frames {
            write_frame(&Self::encode(*envelope, payload), &mut buf);
        }
        send.write_all(&buf).await?;
        send.finish()?;
        Ok(())
    }

    /// Open a media stream and keep it (for a long-lived reliable data stream).
    pub async fn open_media_stream(&self) -> anyhow::Result<quinn::SendStream> {
        let mut send = self.conn.open_uni().await?;
        send.write_all(&[sealroom_frame::StreamType::Media.byte()])
            .await?;
        Ok(send)
    }

    pub async fn write_frame(
        send: &mut quinn::SendStream,
        envelope: Envelope,
        payload: &[u8],
    ) -> anyhow::Result<()> {
        let mut buf = BytesMut::new();
        write_frame(&Self::encode(envelope, payload), &mut buf);
        send.write_all(&buf).await?;
        Ok(())
    }

    /// The next event, or an error after [`WAIT`].
    pub async fn next(&mut self) -> anyhow::Result<Event> {
        match tokio::time::timeout(WAIT, self.events.recv()).await {
            Ok(Some(event)) => Ok(event),
            Ok(None) => bail!("event channel closed"),
            Err(_) => bail!("no event within {WAIT:?}"),
        }
    }

    /// The next control message, skipping frames.
    pub async fn next_control(&mut self) -> anyhow::Result<ControlMessage> {
        if let Some(message) = self.skipped_control.pop_front() {
            return Ok(message);
        }
        loop {
            match self.next().await? {
                Event::Control(message) => return Ok(message),
                Event::Frame(frame) => self.skipped_frames.push_back(frame),
                Event::Closed(code) => bail!("closed ({code:?}) while waiting for control"),
            }
        }
    }

    /// Wait for a control message matching `pred`, skipping others.
    pub async fn expect_control(
        &mut self,
        mut pred: impl FnMut(&ControlMessage) -> bool,
    ) -> anyhow::Result<ControlMessage> {
        loop {
            let message = self.next_control().await?;
            if pred(&message) {
                return Ok(message);
            }
        }
    }

    /// The next frame, skipping control messages.
    pub async fn next_frame(&mut self) -> anyhow::Result<Frame> {
        if let Some(frame) = self.skipped_frames.pop_front() {
            return Ok(frame);
        }
        loop {
            match self.next().await? {
                Event::Frame(frame) => return Ok(frame),
                Event::Control(message) => self.skipped_control.push_back(message),
                Event::Closed(code) => bail!("closed ({code:?}) while waiting for a frame"),
            }
        }
    }

    /// Collect `n` frames.
    pub async fn frames(&mut self, n: usize) -> anyhow::Result<Vec<Frame>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.push(self.next_frame().await?);
        }
        Ok(out)
    }

    /// Frames that arrive within [`QUIET`] (to check that nothing does).
    pub async fn frames_within_quiet(&mut self) -> Vec<Frame> {
        let mut out: Vec<Frame> = self.skipped_frames.drain(..).collect();
        let deadline = tokio::time::Instant::now() + QUIET;
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            match event {
                Event::Frame(frame) => out.push(frame),
                Event::Control(message) => self.skipped_control.push_back(message),
                Event::Closed(_) => {}
            }
        }
        out
    }

    /// Wait until the connection closes; returns its application close code.
    pub async fn closed(&mut self) -> anyhow::Result<Option<u64>> {
        loop {
            if let Event::Closed(code) = self.next().await? {
                return Ok(code);
            }
        }
    }
}

async fn read_control(
    mut recv: quinn::RecvStream,
    tx: mpsc::UnboundedSender<Event>,
    conn: quinn::Connection,
    keep_reading: bool,
) {
    let mut deframer = Deframer::new(sealroom_frame::control::MAX_CONTROL_LEN);
    while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
        deframer.push(chunk.bytes);
        while let Ok(Some(bytes)) = deframer.next_frame() {
            let Ok(message) = ControlMessage::decode(&bytes) else {
                return;
            };
            if tx.send(Event::Control(message)).is_err() {
                return;
            }
            if !keep_reading {
                // Hold the stream open without reading it, until the connection ends.
                conn.closed().await;
                return;
            }
        }
    }
}

async fn read_datagrams(
    conn: quinn::Connection,
    tx: mpsc::UnboundedSender<Event>,
    control: tokio::task::JoinHandle<()>,
) {
    loop {
        match conn.read_datagram().await {
            Ok(bytes) => {
                if let Ok(frame) = Frame::decode(&bytes) {
                    let _ = tx.send(Event::Frame(frame));
                }
            }
            Err(err) => {
                let code = crate::raw::close_code(&err);
                // Report what the control stream still held (the reason) before the close.
                let _ = tokio::time::timeout(WAIT, control).await;
                let _ = tx.send(Event::Closed(code));
                return;
            }
        }
    }
}

async fn read_streams(conn: quinn::Connection, tx: mpsc::UnboundedSender<Event>) {
    while let Ok(recv) = conn.accept_uni().await {
        tokio::spawn(read_media_stream(recv, tx.clone()));
    }
}

async fn read_media_stream(mut recv: quinn::RecvStream, tx: mpsc::UnboundedSender<Event>) {
    let mut deframer = Deframer::new(16 * 1024 * 1024);
    let mut typed = false;
    while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
        let mut bytes = chunk.bytes;
        if !typed {
            if bytes.is_empty() {
                continue;
            }
            assert_eq!(bytes[0], sealroom_frame::StreamType::Media.byte());
            bytes.advance(1);
            typed = true;
        }
        deframer.push(bytes);
        while let Ok(Some(frame)) = deframer.next_frame() {
            if let Ok(frame) = Frame::decode(&frame) {
                let _ = tx.send(Event::Frame(frame));
            }
        }
    }
}
