//! Tickets: minting them (for app backends) and providing them to the client (a callback
//! the client asks for the first join, rejoins and refreshes).

#![allow(unsafe_code)] // UniFFI's export macros expand to unsafe extern functions.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sealroom_client::{TicketFuture, TicketSource, TicketSourceError};

use crate::error::{TicketError, TicketProviderError};

/// What a ticket allows its holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct Grants {
    /// Publish audio tracks.
    pub publish_audio: bool,
    /// Publish video tracks.
    pub publish_video: bool,
    /// Publish data tracks.
    pub publish_data: bool,
    /// Receive other members' tracks.
    pub subscribe: bool,
    /// Record the room: receive every track of every member, sealed, and publish nothing
    /// (a recorder; see docs/RECORDING.md). Off unless given.
    #[uniffi(default = false)]
    pub record: bool,
}

impl From<Grants> for sealroom_ticket::Grants {
    fn from(grants: Grants) -> Self {
        Self {
            publish_audio: grants.publish_audio,
            publish_video: grants.publish_video,
            publish_data: grants.publish_data,
            subscribe: grants.subscribe,
            record: grants.record,
        }
    }
}

/// Mint an entry ticket (an HS256 JWT) as an app backend does: valid from now for
/// `ttl_secs` seconds, for `user` in `room` of `app`, signed with the app's ticket
/// secret named `kid` on the relay.
///
/// # Errors
/// [`TicketError::Invalid`] for an empty secret or claim, or a zero lifetime.
#[uniffi::export]
pub fn mint_ticket(
    app: String,
    user: String,
    room: String,
    kid: String,
    secret: Vec<u8>,
    ttl_secs: u64,
    grants: Grants,
) -> Result<String, TicketError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = sealroom_ticket::TicketClaims::new(app, user, room, now, ttl_secs, grants.into());
    sealroom_ticket::mint(&claims, &kid, &secret).map_err(|err| TicketError::Invalid {
        message: err.to_string(),
    })
}

/// Why the client asks for a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum TicketReason {
    /// The first join.
    Join,
    /// A new connection after the previous one was lost.
    Rejoin,
    /// The session continues; its ticket is about to expire.
    Refresh,
}

/// What the client tells the provider when it asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct TicketRequest {
    /// Why a ticket is needed.
    pub reason: TicketReason,
    /// How many tickets this room session asked for before, starting at 0.
    pub attempt: u32,
}

impl From<sealroom_client::TicketRequest> for TicketRequest {
    fn from(request: sealroom_client::TicketRequest) -> Self {
        let reason = match request.reason {
            sealroom_client::TicketReason::Join => TicketReason::Join,
            sealroom_client::TicketReason::Rejoin => TicketReason::Rejoin,
            _ => TicketReason::Refresh,
        };
        Self {
            reason,
            attempt: request.attempt,
        }
    }
}

/// Gives the client entry tickets, implemented by the app (typically a call to its
/// backend). The client calls it on a thread of its own, so it may block.
#[uniffi::export(with_foreign)]
pub trait TicketProvider: Send + Sync {
    /// A ticket for the room this session joins.
    ///
    /// # Errors
    /// [`TicketProviderError::Failed`] when there is none; the client reports it (a
    /// failed join, or an event for a failed refresh).
    fn ticket(&self, request: TicketRequest) -> Result<String, TicketProviderError>;
}

/// A fixed ticket, for `join` with a string.
pub(crate) struct FixedTicket(pub(crate) String);

impl TicketProvider for FixedTicket {
    fn ticket(&self, _request: TicketRequest) -> Result<String, TicketProviderError> {
        Ok(self.0.clone())
    }
}

/// The client's ticket source over a provider: asks it on a blocking thread.
pub(crate) struct ProviderSource(pub(crate) Arc<dyn TicketProvider>);

impl TicketSource for ProviderSource {
    fn ticket(&self, request: sealroom_client::TicketRequest) -> TicketFuture<'_> {
        let provider = self.0.clone();
        Box::pin(async move {
            let asked = tokio::task::spawn_blocking(move || provider.ticket(request.into()));
            match asked.await {
                Ok(Ok(ticket)) => Ok(ticket),
                Ok(Err(err)) => Err(TicketSourceError::new(err)),
                Err(err) => Err(TicketSourceError::new(format!(
                    "the ticket provider did not finish: {err}"
                ))),
            }
        })
    }
}
