//! The gate in front of the relay: which new QUIC handshakes it takes on, which it asks to
//! prove their address first (a stateless QUIC Retry), and which it refuses, before any
//! state is kept for them. No I/O and no clock: the driver asks [`Gate::decide`] for every
//! incoming handshake and reports when a connection joins or ends.
//!
//! A connection is *half-open* from its first packet until its `Join` is decided. Half-open
//! connections have their own budget (`max_half_open`): a flood of handshakes that never
//! complete (from spoofed source addresses, which cannot be told apart by address) can
//! fill that budget but never the connection table of joined members. While the budget is
//! under pressure (`retry_above_half_open` half-open connections), handshakes from
//! addresses not yet validated get a Retry: a spoofed source never sees it and never comes
//! back, so it costs the relay one stateless packet.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::{AddressValidation, Limits};
use crate::engine::ConnId;

/// What to do with an incoming handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Take it on: it now counts as half-open.
    Accept,
    /// Answer with a stateless Retry; the client comes back with a token proving its
    /// address.
    Retry,
    /// Refuse it (a QUIC `CONNECTION_REFUSED`), for this reason.
    Refuse(Refusal),
}

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// The relay is draining.
    Draining,
    /// `max_connections` connections are open.
    Full,
    /// `max_half_open` connections are half-open.
    HalfOpen,
    /// `max_connections_per_ip` connections are open from the address (IPv6: its /64).
    Address,
    /// The node is over `max_memory_mb`.
    Memory,
}

impl Refusal {
    /// Every reason, for exporting zeroed counters.
    pub const ALL: [Self; 5] = [
        Self::Draining,
        Self::Full,
        Self::HalfOpen,
        Self::Address,
        Self::Memory,
    ];

    /// A stable lowercase label (metrics, logs).
    pub const fn label(self) -> &'static str {
        match self {
            Self::Draining => "draining",
            Self::Full => "full",
            Self::HalfOpen => "half_open",
            Self::Address => "address",
            Self::Memory => "memory",
        }
    }

    /// Whether the refusal is the relay's own overload (it counts against the join
    /// success rate when the address was validated, so a real client was turned away).
    pub const fn is_overload(self) -> bool {
        matches!(self, Self::Full | Self::HalfOpen | Self::Memory)
    }
}

/// The key per-address limits count under: an IPv4 address, or the /64 of an IPv6 address
/// (one host usually holds a whole /64). IPv4-mapped IPv6 addresses count as IPv4.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

/// Admission of handshakes, and the count of open and half-open connections.
#[derive(Debug)]
pub struct Gate {
    limits: Limits,
    connections: usize,
    half_open: HashSet<ConnId>,
    /// Open connections per source key (entries removed at zero, so bounded by
    /// `max_connections`).
    per_source: HashMap<IpAddr, usize>,
    over_memory: bool,
    draining: bool,
}

impl Gate {
    /// A gate enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            connections: 0,
            half_open: HashSet::new(),
            per_source: HashMap::new(),
            over_memory: false,
            draining: false,
        }
    }

    /// Connections open (half-open included).
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// Connections between their first packet and their `Join`.
    pub fn half_open(&self) -> usize {
        self.half_open.len()
    }

    /// Whether the node is over its memory ceiling.
    pub fn is_over_memory(&self) -> bool {
        self.over_memory
    }

    /// Stop admitting: every later handshake is refused.
    pub fn begin_drain(&mut self) {
        self.draining = true;
    }

    /// The node's resident memory is `bytes`; returns whether it is over the ceiling.
    pub fn handle_memory(&mut self, bytes: u64) -> bool {
        let ceiling = self.limits.max_memory_mb.saturating_mul(1024 * 1024);
        self.over_memory = ceiling > 0 && bytes >= ceiling;
        self.over_memory
    }

    /// Decide about a handshake from `remote`; `validated` when it came back with a Retry
    /// token. On [`Handshake::Accept`] the connection counts as open and half-open under
    /// `conn` until [`Gate::handle_joined`] and [`Gate::handle_closed`].
    pub fn decide(&mut self, conn: ConnId, remote: IpAddr, validated: bool) -> Handshake {
        if self.draining {
            return Handshake::Refuse(Refusal::Draining);
        }
        if self.over_memory {
            return Handshake::Refuse(Refusal::Memory);
        }
        let retry = match self.limits.address_validation {
            AddressValidation::Always => true,
            AddressValidation::Auto => self.half_open.len() >= self.limits.retry_above_half_open,
            AddressValidation::Off => false,
        };
        if retry && !validated {
            // Before any other check: a spoofed source costs one stateless packet and can
            // neither fill a table nor be counted against a real client's address.
            return Handshake::Retry;
        }
        if self.connections >= self.limits.max_connections {
            return Handshake::Refuse(Refusal::Full);
        }
        if self.half_open.len() >= self.limits.max_half_open {
            return Handshake::Refuse(Refusal::HalfOpen);
        }
        let key = source_key(remote);
        let count = self.per_source.entry(key).or_insert(0);
        if *count >= self.limits.max_connections_per_ip {
            return Handshake::Refuse(Refusal::Address);
        }
        *count += 1;
        self.connections += 1;
        self.half_open.insert(conn);
        Handshake::Accept
    }

    /// `conn` was admitted to a room: it no longer counts as half-open.
    pub fn handle_joined(&mut self, conn: ConnId) {
        self.half_open.remove(&conn);
    }

    /// `conn` (accepted from `remote`) ended, at whatever stage.
    pub fn handle_closed(&mut self, conn: ConnId, remote: IpAddr) {
        self.half_open.remove(&conn);
        self.connections = self.connections.saturating_sub(1);
        let key = source_key(remote);
        if let Some(count) = self.per_source.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_source.remove(&key);
            }
        }
    }
}

