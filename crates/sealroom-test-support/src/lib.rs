//! What sealroom's tests share, in one place: raw quinn clients that speak the wire format
//! ([`wire`] for the relay's own tests, [`raw`] for members that break the rules), the
//! pinned-TLS client setup ([`tls`]), tickets minted with a test secret ([`TestApp`]),
//! members whose events a task collects into a log that wakes waiters ([`events`]), relay
//! node processes started from a config file ([`node`]), a UDP proxy that injects loss,
//! delay and jitter ([`impair`]), an S3-compatible server and a proxy to cut the way to it
//! ([`s3`]), [`unix_now`] and [`TempDir`].
//!
//! Waiting follows CONTRIBUTING.md: a test waits on an observable event (a notification
//! from an event log, a message, a close) under a generous safety timeout that only turns
//! a hang into a failure. Only [`poll_until`] polls, for the relay's and the client's
//! counters, which have no notification.
//!
//! This crate is not published; it enables the relay's `testing` feature.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use sealroom_relay::{Grants, TicketClaims, mint};

pub mod events;
pub mod impair;
pub mod node;
pub mod raw;
pub mod s3;
pub mod tls;
pub mod wire;

pub use events::{EventLog, Member};

/// How long a wait may take before the test fails instead of hanging; never asserted on.
pub const SAFETY: Duration = Duration::from_secs(30);

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An app a test relay serves, with the secret its tickets are signed with.
#[derive(Debug, Clone, Copy)]
pub struct TestApp {
    /// The app id.
    pub app: &'static str,
    /// The key id of the secret.
    pub kid: &'static str,
    /// The ticket secret (test only).
    pub secret: &'static [u8],
}

impl TestApp {
    /// The relay-side configuration of this app.
    pub fn config(&self) -> sealroom_relay::AppConfig {
        sealroom_relay::AppConfig::new(self.app, self.kid, self.secret.to_vec())
    }

    /// A ticket for `user` in `room`, issued now, valid for `ttl_secs`.
    pub fn ticket(&self, user: &str, room: &str, grants: Grants, ttl_secs: u64) -> String {
        self.ticket_at(user, room, grants, unix_now(), ttl_secs)
    }

    /// A ticket for `user` in `room`, issued at `issued_at` (Unix seconds).
    pub fn ticket_at(
        &self,
        user: &str,
        room: &str,
        grants: Grants,
        issued_at: u64,
        ttl_secs: u64,
    ) -> String {
        mint_ticket(
            self.app,
            self.kid,
            self.secret,
            user,
            room,
            grants,
            issued_at,
            ttl_secs,
        )
    }
}

/// A ticket signed with `secret` under `kid` (any secret: a forged ticket is one signed
/// with a secret the relay does not know).
#[allow(clippy::too_many_arguments)] // every claim of a ticket, named at the call
pub fn mint_ticket(
    app: &str,
    kid: &str,
    secret: &[u8],
    user: &str,
    room: &str,
    grants: Grants,
    issued_at: u64,
    ttl_secs: u64,
) -> String {
    let claims = TicketClaims::new(app, user, room, issued_at, ttl_secs, grants);
    mint(&claims, kid, secret).expect("mint a test ticket")
}

/// Wait until `cond` holds, checking it every few milliseconds; fails after [`SAFETY`]
/// with `what` and `detail()`. Only for counters, which have no notification: anything
/// that produces an event is waited on through that event.
pub async fn poll_until(
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

/// A scratch directory under the system's temp directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory whose name starts with `sealroom-{tag}`.
    pub fn new(tag: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("sealroom-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Write `text` to `name` in the directory; its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
