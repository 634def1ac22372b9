//! One connection's life at the relay: the accept loop and its handshake gate, the session
//! (native or WebTransport), the control stream up to the join and after it, and the timer
//! loop that runs the core's deadlines.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use quinn::{ConnectionError, TransportErrorCode, VarInt};
use sealroom_frame::control::{ControlMessage, ErrorCode, LeaveReason, MAX_CONTROL_LEN};
use sealroom_frame::stream::{DeframeError, Deframer};
use tokio::sync::Notify;
use tracing::Instrument;
use web_transport_quinn::{ReadError, SessionError};

use crate::engine::{ConnId, ControlOutcome, JoinOutcome, Now, Violation};
use crate::gate::Handshake;
use crate::tls::{self};
use crate::transport::Outbox;
use crate::transport::ingress::{FrameDeadline, IncomingBudget};
use crate::transport::webtransport::Flavour;

use super::{READ_CHUNK, Shared, lock, media, system_now, web};

pub(super) async fn accept_loop(shared: Arc<Shared>, endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        // The first packet of this connection arrived about now: its one deadline (to
        // `Join`) runs from here.
        let arrived = Instant::now();
        let id = ConnId(shared.next_conn.fetch_add(1, Ordering::Relaxed));
        let remote = incoming.remote_address();
        let validated = incoming.remote_address_validated();
        let decision = lock(&shared.gate).decide(id, remote.ip(), validated);
        shared.gate_metrics.handshake(decision);
        match decision {
            Handshake::Accept => {}
            Handshake::Retry => {
                // Stateless: a real client comes back with a token proving its address;
                // a spoofed one never does.
                if incoming.may_retry() {
                    let _ = incoming.retry();
                } else {
                    incoming.refuse();
                }
                continue;
            }
            Handshake::Refuse(reason) => {
                tracing::debug!(%remote, reason = reason.label(), "handshake refused");
                incoming.refuse();
                if validated && reason.is_overload() {
                    // A client that proved its address was turned away by the relay's own
                    // overload: it counts against the join success rate.
                    shared.joined(JoinOutcome::Refused(ErrorCode::Overloaded), unix_now());
                }
                continue;
            }
        }
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let span = tracing::info_span!(
                "conn",
                id = %id,
                remote = %remote,
                member = tracing::field::Empty,
                user = tracing::field::Empty,
                room = tracing::field::Empty,
            );
            serve(Arc::clone(&shared), id, incoming, arrived)
                .instrument(span)
                .await;
            lock(&shared.gate).handle_closed(id, remote.ip());
            shared.connections.fetch_sub(1, Ordering::Relaxed);
            shared.connection_gone.notify_waiters();
        });
    }
}

fn unix_now() -> u64 {
    system_now().unix_secs
}

/// Why a member whose connection ended left: closing the connection (or the WebTransport
/// session) itself is leaving; anything else (idle timeout, reset, transport error) is a
/// lost connection.
pub(super) fn leave_reason(err: &SessionError) -> LeaveReason {
    match err {
        SessionError::ConnectionError(ConnectionError::ApplicationClosed(_))
        | SessionError::WebTransportError(web_transport_quinn::WebTransportError::Closed(..)) => {
            LeaveReason::Left
        }
        _ => LeaveReason::TimedOut,
    }
}

/// The violation behind a connection quinn closed because the peer broke QUIC.
fn quic_violation(err: &ConnectionError) -> Option<Violation> {
    match err {
        ConnectionError::TransportError(err)
            if err.code == TransportErrorCode::STREAM_LIMIT_ERROR =>
        {
            Some(Violation::TooManyStreams)
        }
        ConnectionError::TransportError(_) => Some(Violation::Quic),
        _ => None,
    }
}

