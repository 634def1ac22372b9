//! Rooms that span relay nodes: nodes embedded in this process (or run as child
//! processes), linked by the cascade, with real clients over loopback QUIC.
//!
//! Assertions are on counts, contents and reasons, never on how long anything took.

mod cascade;
mod config_cli;
mod directory;
mod mls;
mod netns;
#[path = "../recording/open.rs"]
mod open;
mod operator;
mod ops;
mod partition;
mod placement;
mod processes;
mod procs;
mod recording;
mod redis;
mod support;
