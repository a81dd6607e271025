//! `GET /api/v1/events`: newest first, filtered.

use crate::{ApiError, AppState};
use axum::extract::{Query, State};
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
