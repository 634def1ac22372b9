//! Keeping the session's ticket fresh: the relay removes a member whose ticket expires, so
//! the client asks the application's ticket source for a new one
//! ([`TicketReason::Refresh`]) when 80 % of the current ticket's lifetime has passed, or
//! two seconds before it ends if that is earlier, and sends it to the relay. The margin is
//! for the backend and the relay to answer, and for the whole seconds lifetimes are
//! counted in.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sealroom_frame::control::ControlMessage;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::event::Event;
use crate::link::LinkState;
use crate::room::Shared;
use crate::ticket::{TicketReason, TicketRequest, TicketSourceError};

/// The share of a ticket's lifetime after which it is refreshed, in percent.
const REFRESH_AT_PERCENT: u32 = 80;

/// Refresh at least this long before the announced expiry.
const REFRESH_MARGIN: Duration = Duration::from_secs(2);

/// Never refresh more often than this, whatever lifetime the relay announces.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// When to refresh a ticket announced at `since` to live `lifetime`.
pub(crate) fn refresh_at(since: Instant, lifetime: Duration) -> Instant {
    let share = lifetime * REFRESH_AT_PERCENT / 100;
    since
        + share
            .min(lifetime.saturating_sub(REFRESH_MARGIN))
            .max(MIN_REFRESH_INTERVAL)
}

/// Refresh the session's ticket ahead of every expiry until the session ends. A failed
/// refresh is reported ([`Event::TicketRefreshFailed`]) and not retried until the relay
/// announces a new lifetime (a rejoin or a refresh the application makes).
pub(crate) async fn run(shared: Arc<Shared>, events: mpsc::Sender<Event>, joined_with: String) {
    let mut lifetime = shared.ticket_lifetime.subscribe();
    let mut link = shared.link.subscribe();
    let mut sent = Some(joined_with);
    loop {
        let announced = *lifetime.borrow_and_update();
        if let Some((since, ttl)) = announced {
            tokio::select! {
                () = tokio::time::sleep_until(refresh_at(since, ttl)) => {
                    if shared.is_down() {
                        // The rejoin brings a fresh ticket and a new lifetime.
                    } else if let Some(error) = refresh(&shared, &mut sent).await {
                        tracing::warn!(%error, "ticket refresh failed");
                        let _ = events.send(Event::TicketRefreshFailed(error)).await;
                    }
                }
                changed = lifetime.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
                () = ended(&mut link) => return,
            }
        }
        // Wait for the next announced lifetime (the relay's answer, a rejoin).
        tokio::select! {
            changed = lifetime.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = ended(&mut link) => return,
        }
    }
}

/// Resolves when the session has ended.
async fn ended(link: &mut tokio::sync::watch::Receiver<LinkState>) {
    let _ = link
        .wait_for(|state| matches!(state, LinkState::Ended))
        .await;
}

/// Ask for a fresh ticket and send it; the error to report, if any.
async fn refresh(shared: &Shared, sent: &mut Option<String>) -> Option<TicketSourceError> {
    let attempt = shared.ticket_requests.fetch_add(1, Ordering::Relaxed);
    let ticket = match shared
        .tickets
        .ticket(TicketRequest::new(TicketReason::Refresh, attempt))
        .await
    {
        Ok(ticket) => ticket,
        Err(error) => return Some(error),
    };
    if sent.as_ref() == Some(&ticket) {
        return Some(TicketSourceError::new(
            "the ticket source gave the ticket already refreshed with",
        ));
    }
    *sent = Some(ticket.clone());
    // Refused (an expired or foreign ticket) arrives as an event from the relay.
    let _ = shared
        .send_control(ControlMessage::RefreshTicket { ticket })
        .await;
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_comes_at_four_fifths_of_the_lifetime_and_never_in_a_loop() {
        let now = Instant::now();
        assert_eq!(
            refresh_at(now, Duration::from_secs(600)),
            now + Duration::from_secs(480)
        );
        assert_eq!(
            refresh_at(now, Duration::from_secs(5)),
            now + Duration::from_secs(3),
            "two seconds of margin for short tickets"
        );
        assert_eq!(refresh_at(now, Duration::ZERO), now + MIN_REFRESH_INTERVAL);
    }
}
