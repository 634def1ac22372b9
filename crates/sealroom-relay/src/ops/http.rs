//! The internal HTTP listener of a relay node: metrics, health, readiness, the SLA summary
//! and the admin API ([`crate::admin`]). It is meant for the operator's network only and
//! binds loopback by default; nothing on it is needed by clients.
//!
//! | path | answer |
//! | --- | --- |
//! | `GET /metrics` | the relay's metrics in the OpenMetrics text format (Prometheus scrapes it) |
//! | `GET /health` | `200 ok` while the process serves |
//! | `GET /ready` | `200 ready`, or `503 draining` once shutdown began (take the node out of rotation) |
//! | `GET /sla` | the join success rate per window as JSON ([`crate::sla::SlaSummary`]) |
//! | `/admin/...` | the admin API, bearer token required |
//!
//! A node in a cluster ([`InternalState::attach_cluster`]) adds the cluster's series
//! ([`crate::cluster::ClusterMetrics`]) to `/metrics` and its view to the admin API
//! (`GET /admin/cluster`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminTarget, AuthThrottle};
use crate::cluster::Cluster;
pub use crate::listener::ListenerLimits;
use crate::mask::IdMask;
use crate::sla::{SlaConfig, SlaOutcome, SlaSummary, SlaTracker};

/// The OpenMetrics content type Prometheus negotiates for.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Options of the internal listener.
#[derive(Debug, Clone, Default)]
pub struct InternalOptions {
    /// Bearer token of the admin API; `None` turns the admin API off (every call gets 401).
    pub admin_token: Option<String>,
    /// How join outcomes are windowed for `/sla`.
    pub sla: SlaConfig,
    /// How ids are masked in the log lines the admin API writes.
    pub mask: IdMask,
    /// Connection cap and timeouts of the listener.
    pub limits: ListenerLimits,
}

impl InternalOptions {
    /// Set the admin token.
    #[must_use]
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
    }
    /// Set the SLA windowing.
    #[must_use]
    pub fn sla(mut self, sla: SlaConfig) -> Self {
        self.sla = sla;
        self
    }
    /// Set the id mask.
    #[must_use]
    pub fn mask(mut self, mask: IdMask) -> Self {
        self.mask = mask;
        self
    }
    /// Set the connection cap and timeouts.
    #[must_use]
    pub fn limits(mut self, limits: ListenerLimits) -> Self {
        self.limits = limits;
        self
    }
}

/// Label of `sealroom_sla_joins_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The listener's own series, appended to the relay's: join outcomes as the SLA classifies
/// them, so a Prometheus query gives the same rate as `/sla`.
struct SlaMetrics {
    registry: Registry,
    joins: Family<ResultLabels, Counter>,
}

impl SlaMetrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("sealroom");
        let joins = Family::<ResultLabels, Counter>::default();
        registry.register(
            "sla_joins",
            "Join outcomes as the SLA counts them: succeeded, failed (counted against the \
             rate) and excluded (refusals the caller caused)",
            joins.clone(),
        );
        for result in ["succeeded", "failed", "excluded"] {
            let _ = joins.get_or_create(&ResultLabels { result });
        }
        Self { registry, joins }
    }

    fn record(&self, outcome: SlaOutcome) {
        let result = match outcome {
            SlaOutcome::Succeeded => "succeeded",
            SlaOutcome::Failed => "failed",
            SlaOutcome::Excluded => "excluded",
        };
        self.joins.get_or_create(&ResultLabels { result }).inc();
    }
}

/// State shared by the handlers and the code that feeds them (join outcomes, readiness).
pub struct InternalState {
    target: Arc<dyn AdminTarget>,
    sla: Mutex<SlaTracker>,
    sla_metrics: SlaMetrics,
    admin_token: Option<String>,
    ready: AtomicBool,
    mask: IdMask,
    throttle: AuthThrottle,
    cluster: RwLock<Option<Arc<Cluster>>>,
}

