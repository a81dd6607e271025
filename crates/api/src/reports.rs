//! Read-mostly views: sites with their cameras' state, uptime reports (JSON and CSV),
//! nodes, benchmark runs, the audit log.

use crate::auth::{Caller, Perm};
use crate::error::{ApiResult, Q};
use crate::wire;
use crate::{AppState, Page};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use varta_core::err;
use varta_store::accounts::AuditFilter;

/// A site with its cameras' last recorded state (across every node).
#[derive(Serialize, ToSchema)]
pub struct SiteView {
    /// Site id.
    pub id: String,
    /// Site name.
    pub name: String,
    /// Latitude, WGS 84 degrees (`[[sites]] lat`); null when not configured.
    pub lat: Option<f64>,
    /// Longitude, WGS 84 degrees; null when not configured.
    pub lon: Option<f64>,
    /// Cameras with a state other than `streaming` (disabled ones excepted).
    pub cameras_down: usize,
    /// Its cameras.
    pub cameras: Vec<wire::CameraStatus>,
}

/// Sites and their cameras' state: the contractor's overview.
#[utoipa::path(get, path = "/api/v1/sites", tag = "health", security(("bearer" = [])),
    responses((status = 200, body = Vec<SiteView>), (status = 403, body = crate::ErrorBody)))]
pub async fn sites(State(st): State<Arc<AppState>>, c: Caller) -> ApiResult<Json<Vec<SiteView>>> {
    c.require(Perm::Health)?;
    let mut out: Vec<SiteView> = Vec::new();
    for cam in st.store.camera_states().await? {
        if out.last().is_none_or(|s| s.id != cam.site) {
            out.push(SiteView {
                id: cam.site.clone(),
                name: cam.site_name.clone(),
                lat: cam.site_lat,
                lon: cam.site_lon,
                cameras_down: 0,
                cameras: vec![],
            });
        }
        let s = out.last_mut().expect("pushed above");
        if cam.enabled && cam.state.as_deref() != Some("streaming") {
            s.cameras_down += 1;
        }
        s.cameras.push(cam.into());
    }
    Ok(Json(out))
}

/// Uptime report parameters: a month, or from/to.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UptimeParams {
    /// `YYYY-MM` (UTC); the default when neither month nor from is given: this month.
    #[param(pattern = "^[0-9]{4}-[0-9]{2}$")]
    month: Option<String>,
    /// Period start (RFC 3339), instead of `month`.
    from: Option<String>,
    /// Period end (RFC 3339), default now.
    to: Option<String>,
    /// `camera` (default) or `site`: which rows a CSV has.
    #[param(pattern = "^(camera|site)$")]
    scope: Option<String>,
    /// Only this site.
    site: Option<String>,
    /// Only this camera.
    camera: Option<String>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
}

fn month_range(m: &str) -> ApiResult<(DateTime<Utc>, DateTime<Utc>)> {
    let bad = || err!(InvalidArgument, "`month` must be YYYY-MM, got `{m}`");
    let first = NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d").map_err(|_| bad())?;
    let next = first.checked_add_months(chrono::Months::new(1)).ok_or_else(bad)?;
    let at = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"));
    Ok((at(first), at(next)))
}

