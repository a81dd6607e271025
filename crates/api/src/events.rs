//! `GET /api/v1/events`: newest first, filtered; `GET /api/v1/events/{id}/snapshot`:
//! the event's best picture.

use crate::auth::{Caller, Perm};
use crate::error::{ApiResult, Q};
use crate::wire;
use crate::{ApiError, AppState, Page};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;
use varta_store::queries::{EventFilter, EventRow};

/// Event search filters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// Only this camera.
    camera: Option<String>,
    /// Only cameras of this site.
    site: Option<String>,
    /// Only this class (`person`, `car`, …).
    class: Option<String>,
    /// Started at or after (RFC 3339).
    since: Option<String>,
    /// Started before (RFC 3339).
    until: Option<String>,
    /// Cursor from the previous page's `next_cursor`.
    cursor: Option<String>,
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// An events cursor: the last row's start time and id, opaque to clients.
fn event_cursor(e: &EventRow) -> String {
    let raw = format!("{}.{}", e.started_at.timestamp_micros(), e.id);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn parse_event_cursor(c: &str) -> Result<(DateTime<Utc>, uuid::Uuid), ApiError> {
    let bad = || varta_core::err!(InvalidArgument, "`cursor` is not one this API gave out");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (t, id) = raw.split_once('.').ok_or_else(bad)?;
    let t = DateTime::from_timestamp_micros(t.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    Ok((t, id.parse().map_err(|_| bad())?))
}

/// Parses an RFC 3339 query value named `name`.
pub fn time(name: &str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.map(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| varta_core::err!(InvalidArgument, "`{name}` must be an RFC 3339 time: {e}").into())
    })
    .transpose()
}

