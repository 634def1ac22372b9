//! The sealroom client library.
#![forbid(unsafe_code)]
