//! `GET /api/v1/cameras` and `GET /api/v1/cameras/{id}`.

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
#[derive(Serialize)]
pub struct CameraView {
    #[serde(flatten)]
    info: CameraInfo,
    status: CameraState,
    status_since: Option<DateTime<Utc>>,
    codec: Option<String>,
    decoder: Option<String>,
    decoding: Decoding,
    frames_received: u64,
    frames_decoded: u64,
    frames_sampled: u64,
    frames_dropped: u64,
    frames_analysed: u64,
    analysis: Analysis,
    bytes_received: u64,
    decode_errors: u64,
    restarts: u64,
    restarts_by_reason: BTreeMap<&'static str, u64>,
    last_frame_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    health: Health,
    main_stream: Option<MainStream>,
}

/// What the inference scheduler did with the camera's frames.
#[derive(Serialize)]
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
#[derive(Serialize)]
struct Decoding {
    /// Configured policy: `full`, `keyframes` or `adaptive`.
    policy: varta_core::config::DecodePolicy,
    /// Current mode: `full` (every frame) or `keyframes`.
    mode: &'static str,
    /// Compressed-stream activity (1 = the camera's idle baseline).
    activity_score: f32,
    /// Switches between modes so far.
    switches: u64,
    /// When the mode last changed.
    last_switch_at: Option<DateTime<Utc>>,
}

fn view(st: &AppState, info: &CameraInfo) -> CameraView {
    let s = st.metrics.camera(&CameraId(info.id.clone()));
    let last = s.last_frame_ms.load(Ordering::Relaxed);
    CameraView {
        info: info.clone(),
        status: if info.enabled { s.state() } else { CameraState::Stopped },
        status_since: s.state_since(),
        codec: s.codec(),
        decoder: s.decoder(),
        decoding: Decoding {
            policy: info.decode,
            mode: if s.decode_full() { "full" } else { "keyframes" },
            activity_score: s.activity(),
            switches: s.mode_switches.get(),
            last_switch_at: s.last_switch_at(),
        },
        frames_received: s.frames_received.get(),
        frames_decoded: s.frames_decoded.get(),
        frames_sampled: s.frames_sampled.get(),
        frames_dropped: s.frames_dropped.get(),
        frames_analysed: s.frames_analysed.get(),
        analysis: Analysis {
            frames_offered: s.frames_offered.get(),
            frames_analysed: s.frames_analysed.get(),
            dropped_queue_full: s.frames_dropped.get(),
            dropped_stale: s.frames_stale.get(),
            mean_queue_wait_ms: (s.frames_analysed.get() > 0)
                .then(|| s.queue_wait_us.get() as f64 / 1000.0 / s.frames_analysed.get() as f64),
            scene_active: s.scene_active(),
        },
        bytes_received: s.bytes_received.get(),
        decode_errors: s.decode_errors.get(),
        restarts: s.restarts_total(),
        restarts_by_reason: RestartReason::ALL.iter().map(|r| (r.as_str(), s.restarts(*r))).collect(),
        last_frame_at: (last > 0).then(|| DateTime::from_timestamp_millis(last)).flatten(),
        last_error: s.last_error(),
        health: s.health(),
        main_stream: s.main_stream(),
    }
}

/// Every configured camera.
pub async fn list(State(st): State<Arc<AppState>>) -> Json<Vec<CameraView>> {
    let cams = st.cameras.read().unwrap().clone();
    Json(cams.iter().map(|c| view(&st, c)).collect())
}

/// One camera.
pub async fn one(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<CameraView>, ApiError> {
    let info = st.cameras.read().unwrap().iter().find(|c| c.id == id).cloned();
    let info = info.ok_or_else(|| varta_core::err!(NotFound, "no camera `{id}`"))?;
    Ok(Json(view(&st, &info)))
}
