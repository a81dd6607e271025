//! `GET /api/v1/cameras` and `GET /api/v1/cameras/{id}`.

use crate::auth::{Caller, Perm, Role};
use crate::error::ApiResult;
use crate::{ApiError, AppState, CameraInfo};
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use varta_core::event::{CameraState, RestartReason};
use varta_core::metrics::{Health, MainStream};
use varta_core::CameraId;

/// A camera with its live state and counters.
///
/// Fields derived from what the camera sees (decode mode and activity, analysis
/// counters, decoded and received volumes, bitrates, picture statistics) say when
/// people are in the scene: they are absent for contractors, who get what a
/// repair needs (state, codec, frame rate, errors, restarts, problems).
#[derive(Serialize, utoipa::ToSchema)]
pub struct CameraView {
    #[serde(flatten)]
    info: CameraInfo,
    #[schema(value_type = String)]
    status: CameraState,
    status_since: Option<DateTime<Utc>>,
    codec: Option<String>,
    decoder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decoding: Option<Decoding>,
    frames_received: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    frames_decoded: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frames_sampled: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frames_dropped: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frames_analysed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    analysis: Option<Analysis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_received: Option<u64>,
    decode_errors: u64,
    restarts: u64,
    #[schema(value_type = Object)]
    restarts_by_reason: BTreeMap<&'static str, u64>,
    last_frame_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    #[schema(value_type = Object)]
    health: Health,
    #[schema(value_type = Option<Object>)]
    main_stream: Option<MainStream>,
}

/// What the inference scheduler did with the camera's frames.
#[derive(Serialize, utoipa::ToSchema)]
struct Analysis {
    /// Frames offered to the scheduler.
    frames_offered: u64,
    /// Frames run through the model.
    frames_analysed: u64,
    /// Frames dropped because the camera's queue was full.
    dropped_queue_full: u64,
    /// Frames dropped because they waited too long.
    dropped_stale: u64,
    /// Mean time an analysed frame waited for a worker, in milliseconds.
    mean_queue_wait_ms: Option<f64>,
    /// Whether the scene is active now (served first).
    scene_active: bool,
}

/// The decode policy and what it is doing now.
#[derive(Serialize, utoipa::ToSchema)]
struct Decoding {
    /// Configured policy: `full`, `keyframes` or `adaptive`.
    #[schema(value_type = String)]
    policy: varta_core::config::DecodePolicy,
    /// Current mode: `full` (every frame) or `keyframes`.
    #[schema(value_type = String)]
    mode: &'static str,
    /// Compressed-stream activity (1 = the camera's idle baseline).
    activity_score: f32,
    /// Switches between modes so far.
    switches: u64,
    /// When the mode last changed.
    last_switch_at: Option<DateTime<Utc>>,
}

/// The view of `info` for a caller of `role` (see [`CameraView`]).
fn view(st: &AppState, info: &CameraInfo, role: Role) -> CameraView {
    let mut v = full_view(st, info);
    if role == Role::Contractor {
        v.decoding = None;
        v.frames_decoded = None;
        v.frames_sampled = None;
        v.frames_dropped = None;
        v.frames_analysed = None;
        v.analysis = None;
        v.bytes_received = None;
        let h = &mut v.health;
        (h.bitrate_kbps, h.mean_luma, h.luma_stddev, h.unchanged_secs) = (None, None, None, None);
        if let Some(m) = &mut v.main_stream {
            m.bitrate_kbps = None;
        }
    }
    v
}

