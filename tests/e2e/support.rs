//! A real relay on loopback and real clients, for the end-to-end tests.
//!
//! Waiting is done on observable outcomes (events, relay counters) with a generous safety
//! timeout that only turns a hang into a failure; no test asserts how long anything took.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context;
use sealroom_client::{Client, ClientConfig, JoinError, RoomSecret, Trust};
use sealroom_relay::{AppConfig, Grants, Limits, Relay, RelayConfig};
pub(crate) use sealroom_test_support::events::find;
pub(crate) use sealroom_test_support::{Member, unix_now};
use sealroom_test_support::{mint_ticket, poll_until};

/// The apps the test relay serves: (app, kid, secret).
pub(crate) const APPS: [(&str, &str, &str); 2] = [
    ("app-a", "a1", "app-a ticket secret, test only"),
    ("app-b", "b1", "app-b ticket secret, test only"),
];

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
        mint_ticket(
            app,
            kid,
            secret.as_bytes(),
            user,
            room,
            grants,
            unix_now(),
            3600,
        )
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
        Ok(Member::collecting(client, room, events))
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
        poll_until(
            &format!("the relay reaches {what}"),
            || cond(&self.relay.stats()),
            || format!("stats {:?}", self.relay.stats()),
        )
        .await
    }
}
