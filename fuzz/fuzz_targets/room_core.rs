//! The relay's I/O-free room core under arbitrary sequences of connections, joins, control
//! messages (in order or not), frames from several members (honest, forged, oversize),
//! incoming streams, stale groups, protocol violations, disconnects, operator actions and
//! time. Checked after every step: nothing panics; `RelayCore::invariant_violation` finds
//! nothing; no frame or room event reaches a connection of another room, a member that
//! left, the sender itself, or a member without the subscribe grant; nothing is sent to a
//! connection after it was closed.
#![no_main]

#[path = "../checks/room_core.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