async fn serve(shared: Arc<Shared>, id: ConnId, incoming: quinn::Incoming, arrived: Instant) {
    // One deadline from the first packet to `Join`: the handshake and the control stream
    // spend from it, and the core's join timeout runs from the same instant.
    let deadline = tokio::time::Instant::from_std(arrived + shared.limits.join_timeout());
    let remote = incoming.remote_address();
    let conn = match tokio::time::timeout_at(deadline, async { incoming.accept()?.await }).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(err)) => {
            tracing::debug!(%err, "handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("handshake timed out");
            shared.metrics.violation(Violation::NoJoin);
            return;
        }
    };
    let Some(flavour) = Flavour::of(&conn) else {
        tracing::debug!("no known ALPN negotiated");
        conn.close(
            VarInt::from_u32(ErrorCode::ProtocolViolation.close_code()),
            b"unknown alpn",
        );
        return;
    };
    let Some(session) = web::open_session(&shared, &conn, flavour, deadline).await else {
        return;
    };
    let control = tokio::select! {
        control = tokio::time::timeout_at(deadline, session.accept_bi()) => control,
        // Datagrams before the control stream are dropped as they come, never buffered.
        () = media::discard_datagrams(&shared, &session) => return,
    };
    let (send, recv) = match control {
        Ok(Ok(streams)) => streams,
        Ok(Err(err)) => {
            tracing::debug!(%err, "connection ended before a control stream");
            return;
        }
        Err(_) => {
            shared.metrics.violation(Violation::NoJoin);
            conn.close(
                VarInt::from_u32(ErrorCode::ProtocolViolation.close_code()),
                b"no control stream in time",
            );
            return;
        }
    };
    let outbox = Outbox::start(
        id,
        session.clone(),
        send,
        shared.limits,
        Arc::clone(&shared.metrics),
    );
    {
        let mut state = shared.state();
        state.outboxes.insert(id, outbox);
        let now = system_now();
        let first_packet = Now {
            instant: arrived.min(now.instant),
            unix_secs: now.unix_secs,
        };
        state
            .core
            .handle_connect_from(id, remote.ip(), first_packet);
        if shared.draining.load(Ordering::Relaxed) {
            state.core.begin_drain();
        }
        state.flush();
    }
    let incoming_buffered = Arc::new(IncomingBudget::new(shared.limits.max_incoming_buffer_bytes));
    let unfinished = Arc::new(media::Unfinished::default());
    let (joined_tx, joined_rx) = tokio::sync::watch::channel(false);
    let control = Control {
        conn: &conn,
        flavour,
        joined: joined_tx,
        unfinished: &unfinished,
    };
    let mut reason = tokio::select! {
        reason = read_control(&shared, id, recv, control) => reason,
        reason = media::read_datagrams(&shared, id, &session) => reason,
        reason = media::accept_streams(&shared, id, &session, &incoming_buffered, &unfinished, joined_rx) => reason,
    };
    if let Some(violation) = conn.close_reason().as_ref().and_then(quic_violation) {
        // quinn closed the connection because the peer broke QUIC (more streams than the
        // relay allows, say).
        tracing::debug!(violation = violation.label(), "protocol violation");
        shared.metrics.violation(violation);
        reason = LeaveReason::Removed;
    }
    {
        let mut state = shared.state();
        state.core.handle_disconnect(id, reason);
        if let Some(outbox) = state.outboxes.remove(&id) {
            outbox.close(None);
        }
        state.flush();
        shared.update_gauges(&state);
    }
    // Let the outbox finish its close (it owns the control stream) before the task ends.
    let _ = tokio::time::timeout(Duration::from_secs(3), conn.closed()).await;
    tracing::debug!(?reason, "connection ended");
}

/// The core's timer driver: sleep until the next deadline the core names, fire what is
/// due, and start over; an input that arms an earlier deadline wakes it early
/// ([`State::flush`]).
pub(super) async fn run_timers(shared: Arc<Shared>, changed: Arc<Notify>) {
    let mut next = None;
    loop {
        match next {
            Some(at) => {
                let at = tokio::time::Instant::from_std(at);
                tokio::select! {
                    () = tokio::time::sleep_until(at) => next = shared.fire_timers(),
                    () = changed.notified() => next = shared.state().sleeping_until,
                }
            }
            None => {
                changed.notified().await;
                next = shared.state().sleeping_until;
            }
        }
    }
}