/// Labels of the handshake series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The gate's metrics: `sealroom_handshakes_total{result}` (`accepted`, `retry`, or
/// `refused_<reason>`), the `half_open_connections` gauge and `memory_bytes` (resident
/// memory as last read).
#[derive(Debug, Clone)]
pub struct GateMetrics {
    accepted: Counter,
    retried: Counter,
    refused: Vec<(Refusal, Counter)>,
    half_open: Gauge,
    memory: Gauge,
}

impl GateMetrics {
    /// Create the series and register them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let family = Family::<ResultLabels, Counter>::default();
        let accepted = family.get_or_create_owned(&ResultLabels { result: "accepted" });
        let retried = family.get_or_create_owned(&ResultLabels { result: "retry" });
        let refused = Refusal::ALL
            .iter()
            .map(|reason| {
                let result = match reason {
                    Refusal::Draining => "refused_draining",
                    Refusal::Full => "refused_full",
                    Refusal::HalfOpen => "refused_half_open",
                    Refusal::Address => "refused_address",
                    Refusal::Memory => "refused_memory",
                };
                (
                    *reason,
                    family.get_or_create_owned(&ResultLabels { result }),
                )
            })
            .collect();
        registry.register(
            "handshakes",
            "New QUIC handshakes by what the relay did: accepted, asked to retry (address \
             validation) or refused, by reason",
            family,
        );
        let half_open = Gauge::default();
        registry.register(
            "half_open_connections",
            "Connections between their first packet and their Join",
            half_open.clone(),
        );
        let memory = Gauge::default();
        registry.register(
            "memory_bytes",
            "Resident memory of the node as last read (0 where it cannot be read)",
            memory.clone(),
        );
        Self {
            accepted,
            retried,
            refused,
            half_open,
            memory,
        }
    }

    /// Count a decision.
    pub fn handshake(&self, decision: Handshake) {
        match decision {
            Handshake::Accept => {
                self.accepted.inc();
            }
            Handshake::Retry => {
                self.retried.inc();
            }
            Handshake::Refuse(reason) => {
                if let Some((_, counter)) = self.refused.iter().find(|(r, _)| *r == reason) {
                    counter.inc();
                }
            }
        }
    }

    /// Update the gauges.
    pub fn set(&self, half_open: usize, memory_bytes: u64) {
        self.half_open
            .set(i64::try_from(half_open).unwrap_or(i64::MAX));
        self.memory
            .set(i64::try_from(memory_bytes).unwrap_or(i64::MAX));
    }

    /// A snapshot.
    pub fn snapshot(&self) -> HandshakeStats {
        HandshakeStats {
            accepted: self.accepted.get(),
            retried: self.retried.get(),
            refused: self
                .refused
                .iter()
                .map(|(reason, counter)| (*reason, counter.get()))
                .filter(|(_, n)| *n > 0)
                .collect(),
            half_open: u64::try_from(self.half_open.get()).unwrap_or(0),
            memory_bytes: u64::try_from(self.memory.get()).unwrap_or(0),
        }
    }
}

