//! A relay that can be stopped and started again on the same address with the same
//! certificate, and members whose events a task collects, for the resilience tests.
//!
//! Waiting is done on observable outcomes with a generous safety timeout that only turns a
//! hang into a failure; no test asserts how long anything took.

#![allow(dead_code, unreachable_pub)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use sealroom_client::{
    Client, ClientConfig, Event, Events, ReceivedFrame, Room, RoomSecret, TicketReason,
    TicketRequest, TicketSource, TicketSourceError, Trust, ticket_fn,
};
use sealroom_frame::envelope::FrameRef;
use sealroom_frame::sframe::SframeHeader;
use sealroom_relay::ticket::{Grants, TicketClaims, mint};
use sealroom_relay::{AppConfig, Limits, Relay, RelayConfig, RoomKey, TlsConfig};

/// How long a wait may take before the test fails instead of hanging.
pub const SAFETY: Duration = Duration::from_secs(30);

/// The app the test relays serve.
pub const APP: &str = "resilience";
const KID: &str = "r1";
const SECRET: &[u8] = b"resilience ticket secret, test only";

/// The room every test uses.
pub const ROOM: &str = "standup";

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A ticket for `user` in [`ROOM`], valid for `ttl` seconds from now.
pub fn ticket(user: &str, ttl: u64) -> String {
    let claims = TicketClaims::new(APP, user, ROOM, unix_now(), ttl, Grants::all());
    mint(&claims, KID, SECRET).expect("mint")
}

/// A ticket signed with a secret the relay does not know.
pub fn forged_ticket(user: &str) -> String {
    let claims = TicketClaims::new(APP, user, ROOM, unix_now(), 3600, Grants::all());
    mint(&claims, KID, b"not the app's secret").expect("mint")
}

/// The room's key on the relay.
pub fn room_key() -> RoomKey {
    RoomKey::new(APP, ROOM)
}

/// A certificate and key written to a temporary directory, so that a relay restarted
/// with them presents the identity the clients pinned.
pub struct Identity {
    dir: PathBuf,
    pin: [u8; 32],
}

impl Identity {
    /// A fresh self-signed identity for `localhost`.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
        let dir = std::env::temp_dir().join(format!(
            "sealroom-resilience-{name}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        ));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("cert.pem"), certified.cert.pem())?;
        std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem())?;
        let pin = sealroom_client::cert_sha256(certified.cert.der());
        Ok(Self { dir, pin })
    }

    fn tls(&self) -> TlsConfig {
        TlsConfig::Files {
            cert: self.dir.join("cert.pem"),
            key: self.dir.join("key.pem"),
        }
    }

    /// Start a relay with this identity on `listen` (port 0 for any).
    pub async fn start_relay(&self, listen: SocketAddr, limits: Limits) -> anyhow::Result<Relay> {
        let config = RelayConfig::default()
            .listen(listen)
            .limits(limits)
            .tls(self.tls())
            .app(AppConfig::new(APP, KID, SECRET.to_vec()));
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

impl Drop for Identity {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
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

/// Every event a member received, in order.
#[derive(Default)]
pub struct EventLog {
    events: Mutex<Vec<Event>>,
    /// Woken whenever an event is added.
    added: tokio::sync::Notify,
}

impl EventLog {
    /// A copy of the events so far.
    pub fn snapshot(&self) -> Vec<Event> {
        self.events.lock().expect("log").clone()
    }

    /// How many events match.
    pub fn count(&self, pick: impl Fn(&Event) -> bool) -> usize {
        self.events
            .lock()
            .expect("log")
            .iter()
            .filter(|e| pick(e))
            .count()
    }

    /// The opened frames so far.
    pub fn frames(&self) -> Vec<ReceivedFrame> {
        self.snapshot()
            .into_iter()
            .filter_map(|event| match event {
                Event::Frame(frame) => Some(frame),
                _ => None,
            })
            .collect()
    }

    /// Whether an opened frame carried `payload`.
    pub fn received(&self, payload: &str) -> bool {
        self.frames()
            .iter()
            .any(|f| f.payload == payload.as_bytes())
    }

    /// Wait until the events satisfy `cond` (which sees them under the log's lock: it must
    /// not call back into the log).
    pub async fn wait_for(
        &self,
        what: &str,
        cond: impl Fn(&[Event]) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + SAFETY;
        loop {
            // Registered before the check, so an event added in between still wakes it.
            let added = self.added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            if cond(&self.events.lock().expect("log")) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, added).await.is_err() {
                bail!("never saw: {what}; events: {:#?}", self.summary());
            }
        }
    }

    fn summary(&self) -> Vec<String> {
        self.snapshot()
            .iter()
            .map(|event| match event {
                Event::Frame(frame) => format!(
                    "frame from {} track {} {:?}: {:?}",
                    frame.sender,
                    frame.track,
                    frame.kind,
                    String::from_utf8_lossy(&frame.payload)
                ),
                other => format!("{other:?}"),
            })
            .collect()
    }
}

/// A joined member: its client, room and the log its event task fills.
pub struct Member {
    pub name: &'static str,
    pub client: Client,
    pub room: Room,
    pub log: Arc<EventLog>,
}

impl Member {
    /// Join the room at `relay` as `name` with `tickets` and `config`.
    pub async fn join(
        name: &'static str,
        relay: SocketAddr,
        config: ClientConfig,
        tickets: impl TicketSource,
        secret: &RoomSecret,
    ) -> anyhow::Result<Self> {
        let client = Client::new(config)?;
        let (room, events) = client
            .join(relay, "localhost", tickets, secret)
            .await
            .with_context(|| format!("{name} joins"))?;
        Ok(Self::collecting(name, client, room, events))
    }

    fn collecting(name: &'static str, client: Client, room: Room, mut events: Events) -> Self {
        let log = Arc::new(EventLog::default());
        let sink = Arc::clone(&log);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                sink.events.lock().expect("log").push(event);
                sink.added.notify_waiters();
            }
        });
        Self {
            name,
            client,
            room,
            log,
        }
    }
}

/// Wait until `cond` holds, polling.
pub async fn until(
    what: &str,
    cond: impl Fn() -> bool,
    explain: impl Fn() -> String,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + SAFETY;
    while !cond() {
        if Instant::now() >= deadline {
            bail!("never happened: {what}; {}", explain());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
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
