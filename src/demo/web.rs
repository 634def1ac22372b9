//! `sealroom demo --web`: an embedded relay with a generated certificate (what browsers
//! accept by hash), a loopback HTTP server for the demo page and the TypeScript client built
//! in `web/`, and one Rust member in the same room. The page's members seal in the page; the
//! relay's payload tap counts the plaintext marker the pages and the Rust member put in
//! their chat, which must stay at 0.
//!
//! The HTTP server plays the application's backend: it mints each page a ticket and hands it
//! the room secret (the relay never sees the secret).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sealroom_client::{Client, ClientConfig, Event, RoomSecret, Trust};
use sealroom_relay::{AppConfig, Limits, Relay, RelayConfig, TlsConfig, WEB_PATH, self_signed_pem};
use sealroom_ticket::{Grants, TicketClaims, mint};

const APP: &str = "demo";
const KID: &str = "demo";
const ROOM: &str = "web-demo";
/// What the pages and the Rust member put in every chat message; the relay's tap must
/// never see it.
pub(crate) const PLAINTEXT_MARKER: &str = "SEALROOM-PLAINTEXT";

const INDEX_HTML: &str = include_str!("../../web/demo/index.html");
const DEMO_JS: &str = include_str!("../../web/demo/demo.js");

/// Options of the browser demo.
#[derive(Debug, Clone)]
pub(crate) struct WebArgs {
    /// Loopback port of the page (0: any free one).
    pub(crate) port: u16,
    /// Stop after this long (`None`: at Ctrl-C).
    pub(crate) duration: Option<Duration>,
    /// Whether a Rust member joins the room too.
    pub(crate) rust_member: bool,
    /// The `web/` directory (`None`: the source tree this binary was built from).
    pub(crate) web_dir: Option<PathBuf>,
}

