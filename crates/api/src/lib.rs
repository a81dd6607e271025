//! The control API: health, cameras with live counters, events, config reload,
//! Prometheus metrics.
//!
//! JSON under `/api/v1`, errors as `{"error": {"code", "message"}}` with the status
//! chosen in one place ([`ApiError`]). Authentication arrives with issue #7; until
//! then bind the API to loopback (the default).

mod cameras;
mod error;
mod events;

pub use error::ApiError;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, oneshot};
use varta_core::config::DecodePolicy;
use varta_core::metrics::Registry;
use varta_store::Store;

/// A camera's configuration as the API shows it (no credentials, ever).
#[derive(Clone, Debug, Serialize)]
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
    pub decode: DecodePolicy,
}

/// What a configuration reload changed.
#[derive(Clone, Debug, Default, Serialize)]
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
    /// Set once every stage has started.
    pub ready: AtomicBool,
    /// Where reload requests go; `None` when the node has no config file to re-read.
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
    /// Directory of event snapshots (`[detect] snapshot_dir`).
    pub snapshot_dir: std::path::PathBuf,
}

/// The API's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/cameras", get(cameras::list))
        .route("/api/v1/cameras/{id}", get(cameras::one))
        .route("/api/v1/events", get(events::list))
        .route("/api/v1/events/{id}/snapshot", get(events::snapshot))
        .route("/api/v1/config/reload", post(reload))
        .fallback(|| async { ApiError::from(varta_core::err!(NotFound, "no such route")) })
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Ready when the pipeline stages have started and the database answers.
async fn readyz(State(st): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    if !st.ready.load(Ordering::Relaxed) {
        return Err(varta_core::err!(Unavailable, "starting").into());
    }
    if st.metrics.store.spool_full.get() != 0 {
        return Err(varta_core::err!(
            Unavailable,
            "event spool full: the writer has stopped taking events until PostgreSQL is back"
        )
        .into());
    }
    if !st.store.ping().await {
        return Err(varta_core::err!(Unavailable, "database unreachable").into());
    }
    Ok(Json(serde_json::json!({"status": "ready", "node": st.node})))
}

/// `POST /api/v1/config/reload`: re-reads the config file and applies camera changes.
async fn reload(State(st): State<Arc<AppState>>) -> Result<Json<ReloadReport>, ApiError> {
    let tx = st
        .reload
        .as_ref()
        .ok_or_else(|| varta_core::err!(Unavailable, "this node was started without a config file to reload"))?;
    let (reply, rx) = oneshot::channel();
    tx.send(reply).await.map_err(|_| varta_core::err!(Unavailable, "shutting down"))?;
    let report = rx.await.map_err(|_| varta_core::err!(Unavailable, "shutting down"))??;
    Ok(Json(report))
}

async fn metrics(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.render_prometheus())
}
