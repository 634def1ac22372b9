//! Where tickets come from: the application's backend, through an async callback.
//!
//! A ticket is asked for whenever the client needs one: for the first join, for a rejoin
//! after a lost connection, and to refresh a session before its ticket expires. A fixed
//! string serves for short sessions and tests (its session ends when the ticket expires).

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// The future a [`TicketSource`] returns.
pub type TicketFuture<'a> =
    Pin<Box<dyn Future<Output = Result<String, TicketSourceError>> + Send + 'a>>;

/// Why the client needs a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TicketReason {
    /// The first join of this room session.
    Join,
    /// A new connection after the previous one was lost.
    Rejoin,
    /// The session continues; its ticket is about to expire.
    Refresh,
}

/// What the client tells the ticket source when it asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TicketRequest {
    /// Why a ticket is needed.
    pub reason: TicketReason,
    /// How many times a ticket has been asked for in this room session, starting at 0.
    pub attempt: u32,
}

impl TicketRequest {
    /// A request for the first join.
    pub fn join() -> Self {
        Self::new(TicketReason::Join, 0)
    }

    /// A request for `reason`, the `attempt`-th of the room session.
    pub fn new(reason: TicketReason, attempt: u32) -> Self {
        Self { reason, attempt }
    }
}

/// The application could not provide a ticket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no ticket: {message}")]
pub struct TicketSourceError {
    message: String,
}

impl TicketSourceError {
    /// An error with a human-readable cause.
    pub fn new(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
        }
    }
}

/// Provides entry tickets (JWTs minted by the application's backend).
///
/// Implemented for `String` (always the same ticket) and, through [`ticket_fn`], for async
/// closures that fetch a fresh one.
pub trait TicketSource: Send + Sync + 'static {
    /// A ticket for the room this session joins.
    fn ticket(&self, request: TicketRequest) -> TicketFuture<'_>;
}

impl TicketSource for String {
    fn ticket(&self, _request: TicketRequest) -> TicketFuture<'_> {
        let ticket = self.clone();
        Box::pin(async move { Ok(ticket) })
    }
}

/// A [`TicketSource`] made from an async closure.
///
/// ```
/// use sealroom_client::{TicketSourceError, ticket_fn};
///
/// let tickets = ticket_fn(|request| async move {
///     // Ask the application's backend here; `request.reason` says why.
///     let _ = request;
///     Ok::<_, TicketSourceError>(String::from("eyJ..."))
/// });
/// # let _ = tickets;
/// ```
pub fn ticket_fn<F, Fut>(f: F) -> FnTicketSource<F>
where
    F: Fn(TicketRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, TicketSourceError>> + Send + 'static,
{
    FnTicketSource(f)
}

/// The [`TicketSource`] [`ticket_fn`] returns.
pub struct FnTicketSource<F>(F);

impl<F> fmt::Debug for FnTicketSource<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnTicketSource")
    }
}

impl<F, Fut> TicketSource for FnTicketSource<F>
where
    F: Fn(TicketRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, TicketSourceError>> + Send + 'static,
{
    fn ticket(&self, request: TicketRequest) -> TicketFuture<'_> {
        Box::pin((self.0)(request))
    }
}