impl std::fmt::Debug for InternalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalState")
            .field("admin_api", &self.admin_token.is_some())
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl InternalState {
    /// State for `target`; ready from the start.
    pub fn new(target: Arc<dyn AdminTarget>, options: InternalOptions) -> Self {
        Self {
            target,
            sla: Mutex::new(SlaTracker::new(options.sla)),
            sla_metrics: SlaMetrics::new(),
            admin_token: options.admin_token.filter(|t| !t.is_empty()),
            ready: AtomicBool::new(true),
            mask: options.mask,
            throttle: AuthThrottle::new(),
            cluster: RwLock::new(None),
        }
    }

    /// Record a join outcome now (wall-clock time).
    pub fn record_join(&self, outcome: SlaOutcome) {
        self.record_join_at(unix_now(), outcome);
    }

    /// Record a join outcome at `now` (seconds since the Unix epoch).
    pub fn record_join_at(&self, now: u64, outcome: SlaOutcome) {
        self.sla_metrics.record(outcome);
        self.sla
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .handle_join(now, outcome);
    }

    /// Run `f` on the SLA tracker (to save or restore its windows).
    pub fn with_sla<T>(&self, f: impl FnOnce(&mut SlaTracker) -> T) -> T {
        f(&mut self.sla.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The SLA summary as of now.
    pub fn sla_summary(&self) -> SlaSummary {
        self.sla
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .summary(unix_now())
    }

    /// Mark the node ready or not (`/ready` answers 503 when not, e.g. while draining).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether `/ready` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Serve `cluster`'s series on `/metrics` and its view on `GET /admin/cluster` (a node
    /// that joined a cluster calls this once its [`Cluster`] runs).
    pub fn attach_cluster(&self, cluster: Arc<Cluster>) {
        *self.cluster.write().unwrap_or_else(PoisonError::into_inner) = Some(cluster);
    }

    /// The cluster this node is in, if any.
    pub fn cluster(&self) -> Option<Arc<Cluster>> {
        self.cluster
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    pub(crate) fn target(&self) -> &dyn AdminTarget {
        self.target.as_ref()
    }

    pub(crate) fn mask(&self) -> &IdMask {
        &self.mask
    }

    pub(crate) fn throttle(&self) -> &AuthThrottle {
        &self.throttle
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The router of the internal listener, for embedding in another server.
pub fn router(state: Arc<InternalState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/sla", get(sla))
        .route("/admin/rooms", get(admin::list_rooms))
        .route("/admin/cluster", get(admin::cluster_view))
        .route(
            "/admin/apps/{app}/rooms/{room}",
            get(admin::list_members).delete(admin::dismiss_room),
        )
        .route(
            "/admin/apps/{app}/rooms/{room}/members/{user}",
            axum::routing::delete(admin::remove_member),
        )
        .with_state(state)
}

async fn metrics(State(state): State<Arc<InternalState>>) -> Response {
    match encode_all(&state) {
        Ok(body) => ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response(),
    }
}

/// The relay's exposition with the listener's own series appended before the one `# EOF`
/// an OpenMetrics exposition may have.
fn encode_all(state: &InternalState) -> Result<String, std::fmt::Error> {
    let mut body = String::new();
    state.target().encode_metrics(&mut body)?;
    let kept = body.trim_end().strip_suffix("# EOF").map(str::len);
    if let Some(len) = kept {
        body.truncate(len);
    }
    prometheus_client::encoding::text::encode_registry(&mut body, &state.sla_metrics.registry)?;
    if let Some(cluster) = state.cluster() {
        cluster.metrics().encode_into(&mut body)?;
    }
    prometheus_client::encoding::text::encode_eof(&mut body)?;
    Ok(body)
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(state): State<Arc<InternalState>>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    }
}

async fn sla(State(state): State<Arc<InternalState>>) -> Response {
    axum::Json(state.sla_summary()).into_response()
}

/// The running internal listener.
#[derive(Debug)]
pub struct InternalServer {
    local_addr: SocketAddr,
    state: Arc<InternalState>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl InternalServer {
    /// Bind `addr` (port 0 picks a free port) and serve until [`InternalServer::shutdown`].
    pub async fn start(
        addr: SocketAddr,
        target: Arc<dyn AdminTarget>,
        options: InternalOptions,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let limits = options.limits;
        let state = Arc::new(InternalState::new(target, options));
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(Arc::clone(&state));
        let task = tokio::spawn(crate::listener::serve(listener, app, limits, stopped));
        tracing::info!(%local_addr, "internal listener serving /metrics /health /ready /sla /admin");
        Ok(Self {
            local_addr,
            state,
            stop: Some(stop),
            task,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The shared state: feed join outcomes, flip readiness.
    pub fn state(&self) -> &Arc<InternalState> {
        &self.state
    }

    /// Stop accepting, close the open connections, and return.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(%err, "internal listener failed"),
            Err(err) => tracing::warn!(%err, "internal listener task ended abnormally"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::engine::{AdminError, ConnId, MemberSummary, RoomKey, RoomSummary};

    /// A fake relay: one room `acme/r1` with alice, bob and a recorder; records what the admin did.
    #[derive(Default)]
    struct Fake {
        kicked: Mutex<Vec<String>>,
        dismissed: Mutex<Vec<String>>,
    }

    fn member(member: u32, user: &str) -> MemberSummary {
        MemberSummary {
            member,
            user: user.into(),
            conn: ConnId(u64::from(member)),
            tracks: 0,
            recorder: member == 3,
            joined_unix_secs: 0,
            ticket_exp: 0,
        }
    }

    impl AdminTarget for Fake {
        fn rooms(&self) -> Vec<RoomSummary> {
            vec![RoomSummary {
                app: "acme".into(),
                room: "r1".into(),
                members: 3,
                recorders: 1,
                created_unix_secs: 0,
            }]
        }
        fn members(&self, room: &RoomKey) -> Option<Vec<MemberSummary>> {
            (*room == RoomKey::new("acme", "r1"))
                .then(|| vec![member(2, "bob"), member(3, "rec"), member(1, "alice")])
        }
        fn kick_user(&self, room: &RoomKey, user: &str) -> Result<u32, AdminError> {
            if *room != RoomKey::new("acme", "r1") {
                return Err(AdminError::UnknownRoom);
            }
            let id = match user {
                "alice" => 1,
                "bob" => 2,
                _ => return Err(AdminError::UnknownMember),
            };
            self.kicked.lock().unwrap().push(user.to_owned());
            Ok(id)
        }
        fn dismiss_room(&self, room: &RoomKey) -> Result<usize, AdminError> {
            if *room != RoomKey::new("acme", "r1") {
                return Err(AdminError::UnknownRoom);
            }
            self.dismissed.lock().unwrap().push(room.room.clone());
            Ok(2)
        }
        fn encode_metrics(&self, out: &mut String) -> std::fmt::Result {
            writeln!(out, "# TYPE sealroom_rooms gauge\nsealroom_rooms 1\n# EOF")
        }
    }

    const TOKEN: &str = "an-admin-token-for-tests";

    async fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> (u16, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let head =
            format!("{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        let status = raw[9..12].parse().unwrap();
        let body = raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap();
        (status, body)
    }

    async fn start_server(fake: Arc<Fake>, token: Option<&str>) -> InternalServer {
        let mut options = InternalOptions::default().mask(IdMask::with_salt(b"t"));
        options.admin_token = token.map(str::to_owned);
        InternalServer::start("127.0.0.1:0".parse().unwrap(), fake, options)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn health_ready_metrics_and_sla() {
        let server = start_server(Arc::new(Fake::default()), Some(TOKEN)).await;
        let addr = server.local_addr();
        assert_eq!(
            request(addr, "GET", "/health", None).await,
            (200, "ok\n".into())
        );
        assert_eq!(request(addr, "GET", "/ready", None).await.0, 200);
        let (status, body) = request(addr, "GET", "/metrics", None).await;
        assert_eq!(status, 200);
        assert!(body.contains("sealroom_rooms 1"));
        assert!(
            body.contains("sealroom_sla_joins_total{result=\"failed\"} 0"),
            "{body}"
        );
        assert_eq!(body.matches("# EOF").count(), 1, "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");

        for _ in 0..3 {
            server.state().record_join(SlaOutcome::Succeeded);
        }
        server.state().record_join(SlaOutcome::Failed);
        server.state().record_join(SlaOutcome::Excluded);
        let (status, body) = request(addr, "GET", "/sla", None).await;
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let window = &json["windows"][0];
        assert_eq!(window["attempts"], 4);
        assert_eq!(window["succeeded"], 3);
        assert_eq!(window["excluded"], 1);
        assert_eq!(window["success_rate"], 0.75);
        assert_eq!(window["met"], false);
        let (_, body) = request(addr, "GET", "/metrics", None).await;
        assert!(
            body.contains("sealroom_sla_joins_total{result=\"succeeded\"} 3"),
            "{body}"
        );
        assert!(
            body.contains("sealroom_sla_joins_total{result=\"excluded\"} 1"),
            "{body}"
        );

        server.state().set_ready(false);
        assert_eq!(
            request(addr, "GET", "/ready", None).await,
            (503, "draining\n".into())
        );
        server.shutdown().await;
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn admin_api_needs_the_token() {
        let fake = Arc::new(Fake::default());
        let server = start_server(Arc::clone(&fake), Some(TOKEN)).await;
        let addr = server.local_addr();
        for token in [None, Some("wrong"), Some("an-admin-token-for-testX")] {
            assert_eq!(request(addr, "GET", "/admin/rooms", token).await.0, 401);
            let path = "/admin/apps/acme/rooms/r1/members/alice";
            assert_eq!(request(addr, "DELETE", path, token).await.0, 401);
            assert_eq!(
                request(addr, "DELETE", "/admin/apps/acme/rooms/r1", token)
                    .await
                    .0,
                401
            );
        }
        assert!(fake.kicked.lock().unwrap().is_empty());
        assert!(fake.dismissed.lock().unwrap().is_empty());
        server.shutdown().await;

        // No token configured: the admin API is off.
        let server = start_server(Arc::clone(&fake), None).await;
        let status = request(server.local_addr(), "GET", "/admin/rooms", Some(""))
            .await
            .0;
        assert_eq!(status, 401);
        server.shutdown().await;
    }

    #[tokio::test]
    async fn admin_token_is_exact_and_failures_are_throttled() {
        let fake = Arc::new(Fake::default());
        let server = start_server(Arc::clone(&fake), Some(TOKEN)).await;
        let addr = server.local_addr();
        // Whitespace between the scheme and the token is not part of a right token.
        let spaced = format!(" {TOKEN}");
        assert_eq!(
            request(addr, "GET", "/admin/rooms", Some(&spaced)).await.0,
            401
        );
        assert_eq!(
            request(addr, "GET", "/admin/rooms", Some(TOKEN)).await.0,
            200
        );
        // Guessing: past the burst of failures, the address gets 429 even with the right
        // token, until its budget refills.
        let mut statuses = Vec::new();
        for i in 0..20 {
            let guess = format!("guess-{i}");
            statuses.push(request(addr, "GET", "/admin/rooms", Some(&guess)).await.0);
        }
        assert!(statuses.contains(&429), "{statuses:?}");
        assert_eq!(
            request(addr, "GET", "/admin/rooms", Some(TOKEN)).await.0,
            429
        );
        // Health and metrics are not behind the admin throttle.
        assert_eq!(request(addr, "GET", "/health", None).await.0, 200);
        server.shutdown().await;
    }

    #[tokio::test]
    async fn health_answers_through_a_slow_header_flood() {
        let limits = ListenerLimits {
            max_connections: 16,
            header_timeout: std::time::Duration::from_millis(300),
            connection_lifetime: std::time::Duration::from_secs(30),
        };
        let options = InternalOptions::default()
            .mask(IdMask::with_salt(b"t"))
            .limits(limits);
        let server = InternalServer::start(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Fake::default()),
            options,
        )
        .await
        .unwrap();
        let addr = server.local_addr();
        // 200 connections that start a request and never finish its headers.
        let mut slow = Vec::new();
        for _ in 0..200 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
                .await
                .unwrap();
            slow.push(stream);
        }
        for _ in 0..5 {
            assert_eq!(
                request(addr, "GET", "/health", None).await,
                (200, "ok\n".into())
            );
        }
        // Every slow connection is closed by the listener (capped, then timed out): a
        // read sees the end of the stream (or a reset) rather than waiting forever.
        for mut stream in slow {
            let mut buf = [0u8; 256];
            let read = tokio::time::timeout(std::time::Duration::from_secs(30), async {
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            })
            .await;
            assert!(read.is_ok(), "a slow-header connection was left open");
        }
        server.shutdown().await;
    }

    #[tokio::test]
    async fn admin_lists_removes_and_dismisses() {
        let fake = Arc::new(Fake::default());
        let server = start_server(Arc::clone(&fake), Some(TOKEN)).await;
        let addr = server.local_addr();
        let t = Some(TOKEN);

        let (status, body) = request(addr, "GET", "/admin/rooms", t).await;
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["rooms"][0]["members"], 3);
        assert_eq!(
            json["rooms"][0]["recorders"], 1,
            "the admin view counts recorders"
        );

        let (status, body) = request(addr, "GET", "/admin/apps/acme/rooms/r1", t).await;
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["members"][0]["user"], "alice");
        assert_eq!(json["members"][1]["member"], 2);
        assert_eq!(json["members"][1]["recorder"], false);
        assert_eq!(
            json["members"][2]["recorder"], true,
            "the admin view shows recorders"
        );

        assert_eq!(
            request(addr, "GET", "/admin/apps/acme/rooms/nope", t)
                .await
                .0,
            404
        );
        assert_eq!(
            request(
                addr,
                "DELETE",
                "/admin/apps/acme/rooms/nope/members/alice",
                t
            )
            .await
            .0,
            404
        );
        assert_eq!(
            request(addr, "DELETE", "/admin/apps/acme/rooms/r1/members/carol", t)
                .await
                .0,
            404
        );
        assert_eq!(
            request(addr, "DELETE", "/admin/apps/acme/rooms/nope", t)
                .await
                .0,
            404
        );

        let (status, body) =
            request(addr, "DELETE", "/admin/apps/acme/rooms/r1/members/alice", t).await;
        assert_eq!((status, body.as_str()), (200, r#"{"removed":1}"#));
        assert_eq!(*fake.kicked.lock().unwrap(), vec!["alice".to_owned()]);

        let (status, body) = request(addr, "DELETE", "/admin/apps/acme/rooms/r1", t).await;
        assert_eq!((status, body.as_str()), (200, r#"{"dismissed":2}"#));
        assert_eq!(*fake.dismissed.lock().unwrap(), vec!["r1".to_owned()]);
        server.shutdown().await;
    }
}
