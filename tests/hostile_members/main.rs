//! Hostile, slow and flaky members cost the honest members of a room nothing.
//!
//! Each test starts its own relay on loopback and real members from `sealroom-client`;
//! members that break the rules are raw quinn connections speaking the sealroom wire
//! format, since the client library will not misbehave. Assertions are on counts, reasons
//! and the relay's own accounting of queued bytes, never on how long anything took; every
//! wait is on an observable outcome, with a safety timeout that only turns a hang into a
//! failure. Run with `--nocapture` to see the figures each test reports.

mod support;

mod bad_input;
mod expiry;
mod flood;
mod hardening;
mod spoof;
mod stalled;
