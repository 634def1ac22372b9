//! A raw quinn connection that speaks the wire format directly, for sending what the
//! client library never would: a member that breaks the rules.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use sealroom_frame::control::{ControlMessage, ErrorCode, JoinOptions};
use sealroom_frame::envelope::{Envelope, Frame, MemberId};
use sealroom_frame::stream::Deframer;
use sealroom_relay::Relay;

use crate::SAFETY;

/// The control messages the relay sent to a raw member, in order; wakes waiters.
#[derive(Default)]
struct ControlLog {
    messages: Mutex<Vec<ControlMessage>>,
    added: tokio::sync::Notify,
}

/// A raw member of a room.
pub struct Raw {
    /// The connection, for datagrams and streams the test writes itself.
    pub conn: quinn::Connection,
    /// Keeps the endpoint open.
    pub endpoint: quinn::Endpoint,
    control: quinn::SendStream,
    received: Arc<ControlLog>,
    /// The member id from `Joined` (0 before).
    pub member: MemberId,
}

impl Raw {
    /// Connect and open the control stream; nothing is sent yet.
    pub async fn connect(relay: &Relay) -> anyhow::Result<Self> {
        Self::connect_from(relay, Ipv4Addr::LOCALHOST).await
    }

    /// Like [`Raw::connect`], from a socket bound to `ip` (any of 127.0.0.0/8 on Linux).
    pub async fn connect_from(relay: &Relay, ip: Ipv4Addr) -> anyhow::Result<Self> {
        Self::connect_to(&relay.cert_der(), relay.local_addr(), ip).await
    }

    /// Connect to `relay` through `addr` (an [`crate::impair::ImpairProxy`] in front of it)
    /// and join with `ticket`.
    pub async fn join_via(relay: &Relay, addr: SocketAddr, ticket: &str) -> anyhow::Result<Self> {
        Self::join_at(&relay.cert_der(), addr, ticket).await
    }

    /// Join with `ticket` at `addr`, trusting the certificate `cert_der` (a relay that
    /// runs on another thread's runtime, where a `&Relay` cannot go).
    pub async fn join_at(cert_der: &[u8], addr: SocketAddr, ticket: &str) -> anyhow::Result<Self> {
        let mut raw = Self::connect_to(cert_der, addr, Ipv4Addr::LOCALHOST).await?;
        raw.send_control(&join_message(ticket)).await?;
        match raw.first_answer().await? {
            ControlMessage::Joined { member, .. } => raw.member = member,
            other => bail!("expected Joined, got {other:?}"),
        }
        Ok(raw)
    }

    async fn connect_to(cert_der: &[u8], addr: SocketAddr, ip: Ipv4Addr) -> anyhow::Result<Self> {
        let mut transport = quinn::TransportConfig::default();
        transport.max_concurrent_uni_streams(1000u32.into());
        let config = crate::tls::pinned_client_config(cert_der, transport)?;
        let mut endpoint = quinn::Endpoint::client(SocketAddr::from((ip, 0)))?;
        endpoint.set_default_client_config(config);
        let conn = endpoint
            .connect(addr, "localhost")?
            .await
            .context("handshake")?;
        let (control, recv) = conn.open_bi().await?;
        let received = Arc::new(ControlLog::default());
        tokio::spawn(read_control(recv, Arc::clone(&received)));
        // Whatever media the relay sends is read and thrown away, so this member is never
        // a slow receiver.
        tokio::spawn(discard_media(conn.clone()));
        Ok(Self {
            conn,
            endpoint,
            control,
            received,
            member: 0,
        })
    }

    /// Connect and join with `ticket`.
    pub async fn join(relay: &Relay, ticket: &str) -> anyhow::Result<Self> {
        let mut raw = Self::connect(relay).await?;
        raw.send_control(&join_message(ticket)).await?;
        let first = raw.first_answer().await?;
        match first {
            ControlMessage::Joined { member, .. } => raw.member = member,
            other => bail!("expected Joined, got {other:?}"),
        }
        Ok(raw)
    }

