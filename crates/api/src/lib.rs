//! The control API and the web console.
//!
//! JSON under `/api/v1`, errors as `{"error": {"code", "message"}}` with the status
//! chosen in one place ([`ApiError`]), lists as [`Page`]s with an opaque cursor. Every
//! route but health, metrics, login, the OpenAPI document and the console's static
//! files needs a bearer token ([`auth`]), and each checks its caller's role against
//! the one table in [`auth::allowed`]. Actions that touch personal data or change
//! anything are written to the audit log before they take effect.

pub mod alerts;
pub mod auth;
mod cameras;
pub mod config;
mod console;
mod error;
mod events;
mod openapi;
pub mod peers;
mod plates;
mod reports;
pub mod session;
pub mod sinks;
mod tasks;
pub mod tls;
pub mod wire;

pub use error::{ApiError, ApiResult};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, oneshot};
use varta_core::config::DecodePolicy;
use varta_core::metrics::Registry;
use varta_store::Store;

/// The one error shape.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable code: `not_found`, `invalid_argument`, `unauthenticated`,
    /// `permission_denied`, `conflict`, `method_not_allowed`, `rate_limited`,
    /// `unavailable`, `internal` ([`varta_core::ErrorKind::code`]).
    pub code: String,
    /// For people.
    pub message: String,
}

/// One page of a list, newest first. Pass `next_cursor` as `cursor` for the next
/// page; it is null on the last page.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Cursor of the next page, if there may be one.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page of rows ordered by descending integer id.
    pub fn by_id(items: Vec<T>, limit: i64, id: impl Fn(&T) -> i64) -> Page<T> {
        let next_cursor = (items.len() as i64 == limit).then(|| items.last().map(|t| id(t).to_string())).flatten();
        Page { items, next_cursor }
    }
}

/// A page size: `default` when unset, else 1..=`max`.
pub fn limit(v: Option<i64>, default: i64, max: i64) -> ApiResult<i64> {
    let l = v.unwrap_or(default);
    if (1..=max).contains(&l) {
        Ok(l)
    } else {
        Err(varta_core::err!(InvalidArgument, "`limit` must be between 1 and {max}").into())
    }
}

/// An integer-id cursor.
pub fn id_cursor(c: &str) -> ApiResult<i64> {
    c.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| varta_core::err!(InvalidArgument, "`cursor` is not one this API gave out").into())
}

/// The client's address of a request.
pub fn client_addr(req: &Request) -> Option<std::net::IpAddr> {
    req.extensions().get::<axum::extract::ConnectInfo<auth::Peer>>().map(|c| c.0 .0.ip())
}

/// `[api]` settings the handlers use.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Largest request body, KiB.
    pub body_limit_kb: usize,
    /// Session length, hours.
    pub session_hours: f64,
    /// Failed logins allowed per account and per address in the window.
    pub login_max_failures: u32,
    /// The window, seconds.
    pub login_window_secs: u64,
    /// Whether the API is served over TLS (cookies get `Secure`).
    pub tls: bool,
    /// Origins allowed by CORS.
    pub cors_origins: Vec<String>,
}

impl From<&crate::config::ApiConfig> for ApiSettings {
    fn from(c: &crate::config::ApiConfig) -> Self {
        ApiSettings {
            body_limit_kb: c.body_limit_kb,
            session_hours: c.session_hours,
            login_max_failures: c.login_max_failures,
            login_window_secs: c.login_window_secs,
            tls: c.tls_cert.is_some(),
            cors_origins: c.cors_origins.clone(),
        }
    }
}

/// A camera's configuration as the API shows it (no credentials, ever).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CameraInfo {
    /// Camera id.
    pub id: String,
    /// Site id.
    pub site: String,
    /// Human name.
    pub name: String,
    /// Stream URL with any userinfo removed.
    pub url: String,
    /// Frames per second handed to analysis.
    pub analysis_fps: f64,
    /// Whether the camera is pulled.
    pub enabled: bool,
    /// Main stream URL (probed for health), userinfo removed.
    pub main_url: Option<String>,
    /// Decode policy.
    #[schema(value_type = String)]
    pub decode: DecodePolicy,
}

/// What a configuration reload changed.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct ReloadReport {
    /// Cameras started.
    pub added: Vec<String>,
    /// Cameras stopped and released.
    pub removed: Vec<String>,
    /// Cameras restarted with new settings.
    pub changed: Vec<String>,
    /// Cameras left running untouched.
    pub unchanged: usize,
    /// Sections that changed but only take effect after a restart of the node.
    pub restart_required: Vec<String>,
}

/// A reload request: the reply channel for its outcome.
pub type ReloadRequest = oneshot::Sender<Result<ReloadReport, varta_core::Error>>;

/// A camera restart request: the camera id and the reply channel.
pub type RestartRequest = (String, oneshot::Sender<Result<(), varta_core::Error>>);