/// Handshake counters and the gate's gauges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeStats {
    /// Handshakes taken on.
    pub accepted: u64,
    /// Handshakes answered with a Retry.
    pub retried: u64,
    /// Handshakes refused, by reason (reasons that never happened are left out).
    pub refused: Vec<(Refusal, u64)>,
    /// Half-open connections now.
    pub half_open: u64,
    /// Resident memory of the node as last read.
    pub memory_bytes: u64,
}

impl HandshakeStats {
    /// Handshakes refused for `reason`.
    pub fn refused(&self, reason: Refusal) -> u64 {
        self.refused
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}

/// Resident memory of this process in bytes, from `/proc/self/status` (`None` where it
/// cannot be read).
pub fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn v4(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    #[test]
    fn half_open_budget_and_retry_under_pressure() {
        let limits = Limits {
            max_half_open: 4,
            retry_above_half_open: 2,
            ..Limits::default()
        };
        let mut gate = Gate::new(limits);
        assert_eq!(gate.decide(ConnId(1), v4(1), false), Handshake::Accept);
        assert_eq!(gate.decide(ConnId(2), v4(2), false), Handshake::Accept);
        // Under pressure: unvalidated handshakes are asked to prove their address.
        assert_eq!(gate.decide(ConnId(3), v4(3), false), Handshake::Retry);
        assert_eq!(gate.half_open(), 2);
        assert_eq!(gate.decide(ConnId(3), v4(3), true), Handshake::Accept);
        assert_eq!(gate.decide(ConnId(4), v4(4), true), Handshake::Accept);
        assert_eq!(
            gate.decide(ConnId(5), v4(5), true),
            Handshake::Refuse(Refusal::HalfOpen)
        );
        // A join frees a half-open slot, not a connection.
        gate.handle_joined(ConnId(1));
        assert_eq!(gate.half_open(), 3);
        assert_eq!(gate.connections(), 4);
        assert_eq!(gate.decide(ConnId(5), v4(5), true), Handshake::Accept);
        gate.handle_closed(ConnId(5), v4(5));
        gate.handle_closed(ConnId(1), v4(1));
        assert_eq!((gate.connections(), gate.half_open()), (3, 3));
    }

    #[test]
    fn off_never_retries_and_always_always_does() {
        let mut gate = Gate::new(Limits {
            address_validation: AddressValidation::Off,
            max_half_open: 1,
            retry_above_half_open: 0,
            ..Limits::default()
        });
        assert_eq!(gate.decide(ConnId(1), v4(1), false), Handshake::Accept);
        assert_eq!(
            gate.decide(ConnId(2), v4(2), false),
            Handshake::Refuse(Refusal::HalfOpen)
        );
        let mut gate = Gate::new(Limits {
            address_validation: AddressValidation::Always,
            ..Limits::default()
        });
        assert_eq!(gate.decide(ConnId(1), v4(1), false), Handshake::Retry);
        assert_eq!(gate.decide(ConnId(1), v4(1), true), Handshake::Accept);
    }

    #[test]
    fn per_address_limit_counts_ipv6_per_64() {
        let mut gate = Gate::new(Limits {
            max_connections_per_ip: 1,
            ..Limits::default()
        });
        let a: IpAddr = "2001:db8:1:2::1".parse::<Ipv6Addr>().unwrap().into();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse::<Ipv6Addr>().unwrap().into();
        let c: IpAddr = "2001:db8:1:3::1".parse::<Ipv6Addr>().unwrap().into();
        assert_eq!(gate.decide(ConnId(1), a, true), Handshake::Accept);
        assert_eq!(
            gate.decide(ConnId(2), b, true),
            Handshake::Refuse(Refusal::Address)
        );
        assert_eq!(gate.decide(ConnId(3), c, true), Handshake::Accept);
        let mapped: IpAddr = "::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().into();
        assert_eq!(source_key(mapped), v4(1));
    }

    #[test]
    fn memory_ceiling_and_drain_refuse() {
        let mut gate = Gate::new(Limits {
            max_memory_mb: 1,
            ..Limits::default()
        });
        assert!(!gate.handle_memory(512 * 1024));
        assert_eq!(gate.decide(ConnId(1), v4(1), false), Handshake::Accept);
        assert!(gate.handle_memory(2 * 1024 * 1024));
        assert_eq!(
            gate.decide(ConnId(2), v4(2), true),
            Handshake::Refuse(Refusal::Memory)
        );
        assert!(!gate.handle_memory(0));
        gate.begin_drain();
        assert_eq!(
            gate.decide(ConnId(2), v4(2), true),
            Handshake::Refuse(Refusal::Draining)
        );
    }
}
