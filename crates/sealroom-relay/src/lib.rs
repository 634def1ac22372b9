//! The sealroom relay node as a library.
#![forbid(unsafe_code)]
