//! RFC 9605 SFrame for sealroom.
#![forbid(unsafe_code)]