    /// The relay's first control message, waited for.
    async fn first_answer(&self) -> anyhow::Result<ControlMessage> {
        let deadline = tokio::time::Instant::now() + SAFETY;
        tokio::time::timeout_at(deadline, self.more_than(0))
            .await
            .context("never saw the raw member's first answer")?;
        self.messages_since(0)
            .into_iter()
            .next()
            .context("the first answer went missing")
    }

    /// Wait until more than `seen` control messages have arrived (no deadline: wrap it in a
    /// timeout where one is needed).
    pub async fn more_than(&self, seen: usize) {
        loop {
            // Registered before the check, so a message added in between still wakes it.
            let added = self.received.added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            if self.received.messages.lock().expect("received").len() > seen {
                return;
            }
            added.await;
        }
    }

    /// The control messages received so far.
    pub fn messages(&self) -> Vec<ControlMessage> {
        self.messages_since(0)
    }

    /// The control messages received after the first `seen` (only those are copied).
    pub fn messages_since(&self, seen: usize) -> Vec<ControlMessage> {
        let messages = self.received.messages.lock().expect("received");
        messages[seen.min(messages.len())..].to_vec()
    }

    /// How many `Error` messages with `code` arrived.
    pub fn errors(&self, code: ErrorCode) -> usize {
        self.messages()
            .iter()
            .filter(|m| matches!(m, ControlMessage::Error { code: c, .. } if *c == code))
            .count()
    }

    /// Send a control message, framed.
    pub async fn send_control(&mut self, message: &ControlMessage) -> anyhow::Result<()> {
        let mut buf = BytesMut::new();
        message.encode_framed(&mut buf)?;
        self.control.write_all(&buf).await?;
        Ok(())
    }

    /// Write raw bytes on the control stream.
    pub async fn send_control_bytes(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.control.write_all(bytes).await?;
        Ok(())
    }

    /// Wait for the connection to close; its application close code (`None`: not an
    /// application close).
    pub async fn closed(&self) -> anyhow::Result<Option<u64>> {
        let closed = tokio::time::timeout(SAFETY, self.conn.closed())
            .await
            .context("the relay never closed the connection")?;
        Ok(close_code(&closed))
    }
}

/// The application close code of `error` (`None`: not an application close).
pub fn close_code(error: &quinn::ConnectionError) -> Option<u64> {
    match error {
        quinn::ConnectionError::ApplicationClosed(close) => Some(close.error_code.into_inner()),
        _ => None,
    }
}

/// A `Join` for `ticket`, naming the client `client_name`.
pub fn join_as(ticket: &str, client_name: &str) -> ControlMessage {
    ControlMessage::Join {
        ticket: ticket.to_owned(),
        client_name: client_name.to_owned(),
        client_version: "0".to_owned(),
        options: JoinOptions {
            auto_subscribe: true,
            room: None,
        },
    }
}

/// A `Join` for `ticket`.
pub fn join_message(ticket: &str) -> ControlMessage {
    join_as(ticket, "hostile-test")
}

/// Encode an envelope frame with `payload`.
pub fn frame(envelope: Envelope, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    Frame {
        envelope,
        payload: Bytes::copy_from_slice(payload),
    }
    .encode(&mut buf)
    .expect("encodable");
    buf.freeze()
}

async fn read_control(mut recv: quinn::RecvStream, into: Arc<ControlLog>) {
    let mut deframer = Deframer::new(sealroom_frame::control::MAX_CONTROL_LEN);
    while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
        deframer.push(chunk.bytes);
        while let Ok(Some(bytes)) = deframer.next_frame() {
            if let Ok(message) = ControlMessage::decode(&bytes) {
                into.messages.lock().expect("received").push(message);
                into.added.notify_waiters();
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
