//! The operations layer: what an operator sees and steers of a running relay, on top of the
//! core and the transport.
//!
//! - [`metrics`]: the Prometheus metrics of one relay;
//! - [`http`]: the internal listener (metrics, health, readiness, the SLA summary, the admin
//!   API), on an address apart from the QUIC one;
//! - [`admin`]: the admin API (list rooms and members, remove a member, close a room);
//! - [`sla`]: the join success rate in windows, against a target;
//! - [`sla_store`]: the windows kept in a small file across restarts;
//! - [`mask`]: masking user and room ids in logs;
//! - [`quality`]: each member's connection quality and the node's quality histograms.

pub mod admin;
pub mod http;
pub(crate) mod listener;
pub mod mask;
pub mod metrics;
pub(crate) mod mls_metrics;
pub mod quality;
pub mod sla;
pub mod sla_store;
