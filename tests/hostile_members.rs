//! Hostile, slow and flaky members cost the honest members of a room nothing (issue 5).
//!
//! Each test starts its own relay on loopback and real members from `sealroom-client`;
//! members that break the rules are raw quinn connections speaking the sealroom wire
//! format, since the client library will not misbehave. Assertions are on counts, reasons
//! and the relay's own accounting of queued bytes, never on how long anything took; every
//! wait is on an observable outcome, with a safety timeout that only turns a hang into a
//! failure. Run with `--nocapture` to see the figures each test reports.

#[path = "hostile_members/support.rs"]
mod support;

#[path = "hostile_members/bad_input.rs"]
mod bad_input;
#[path = "hostile_members/expiry.rs"]
mod expiry;
#[path = "hostile_members/flood.rs"]
mod flood;
#[path = "hostile_members/hardening.rs"]
mod hardening;
#[path = "hostile_members/spoof.rs"]
mod spoof;
#[path = "hostile_members/stalled.rs"]
mod stalled;