/// Shared state of every handler.
pub struct AppState {
    /// This node's name.
    pub node: String,
    /// The event store.
    pub store: Store,
    /// Live counters.
    pub metrics: Arc<Registry>,
    /// Configured cameras (replaced on reload).
    pub cameras: RwLock<Vec<CameraInfo>>,
    /// True while the node is ready: its stages run and it holds its share of the
    /// cameras (`varta serve` updates it at every lease step; `varta api` sets it once
    /// it listens).
    pub ready: AtomicBool,
    /// Whether `/readyz` fails while PostgreSQL is unreachable: true for an API-only
    /// process (it has nothing to serve without it), false for a node (it analyses
    /// and keeps events in its event log until the database is back).
    pub database_required: bool,
    /// Where reload requests go; `None` when the process has no config file to re-read
    /// or runs the API alone.
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
    /// Where camera restart requests go; `None` in an API-only process.
    pub restart: Option<mpsc::Sender<RestartRequest>>,
    /// Directory of event snapshots (`[detect] snapshot_dir`).
    pub snapshot_dir: std::path::PathBuf,
    /// The region's shared key for fetching other nodes' files ([`peers`]); `None`:
    /// only this process's own files are served.
    pub peers: Option<peers::Peers>,
    /// `[api]` settings.
    pub api: ApiSettings,
    /// `[maintenance] sla_percent`: the uptime target the daily report is drawn against.
    pub sla_percent: f64,
    /// The live alert fan-out.
    pub alerts: Arc<alerts::AlertHub>,
    /// Set to true when the process stops: endless responses (the alert stream) end,
    /// so a graceful shutdown does not wait for them for ever.
    pub closing: tokio::sync::watch::Sender<bool>,
    /// The bounded pool every password hash and check runs in.
    pub hasher: auth::Hasher,
    /// Alert streams open per token id (capped at `alerts::MAX_STREAMS_PER_TOKEN`).
    pub streams: std::sync::Mutex<std::collections::HashMap<i64, usize>>,
}

impl AppState {
    /// Wraps `shutdown` so that, when it resolves, endless responses end too.
    pub fn shutdown_with(
        &self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let closing = self.closing.clone();
        async move {
            shutdown.await;
            let _ = closing.send(true);
        }
    }
}

/// The API's routes, with the body limit, CORS and security headers.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.api.body_limit_kb * 1024;
    let cors = Arc::new(state.api.cors_origins.clone());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/auth/login", post(session::login))
        .route("/api/v1/auth/logout", post(session::logout))
        .route("/api/v1/auth/me", get(session::me))
        .route("/api/v1/users", get(session::list_users).post(session::add_user))
        .route("/api/v1/users/{name}", axum::routing::delete(session::disable_user).patch(session::change_user))
        .route("/api/v1/users/{name}/logout", post(session::end_sessions))
        .route("/api/v1/cameras", get(cameras::list))
        .route("/api/v1/cameras/history", get(reports::camera_history))
        .route("/api/v1/nodes/history", get(reports::node_history))
        .route("/api/v1/cameras/{id}", get(cameras::one))
        .route("/api/v1/cameras/{id}/restart", post(cameras::restart))
        .route("/api/v1/sites", get(reports::sites))
        .route("/api/v1/uptime", get(reports::uptime))
        .route("/api/v1/uptime/daily", get(reports::uptime_daily))
        .route("/api/v1/nodes", get(reports::nodes))
        .route("/api/v1/bench/runs", get(reports::bench_runs))
        .route("/api/v1/audit", get(reports::audit))
        .route("/api/v1/events", get(events::list))
        .route("/api/v1/events/{id}", get(events::one))
        .route("/api/v1/events/{id}/snapshot", get(events::snapshot))
        .route("/api/v1/events/{id}/clip", get(events::clip))
        .route("/api/v1/events/{id}/export", get(events::export))
        .route("/internal/v1/files/{name}", get(peers::serve))
        .route("/api/v1/plates", get(plates::search))
        .route("/api/v1/plates/{plate}/track", get(plates::track))
        .route("/api/v1/plates/reads/{id}/crop", get(plates::crop))
        .route("/api/v1/watchlist", get(plates::watchlist).post(plates::add))
        .route("/api/v1/watchlist/{id}", axum::routing::delete(plates::remove))
        .route("/api/v1/alerts", get(alerts::list))
        .route("/api/v1/alerts/stream", get(alerts::stream))
        .route("/api/v1/alerts/{id}/ack", post(alerts::ack))
        .route("/api/v1/maintenance/tasks", get(tasks::list).post(tasks::create))
        .route("/api/v1/maintenance/windows", get(reports::windows).post(reports::add_window))
        .route("/api/v1/maintenance/tasks/{id}", get(tasks::one).patch(tasks::change))
        .route("/api/v1/maintenance/assignees", get(tasks::assignees))
        .route("/api/v1/config/reload", post(reload))
        .route("/", get(console::index))
        .route("/console/{file}", get(console::asset))
        .fallback(|| async { ApiError::from(varta_core::err!(NotFound, "no such route")) })
        .method_not_allowed_fallback(|| async {
            ApiError::from(varta_core::err!(MethodNotAllowed, "method not allowed on this route"))
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), move |st, req, next| {
            guard(st, cors.clone(), req, next)
        }))
        .with_state(state)
}

