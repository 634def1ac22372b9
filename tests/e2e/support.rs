//! A real relay on loopback and real clients, for the end-to-end tests.
//!
//! Waiting is done on observable outcomes (events, relay counters) with a generous safety
//! timeout that only turns a hang into a failure; no test asserts how long anything took.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use sealroom_client::{
    Client, ClientConfig, Event, Events, JoinError, MemberId, ReceivedFrame, Room, RoomSecret,
    Trust,
};
use sealroom_relay::ticket::{Grants, TicketClaims, mint};
use sealroom_relay::{AppConfig, Limits, Relay, RelayConfig};

/// How long a wait may take before the test fails instead of hanging.
pub(crate) const SAFETY: Duration = Duration::from_secs(20);

/// The apps the test relay serves: (app, kid, secret).
pub(crate) const APPS: [(&str, &str, &str); 2] = [
    ("app-a", "a1", "app-a ticket secret, test only"),
    ("app-b", "b1", "app-b ticket secret, test only"),
];

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A relay on 127.0.0.1:0 serving [`APPS`].
pub(crate) struct TestRelay {
    pub(crate) relay: Relay,
}

impl TestRelay {
    /// A relay with default limits except rate limits lifted, so tests may send quickly.
    pub(crate) async fn start() -> anyhow::Result<Self> {
        Self::with_limits(Limits::default().unlimited_rates()).await
    }

    /// A relay with `limits`.
    pub(crate) async fn with_limits(limits: Limits) -> anyhow::Result<Self> {
        let mut config = RelayConfig::default()
            .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .limits(limits);
        for (app, kid, secret) in APPS {
            config = config.app(AppConfig::new(app, kid, secret.as_bytes().to_vec()));
        }
        let relay = Relay::start(config).await.context("relay start")?;
        Ok(Self { relay })
    }

    /// A ticket for `user` in `room` of `app`, signed with the app's secret, valid for an
    /// hour from now.
    pub(crate) fn ticket(&self, app: &str, user: &str, room: &str, grants: Grants) -> String {
        let (_, kid, secret) = APPS
            .iter()
            .find(|(name, _, _)| *name == app)
            .copied()
            .unwrap_or(("", "a1", "unknown app secret"));
        let claims = TicketClaims::new(app, user, room, unix_now(), 3600, grants);
        mint(&claims, kid, secret.as_bytes()).expect("mint")
    }

    /// A client that pins this relay's certificate.
    pub(crate) fn client(&self) -> Client {
        Client::new(ClientConfig::new(Trust::Pinned(self.relay.cert_sha256()))).expect("client")
    }

    /// Join with `ticket` as a fresh client.
    pub(crate) async fn join_with(
        &self,
        ticket: String,
        secret: &RoomSecret,
    ) -> Result<Member, JoinError> {
        let client = self.client();
        let (room, events) = client
            .join(self.relay.local_addr(), "localhost", ticket, secret)
            .await?;
        Ok(Member::new(client, room, events))
    }

    /// Join `room` of `app` as `user` with every grant.
    pub(crate) async fn join(
        &self,
        app: &str,
        user: &str,
        room: &str,
        secret: &RoomSecret,
    ) -> anyhow::Result<Member> {
        let ticket = self.ticket(app, user, room, Grants::all());
        self.join_with(ticket, secret)
            .await
            .with_context(|| format!("{user} joins {app}/{room}"))
    }

    /// Wait until the relay's stats satisfy `cond`.
    pub(crate) async fn wait_stats(
        &self,
        what: &str,
        cond: impl Fn(&sealroom_relay::RelayStats) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + SAFETY;
        loop {
            if cond(&self.relay.stats()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "relay never reached: {what}; stats {:?}",
                    self.relay.stats()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Every event a member received, in order.
#[derive(Default)]
pub(crate) struct EventLog {
    events: Mutex<Vec<Event>>,
    /// Woken whenever an event is added.
    added: tokio::sync::Notify,
}

impl EventLog {
    /// A copy of the events so far.
    pub(crate) fn snapshot(&self) -> Vec<Event> {
        self.events.lock().expect("log").clone()
    }

    /// The opened frames so far.
    pub(crate) fn frames(&self) -> Vec<ReceivedFrame> {
        self.snapshot()
            .into_iter()
            .filter_map(|event| match event {
                Event::Frame(frame) => Some(frame),
                _ => None,
            })
            .collect()
    }

    /// Wait until the events satisfy `cond`.
    pub(crate) async fn wait_for(
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
                    "frame from {} track {} {:?} group {} seq {} {} bytes",
                    frame.sender,
                    frame.track,
                    frame.kind,
                    frame.envelope.group,
                    frame.envelope.seq,
                    frame.payload.len()
                ),
                other => format!("{other:?}"),
            })
            .collect()
    }
}

/// A joined member: its client, room and the log its event task fills.
pub(crate) struct Member {
    /// Keeps the member's endpoint open.
    pub(crate) _client: Client,
    pub(crate) room: Room,
    pub(crate) log: Arc<EventLog>,
    pub(crate) id: MemberId,
}

impl Member {
    fn new(client: Client, room: Room, mut events: Events) -> Self {
        let log = Arc::new(EventLog::default());
        let sink = log.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                sink.events.lock().expect("log").push(event);
                sink.added.notify_waiters();
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

    /// Opened frames from `sender`.
    pub(crate) fn frames_from(&self, sender: MemberId) -> Vec<ReceivedFrame> {
        self.log
            .frames()
            .into_iter()
            .filter(|frame| frame.sender == sender)
            .collect()
    }
}

/// The first event matching `pick`, if any.
pub(crate) fn find<T>(events: &[Event], pick: impl Fn(&Event) -> Option<T>) -> Option<T> {
    events.iter().find_map(pick)
}
