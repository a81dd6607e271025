//! `GET /api/v1/cameras` and `GET /api/v1/cameras/{id}`.

use crate::{ApiError, AppState, CameraInfo};
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use varta_core::event::CameraState;
use varta_core::CameraId;

/// A camera with its live state and counters.
#[derive(Serialize)]
pub struct CameraView {
    #[serde(flatten)]
    info: CameraInfo,
    status: CameraState,
    decoder: Option<String>,
    frames_received: u64,
    frames_decoded: u64,
    frames_sampled: u64,
    frames_dropped: u64,
    frames_analysed: u64,
    restarts: u64,
    last_frame_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

fn view(st: &AppState, info: &CameraInfo) -> CameraView {
    let s = st.metrics.camera(&CameraId(info.id.clone()));
    let last = s.last_frame_ms.load(Ordering::Relaxed);
    CameraView {
        info: info.clone(),
        status: if info.enabled { s.state() } else { CameraState::Stopped },
        decoder: s.decoder(),
        frames_received: s.frames_received.get(),
        frames_decoded: s.frames_decoded.get(),
        frames_sampled: s.frames_sampled.get(),
        frames_dropped: s.frames_dropped.get(),
        frames_analysed: s.frames_analysed.get(),
        restarts: s.restarts.get(),
        last_frame_at: (last > 0).then(|| DateTime::from_timestamp_millis(last)).flatten(),
        last_error: s.last_error(),
    }
}

/// Every configured camera.
pub async fn list(State(st): State<Arc<AppState>>) -> Json<Vec<CameraView>> {
    Json(st.cameras.iter().map(|c| view(&st, c)).collect())
}

/// One camera.
pub async fn one(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<CameraView>, ApiError> {
    let info = st.cameras.iter().find(|c| c.id == id).ok_or_else(|| varta_core::err!(NotFound, "no camera `{id}`"))?;
    Ok(Json(view(&st, info)))
}
