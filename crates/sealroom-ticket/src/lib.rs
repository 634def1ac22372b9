//! Entry tickets of sealroom: the HS256 JWTs an app's backend mints for one user and one
//! room, and a relay verifies before it admits anyone.
//!
//! This crate is what an app backend links to mint tickets: it depends on a JWT library and
//! serde only (no QUIC, no HTTP server, no metrics). The relay uses the same crate to verify
//! them, so both sides agree on the claims by construction.
//!
//! - [`TicketClaims`] and [`Grants`]: who, which room, when, and what the holder may do;
//! - [`mint`]: sign claims with one of the app's secrets, named by its key id (`kid`);
//! - [`TicketVerifier`]: check a ticket against the secrets of every app a relay serves,
//!   at a time the caller gives (no clock inside), with the relay's leeway, longest
//!   lifetime and longest user id;
//! - [`AppConfig`] and [`TicketSecret`]: the secrets of one app, several at once so a
//!   secret can be rotated without downtime.
//!
//! The JSON claims of a ticket are:
//!
//! | claim    | type   | meaning                                                 |
//! |----------|--------|---------------------------------------------------------|
//! | `app`    | string | app id; picks the secrets the relay verifies with       |
//! | `sub`    | string | user id                                                 |
//! | `room`   | string | room id                                                 |
//! | `nbf`    | number | not valid before, seconds since the Unix epoch          |
//! | `exp`    | number | not valid from, seconds since the Unix epoch            |
//! | `iat`    | number | issued at (informational, not checked)                  |
//! | `grants` | object | `{"pa": bool, "pv": bool, "pd": bool, "sub": bool}`     |
//!
//! The grant keys stand for publish audio, publish video, publish data and subscribe; a
//! missing key (or a missing `grants` object) grants nothing. The long names
//! (`publish_audio`, ...) are accepted too. The JOSE header must say `"alg": "HS256"`; its
//! `kid` picks one of the app's secrets, and a ticket without `kid` is tried against each of
//! the app's secrets.
//!
//! # An app backend minting a ticket
//!
//! ```
//! use std::time::{SystemTime, UNIX_EPOCH};
//!
//! use sealroom_ticket::{AppConfig, Grants, TicketClaims, TicketVerifier, mint};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The secret is shared with the relays, which know it under the key id "k1".
//! let secret = b"a long random secret shared with the relays";
//! let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
//!
//! // Alice may join room-1 of my-app for ten minutes, and only listen.
//! let claims = TicketClaims::new("my-app", "alice", "room-1", now, 600, Grants::subscribe_only());
//! let ticket = mint(&claims, "k1", secret)?;
//! // Hand `ticket` to Alice's client; it presents it when it joins.
//!
//! // A relay serving my-app with that secret admits her (30 s of clock skew tolerated).
//! let verifier = TicketVerifier::new(&[AppConfig::new("my-app", "k1", secret.to_vec())], 30);
//! assert_eq!(verifier.verify(&ticket, now)?, claims);
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod app;
mod claims;
mod mint;
mod verify;

pub use app::{AppConfig, TicketSecret};
pub use claims::{Grants, TicketClaims};
pub use mint::{TicketError, mint};
pub use verify::{MAX_TICKET_LEN, TicketVerifier, VerifyError};
