//! Number plates (issue #20): the search (`GET /api/v1/plates?q=`), a plate's
//! sightings across cameras and sites (`GET /api/v1/plates/{plate}/track`), a read's
//! crop, and the wanted-vehicle watchlist. Operators and administrators only
//! (`Perm::Plates`); every search, sighting list (with the reads shown) and watchlist
//! change is audited.

use crate::auth::{Caller, Perm};
use crate::error::{ApiResult, Body, Q};
use crate::events::time;
use crate::wire;
use crate::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use varta_core::err;
use varta_core::plate;

/// Plate search.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Part of a plate, Latin or Cyrillic, separators ignored (`AX12`, `ах 1234`);
    /// 2 characters at least.
    q: String,
    /// At most this many plates, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// The query normalised, or `InvalidArgument` naming the rule it breaks.
fn query_plate(q: &str) -> Result<String, ApiError> {
    let n = plate::normalise(q);
    if n.chars().count() < 2 || n.chars().count() > 12 {
        return Err(err!(InvalidArgument, "a plate query must hold 2 to 12 letters or digits").into());
    }
    Ok(n)
}

/// Plates like `q`: the plate itself, plates holding it, plates one OCR confusion
/// away (0/O, 8/B, 1/I, …), then similar ones (trigrams); audited (who searched what).
#[utoipa::path(get, path = "/api/v1/plates", tag = "plates", security(("bearer" = [])), params(SearchParams),
    responses((status = 200, body = Vec<wire::PlateHit>), (status = 400, body = crate::ErrorBody),
    (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub async fn search(
    State(st): State<Arc<AppState>>,
    c: Caller,
    Q(p): Q<SearchParams>,
) -> ApiResult<Json<Vec<wire::PlateHit>>> {
    c.require(Perm::Plates)?;
    let q = query_plate(&p.q)?;
    let limit = crate::limit(p.limit, 50, 200)?;
    // Audited before the search: a search that cannot be recorded is not run.
    st.store.audit(&c.audit("plate_search", Some(q.clone()), serde_json::json!({"q": p.q}))).await?;
    Ok(Json(wire::all(st.store.search_plates(&q, limit).await?)))
}

/// A plate's sightings.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TrackParams {
    /// Also sightings read one OCR confusion away (default false).
    #[serde(default)]
    fuzzy: bool,
    /// Read at or after (RFC 3339).
    since: Option<String>,
    /// Read before (RFC 3339).
    until: Option<String>,
    /// At most this many sightings, 1–5000 (default 1000).
    #[param(minimum = 1, maximum = 5000)]
    limit: Option<i64>,
}

/// Where a vehicle has been: the sightings of `plate` across cameras and sites, in
/// time order; audited.
#[utoipa::path(get, path = "/api/v1/plates/{plate}/track", tag = "plates", security(("bearer" = [])),
    params(("plate" = String, Path, description = "the plate, Latin or Cyrillic"), TrackParams),
    responses((status = 200, body = Vec<wire::PlateSighting>), (status = 400, body = crate::ErrorBody),
    (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub async fn track(
    State(st): State<Arc<AppState>>,
    c: Caller,
    Path(plate_text): Path<String>,
    Q(p): Q<TrackParams>,
) -> ApiResult<Json<Vec<wire::PlateSighting>>> {
    c.require(Perm::Plates)?;
    let q = query_plate(&plate_text)?;
    let (since, until) = (time("since", p.since.as_deref())?, time("until", p.until.as_deref())?);
    if let (Some(s), Some(u)) = (since, until) {
        if u <= s {
            return Err(err!(InvalidArgument, "`until` must be after `since`").into());
        }
    }
    let limit = crate::limit(p.limit, 1000, 5000)?;
    let rows = st.store.plate_track(&q, p.fuzzy, since, until, limit).await?;
    // Audited with the reads shown (their crops are not audited one by one).
    let reads: Vec<String> = rows.iter().map(|r| r.id.to_string()).collect();
    let detail = serde_json::json!({"fuzzy": p.fuzzy, "since": since, "until": until, "reads": reads});
    st.store.audit(&c.audit("plate_track", Some(q.clone()), detail)).await?;
    Ok(Json(wire::all(rows)))
}

/// The JPEG of a plate read's plate: the thumbnail of a sighting or an alert, covered
/// by the audit row of the list that showed it (`plate_track`, `alert_list`).
#[utoipa::path(get, path = "/api/v1/plates/reads/{id}/crop", tag = "plates", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "plate read id (UUID)")),
    responses((status = 200, content_type = "image/jpeg", body = Vec<u8>), (status = 400, body = crate::ErrorBody),
    (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn crop(State(st): State<Arc<AppState>>, c: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    c.require(Perm::Plates)?;
    let id: uuid::Uuid = id.parse().map_err(|_| err!(InvalidArgument, "`{id}` is not a plate read id"))?;
    let name = st
        .store
        .plate_crop(id)
        .await?
        .ok_or_else(|| err!(NotFound, "no plate read {id}"))?
        .ok_or_else(|| err!(NotFound, "plate read {id} has no crop"))?;
    if name.contains('/') || name.contains("..") {
        return Err(err!(Internal, "plate read {id}: bad crop name").into());
    }
    let bytes = tokio::fs::read(st.snapshot_dir.join(&name))
        .await
        .map_err(|_| err!(NotFound, "the crop of plate read {id} is not on this node, or retention removed it"))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "image/jpeg")], bytes).into_response())
}

/// Watchlist listing.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WatchlistParams {
    /// Also removed and expired entries (default false).
    #[serde(default)]
    all: bool,
}

