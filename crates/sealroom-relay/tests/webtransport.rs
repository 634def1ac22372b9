//! Browsers' path into a room: WebTransport sessions (ALPN `h3`) on the relay's one QUIC
//! port, driven here by web-transport-quinn's client the way a page drives
//! `new WebTransport(url, { serverCertificateHashes })`, beside native members.

use sealroom_test_support::wire as common;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::BytesMut;
use common::{APP_A, Client, WAIT, relay, relay_with, ticket};
use sealroom_frame::control::{ControlMessage, ErrorCode};
use sealroom_frame::envelope::{Envelope, Flags, Frame, MediaKind, MemberId};
use sealroom_frame::stream::{Deframer, write_frame};
use sealroom_relay::{DropReason, Grants, Limits, Relay, WEB_PATH};
use sealroom_test_support::{mint_ticket, unix_now};
use tokio::sync::mpsc;
use web_transport_quinn::{ClientBuilder, Session};

/// How a frame reached the browser member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Datagram,
    Stream,
}

#[derive(Debug)]
enum Event {
    Control(ControlMessage),
    Frame(Frame, Path),
}

/// A browser-like member: a WebTransport session speaking the sealroom wire format.
struct Web {
    session: Session,
    /// Kept open: finishing the control stream is leaving.
    _control: web_transport_quinn::SendStream,
    events: mpsc::UnboundedReceiver<Event>,
    member: MemberId,
}

fn url(relay: &Relay, path: &str) -> anyhow::Result<url::Url> {
    Ok(format!("https://127.0.0.1:{}{path}", relay.local_addr().port()).parse()?)
}

async fn web_session(relay: &Relay, path: &str) -> anyhow::Result<Session> {
    let client =
        ClientBuilder::new().with_server_certificate_hashes(vec![relay.cert_sha256().to_vec()])?;
    Ok(client.connect(url(relay, path)?).await?)
}

impl Web {
    /// Open a session at [`WEB_PATH`] and send `Join` with `ticket`; returns the member and
    /// the relay's first answer.
    async fn connect(relay: &Relay, ticket: &str) -> anyhow::Result<(Self, ControlMessage)> {
        let session = web_session(relay, WEB_PATH).await?;
        let (mut control, recv) = session.open_bi().await?;
        let mut buf = BytesMut::new();
        sealroom_test_support::raw::join_as(ticket, "web-test").encode_framed(&mut buf)?;
        control.write_all(&buf).await?;
        let (tx, mut events) = mpsc::unbounded_channel();
        tokio::spawn(read_control(recv, tx.clone()));
        tokio::spawn(read_datagrams(session.clone(), tx.clone()));
        tokio::spawn(read_streams(session.clone(), tx));
        let first = loop {
            match tokio::time::timeout(WAIT, events.recv()).await? {
                Some(Event::Control(message)) => break message,
                Some(Event::Frame(..)) => {}
                None => bail!("the session ended before an answer"),
            }
        };
        let member = match &first {
            ControlMessage::Joined { member, .. } => *member,
            _ => 0,
        };
        Ok((
            Self {
                session,
                _control: control,
                events,
                member,
            },
            first,
        ))
    }

    async fn join(relay: &Relay, ticket: &str) -> anyhow::Result<Self> {
        match Self::connect(relay, ticket).await? {
            (web, ControlMessage::Joined { .. }) => Ok(web),
            (_, other) => bail!("expected Joined, got {other:?}"),
        }
    }

    fn envelope(&self, kind: MediaKind, track: u32, group: u32, seq: u32) -> Envelope {
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

    fn send_datagram(&self, envelope: Envelope, payload: &[u8]) -> anyhow::Result<()> {
        self.session
            .send_datagram(sealroom_test_support::raw::frame(envelope, payload))?;
        Ok(())
    }

    /// Frames on one new media stream, then finished.
    async fn send_stream(&self, frames: &[(Envelope, Vec<u8>)]) -> anyhow::Result<()> {
        let mut send = self.session.open_uni().await?;
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[sealroom_frame::StreamType::Media.byte()]);
        for (envelope, payload) in frames {
            write_frame(
                &sealroom_test_support::raw::frame(*envelope, payload),
                &mut buf,
            );
        }
        send.write_all(&buf).await?;
        send.finish()?;
        Ok(())
    }

