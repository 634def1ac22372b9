//! The sealroom relay node as a library.
#![forbid(unsafe_code)]
pub mod mask;
pub mod sla;