/// The wanted plates, newest first.
#[utoipa::path(get, path = "/api/v1/watchlist", tag = "plates", security(("bearer" = [])), params(WatchlistParams),
    responses((status = 200, body = Vec<wire::WatchlistEntry>), (status = 401, body = crate::ErrorBody),
    (status = 403, body = crate::ErrorBody)))]
pub async fn watchlist(
    State(st): State<Arc<AppState>>,
    c: Caller,
    Q(p): Q<WatchlistParams>,
) -> ApiResult<Json<Vec<wire::WatchlistEntry>>> {
    c.require(Perm::Plates)?;
    Ok(Json(wire::all(st.store.watchlist(p.all).await?)))
}

/// A plate to watch for.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    /// The plate, Latin or Cyrillic, separators ignored.
    plate: String,
    /// Why it is wanted (case number, stolen, …).
    #[schema(min_length = 1, max_length = 500)]
    reason: String,
    /// When it stops matching (RFC 3339); none: until removed.
    expires_at: Option<String>,
}

/// Adds a wanted plate; a read of it (or one OCR confusion away) raises an alert.
/// Audited with the reason.
#[utoipa::path(post, path = "/api/v1/watchlist", tag = "plates", security(("bearer" = [])),
    request_body = NewEntry, responses((status = 201, body = wire::WatchlistEntry),
    (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody),
    (status = 409, body = crate::ErrorBody)))]
pub async fn add(
    State(st): State<Arc<AppState>>,
    c: Caller,
    Body(e): Body<NewEntry>,
) -> ApiResult<(StatusCode, Json<wire::WatchlistEntry>)> {
    c.require(Perm::Plates)?;
    let p = query_plate(&e.plate)?;
    let reason = e.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(err!(InvalidArgument, "reason must be 1 to 500 characters").into());
    }
    let expires_at = time("expires_at", e.expires_at.as_deref())?;
    if expires_at.is_some_and(|t| t <= chrono::Utc::now()) {
        return Err(err!(InvalidArgument, "`expires_at` is in the past").into());
    }
    let audit =
        c.audit("watchlist_add", Some(p.clone()), serde_json::json!({"reason": reason, "expires_at": expires_at}));
    let row = st.store.add_to_watchlist(&p, reason, &c.who.name, expires_at, &audit).await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// Why an entry is removed.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Removal {
    /// Why (found, case closed, entered by mistake, …).
    #[schema(min_length = 1, max_length = 500)]
    reason: String,
}

/// Removes a wanted plate (the entry is kept, marked removed); audited with the reason.
#[utoipa::path(delete, path = "/api/v1/watchlist/{id}", tag = "plates", security(("bearer" = [])),
    params(("id" = i64, Path, description = "entry id")), request_body = Removal,
    responses((status = 200, body = wire::WatchlistEntry), (status = 400, body = crate::ErrorBody),
    (status = 403, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn remove(
    State(st): State<Arc<AppState>>,
    c: Caller,
    Path(id): Path<i64>,
    Body(r): Body<Removal>,
) -> ApiResult<Json<wire::WatchlistEntry>> {
    c.require(Perm::Plates)?;
    let reason = r.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(err!(InvalidArgument, "reason must be 1 to 500 characters").into());
    }
    let audit = c.audit("watchlist_remove", Some(id.to_string()), serde_json::json!({"reason": reason}));
    Ok(Json(st.store.remove_from_watchlist(id, &c.who.name, reason, &audit).await?.into()))
}