    async fn next(&mut self) -> anyhow::Result<Event> {
        match tokio::time::timeout(WAIT, self.events.recv()).await {
            Ok(Some(event)) => Ok(event),
            Ok(None) => bail!("the session ended"),
            Err(_) => bail!("nothing within {WAIT:?}"),
        }
    }

    /// The next `n` frames, skipping control messages.
    async fn frames(&mut self, n: usize) -> anyhow::Result<Vec<(Frame, Path)>> {
        let mut out = Vec::new();
        while out.len() < n {
            if let Event::Frame(frame, path) = self.next().await? {
                out.push((frame, path));
            }
        }
        Ok(out)
    }

    /// Wait for a control message matching `pick`, skipping the rest.
    async fn control(
        &mut self,
        pick: impl Fn(&ControlMessage) -> bool,
    ) -> anyhow::Result<ControlMessage> {
        loop {
            if let Event::Control(message) = self.next().await?
                && pick(&message)
            {
                return Ok(message);
            }
        }
    }
}

async fn read_control(mut recv: web_transport_quinn::RecvStream, tx: mpsc::UnboundedSender<Event>) {
    let mut deframer = Deframer::new(sealroom_frame::control::MAX_CONTROL_LEN);
    while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
        deframer.push(chunk.bytes);
        while let Ok(Some(bytes)) = deframer.next_frame() {
            if let Ok(message) = ControlMessage::decode(&bytes) {
                let _ = tx.send(Event::Control(message));
            }
        }
    }
}

async fn read_datagrams(session: Session, tx: mpsc::UnboundedSender<Event>) {
    while let Ok(bytes) = session.read_datagram().await {
        if let Ok(frame) = Frame::decode(&bytes) {
            let _ = tx.send(Event::Frame(frame, Path::Datagram));
        }
    }
}

async fn read_streams(session: Session, tx: mpsc::UnboundedSender<Event>) {
    while let Ok(mut recv) = session.accept_uni().await {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut deframer = Deframer::new(1 << 20);
            let mut typed = false;
            while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
                let mut bytes = chunk.bytes;
                if !typed && !bytes.is_empty() {
                    typed = true;
                    bytes = bytes.slice(1..);
                }
                deframer.push(bytes);
                while let Ok(Some(bytes)) = deframer.next_frame() {
                    if let Ok(frame) = Frame::decode(&bytes) {
                        let _ = tx.send(Event::Frame(frame, Path::Stream));
                    }
                }
            }
        });
    }
}