/// Uptime per camera and site over a period, from the recorded state transitions;
/// as JSON, or as CSV (`format=csv`) for the contract's monthly statement.
#[utoipa::path(get, path = "/api/v1/uptime", tag = "health", security(("bearer" = [])), params(UptimeParams),
    responses((status = 200, body = wire::UptimeReport), (status = 200, content_type = "text/csv", body = String),
    (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub async fn uptime(State(st): State<Arc<AppState>>, c: Caller, Q(p): Q<UptimeParams>) -> ApiResult<Response> {
    c.require(Perm::Health)?;
    let scope = p.scope.as_deref().unwrap_or("camera");
    if !matches!(scope, "camera" | "site") {
        return Err(err!(InvalidArgument, "`scope` must be camera or site").into());
    }
    let csv = match p.format.as_deref().unwrap_or("json") {
        "json" => false,
        "csv" => true,
        f => return Err(err!(InvalidArgument, "`format` must be json or csv, not `{f}`").into()),
    };
    let (from, to) = match (&p.month, &p.from) {
        (Some(_), Some(_)) => return Err(err!(InvalidArgument, "give `month` or `from`, not both").into()),
        (Some(m), None) => month_range(m)?,
        (None, Some(f)) => {
            let from = crate::events::time("from", Some(f))?.expect("given");
            (from, crate::events::time("to", p.to.as_deref())?.unwrap_or_else(Utc::now))
        }
        (None, None) => month_range(&Utc::now().format("%Y-%m").to_string())?,
    };
    if from >= Utc::now() {
        return Err(err!(InvalidArgument, "the period starts in the future").into());
    }
    let r = st.store.uptime(from, to, p.site.as_deref(), p.camera.as_deref()).await?;
    if !csv {
        return Ok(Json(wire::UptimeReport::from(r)).into_response());
    }
    let mut out = String::new();
    if scope == "site" {
        out.push_str("site,cameras,period_secs,online_secs,uptime_percent,outages\r\n");
        for s in &r.sites {
            let _ = write!(
                out,
                "{},{},{:.0},{:.0},{:.3},{}\r\n",
                csv_field(&s.site),
                s.cameras,
                s.period_secs,
                s.online_secs,
                s.uptime_percent,
                s.outages
            );
        }
    } else {
        out.push_str("camera,site,period_secs,online_secs,degraded_secs,planned_secs,uptime_percent,outages\r\n");
        for c in &r.cameras {
            let _ = write!(
                out,
                "{},{},{:.0},{:.0},{:.0},{:.0},{:.3},{}\r\n",
                csv_field(&c.camera),
                csv_field(&c.site),
                c.period_secs,
                c.online_secs,
                c.degraded_secs,
                c.planned_secs,
                c.uptime_percent,
                c.outages.len()
            );
        }
    }
    Ok(csv_file(&format!("uptime-{scope}-{}.csv", r.from.format("%Y-%m-%d")), out))
}

/// A CSV body as a download named `name`.
fn csv_file(name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        body,
    )
        .into_response()
}

/// Daily uptime parameters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DailyParams {
    /// `YYYY-MM` (UTC; default: this month).
    #[param(pattern = "^[0-9]{4}-[0-9]{2}$")]
    month: Option<String>,
    /// Only this site's cameras.
    site: Option<String>,
    /// Only this camera.
    camera: Option<String>,
}

/// One UTC day of a daily uptime report.
#[derive(Serialize, ToSchema)]
pub struct DayUptime {
    /// The day, `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Camera-seconds counted that day (planned maintenance and time before a camera
    /// existed left out).
    pub period_secs: f64,
    /// Camera-seconds online.
    pub online_secs: f64,
    /// Camera-seconds of planned maintenance.
    pub planned_secs: f64,
    /// online / period × 100; null when nothing was counted (no camera yet, or all
    /// of the day planned).
    pub uptime_percent: Option<f64>,
}

/// Uptime per day of a month, for one camera, one site's cameras, or every camera.
#[derive(Serialize, ToSchema)]
pub struct DailyReport {
    /// `YYYY-MM`.
    pub month: String,
    /// The site asked for.
    pub site: Option<String>,
    /// The camera asked for.
    pub camera: Option<String>,
    /// `[maintenance] sla_percent`: the target.
    pub sla_percent: f64,
    /// The month so far: online / period × 100 over every day (null when nothing was
    /// counted).
    pub uptime_percent: Option<f64>,
    /// Days with a figure below `sla_percent`.
    pub days_below_sla: usize,
    /// The month's days up to today, oldest first.
    pub days: Vec<DayUptime>,
}

