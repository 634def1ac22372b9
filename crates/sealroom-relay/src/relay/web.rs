//! Which session a new connection's member speaks over: the native connection itself, or
//! the WebTransport session set up on an `h3` connection (counted either way).

use web_transport_quinn::Session;

use super::Shared;
use crate::engine::Violation;
use crate::transport::webtransport::{self, Flavour, WebSessionError};

/// The session a connection's members speak over: a native connection as it is, an `h3`
/// connection once its WebTransport session is set up (within the join deadline); `None`
/// when the session was refused (counted, and the connection closed).
pub(super) async fn open_session(
    shared: &Shared,
    conn: &quinn::Connection,
    flavour: Flavour,
    deadline: tokio::time::Instant,
) -> Option<Session> {
    if flavour == Flavour::Native {
        return Some(Session::raw(conn.clone()));
    }
    let result = match tokio::time::timeout_at(deadline, webtransport::accept(conn)).await {
        Ok(result) => result,
        Err(_) => {
            let err = WebSessionError::TimedOut;
            webtransport::refuse(conn, &err);
            shared.metrics.violation(Violation::NoJoin);
            Err(err)
        }
    };
    match result {
        Ok(session) => {
            shared.web_metrics.session(Ok(()));
            tracing::debug!("webtransport session");
            Some(session)
        }
        Err(err) => {
            tracing::debug!(reason = err.label(), %err, "webtransport session refused");
            shared.web_metrics.session(Err(&err));
            None
        }
    }
}
