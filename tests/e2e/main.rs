//! End-to-end tests: a real relay and real clients over loopback QUIC.
//!
//! Each test starts its own relay on an ephemeral port. Assertions are on counts, contents
//! and reasons, never on how long anything took.

mod admission;
mod exchange;
mod hostile;
mod isolation;
mod mls;
mod mls_large;
mod mls_latency;
mod quality;
mod session;
mod support;
