//! Browsers on the relay's own QUIC endpoint: a connection that negotiated the HTTP/3 ALPN
//! (`h3`) is a WebTransport session, set up here and then served exactly like a native one.
//!
//! One UDP port serves both. The TLS handshake offers `sealroom/1` and `h3`; after it, the
//! negotiated ALPN decides: `sealroom/1` is wrapped as a raw session (no HTTP/3, stream and
//! close codes as they are), `h3` goes through the HTTP/3 SETTINGS exchange and one extended
//! CONNECT to [`WEB_PATH`], answered `200` (or `404` for another path). From then on both are a
//! [`Session`] with the same streams, datagrams and codes (web-transport-quinn maps the codes
//! into HTTP/3's space and adds the session's stream and datagram headers), so the control
//! stream, media mapping, limits, refusals and counters are the native ones.
//!
//! What differs, and is decided here:
//! - HTTP/3 needs streams of its own before `Join`: the CONNECT request (a second
//!   bidirectional stream, granted once the ALPN says `h3`) and up to three unidirectional
//!   ones (control, QPACK encoder and decoder). Browsers refuse a server whose transport
//!   parameters grant fewer than three unidirectional streams, and those parameters go out
//!   before the ALPN is known, so every connection starts with three (the relay reads no
//!   media stream before `Join`); a session keeps them on top of a member's;
//! - the session's datagrams carry a session-id prefix, so a browser's datagram budget is a
//!   few bytes smaller than a native client's (`Session::max_datagram_size` already takes it
//!   off, and the egress puts what does not fit on a stream);
//! - a session that never completes its SETTINGS or CONNECT within the join deadline, sends
//!   a malformed CONNECT, or asks for another path is refused with a typed
//!   [`WebSessionError`] and counted in `sealroom_webtransport_sessions_total{result}`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use quinn::VarInt;
use sealroom_frame::control::ErrorCode;
use web_transport_quinn::{Request, ServerError, Session, http};

/// The ALPN of HTTP/3, which WebTransport rides on.
pub const WEB_ALPN: &[u8] = b"h3";

/// The only path a WebTransport session may ask for: `https://host:port/sealroom`.
pub const WEB_PATH: &str = "/sealroom";

/// Unidirectional streams HTTP/3 itself may open: its control stream and the two QPACK
/// streams. Granted to every connection before `Join` (browsers require it of an HTTP/3
/// server) and to a WebTransport session on top of a member's `max_incoming_streams` after it.
pub(crate) const H3_UNI_STREAMS: u32 = 3;

/// Bidirectional streams of a WebTransport connection: the CONNECT request and sealroom's
/// control stream.
pub(crate) const WEB_BIDI_STREAMS: u32 = 2;

/// How long a refused session's `404` is given to reach the peer before the close.
const REJECT_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Which protocol a connection speaks, from its negotiated ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// A native client: ALPN `sealroom/1`.
    Native,
    /// A browser (or any WebTransport client): ALPN `h3`.
    Web,
}

impl Flavour {
    /// The flavour of an established connection; `None` when it negotiated no ALPN the
    /// relay knows (rustls refuses such handshakes, so this is a safeguard).
    pub(crate) fn of(conn: &quinn::Connection) -> Option<Self> {
        let data = conn.handshake_data()?;
        let data = data
            .downcast::<quinn::crypto::rustls::HandshakeData>()
            .ok()?;
        match data.protocol.as_deref() {
            Some(WEB_ALPN) => Some(Self::Web),
            Some(alpn) if alpn == sealroom_frame::transport::ALPN => Some(Self::Native),
            _ => None,
        }
    }

    /// Unidirectional streams this flavour needs besides a member's media streams.
    pub(crate) const fn extra_uni_streams(self) -> u32 {
        match self {
            Self::Native => 0,
            Self::Web => H3_UNI_STREAMS,
        }
    }
}

/// Why a WebTransport session was not set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebSessionError {
    /// The peer's HTTP/3 SETTINGS were missing, malformed, or did not enable WebTransport.
    #[error("http/3 settings missing, malformed or without webtransport")]
    Settings,
    /// The request on the CONNECT stream did not decode as an extended CONNECT for
    /// WebTransport (another method, protocol or scheme, or a broken frame).
    #[error("malformed webtransport connect request")]
    Connect,
    /// The CONNECT asked for a path other than [`WEB_PATH`]; it was answered `404`.
    #[error("webtransport session asked for the path {path:?}, not {WEB_PATH}")]
    WrongPath {
        /// The path asked for (at most 64 bytes of it).
        path: String,
    },
    /// SETTINGS and CONNECT did not complete within the join deadline.
    #[error("no webtransport session within the join deadline")]
    TimedOut,
    /// The connection ended before the session was set up.
    #[error("connection ended before the webtransport session was set up")]
    Lost,
}

impl WebSessionError {
    /// Every refusal the metrics count, in label order.
    pub const ALL: [Self; 5] = [
        Self::Settings,
        Self::Connect,
        Self::WrongPath {
            path: String::new(),
        },
        Self::TimedOut,
        Self::Lost,
    ];

    /// A stable lowercase label (metrics, logs).
    pub const fn label(&self) -> &'static str {
        match self {
            Self::Settings => "bad_settings",
            Self::Connect => "bad_connect",
            Self::WrongPath { .. } => "wrong_path",
            Self::TimedOut => "timed_out",
            Self::Lost => "lost",
        }
    }

    /// The close code the connection is closed with: a peer that broke the protocol hears
    /// `ProtocolViolation`; one that asked for another path has its `404` already.
    const fn close_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Settings | Self::Connect | Self::TimedOut => Some(ErrorCode::ProtocolViolation),
            Self::WrongPath { .. } | Self::Lost => None,
        }
    }

    fn from_server(err: &ServerError) -> Self {
        match err {
            ServerError::SettingsError(_) => Self::Settings,
            ServerError::Connection(_) => Self::Lost,
            _ => Self::Connect,
        }
    }
}

