//! `GET /api/v1/events`: newest first, filtered; `GET /api/v1/events/{id}/snapshot`:
//! the event's best picture.

use crate::{ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::sync::Arc;
use varta_store::queries::{EventFilter, EventRow};

/// Query parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    camera: Option<String>,
    site: Option<String>,
    class: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
}

fn time(name: &str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.map(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| varta_core::err!(InvalidArgument, "`{name}` must be an RFC 3339 time: {e}").into())
    })
    .transpose()
}

/// Lists events.
pub async fn list(
    State(st): State<Arc<AppState>>,
    q: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<EventRow>>, ApiError> {
    let Query(p) = q.map_err(|e| varta_core::err!(InvalidArgument, "{}", e.body_text()))?;
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(varta_core::err!(InvalidArgument, "`limit` must be between 1 and 1000").into());
    }
    let f = EventFilter {
        camera: p.camera,
        site: p.site,
        class: p.class,
        since: time("since", p.since.as_deref())?,
        until: time("until", p.until.as_deref())?,
        limit,
    };
    Ok(Json(st.store.list_events(&f).await?))
}

/// Snapshot query parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotParams {
    /// `true`: the object alone rather than the whole picture with its box.
    #[serde(default)]
    crop: bool,
}

/// The JPEG snapshot of an event: the whole picture with the object's box, or with
/// `?crop=true` the object alone.
pub async fn snapshot(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    q: Result<Query<SnapshotParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = q.map_err(|e| varta_core::err!(InvalidArgument, "{}", e.body_text()))?;
    let id: uuid::Uuid = id.parse().map_err(|_| varta_core::err!(InvalidArgument, "`{id}` is not an event id"))?;
    let name = st
        .store
        .event_snapshot(id)
        .await?
        .ok_or_else(|| varta_core::err!(NotFound, "no event {id}"))?
        .ok_or_else(|| varta_core::err!(NotFound, "event {id} has no snapshot"))?;
    // The name comes from our own writer, but a path must never leave the directory.
    if name.contains('/') || name.contains("..") {
        return Err(varta_core::err!(Internal, "event {id}: bad snapshot name").into());
    }
    let name = if p.crop { name.replace(".jpg", ".crop.jpg") } else { name };
    let bytes = tokio::fs::read(st.snapshot_dir.join(&name)).await.map_err(|e| {
        varta_core::err!(NotFound, "snapshot of event {id} is gone ({e}); retention may have removed it")
    })?;
    Ok(([(axum::http::header::CONTENT_TYPE, "image/jpeg")], bytes).into_response())
}