async fn until(relay: &Relay, what: &str, check: impl Fn(&Relay) -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check(relay) {
        if tokio::time::Instant::now() > deadline {
            bail!("never saw {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_session_joins_the_same_room_as_a_native_member_and_frames_flow_both_ways()
-> anyhow::Result<()> {
    let relay = relay().await;
    let mut native = Client::join(&relay, &ticket(APP_A, "native", "room")).await?;
    let mut web = Web::join(&relay, &ticket(APP_A, "browser", "room")).await?;
    assert_ne!(web.member, native.member);
    let joined = native
        .expect_control(|m| matches!(m, ControlMessage::MemberJoined(_)))
        .await?;
    let ControlMessage::MemberJoined(member) = joined else {
        unreachable!()
    };
    assert_eq!(member.member, web.member);

    // Browser to native: audio as a datagram, a video group and reliable data on streams.
    web.send_datagram(web.envelope(MediaKind::Audio, 1, 0, 0), b"web audio")?;
    let mut key = web.envelope(MediaKind::Video, 2, 7, 0);
    key.flags = Flags::GROUP_START;
    web.send_stream(&[
        (key, b"web keyframe".to_vec()),
        (
            web.envelope(MediaKind::Video, 2, 7, 1),
            b"web delta".to_vec(),
        ),
    ])
    .await?;
    web.send_stream(&[(web.envelope(MediaKind::Data, 3, 0, 0), b"web chat".to_vec())])
        .await?;
    let frames = native.frames(4).await?;
    for payload in [
        &b"web audio"[..],
        b"web keyframe",
        b"web delta",
        b"web chat",
    ] {
        assert!(
            frames
                .iter()
                .any(|f| f.envelope.sender == web.member && f.payload[..] == *payload),
            "{payload:?} did not reach the native member"
        );
    }

    // Native to browser: a small audio frame fits a datagram; one larger than any datagram
    // (WebTransport's budget is a few bytes smaller than QUIC's) comes on a stream.
    native.send_datagram(native.envelope(MediaKind::Audio, 1, 0, 0), b"native audio")?;
    let big = vec![0x5a; 4000];
    native
        .send_stream(&[(native.envelope(MediaKind::Audio, 1, 0, 1), big.clone())])
        .await?;
    native
        .send_stream(&[(
            native.envelope(MediaKind::Video, 2, 1, 0),
            b"native video".to_vec(),
        )])
        .await?;
    let frames = web.frames(3).await?;
    let path_of = |payload: &[u8]| {
        frames
            .iter()
            .find(|(f, _)| f.envelope.sender == native.member && f.payload[..] == *payload)
            .map(|(_, path)| *path)
    };
    assert_eq!(path_of(b"native audio"), Some(Path::Datagram));
    assert_eq!(path_of(&big), Some(Path::Stream));
    assert_eq!(path_of(b"native video"), Some(Path::Stream));
    assert!(web.session.max_datagram_size() < 4000);

    let stats = relay.webtransport_stats();
    assert_eq!(stats.accepted, 1);
    assert!(stats.refused.is_empty(), "{stats:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_session_gets_the_same_typed_refusals_as_a_native_one() -> anyhow::Result<()> {
    let relay = relay().await;
    // A ticket signed with a secret the relay does not know, and one that expired an hour
    // ago: refused with their reasons, and the close code carries each.
    let forged = mint_ticket(
        APP_A,
        "k1",
        b"not the app's secret",
        "mallory",
        "room",
        Grants::all(),
        unix_now(),
        600,
    );
    let expired = mint_ticket(
        APP_A,
        "k1",
        common::SECRET_A,
        "late",
        "room",
        Grants::all(),
        unix_now() - 7200,
        3600,
    );
    for (ticket, reason) in [
        (forged, ErrorCode::BadSignature),
        (expired, ErrorCode::Expired),
    ] {
        let (web, answer) = Web::connect(&relay, &ticket).await?;
        assert!(
            matches!(answer, ControlMessage::Error { code, .. } if code == reason),
            "{answer:?}"
        );
        // Then the connection closes, with the code in HTTP/3's error space and no
        // CLOSE_WEBTRANSPORT_SESSION capsule before it (docs/WEB.md says why). The control
        // stream's `Error` above is what carries the code to a page; web-transport-quinn's
        // client, seeing its CONNECT stream end, may close the connection itself before it
        // records the relay's close, so the code is checked only when it did record it.
        let quic: &quinn::Connection = &web.session;
        let closed = tokio::time::timeout(WAIT, quic.closed()).await?;
        assert!(
            match &closed {
                quinn::ConnectionError::ApplicationClosed(close) => {
                    web_transport_proto::error_from_http3(close.error_code.into_inner())
                        == Some(reason.close_code())
                }
                quinn::ConnectionError::LocallyClosed => true,
                _ => false,
            },
            "{closed:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_frame_from_a_browser_is_refused_and_the_session_goes_on() -> anyhow::Result<()>
{
    let limits = Limits {
        max_frame_len: 4096,
        ..Limits::default().unlimited_rates()
    };
    let relay = relay_with(limits).await;
    let mut native = Client::join(&relay, &ticket(APP_A, "native", "room")).await?;
    let mut web = Web::join(&relay, &ticket(APP_A, "browser", "room")).await?;
    web.send_stream(&[(web.envelope(MediaKind::Video, 2, 0, 0), vec![1; 8000])])
        .await?;
    web.control(|m| {
        matches!(
            m,
            ControlMessage::Error {
                code: ErrorCode::FrameTooLarge,
                ..
            }
        )
    })
    .await?;
    until(&relay, "the oversize frame counted", |r| {
        r.stats().dropped(DropReason::TooLarge) >= 1
    })
    .await?;
    // Still a member: its next frame goes through.
    web.send_datagram(web.envelope(MediaKind::Audio, 1, 0, 0), b"still here")?;
    let frame = native.next_frame().await?;
    assert_eq!(&frame.payload[..], b"still here");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_for_another_path_is_answered_404_and_counted() -> anyhow::Result<()> {
    let relay = relay().await;
    let Err(err) = web_session(&relay, "/somewhere-else").await else {
        bail!("a session to another path was accepted");
    };
    assert!(
        matches!(
            &err.downcast_ref::<web_transport_quinn::ClientError>(),
            Some(web_transport_quinn::ClientError::HttpError(
                web_transport_quinn::ConnectError::ProtoError(
                    web_transport_proto::ConnectError::WrongStatus(Some(status))
                )
            )) if status.as_u16() == 404
        ),
        "{err:?}"
    );
    until(&relay, "wrong_path counted", |r| {
        r.webtransport_stats().refused("wrong_path") == 1
    })
    .await?;
    assert_eq!(relay.webtransport_stats().accepted, 0);
    Ok(())
}

/// A raw HTTP/3 connection to the relay, for sending what no WebTransport client would.
async fn raw_h3(relay: &Relay) -> anyhow::Result<(quinn::Endpoint, quinn::Connection)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(relay.cert_der()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls)?,
    ));
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    endpoint.set_default_client_config(config);
    let conn = endpoint
        .connect(relay.local_addr(), "localhost")?
        .await
        .context("handshake")?;
    Ok((endpoint, conn))
}

fn close_code(err: &quinn::ConnectionError) -> Option<u64> {
    match err {
        quinn::ConnectionError::ApplicationClosed(close) => Some(close.error_code.into_inner()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_connect_request_is_refused_with_protocol_violation_and_counted()
-> anyhow::Result<()> {
    let relay = relay().await;
    let (_endpoint, conn) = raw_h3(&relay).await?;
    let mut settings = web_transport_proto::Settings::default();
    settings.enable_webtransport(1);
    let mut buf = BytesMut::new();
    settings.encode(&mut buf);
    let mut control = conn.open_uni().await?;
    control.write_all(&buf).await?;
    // A HEADERS frame whose field section is not QPACK.
    let (mut connect, _recv) = conn.open_bi().await?;
    connect
        .write_all(&[0x01, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff])
        .await?;
    let closed = tokio::time::timeout(WAIT, conn.closed()).await?;
    assert_eq!(
        close_code(&closed),
        Some(u64::from(ErrorCode::ProtocolViolation.close_code()))
    );
    until(&relay, "bad_connect counted", |r| {
        r.webtransport_stats().refused("bad_connect") == 1
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h3_connection_without_webtransport_settings_is_refused() -> anyhow::Result<()> {
    let relay = relay().await;
    let (_endpoint, conn) = raw_h3(&relay).await?;
    // SETTINGS without the WebTransport ones.
    let mut buf = BytesMut::new();
    web_transport_proto::Settings::default().encode(&mut buf);
    let mut control = conn.open_uni().await?;
    control.write_all(&buf).await?;
    let closed = tokio::time::timeout(WAIT, conn.closed()).await?;
    assert_eq!(
        close_code(&closed),
        Some(u64::from(ErrorCode::ProtocolViolation.close_code()))
    );
    until(&relay, "bad_settings counted", |r| {
        r.webtransport_stats().refused("bad_settings") == 1
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_presented_to_new_sessions_and_old_ones_keep_going()
-> anyhow::Result<()> {
    let relay = relay().await;
    let before = relay.cert_sha256();
    let mut native = Client::join(&relay, &ticket(APP_A, "native", "room")).await?;
    let mut web = Web::join(&relay, &ticket(APP_A, "early", "room")).await?;
    let after = relay.rotate_certificate()?;
    assert_ne!(before, after);
    assert_eq!(relay.cert_sha256(), after);
    // A browser pinning the new hash gets in; the session opened before goes on.
    let late = Web::join(&relay, &ticket(APP_A, "late", "room")).await?;
    web.send_datagram(web.envelope(MediaKind::Audio, 1, 0, 0), b"before rotation")?;
    late.send_datagram(late.envelope(MediaKind::Audio, 1, 0, 0), b"after rotation")?;
    let frames = native.frames(2).await?;
    assert!(
        frames
            .iter()
            .any(|f| f.payload[..] == b"before rotation"[..])
    );
    assert!(
        frames
            .iter()
            .any(|f| f.payload[..] == b"after rotation"[..])
    );
    let _ = web.frames(1).await?;
    // One pinning the old hash is turned away by its own certificate check.
    let client = ClientBuilder::new().with_server_certificate_hashes(vec![before.to_vec()])?;
    assert!(client.connect(url(&relay, WEB_PATH)?).await.is_err());
    Ok(())
}

#[test]
fn the_generated_certificate_is_what_browsers_accept_by_hash() -> anyhow::Result<()> {
    // ECDSA P-256, valid for at most 14 days in all (serverCertificateHashes' rule).
    let runtime = tokio::runtime::Runtime::new()?;
    let der = runtime.block_on(async { relay().await.cert_der() });
    let validity = certificate_validity_secs(&der).context("validity")?;
    assert!(validity <= 14 * 24 * 3600, "valid for {validity} s");
    assert!(validity >= 24 * 3600, "valid for {validity} s");
    // id-ecPublicKey with the prime256v1 curve, and ecdsa-with-SHA256.
    let ec_public_key = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let p256 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let ecdsa_sha256 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    for oid in [&ec_public_key[..], &p256, &ecdsa_sha256] {
        assert!(
            der.windows(oid.len()).any(|w| w == oid),
            "{oid:02x?} missing"
        );
    }
    Ok(())
}

/// Seconds between notBefore and notAfter of a DER certificate whose validity is two
/// UTCTime values (as rcgen writes dates before 2050).
fn certificate_validity_secs(der: &[u8]) -> Option<i64> {
    let times: Vec<i64> = der
        .windows(15)
        .filter(|w| w[0] == 0x17 && w[1] == 13 && w[14] == b'Z')
        .filter_map(|w| utc_time(&w[2..14]))
        .collect();
    match times[..] {
        [from, to, ..] => Some(to - from),
        _ => None,
    }
}

/// `YYMMDDHHMMSS` as seconds since 2000 (enough to subtract two of them).
fn utc_time(digits: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(digits).ok()?;
    let n = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0..2)?, n(2..4)?, n(4..6)?);
    let (h, mi, s) = (n(6..8)?, n(8..10)?, n(10..12)?);
    // Days from 2000-03-01 style civil computation.
    let (y, mo) = if mo <= 2 {
        (y + 2000 - 1, mo + 12)
    } else {
        (y + 2000, mo)
    };
    let days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * (mo - 3) + 2) / 5 + d;
    Some(((days * 24 + h) * 60 + mi) * 60 + s)
}