/// Set up the WebTransport session of a connection that negotiated `h3`: grant the CONNECT
/// its stream, take the SETTINGS and the CONNECT, check the path, answer `200`. The caller
/// bounds the time (the join deadline). On an error the connection is being closed.
pub(crate) async fn accept(conn: &quinn::Connection) -> Result<Session, WebSessionError> {
    conn.set_max_concurrent_bi_streams(VarInt::from_u32(WEB_BIDI_STREAMS));
    let result = async {
        let request = Request::accept(conn.clone())
            .await
            .map_err(|err| WebSessionError::from_server(&err))?;
        let path = request.url.path();
        if path != WEB_PATH {
            let path = truncate(path, 64).to_owned();
            // Best effort: the peer may already be gone. Give the 404 a moment to arrive
            // before the close; a well-behaved peer closes first.
            let _ = request.reject(http::StatusCode::NOT_FOUND).await;
            let _ = tokio::time::timeout(REJECT_LINGER, conn.closed()).await;
            return Err(WebSessionError::WrongPath { path });
        }
        request
            .ok()
            .await
            .map_err(|err| WebSessionError::from_server(&err))
    }
    .await;
    if let Err(err) = &result {
        refuse(conn, err);
    }
    result
}

/// Close a connection whose session was refused, with the code its reason calls for.
pub(crate) fn refuse(conn: &quinn::Connection, err: &WebSessionError) {
    match err.close_code() {
        Some(code) => conn.close(VarInt::from_u32(code.close_code()), code.label().as_bytes()),
        // A wrong path was answered 404: let the response go before the close.
        None => conn.close(VarInt::from_u32(0), b"not found"),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Labels of the WebTransport session series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// `sealroom_webtransport_sessions_total{result}`: WebTransport sessions set up
/// (`accepted`) or refused, by [`WebSessionError::label`].
#[derive(Debug, Clone)]
pub struct WebMetrics {
    accepted: Counter,
    refused: Arc<Vec<(&'static str, Counter)>>,
}

impl WebMetrics {
    /// Create the series and register them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let family = Family::<ResultLabels, Counter>::default();
        let accepted = family.get_or_create_owned(&ResultLabels { result: "accepted" });
        let refused = WebSessionError::ALL
            .iter()
            .map(|err| {
                let result = err.label();
                (result, family.get_or_create_owned(&ResultLabels { result }))
            })
            .collect();
        registry.register(
            "webtransport_sessions",
            "WebTransport sessions (browsers, ALPN h3) set up, or refused by reason",
            family,
        );
        Self {
            accepted,
            refused: Arc::new(refused),
        }
    }

    /// Count a session set up or refused.
    pub(crate) fn session(&self, result: Result<(), &WebSessionError>) {
        match result {
            Ok(()) => {
                self.accepted.inc();
            }
            Err(err) => {
                if let Some((_, counter)) = self.refused.iter().find(|(l, _)| *l == err.label()) {
                    counter.inc();
                }
            }
        }
    }

    /// A snapshot.
    pub fn snapshot(&self) -> WebStats {
        WebStats {
            accepted: self.accepted.get(),
            refused: self
                .refused
                .iter()
                .map(|(label, counter)| (*label, counter.get()))
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }
}

/// WebTransport session counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebStats {
    /// Sessions set up.
    pub accepted: u64,
    /// Sessions refused, by [`WebSessionError::label`] (labels that never happened are left
    /// out).
    pub refused: Vec<(&'static str, u64)>,
}

impl WebStats {
    /// Sessions refused with `label` (`bad_settings`, `bad_connect`, `wrong_path`,
    /// `timed_out`, `lost`).
    pub fn refused(&self, label: &str) -> u64 {
        self.refused
            .iter()
            .find(|(l, _)| *l == label)
            .map_or(0, |(_, n)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_a_distinct_label_and_a_close() {
        let mut labels: Vec<_> = WebSessionError::ALL.iter().map(|e| e.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), WebSessionError::ALL.len());
        assert_eq!(
            WebSessionError::Connect.close_code(),
            Some(ErrorCode::ProtocolViolation)
        );
        assert_eq!(
            WebSessionError::WrongPath {
                path: "/x".to_owned()
            }
            .close_code(),
            None
        );
    }

    #[test]
    fn a_long_path_is_cut_on_a_character_boundary() {
        let path = format!("/{}", "é".repeat(100));
        let cut = truncate(&path, 64);
        assert!(cut.len() <= 64);
        assert!(path.starts_with(cut));
    }

    #[test]
    fn refusals_are_counted_by_label() {
        let mut registry = Registry::default();
        let metrics = WebMetrics::register(&mut registry);
        metrics.session(Ok(()));
        metrics.session(Err(&WebSessionError::WrongPath {
            path: "/nope".to_owned(),
        }));
        metrics.session(Err(&WebSessionError::Connect));
        metrics.session(Err(&WebSessionError::Connect));
        let stats = metrics.snapshot();
        assert_eq!(stats.accepted, 1);
        assert_eq!(stats.refused("wrong_path"), 1);
        assert_eq!(stats.refused("bad_connect"), 2);
        assert_eq!(stats.refused("bad_settings"), 0);
    }
}
