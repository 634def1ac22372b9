//! A relay on loopback, honest members from `sealroom-client`, raw quinn members that
//! break the rules, and the memory figures the tests report.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context;
use sealroom_client::{Client, ClientConfig, Events, Room, RoomSecret, Trust};
use sealroom_relay::{Grants, Limits, Relay, RelayConfig, RelayStats};

use sealroom_test_support::TestApp;
pub(crate) use sealroom_test_support::raw::{Raw, frame, join_message};
pub(crate) use sealroom_test_support::{Member, SAFETY, poll_until as until};

/// The app the test relays serve.
pub(crate) const APP: &str = "app-h";
const TEST_APP: TestApp = TestApp {
    app: APP,
    kid: "h1",
    secret: b"hostile-members test secret",
};

/// A relay on 127.0.0.1:0 serving [`APP`] within `limits`.
pub(crate) async fn relay(limits: Limits) -> anyhow::Result<Relay> {
    let config = RelayConfig::default()
        .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .limits(limits)
        .app(TEST_APP.config());
    Relay::start(config).await.context("relay start")
}

/// A ticket for `user` in `room`, valid from now for `ttl_secs`.
pub(crate) fn ticket(user: &str, room: &str, grants: Grants, ttl_secs: u64) -> String {
    TEST_APP.ticket(user, room, grants, ttl_secs)
}

/// Join `room` as `user` with a ticket valid for an hour; a task collects its events.
pub(crate) async fn join_member(
    relay: &Relay,
    user: &str,
    room: &str,
    secret: &RoomSecret,
) -> anyhow::Result<Member> {
    let ticket = ticket(user, room, Grants::all(), 3600);
    let (client, room, events) = join_client(relay, ticket, secret, |c| c).await?;
    Ok(Member::collecting(client, room, events).named(user))
}

/// Wait until the relay's stats satisfy `cond`.
pub(crate) async fn until_stats(
    relay: &Relay,
    what: &str,
    cond: impl Fn(&RelayStats) -> bool,
) -> anyhow::Result<()> {
    until(
        what,
        || cond(&relay.stats()),
        || format!("{:#?}", relay.stats()),
    )
    .await
}

/// Connect a fresh client (configured by `configure`) and join with `tickets`.
pub(crate) async fn join_client(
    relay: &Relay,
    tickets: impl sealroom_client::TicketSource,
    secret: &RoomSecret,
    configure: impl FnOnce(ClientConfig) -> ClientConfig,
) -> anyhow::Result<(Client, Room, Events)> {
    let config = configure(ClientConfig::new(Trust::Pinned(relay.cert_sha256())));
    let client = Client::new(config).context("client")?;
    let (room, events) = client
        .join(relay.local_addr(), "localhost", tickets, secret)
        .await
        .context("join")?;
    Ok((client, room, events))
}

/// Wait until `member`'s client has handed `frames` frames to QUIC (or given up on them).
///
/// A video track skips frames still queued behind a newer keyframe (they would arrive
/// late); a test that wants every frame delivered waits for this before each keyframe.
pub(crate) async fn flushed(member: &Member, frames: u64) -> anyhow::Result<()> {
    until(
        "the client sent what was queued",
        || {
            let stats = member.room.stats();
            stats.frames_sent + stats.frames_not_sent >= frames
        },
        || format!("{:?}", member.room.stats()),
    )
    .await
}

/// The bytes the relay may hold queued towards one connection within `limits`, by its
/// own accounting: a full datagram queue (frames of at most `max_datagram` bytes), all
/// video, all reliable data, and single-frame audio streams of at most `max_frame_len`.
pub(crate) fn connection_queue_bound(limits: &Limits, max_datagram: usize) -> usize {
    limits.datagram_queue_len * max_datagram
        + limits.video_queue_bytes
        + limits.reliable_queue_bytes
        + limits.max_audio_streams * limits.max_frame_len
}

/// This process's resident set now and at its peak, in KiB, from `/proc/self/status`
/// (`None` where it cannot be read). The process holds the relay and every client.
pub(crate) fn process_memory_kib() -> (Option<u64>, Option<u64>) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A small deterministic generator for garbage (xorshift64*).
pub(crate) struct Garbage(u64);

impl Garbage {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `len` bytes of noise.
    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