/// What the control stream's reader acts on besides the core: the connection's stream
/// credit and the media streams waiting for `Join`.
struct Control<'a> {
    conn: &'a quinn::Connection,
    flavour: Flavour,
    /// Set once the connection has joined: media streams are read from then on.
    joined: tokio::sync::watch::Sender<bool>,
    /// The incoming streams `Leave` waits for.
    unfinished: &'a media::Unfinished,
}

async fn read_control(
    shared: &Shared,
    id: ConnId,
    mut recv: web_transport_quinn::RecvStream,
    control: Control<'_>,
) -> LeaveReason {
    let mut deframer = Deframer::new(MAX_CONTROL_LEN);
    let mut deadline = FrameDeadline::new(shared.limits.incomplete_frame_timeout());
    loop {
        let read = recv.read_chunk(READ_CHUNK, true);
        let read = match deadline.deadline() {
            Some(at) => {
                match tokio::time::timeout_at(tokio::time::Instant::from_std(at), read).await {
                    Ok(read) => read,
                    Err(_) => {
                        // A control message started and never completed.
                        shared.violation(id, Violation::StalledFrame);
                        return LeaveReason::Removed;
                    }
                }
            }
            None => read.await,
        };
        let chunk = match read {
            Ok(Some(chunk)) => chunk.bytes,
            Ok(None) => {
                // The client finished its control stream: it is leaving.
                return LeaveReason::Left;
            }
            Err(ReadError::SessionError(err)) => return leave_reason(&err),
            Err(_) => return LeaveReason::Left,
        };
        shared.tap(&chunk);
        deframer.push(chunk);
        let mut completed = false;
        loop {
            match deframer.next_frame() {
                Ok(Some(bytes)) => {
                    completed = true;
                    let outcome = match ControlMessage::decode(&bytes) {
                        Ok(message) => {
                            if matches!(message, ControlMessage::Leave) {
                                // What the member sent before leaving is forwarded first;
                                // the other branches keep reading meanwhile.
                                let drained = control.unfinished.drained();
                                let _ = tokio::time::timeout(shared.limits.leave_drain(), drained)
                                    .await;
                            }
                            shared.control(id, message)
                        }
                        Err(err) => {
                            tracing::debug!(%err, "malformed control message");
                            shared.violation(id, Violation::MalformedControl);
                            return LeaveReason::Removed;
                        }
                    };
                    match outcome {
                        ControlOutcome::Violation(_) => return LeaveReason::Removed,
                        ControlOutcome::Join(JoinOutcome::Joined) => {
                            lock(&shared.gate).handle_joined(id);
                            tls::grant_joined(control.conn, &shared.limits, control.flavour);
                            control.joined.send_replace(true);
                        }
                        _ => {}
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::debug!(%err, "broken control stream framing");
                    let violation = match err {
                        DeframeError::Oversize { .. } => Violation::ControlTooLarge,
                        _ => Violation::ControlFraming,
                    };
                    shared.violation(id, violation);
                    return LeaveReason::Removed;
                }
            }
        }
        deadline.update(completed, deframer.buffered_len() > 0, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quic_breaches_are_typed_violations() {
        let too_many =
            ConnectionError::TransportError(TransportErrorCode::STREAM_LIMIT_ERROR.into());
        assert_eq!(quic_violation(&too_many), Some(Violation::TooManyStreams));
        let flow = ConnectionError::TransportError(TransportErrorCode::FLOW_CONTROL_ERROR.into());
        assert_eq!(quic_violation(&flow), Some(Violation::Quic));
        assert_eq!(quic_violation(&ConnectionError::TimedOut), None);
        assert_eq!(
            leave_reason(&ConnectionError::TimedOut.into()),
            LeaveReason::TimedOut
        );
        let closed = web_transport_quinn::WebTransportError::Closed(0, String::new());
        assert_eq!(leave_reason(&closed.into()), LeaveReason::Left);
    }
}