struct AppState {
    /// The running relay; `/restart` replaces it with a new one on the same port and with
    /// the same certificate.
    relay: Mutex<Option<Arc<Relay>>>,
    relay_config: RelayConfig,
    app_secret: String,
    room_secret: RoomSecret,
    client_dir: PathBuf,
    tapped_bytes: Arc<AtomicU64>,
    marker_seen: Arc<AtomicU64>,
    next_user: AtomicU64,
    /// Per browser member, what the Rust member opened of it: (frames opened, open failures).
    rust_opened: Arc<Mutex<BTreeMap<u32, (u64, u64)>>>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Limits of the embedded relay: browser video of a few hundred kbit/s, chat at a few
/// messages a second, and a fast reconnect.
fn limits() -> Limits {
    Limits {
        media_bytes_per_sec: 8_000_000,
        media_bytes_burst: 16_000_000,
        data_messages_per_sec: 100,
        data_messages_burst: 200,
        data_bytes_per_sec: 256 * 1024,
        data_bytes_burst: 512 * 1024,
        ..Limits::default()
    }
}

pub(crate) async fn run(args: WebArgs) -> anyhow::Result<()> {
    let web = args
        .web_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web"));
    // A fresh clone has no built client, and an edit or a pull can leave it stale.
    super::web_build::ensure_built(&web, "npm")?;
    let client_dir = web.join("dist/src");
    let app_secret = format!("{:032x}", rand::random::<u128>());
    // The certificate a relay would generate, kept in files so that a restarted relay (see
    // `/restart`) presents the same one.
    let cert_dir = std::env::temp_dir().join(format!("sealroom-demo-web-{}", std::process::id()));
    std::fs::create_dir_all(&cert_dir)?;
    let (cert_pem, key_pem) = self_signed_pem(&["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let (cert, key) = (cert_dir.join("cert.pem"), cert_dir.join("key.pem"));
    std::fs::write(&cert, cert_pem)?;
    std::fs::write(&key, key_pem)?;
    let mut relay_config = RelayConfig::default()
        .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .limits(limits())
        .app(AppConfig::new(APP, KID, app_secret.as_bytes().to_vec()));
    relay_config.tls = TlsConfig::Files { cert, key };
    let tapped_bytes = Arc::new(AtomicU64::new(0));
    let marker_seen = Arc::new(AtomicU64::new(0));
    let relay = start_relay(&relay_config, &tapped_bytes, &marker_seen).await?;
    // A restarted relay binds the same port.
    relay_config = relay_config.listen(relay.local_addr());
    let state = Arc::new(AppState {
        relay: Mutex::new(Some(relay.clone())),
        relay_config,
        app_secret,
        room_secret: RoomSecret::generate(),
        client_dir,
        tapped_bytes,
        marker_seen,
        next_user: AtomicU64::new(1),
        rust_opened: Arc::default(),
    });
    let router = axum::Router::new()
        .route("/", get(|| async { html(INDEX_HTML) }))
        .route("/demo.js", get(|| async { javascript(DEMO_JS.to_owned()) }))
        .route("/client/{file}", get(client_file))
        .route("/join", get(join))
        .route("/tap", get(tap))
        .route("/restart", post(restart))
        .with_state(state.clone());
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{} for the page", args.port))?;
    let page = listener.local_addr()?;
    println!(
        "sealroom demo --web: relay on {} (WebTransport https://{}{WEB_PATH}, certificate sha-256 {})",
        relay.local_addr(),
        relay.local_addr(),
        hex::encode(relay.cert_sha256())
    );
    println!(
        "open http://{page}/ in two browser tabs (Chromium or Chrome: WebTransport and WebCodecs)"
    );
    // The state holds the relay from here on (a restart replaces it there).
    drop(relay);
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let rust = if args.rust_member {
        Some(tokio::spawn(rust_member(state.clone())))
    } else {
        None
    };
    match args.duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    server.abort();
    if let Some(rust) = rust {
        rust.abort();
    }
    let _ = std::fs::remove_dir_all(&cert_dir);
    let opened = state
        .rust_opened
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for (member, (frames, failures)) in &opened {
        println!(
            "rust member: opened {frames} frames of member {member}, {failures} could not be opened"
        );
    }
    println!(
        "relay: its payload tap saw {} bytes; the plaintext marker appeared {} times",
        state.tapped_bytes.load(Ordering::Relaxed),
        state.marker_seen.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Start a relay with `config` whose payload tap counts into `tapped` and `seen`.
async fn start_relay(
    config: &RelayConfig,
    tapped: &Arc<AtomicU64>,
    seen: &Arc<AtomicU64>,
) -> anyhow::Result<Arc<Relay>> {
    let relay = Relay::start(config.clone())
        .await
        .context("cannot start the embedded relay")?;
    relay.set_payload_tap(Some({
        let tapped = tapped.clone();
        let seen = seen.clone();
        Arc::new(move |bytes: &[u8]| {
            tapped.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            let marker = PLAINTEXT_MARKER.as_bytes();
            if bytes.windows(marker.len()).any(|w| w == marker) {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        })
    }));
    Ok(Arc::new(relay))
}

impl AppState {
    /// The relay now running (`None` only during a restart).
    fn relay(&self) -> Option<Arc<Relay>> {
        self.relay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Stop the relay as a node shutting down does (members hear `ShuttingDown` and reconnect),
/// then start a new one on the same port with the same certificate.
async fn restart(State(state): State<Arc<AppState>>) -> Response {
    let old = state
        .relay
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(old) = old {
        match Arc::try_unwrap(old) {
            Ok(relay) => relay.shutdown().await,
            Err(shared) => {
                shared.drain(Duration::ZERO).await;
                drop(shared);
            }
        }
    }
    // The old endpoint lets go of its port once its connections have drained.
    for _ in 0..50 {
        match start_relay(&state.relay_config, &state.tapped_bytes, &state.marker_seen).await {
            Ok(relay) => {
                *state
                    .relay
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(relay);
                return StatusCode::NO_CONTENT.into_response();
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "the relay did not restart",
    )
        .into_response()
}

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn javascript(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// A module of the built TypeScript client: only plain `name.js` files of its directory.
async fn client_file(State(state): State<Arc<AppState>>, Path(file): Path<String>) -> Response {
    let valid = file.ends_with(".js")
        && file[..file.len() - 3]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return StatusCode::NOT_FOUND.into_response();
    }
    // A few small files on a loopback demo: a blocking read is fine.
    match std::fs::read_to_string(state.client_dir.join(&file)) {
        Ok(body) => javascript(body),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

#[derive(serde::Deserialize)]
struct JoinQuery {
    /// A display name (default: `web-N`).
    user: Option<String>,
    /// `expired` or `forged` for a ticket the relay must refuse (the refusal is shown).
    ticket: Option<String>,
    /// `wrong` for a room secret that is not the room's (its frames never open).
    secret: Option<String>,
}

/// What the page needs to join: the relay's URL and certificate hash (fetched at every
/// connect, so a rotated certificate is picked up), a ticket and the room secret.
async fn join(State(state): State<Arc<AppState>>, Query(query): Query<JoinQuery>) -> Response {
    let n = state.next_user.fetch_add(1, Ordering::Relaxed);
    let user = query
        .user
        .filter(|u| !u.is_empty() && u.len() <= 64)
        .unwrap_or_else(|| format!("web-{n}"));
    let now = unix_now();
    let (issued, secret) = match query.ticket.as_deref() {
        Some("expired") => (now.saturating_sub(7200), state.app_secret.clone()),
        Some("forged") => (now, "not-the-app-secret".to_owned()),
        _ => (now, state.app_secret.clone()),
    };
    let claims = TicketClaims::new(APP, &user, ROOM, issued, 3600, Grants::all());
    let Ok(ticket) = mint(&claims, KID, secret.as_bytes()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut room_secret = *state.room_secret.expose();
    if query.secret.as_deref() == Some("wrong") {
        room_secret[0] ^= 0xff;
    }
    let Some(relay) = state.relay() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the relay is restarting").into_response();
    };
    let addr = relay.local_addr();
    axum::Json(serde_json::json!({
        "url": format!("https://{addr}{WEB_PATH}"),
        "certSha256": hex::encode(relay.cert_sha256()),
        "ticket": ticket,
        "roomSecret": hex::encode(room_secret),
        "user": user,
        "marker": PLAINTEXT_MARKER,
    }))
    .into_response()
}

/// What the relay's payload tap saw, and what the Rust member opened (for tests).
async fn tap(State(state): State<Arc<AppState>>) -> Response {
    let opened = state
        .rust_opened
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|(member, (frames, failures))| {
            serde_json::json!({ "member": member, "opened": frames, "failures": failures })
        })
        .collect::<Vec<_>>();
    axum::Json(serde_json::json!({
        "tappedBytes": state.tapped_bytes.load(Ordering::Relaxed),
        "markerSeen": state.marker_seen.load(Ordering::Relaxed),
        "rustOpened": opened,
    }))
    .into_response()
}

/// A Rust member in the page's room: says hello in the chat every two seconds (with the
/// plaintext marker) and counts what it opens of each browser member.
async fn rust_member(state: Arc<AppState>) -> anyhow::Result<()> {
    // Only the address and the certificate: holding the relay would keep its port after a
    // restart.
    let (addr, cert) = {
        let relay = state.relay().context("no relay")?;
        (relay.local_addr(), relay.cert_sha256())
    };
    let claims = TicketClaims::new(APP, "rust", ROOM, unix_now(), 3600, Grants::all());
    let ticket = mint(&claims, KID, state.app_secret.as_bytes())?;
    let client = Client::new(ClientConfig::new(Trust::Pinned(cert)))?;
    let (room, mut events) = client
        .join(addr, "localhost", ticket, &state.room_secret)
        .await
        .context("the Rust member could not join")?;
    let chat = room.publish_data(1).await?;
    let opened = state.rust_opened.clone();
    let receiver = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let mut opened = opened
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match event {
                Event::Frame(frame) => opened.entry(frame.sender).or_default().0 += 1,
                Event::CouldNotOpen(frame) => opened.entry(frame.sender).or_default().1 += 1,
                _ => {}
            }
        }
    });
    for n in 1.. {
        let message = format!("hello from Rust #{n} {PLAINTEXT_MARKER}");
        if chat.send(message).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    receiver.abort();
    Ok(())
}