/// Uptime per UTC day of a month (up to today), for the console's charts against
/// the SLA target (`[maintenance] sla_percent`). Counted as `/api/v1/uptime` counts
/// (from each camera's creation, planned maintenance left out), one day at a time.
#[utoipa::path(get, path = "/api/v1/uptime/daily", tag = "health", security(("bearer" = [])), params(DailyParams),
    responses((status = 200, body = DailyReport), (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub async fn uptime_daily(
    State(st): State<Arc<AppState>>,
    c: Caller,
    Q(p): Q<DailyParams>,
) -> ApiResult<Json<DailyReport>> {
    c.require(Perm::Health)?;
    let month = p.month.clone().unwrap_or_else(|| Utc::now().format("%Y-%m").to_string());
    let (from, to) = month_range(&month)?;
    let now = Utc::now();
    if from >= now {
        return Err(err!(InvalidArgument, "the month `{month}` has not begun").into());
    }
    let (mut days, mut total) = (Vec::new(), (0.0, 0.0));
    let mut day = from;
    while day < to.min(now) {
        let next = day + chrono::Duration::days(1);
        let r = st.store.uptime(day, next.min(now), p.site.as_deref(), p.camera.as_deref()).await?;
        let (period, online, planned) = r
            .cameras
            .iter()
            .fold((0.0, 0.0, 0.0), |(a, b, c), x| (a + x.period_secs, b + x.online_secs, c + x.planned_secs));
        total = (total.0 + period, total.1 + online);
        days.push(DayUptime {
            day: day.format("%Y-%m-%d").to_string(),
            period_secs: period,
            online_secs: online,
            planned_secs: planned,
            uptime_percent: (period > 0.0).then(|| online / period * 100.0),
        });
        day = next;
    }
    let sla = st.sla_percent;
    Ok(Json(DailyReport {
        month,
        site: p.site,
        camera: p.camera,
        sla_percent: sla,
        uptime_percent: (total.0 > 0.0).then(|| total.1 / total.0 * 100.0),
        days_below_sla: days.iter().filter(|d| d.uptime_percent.is_some_and(|u| u < sla)).count(),
        days,
    }))
}

/// How far back health samples go.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Minutes back from now, 1–2880 (default 60 for cameras, 1440 for nodes).
    #[param(minimum = 1, maximum = 2880)]
    minutes: Option<i64>,
    /// Only this camera (cameras only).
    camera: Option<String>,
}

fn history_since(minutes: Option<i64>, default: i64) -> ApiResult<DateTime<Utc>> {
    let m = minutes.unwrap_or(default);
    if !(1..=varta_store::samples::KEEP_HOURS * 60).contains(&m) {
        return Err(err!(InvalidArgument, "`minutes` must be 1 to {}", varta_store::samples::KEEP_HOURS * 60).into());
    }
    Ok(Utc::now() - chrono::Duration::minutes(m))
}

/// Each node's health over time (admin): leases held against capacity, frames
/// decoded and analysed per second, CPU, one sample per `[node] sample_secs`.
#[utoipa::path(get, path = "/api/v1/nodes/history", tag = "admin", security(("bearer" = [])), params(HistoryParams),
    responses((status = 200, body = Vec<wire::NodeSeries>), (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub async fn node_history(
    State(st): State<Arc<AppState>>,
    c: Caller,
    Q(p): Q<HistoryParams>,
) -> ApiResult<Json<Vec<wire::NodeSeries>>> {
    c.require(Perm::Admin)?;
    if p.camera.is_some() {
        return Err(err!(InvalidArgument, "`camera` is for /api/v1/cameras/history").into());
    }
    let since = history_since(p.minutes, 1440)?;
    Ok(Json(wire::all(st.store.node_series(since).await?)))
}

/// Each camera's health over time (admin): frames and kilobits received per second,
/// decode errors, frames analysed per second, whichever node held it.
#[utoipa::path(get, path = "/api/v1/cameras/history", tag = "admin", security(("bearer" = [])), params(HistoryParams),
    responses((status = 200, body = Vec<wire::CameraSeries>), (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub async fn camera_history(
    State(st): State<Arc<AppState>>,
    c: Caller,
    Q(p): Q<HistoryParams>,
) -> ApiResult<Json<Vec<wire::CameraSeries>>> {
    c.require(Perm::Admin)?;
    let since = history_since(p.minutes, 60)?;
    Ok(Json(wire::all(st.store.camera_series(since, p.camera.as_deref()).await?)))
}

/// Quotes a CSV field when it needs it; a leading formula character is defused so a
/// spreadsheet does not run it.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// Nodes seen in the last week and the cameras each holds.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<wire::Node>), (status = 403, body = crate::ErrorBody)))]
pub async fn nodes(State(st): State<Arc<AppState>>, c: Caller) -> ApiResult<Json<Vec<wire::Node>>> {
    c.require(Perm::Nodes)?;
    Ok(Json(wire::all(st.store.nodes(7).await?)))
}

/// Benchmark runs (`varta bench`), newest first.
#[utoipa::path(get, path = "/api/v1/bench/runs", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<Object>), (status = 403, body = crate::ErrorBody)))]
pub async fn bench_runs(State(st): State<Arc<AppState>>, c: Caller) -> ApiResult<Json<Vec<serde_json::Value>>> {
    c.require(Perm::Nodes)?;
    Ok(Json(st.store.bench_runs(100).await?))
}

/// Audit log filters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only this user.
    actor: Option<String>,
    /// Only this action (`login`, `login_failed`, `snapshot_view`, `event_search`,
    /// `alert_ack`, `task_open`, `task_change`, `config_reload`, `user_add`, …).
    action: Option<String>,
    /// Only this target (an event, task or account id).
    target: Option<String>,
    /// At or after (RFC 3339).
    since: Option<String>,
    /// Before (RFC 3339).
    until: Option<String>,
    /// Cursor from the previous page.
    cursor: Option<String>,
    /// Page size, 1–500 (default 100); for `format=csv` 1–50000 (default 10000).
    #[param(minimum = 1, maximum = 50000)]
    limit: Option<i64>,
    /// `json` (default) or `csv` (one file, newest first, for an inspection).
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
}

/// The audit log, newest first (admin; read-only: nothing in the API changes it);
/// as JSON pages, or as one CSV file (`format=csv`). The read itself is audited.
#[utoipa::path(get, path = "/api/v1/audit", tag = "admin", security(("bearer" = [])), params(AuditParams),
    responses((status = 200, body = Page<wire::AuditRecord>), (status = 200, content_type = "text/csv", body = String),
    (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub async fn audit(State(st): State<Arc<AppState>>, c: Caller, Q(p): Q<AuditParams>) -> ApiResult<Response> {
    c.require(Perm::Admin)?;
    let csv = match p.format.as_deref().unwrap_or("json") {
        "json" => false,
        "csv" => true,
        f => return Err(err!(InvalidArgument, "`format` must be json or csv, not `{f}`").into()),
    };
    let limit = if csv { crate::limit(p.limit, 10_000, 50_000)? } else { crate::limit(p.limit, 100, 500)? };
    let f = AuditFilter {
        actor: p.actor,
        action: p.action,
        target: p.target,
        since: crate::events::time("since", p.since.as_deref())?,
        until: crate::events::time("until", p.until.as_deref())?,
        before: p.cursor.as_deref().map(crate::id_cursor).transpose()?,
        limit,
    };
    let items = st.store.list_audit(&f).await?;
    let detail = serde_json::json!({"actor": f.actor, "action": f.action, "target": f.target, "since": f.since,
        "until": f.until, "before": f.before, "count": items.len(), "format": if csv { "csv" } else { "json" }});
    st.store.audit(&c.audit("audit_read", None, detail)).await?;
    if !csv {
        return Ok(Json(Page::by_id(wire::all(items), limit, |a: &wire::AuditRecord| a.id)).into_response());
    }
    let mut out = String::from("id,at,actor,action,target,address,detail\r\n");
    for a in &items {
        let _ = write!(
            out,
            "{},{},{},{},{},{},{}\r\n",
            a.id,
            a.at.to_rfc3339(),
            csv_field(a.actor.as_deref().unwrap_or("")),
            csv_field(&a.action),
            csv_field(a.target.as_deref().unwrap_or("")),
            csv_field(a.address.as_deref().unwrap_or("")),
            csv_field(&a.detail.to_string())
        );
    }
    Ok(csv_file(&format!("audit-{}.csv", Utc::now().format("%Y-%m-%dT%H%M%SZ")), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_csv_fields() {
        let (a, b) = month_range("2026-12").unwrap();
        assert_eq!(a.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(b.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert!(month_range("2026-13").is_err());
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }
}

/// Planned maintenance windows of a month.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WindowParams {
    /// `YYYY-MM` (default: this month).
    month: Option<String>,
}

/// Planned maintenance windows overlapping a month: time left out of uptime.
#[utoipa::path(get, path = "/api/v1/maintenance/windows", tag = "maintenance", security(("bearer" = [])),
    params(WindowParams), responses((status = 200, body = Vec<wire::MaintenanceWindow>),
    (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub async fn windows(
    State(st): State<Arc<AppState>>,
    c: Caller,
    Q(p): Q<WindowParams>,
) -> ApiResult<Json<Vec<wire::MaintenanceWindow>>> {
    c.require(Perm::Health)?;
    let (from, to) = month_range(&p.month.unwrap_or_else(|| Utc::now().format("%Y-%m").to_string()))?;
    Ok(Json(wire::all(st.store.maintenance_windows(from, to).await?)))
}

/// A planned maintenance window.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWindow {
    /// Site id.
    site: String,
    /// Camera id (of that site); none: every camera of the site.
    camera: Option<String>,
    /// Start (RFC 3339).
    starts_at: String,
    /// End (RFC 3339), after the start, at most 7 days later.
    ends_at: String,
    /// What is done (1–500 characters).
    #[schema(min_length = 1, max_length = 500)]
    reason: String,
}

/// Records planned maintenance (contractors, administrators; audited): its time is
/// neither uptime nor downtime.
#[utoipa::path(post, path = "/api/v1/maintenance/windows", tag = "maintenance", security(("bearer" = [])),
    request_body = NewWindow, responses((status = 201, body = wire::MaintenanceWindow),
    (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub async fn add_window(
    State(st): State<Arc<AppState>>,
    c: Caller,
    crate::error::Body(w): crate::error::Body<NewWindow>,
) -> ApiResult<(axum::http::StatusCode, Json<wire::MaintenanceWindow>)> {
    c.require(Perm::Tasks)?;
    let reason = w.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(err!(InvalidArgument, "reason must be 1 to 500 characters").into());
    }
    let starts = crate::events::time("starts_at", Some(&w.starts_at))?.expect("given");
    let ends = crate::events::time("ends_at", Some(&w.ends_at))?.expect("given");
    if ends - starts > chrono::Duration::days(7) {
        return Err(err!(InvalidArgument, "a maintenance window lasts at most 7 days").into());
    }
    let audit = c.audit(
        "maintenance_window_add",
        Some(w.camera.clone().unwrap_or_else(|| w.site.clone())),
        serde_json::json!({"site": w.site, "camera": w.camera, "starts_at": starts, "ends_at": ends, "reason": reason}),
    );
    let window = varta_store::uptime::WindowRow {
        id: 0,
        site: w.site.clone(),
        camera: w.camera.clone(),
        starts_at: starts,
        ends_at: ends,
        reason: reason.to_owned(),
        created_by: c.who.name.clone(),
        created_at: Utc::now(),
    };
    let row = st.store.add_maintenance_window(&window, &audit).await?;
    Ok((axum::http::StatusCode::CREATED, Json(row.into())))
}