/// Searches events, newest first. Each search is audited with its filters.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", security(("bearer" = [])), params(Params),
    responses((status = 200, body = Page<wire::Event>), (status = 400, body = crate::ErrorBody),
    (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub async fn list(State(st): State<Arc<AppState>>, c: Caller, Q(p): Q<Params>) -> ApiResult<Json<Page<wire::Event>>> {
    c.require(Perm::Events)?;
    let limit = crate::limit(p.limit, 100, 1000)?;
    let f = EventFilter {
        camera: p.camera,
        site: p.site,
        class: p.class,
        since: time("since", p.since.as_deref())?,
        until: time("until", p.until.as_deref())?,
        limit,
        after: p.cursor.as_deref().map(parse_event_cursor).transpose()?,
    };
    let items = st.store.list_events(&f).await?;
    // Audited with the ids found (their thumbnails are not audited one by one); a
    // search that cannot be recorded returns nothing.
    let ids: Vec<String> = items.iter().map(|e| e.id.to_string()).collect();
    let detail = serde_json::json!({
        "camera": f.camera, "site": f.site, "class": f.class, "since": f.since, "until": f.until,
        "page": f.after.is_some(), "events": ids,
    });
    st.store.audit(&c.audit("event_search", None, detail)).await?;
    let next_cursor = (items.len() as i64 == limit).then(|| items.last().map(event_cursor)).flatten();
    Ok(Json(Page { items: wire::all(items), next_cursor }))
}

/// One event, with its track's times, rule, zone and box (the event detail view);
/// audited (`event_view`).
#[utoipa::path(get, path = "/api/v1/events/{id}", tag = "events", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "event id (UUID)")),
    responses((status = 200, body = wire::Event), (status = 400, body = crate::ErrorBody),
    (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn one(State(st): State<Arc<AppState>>, c: Caller, Path(id): Path<String>) -> ApiResult<Json<wire::Event>> {
    c.require(Perm::Events)?;
    let id: uuid::Uuid = id.parse().map_err(|_| varta_core::err!(InvalidArgument, "`{id}` is not an event id"))?;
    let e = st.store.event(id).await?.ok_or_else(|| varta_core::err!(NotFound, "no event {id}"))?;
    st.store.audit(&c.audit("event_view", Some(id.to_string()), serde_json::json!({}))).await?;
    Ok(Json(e.into()))
}

/// Snapshot query parameters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SnapshotParams {
    /// `true`: the object alone rather than the whole picture with its box.
    #[serde(default)]
    crop: bool,
}

/// The JPEG snapshot of an event: the whole picture with the object's box, or with
/// `?crop=true` the object alone. Every view of a whole picture is audited; crops are
/// the thumbnails of lists, whose own audit row (`alert_list`, `event_search`) names
/// every event shown, so a list of 100 alerts is one row, not 101.
#[utoipa::path(get, path = "/api/v1/events/{id}/snapshot", tag = "events", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "event id (UUID)"), SnapshotParams),
    responses((status = 200, content_type = "image/jpeg", body = Vec<u8>), (status = 400, body = crate::ErrorBody),
    (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn snapshot(
    State(st): State<Arc<AppState>>,
    c: Caller,
    Path(id): Path<String>,
    Q(p): Q<SnapshotParams>,
) -> Result<Response, ApiError> {
    c.require(Perm::Snapshots)?;
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
    let bytes = match tokio::fs::read(st.snapshot_dir.join(&name)).await {
        Ok(b) => b,
        // Made by another node: from its disk, through its API.
        Err(_) => crate::peers::fetch(&st, &event_node(&st, id).await?, &name, None).await?.body,
    };
    if !p.crop {
        st.store.audit(&c.audit("snapshot_view", Some(id.to_string()), serde_json::json!({}))).await?;
    }
    Ok(([(axum::http::header::CONTENT_TYPE, "image/jpeg")], bytes).into_response())
}

/// An event's video clip (MP4, the camera's own frames from the pre-roll to the
/// post-roll), with range requests (a browser's video element seeks by them).
/// Operators and administrators; contractors 403. A view is audited once, on its
/// first request (no `Range`, or one from byte 0), as `clip_view` with the clip's
/// SHA-256; the range requests that follow are the same view.
#[utoipa::path(get, path = "/api/v1/events/{id}/clip", tag = "events", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "event id (UUID)")),
    responses((status = 200, content_type = "video/mp4", body = Vec<u8>), (status = 206, content_type = "video/mp4", body = Vec<u8>),
    (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
    (status = 416, description = "range not satisfiable")))]
pub async fn clip(
    State(st): State<Arc<AppState>>,
    c: Caller,
    Path(id): Path<String>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    use tower::ServiceExt;
    c.require(Perm::Snapshots)?;
    let id: uuid::Uuid = id.parse().map_err(|_| varta_core::err!(InvalidArgument, "`{id}` is not an event id"))?;
    let (name, sha256) = st
        .store
        .event_clip(id)
        .await?
        .ok_or_else(|| varta_core::err!(NotFound, "no event {id}"))?
        .ok_or_else(|| varta_core::err!(NotFound, "event {id} has no clip (yet)"))?;
    // The name comes from our own writer, but a path must never leave the directory.
    if name.contains('/') || name.contains("..") {
        return Err(varta_core::err!(Internal, "event {id}: bad clip name").into());
    }
    let path = st.snapshot_dir.join(&name);
    let range = req.headers().get(axum::http::header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let local = tokio::fs::try_exists(&path).await.unwrap_or(false);
    // Made by another node: from its disk, through its API (the range passed on).
    let remote = match local {
        true => None,
        false => Some(crate::peers::fetch(&st, &event_node(&st, id).await?, &name, range.clone()).await?),
    };
    if range.as_deref().is_none_or(|r| r.trim_start_matches("bytes=").starts_with("0-")) {
        let detail = serde_json::json!({"sha256": sha256, "range": range});
        st.store.audit(&c.audit("clip_view", Some(id.to_string()), detail)).await?;
    }
    if let Some(f) = remote {
        return Ok(f.into_response("video/mp4"));
    }
    let res = tower_http::services::ServeFile::new_with_mime(&path, &"video/mp4".parse().expect("a MIME type"))
        .oneshot(req)
        .await
        .map_err(|e| varta_core::err!(Unavailable, "reading the clip of event {id}: {e}"))?;
    Ok(res.map(axum::body::Body::new))
}

/// An event's evidence as one ZIP ([`varta_store::evidence::write_package`]): the
/// manifest the node signed (ids, camera, times, the SHA-256 of each file), its
/// Ed25519 signature, the snapshot, crop and clip it names, the event as this API
/// shows it and a README; `varta evidence verify FILE.zip` checks it. Operators and
/// administrators; contractors 403. Audited as `event_export` with the manifest's
/// SHA-256 and the caller's address. 409 while the event is open or not yet signed
/// (its clip is written after the post-roll); 404 when retention removed a file.
#[utoipa::path(get, path = "/api/v1/events/{id}/export", tag = "events", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "event id (UUID)")),
    responses((status = 200, content_type = "application/zip", body = Vec<u8>), (status = 400, body = crate::ErrorBody),
    (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub async fn export(State(st): State<Arc<AppState>>, c: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    c.require(Perm::Snapshots)?;
    let id: uuid::Uuid = id.parse().map_err(|_| varta_core::err!(InvalidArgument, "`{id}` is not an event id"))?;
    let e = st.store.event(id).await?.ok_or_else(|| varta_core::err!(NotFound, "no event {id}"))?;
    let (manifest, signature) = st.store.event_manifest(id).await?.flatten().ok_or_else(|| {
        varta_core::err!(
            Conflict,
            "event {id} has no signed manifest yet: it is open, or its clip is still being written"
        )
    })?;
    let event_json = serde_json::to_vec_pretty(&wire::Event::from(e)).expect("an event serialises");
    let manifest_sha256 = varta_store::evidence::sha256_hex(manifest.as_bytes());
    // The files the manifest names, from this disk or the disk of the node that made
    // the event.
    let names: Vec<String> = serde_json::from_str::<varta_store::evidence::Manifest>(&manifest)
        .map_err(|e| varta_core::err!(Internal, "event {id}'s manifest: {e}"))?
        .files
        .into_iter()
        .map(|f| f.name)
        .collect();
    let mut files = std::collections::HashMap::new();
    let mut node = None;
    for name in names {
        if !crate::peers::is_event_file(&name) {
            return Err(varta_core::err!(Internal, "event {id}'s manifest names {name:?}").into());
        }
        let bytes = match tokio::fs::read(st.snapshot_dir.join(&name)).await {
            Ok(b) => b,
            Err(_) => {
                if node.is_none() {
                    node = Some(event_node(&st, id).await?);
                }
                crate::peers::fetch(&st, node.as_deref().unwrap_or_default(), &name, None).await?.body
            }
        };
        files.insert(name, bytes);
    }
    let zip = tokio::task::spawn_blocking(move || {
        let p = varta_store::evidence::Package {
            manifest: manifest.as_bytes(),
            signature: &signature,
            event_json: &event_json,
            files: &files,
        };
        varta_store::evidence::write_package(&p, std::io::Cursor::new(Vec::new())).map(|c| c.into_inner())
    })
    .await
    .map_err(|e| varta_core::err!(Internal, "packing event {id}: {e}"))??;
    let detail = serde_json::json!({"manifest_sha256": manifest_sha256, "bytes": zip.len()});
    st.store.audit(&c.audit("event_export", Some(id.to_string()), detail)).await?;
    let disposition = format!("attachment; filename=\"varta-event-{id}.zip\"");
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/zip".to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        zip,
    )
        .into_response())
}

/// The node that made event `id` (whose disk holds its files).
async fn event_node(st: &AppState, id: uuid::Uuid) -> Result<String, ApiError> {
    Ok(st.store.event_node(id).await?.ok_or_else(|| varta_core::err!(NotFound, "no event {id}"))?)
}
