//! Resilience: relays stopped and started again, drained, tickets refreshed and refused,
//! and what a client says when it cannot join. Real relays and real clients on loopback;
//! every wait is on an observable outcome under a safety timeout.

mod support;

mod client_messages;
mod reconnect;
mod tickets;
