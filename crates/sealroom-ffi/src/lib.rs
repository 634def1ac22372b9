//! UniFFI bindings of the sealroom client and crypto crates, for Python, Swift and
//! Kotlin: one Rust core, and the encryption still happens inside the app's process.
//!
//! What the bindings offer, in the foreign language's own style (async functions stay
//! async, errors become typed exceptions):
//!
//! - [`Client`] joins a room through a relay with a ticket (or a [`TicketProvider`]
//!   callback that the client asks again for rejoins and refreshes) and the room secret,
//!   giving a [`Room`]: publish [`AudioTrack`]s, [`VideoTrack`]s and [`DataTrack`]s,
//!   receive [`Event`]s (frames opened and verified, frames that could not be opened,
//!   members, tracks, reconnects), read [`RoomStats`], leave.
//! - [`KeySchedule`], [`Sealer`], [`Opener`] and [`KeyContext`] seal and open SFrame
//!   frames directly, for apps with their own transport.
//! - [`mint_ticket`] mints entry tickets, for app backends.
//!
//! Every call runs on one tokio runtime the library owns (`runtime`), so the foreign
//! side needs no Rust async runtime of its own. UniFFI catches a panic at the boundary and
//! raises it as an internal error; nothing unwinds into the foreign language.
//!
//! How to generate the Swift and Kotlin sources and build the Python package is in
//! `docs/BINDINGS.md`.

#![allow(unsafe_code)] // UniFFI's scaffolding macro expands to unsafe extern functions.

mod client;
mod crypto;
mod error;
mod event;
mod runtime;
mod ticket;

pub use client::{AudioTrack, Client, DataTrack, Room, RoomStats, VideoTrack};
pub use crypto::{KeyContext, KeySchedule, Opened, Opener, Sealer};
pub use error::{
    ClientError, JoinError, KeyMaterialError, OpenError, PublishError, RefusalCode, SealError,
    TicketError, TicketProviderError,
};
pub use event::{Event, LeaveReason, MediaKind, Member, OpenFailure, ReceivedFrame, TrackInfo};
pub use runtime::shutdown;
pub use ticket::{Grants, TicketProvider, TicketReason, TicketRequest, mint_ticket};

uniffi::setup_scaffolding!("sealroom");
