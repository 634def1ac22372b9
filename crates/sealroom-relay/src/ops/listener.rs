//! The accept loop of the internal HTTP listener, bounded: a cap on open connections, a
//! deadline for each request's headers, and a lifetime for each connection. When the cap
//! is reached the oldest connection is closed to make room, so a flood of connections that
//! never finish their headers (a slowloris) cannot keep `/health` from answering: a new
//! request gets a slot, and a health check sends its request well before the flood has
//! cycled through every slot.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The peer address of a request to the internal listener (an axum extension).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) SocketAddr);

/// Bounds of the internal listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections open at once; past it the oldest is closed (default 128).
    pub max_connections: usize,
    /// Time a client has to send a request's headers, from the connection's start or the
    /// end of its previous response (default 5 s).
    pub header_timeout: Duration,
    /// Time a connection may stay open at all (default 60 s).
    pub connection_lifetime: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_connections: 128,
            header_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(60),
        }
    }
}

/// Open connections, oldest first, each with the sender that closes it.
type Open = Arc<Mutex<BTreeMap<u64, oneshot::Sender<()>>>>;

/// Serve `router` on `listener` within `limits` until `stop` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    stop: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let open: Open = Arc::new(Mutex::new(BTreeMap::new()));
    let mut next = 0u64;
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::debug!(%err, "internal listener accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (close, closed) = oneshot::channel();
        let id = next;
        next += 1;
        {
            let mut open = open.lock().unwrap_or_else(PoisonError::into_inner);
            while open.len() >= limits.max_connections.max(1) {
                // Dropping the sender closes the oldest connection.
                open.pop_first();
            }
            open.insert(id, close);
        }
        let service = TowerToHyperService::new(router.clone().layer(axum::Extension(Peer(peer))));
        let open = Arc::clone(&open);
        tokio::spawn(async move {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(64 * 1024);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = closed => {}
                () = tokio::time::sleep(limits.connection_lifetime) => {}
            }
            open.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        });
    }
    open.lock().unwrap_or_else(PoisonError::into_inner).clear();
    Ok(())
}