fn full_view(st: &AppState, info: &CameraInfo) -> CameraView {
    let s = st.metrics.camera(&CameraId(info.id.clone()));
    let last = s.last_frame_ms.load(Ordering::Relaxed);
    // One consistent copy of what the ingest published.
    let live = s.live();
    CameraView {
        info: info.clone(),
        status: if info.enabled { live.state } else { CameraState::Stopped },
        status_since: Some(live.since),
        codec: live.codec,
        decoder: live.decoder,
        decoding: Some(Decoding {
            policy: info.decode,
            mode: if s.decode_full() { "full" } else { "keyframes" },
            activity_score: s.activity(),
            switches: s.counters.mode_switches.get(),
            last_switch_at: live.last_switch_at,
        }),
        frames_received: s.counters.frames_received.get(),
        frames_decoded: Some(s.counters.frames_decoded.get()),
        frames_sampled: Some(s.counters.frames_sampled.get()),
        frames_dropped: Some(s.counters.frames_dropped.get()),
        frames_analysed: Some(s.counters.frames_analysed.get()),
        analysis: Some(Analysis {
            frames_offered: s.counters.frames_offered.get(),
            frames_analysed: s.counters.frames_analysed.get(),
            dropped_queue_full: s.counters.frames_dropped.get(),
            dropped_stale: s.counters.frames_stale.get(),
            mean_queue_wait_ms: (s.counters.frames_analysed.get() > 0)
                .then(|| s.counters.queue_wait_us.get() as f64 / 1000.0 / s.counters.frames_analysed.get() as f64),
            scene_active: s.scene_active(),
        }),
        bytes_received: Some(s.counters.bytes_received.get()),
        decode_errors: s.counters.decode_errors.get(),
        restarts: s.restarts_total(),
        restarts_by_reason: RestartReason::ALL.iter().map(|r| (r.as_str(), s.restarts(*r))).collect(),
        last_frame_at: (last > 0).then(|| DateTime::from_timestamp_millis(last)).flatten(),
        last_error: live.last_error,
        health: live.health,
        main_stream: live.main,
    }
}

/// Every configured camera with this node's live counters (a camera another node
/// holds shows `starting` here; `/api/v1/sites` has every camera's recorded state).
#[utoipa::path(get, path = "/api/v1/cameras", tag = "cameras", security(("bearer" = [])),
    responses((status = 200, body = Vec<CameraView>), (status = 401, body = crate::ErrorBody)))]
pub async fn list(State(st): State<Arc<AppState>>, c: Caller) -> ApiResult<Json<Vec<CameraView>>> {
    c.require(Perm::Cameras)?;
    let cams = st.cameras.read().unwrap().clone();
    Ok(Json(cams.iter().map(|i| view(&st, i, c.who.role)).collect()))
}

/// One camera.
#[utoipa::path(get, path = "/api/v1/cameras/{id}", tag = "cameras", security(("bearer" = [])),
    params(("id" = String, Path, description = "camera id")),
    responses((status = 200, body = CameraView), (status = 404, body = crate::ErrorBody)))]
pub async fn one(
    State(st): State<Arc<AppState>>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<Json<CameraView>, ApiError> {
    c.require(Perm::Cameras)?;
    let info = st.cameras.read().unwrap().iter().find(|c| c.id == id).cloned();
    let info = info.ok_or_else(|| varta_core::err!(NotFound, "no camera `{id}`"))?;
    Ok(Json(view(&st, &info, c.who.role)))
}

/// Restarts a camera's pipeline on this node (admin; audited). A camera another node
/// holds is refused (409) with the holder's name: call that node's API.
#[utoipa::path(post, path = "/api/v1/cameras/{id}/restart", tag = "cameras", security(("bearer" = [])),
    params(("id" = String, Path, description = "camera id")),
    responses((status = 204), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
    (status = 409, body = crate::ErrorBody)))]
pub async fn restart(
    State(st): State<Arc<AppState>>,
    c: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::http::StatusCode> {
    c.require(Perm::Admin)?;
    if !st.cameras.read().unwrap().iter().any(|x| x.id == id) {
        return Err(varta_core::err!(NotFound, "no camera `{id}`").into());
    }
    let tx = st
        .restart
        .as_ref()
        .ok_or_else(|| varta_core::err!(Conflict, "this process runs no cameras (an API-only process)"))?;
    let (reply, rx) = tokio::sync::oneshot::channel();
    tx.send((id.clone(), reply)).await.map_err(|_| varta_core::err!(Unavailable, "shutting down"))?;
    let result = rx.await.map_err(|_| varta_core::err!(Unavailable, "shutting down"))?;
    let detail = serde_json::json!({"ok": result.is_ok(), "error": result.as_ref().err().map(|e| e.to_string())});
    st.store.audit(&c.audit("camera_restart", Some(id), detail)).await?;
    result?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