/// Longest a request may take to be read and answered (a streamed body, such as
/// the alert stream, is not counted: only the time to its first byte). A client
/// that sends its body slowly is cut off here, not held for ever.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Strict CORS (only `[api] cors_origins`; preflights from elsewhere are refused),
/// security headers on every response, the request timeout, and an audit row for
/// every refusal (403) with the caller and the route.
async fn guard(st: State<Arc<AppState>>, origins: Arc<Vec<String>>, req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_owned);
    let allowed = origin.as_ref().filter(|o| origins.iter().any(|a| a == *o)).cloned();
    if req.method() == Method::OPTIONS && origin.is_some() {
        let Some(o) = allowed else {
            return ApiError::from(varta_core::err!(PermissionDenied, "origin not allowed")).into_response();
        };
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_str(&o).expect("checked origin"));
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, PATCH, DELETE"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, last-event-id"),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        return r;
    }
    let api = req.uri().path().starts_with("/api/");
    let route = format!("{} {}", req.method(), req.uri().path());
    let addr = client_addr(&req);
    // PostgreSQL text cannot hold NUL, so a `%00` in a path or query parameter would
    // reach the database only to fail there as a 500; it is the caller's mistake.
    let mut r = if req.uri().path_and_query().is_some_and(|pq| pq.as_str().contains("%00")) {
        ApiError::from(varta_core::err!(InvalidArgument, "the request's URL contains a NUL character (%00)"))
            .into_response()
    } else {
        match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
            Ok(r) => r,
            Err(_) => ApiError::from(varta_core::err!(Unavailable, "the request took too long")).into_response(),
        }
    };
    if let Some(error::Denied(actor)) = r.extensions_mut().remove::<error::Denied>() {
        let entry = varta_store::accounts::AuditEntry {
            actor: actor.as_deref(),
            action: "permission_denied",
            target: Some(route.chars().take(300).collect()),
            address: addr,
            detail: serde_json::json!({}),
        };
        if let Err(e) = st.store.audit(&entry).await {
            tracing::warn!(error = %e, "cannot audit a refusal");
            r = ApiError::from(varta_core::err!(Unavailable, "the audit log cannot be written")).into_response();
        }
    }
    let h = r.headers_mut();
    if let Some(o) = allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_str(&o).expect("checked origin"));
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    );
    if api && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Ready when the node's stages run and it holds its cameras, its event log can be
/// written and has room, and (for an API-only process) the database answers. The
/// body says whether the database answers either way.
async fn readyz(State(st): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    if !st.ready.load(Ordering::Relaxed) {
        return Err(varta_core::err!(
            Unavailable,
            "starting: the inference pool is loading or the node does not hold its cameras yet"
        )
        .into());
    }
    if st.metrics.store.wal_failing.get() != 0 {
        return Err(varta_core::err!(
            Unavailable,
            "the event log on disk cannot be written (disk full or failing): detection is held back"
        )
        .into());
    }
    if st.metrics.store.spool_full.get() != 0 {
        return Err(varta_core::err!(
            Unavailable,
            "event log full: no more events are taken until PostgreSQL is back and takes them"
        )
        .into());
    }
    let db = tokio::time::timeout(std::time::Duration::from_secs(1), st.store.ping()).await.unwrap_or(false);
    if !db && st.database_required {
        return Err(varta_core::err!(Unavailable, "database unreachable").into());
    }
    let database = if db { "reachable" } else { "unreachable (events are kept in the event log on disk)" };
    Ok(Json(serde_json::json!({"status": "ready", "node": st.node, "database": database})))
}

/// Re-reads the node's config file and applies camera changes (admin; audited).
#[utoipa::path(post, path = "/api/v1/config/reload", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = ReloadReport), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn reload(State(st): State<Arc<AppState>>, c: auth::Caller) -> Result<Json<ReloadReport>, ApiError> {
    c.require(auth::Perm::Admin)?;
    let tx = st.reload.as_ref().ok_or_else(|| {
        varta_core::err!(Conflict, "this process has no config file to reload (an API-only process, or no --config)")
    })?;
    let (reply, rx) = oneshot::channel();
    tx.send(reply).await.map_err(|_| varta_core::err!(Unavailable, "shutting down"))?;
    let result = rx.await.map_err(|_| varta_core::err!(Unavailable, "shutting down"))?;
    let detail = match &result {
        Ok(r) => serde_json::json!({"ok": true, "added": r.added, "removed": r.removed, "changed": r.changed}),
        Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
    };
    st.store.audit(&c.audit("config_reload", Some(st.node.clone()), detail)).await?;
    Ok(Json(result?))
}

/// Prometheus metrics, for administrators' tokens only (give the scraper a machine
/// token of its own admin account): per-camera counters say when a scene is busy.
async fn metrics(State(st): State<Arc<AppState>>, c: auth::Caller) -> Result<Response, ApiError> {
    c.require(auth::Perm::Admin)?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.render_prometheus())
        .into_response())
}
