//! A relay that can be stopped and started again on the same address with the same
//! certificate, and members whose events a task collects, for the resilience tests.
//!
//! Waiting is done on observable outcomes with a generous safety timeout that only turns a
//! hang into a failure; no test asserts how long anything took.

#![allow(dead_code, unreachable_pub)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use sealroom_client::{
    ClientConfig, TicketReason, TicketRequest, TicketSource, TicketSourceError, Trust, ticket_fn,
};
use sealroom_frame::envelope::FrameRef;
use sealroom_frame::sframe::SframeHeader;
use sealroom_relay::{Grants, Limits, Relay, RelayConfig, RoomKey, TlsConfig};
pub use sealroom_test_support::{Member, SAFETY, poll_until as until};
use sealroom_test_support::{TempDir, TestApp};

/// The app the test relays serve.
pub const APP: &str = "resilience";
const KID: &str = "r1";
const SECRET: &[u8] = b"resilience ticket secret, test only";

/// The room every test uses.
pub const ROOM: &str = "standup";

/// The app the test relays serve, with its ticket secret.
const TEST_APP: TestApp = TestApp {
    app: APP,
    kid: KID,
    secret: SECRET,
};

/// A ticket for `user` in [`ROOM`], valid for `ttl` seconds from now.
pub fn ticket(user: &str, ttl: u64) -> String {
    TEST_APP.ticket(user, ROOM, Grants::all(), ttl)
}

/// A ticket signed with a secret the relay does not know.
pub fn forged_ticket(user: &str) -> String {
    TestApp {
        secret: b"not the app's secret",
        ..TEST_APP
    }
    .ticket(user, ROOM, Grants::all(), 3600)
}

/// The room's key on the relay.
pub fn room_key() -> RoomKey {
    RoomKey::new(APP, ROOM)
}

/// A certificate and key written to a temporary directory, so that a relay restarted
/// with them presents the identity the clients pinned.
pub struct Identity {
    dir: TempDir,
    pin: [u8; 32],
}

impl Identity {
    /// A fresh self-signed identity for `localhost`.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
        let dir = TempDir::new(&format!("resilience-{name}"));
        dir.write("cert.pem", &certified.cert.pem());
        dir.write("key.pem", &certified.signing_key.serialize_pem());
        let pin = sealroom_client::cert_sha256(certified.cert.der());
        Ok(Self { dir, pin })
    }

    fn tls(&self) -> TlsConfig {
        TlsConfig::Files {
            cert: self.dir.path().join("cert.pem"),
            key: self.dir.path().join("key.pem"),
        }
    }

    /// Start a relay with this identity on `listen` (port 0 for any).
    pub async fn start_relay(&self, listen: SocketAddr, limits: Limits) -> anyhow::Result<Relay> {
        let config = RelayConfig::default()
            .listen(listen)
            .limits(limits)
            .tls(self.tls())
            .app(TEST_APP.config());
        // The previous relay's socket may take a moment to be released.
        let deadline = Instant::now() + SAFETY;
        loop {
            match Relay::start(config.clone()).await {
                Ok(relay) => return Ok(relay),
                Err(err) if Instant::now() < deadline && listen.port() != 0 => {
                    tracing::debug!(%err, "relay start retried");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => return Err(err).context("relay start"),
            }
        }
    }

    /// A client configuration that pins this identity and reconnects quickly.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::new(Trust::Pinned(self.pin))
            .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(400))
            .connect_timeout(Duration::from_secs(2))
            .reconnect_attempts(60)
    }
}

/// A relay on loopback with any port.
pub fn any_port() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// Limits without rate limits, so tests may send quickly.
pub fn limits() -> Limits {
    Limits::default().unlimited_rates()
}

/// Every (KID, CTR) pair of the SFrame headers a relay's payload tap saw.
#[derive(Default)]
pub struct Headers {
    seen: Mutex<Vec<SframeHeader>>,
}

impl Headers {
    /// Record the SFrame header of every frame `relay` handles.
    pub fn tap(self: &Arc<Self>, relay: &Relay) {
        let headers = Arc::clone(self);
        relay.set_payload_tap(Some(Arc::new(move |bytes: &[u8]| {
            let Ok(frame) = FrameRef::decode(bytes) else {
                return;
            };
            if let Ok((header, _)) = SframeHeader::decode(frame.payload) {
                headers.seen.lock().expect("headers").push(header);
            }
        })));
    }

    /// The headers so far.
    pub fn snapshot(&self) -> Vec<SframeHeader> {
        self.seen.lock().expect("headers").clone()
    }
}

/// A ticket source that counts requests by reason and answers with `answer`.
pub struct CountingTickets {
    pub joins: AtomicU32,
    pub rejoins: AtomicU32,
    pub refreshes: AtomicU32,
}

impl CountingTickets {
    /// A source for `user`: `answer` says what to hand out for each request.
    pub fn new<F>(answer: F) -> (Arc<Self>, impl TicketSource)
    where
        F: Fn(TicketRequest) -> Result<String, TicketSourceError> + Send + Sync + 'static,
    {
        let counts = Arc::new(Self {
            joins: AtomicU32::new(0),
            rejoins: AtomicU32::new(0),
            refreshes: AtomicU32::new(0),
        });
        let counter = Arc::clone(&counts);
        let source = ticket_fn(move |request: TicketRequest| {
            let counter = match request.reason {
                TicketReason::Join => &counter.joins,
                TicketReason::Rejoin => &counter.rejoins,
                _ => &counter.refreshes,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let answer = answer(request);
            async move { answer }
        });
        (counts, source)
    }

    /// Rejoin tickets asked for so far.
    pub fn rejoins(&self) -> u32 {
        self.rejoins.load(Ordering::Relaxed)
    }

    /// Refresh tickets asked for so far.
    pub fn refreshes(&self) -> u32 {
        self.refreshes.load(Ordering::Relaxed)
    }
}

/// Wait until the relay's room holds exactly `users` (in any order).
pub async fn room_holds(relay: &Relay, users: &[&str]) -> anyhow::Result<()> {
    let mut want: Vec<String> = users.iter().map(|u| (*u).to_owned()).collect();
    want.sort();
    let present = || {
        let mut have: Vec<String> = relay
            .members(&room_key())
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.user)
            .collect();
        have.sort();
        have
    };
    until(
        &format!("the room holds {want:?}"),
        || present() == want,
        || format!("room holds {:?}", present()),
    )
    .await
}
