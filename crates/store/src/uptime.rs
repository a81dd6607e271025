//! Uptime and outages, computed from `camera_status` transitions alone (never
//! from a node's memory), so every node and the API give the same numbers.
//!
//! A camera is **online** while its last transition is `streaming`. Every other
//! state counts as down, `degraded` included (frames arrive, but the picture is
//! frozen or black, or the rate is too low: not the service a maintenance contract
//! pays for); `degraded_secs` says how much of the downtime was that. A camera's
//! period starts when it was first configured (`cameras.created_at`) if that is later
//! than the period's start, and ends when it was removed from the config if earlier:
//! time when a camera did not exist is not downtime, nor its commissioning (from its
//! creation to its first `streaming`, when that comes within [`COMMISSIONING`] with
//! only `starting` before it). A new camera that does not stream is down from its
//! first recorded transition (within [`COMMISSIONING`] of its creation) or else from
//! its creation, with the reason "no status recorded". A period
//! ending in the future ends now. Planned maintenance windows (`maintenance_windows`,
//! for a camera or a whole site) are left out: neither up nor down, reported as
//! `planned_secs`.
//!
//! An outage is a run of consecutive non-`streaming` transitions; its state and
//! reason are those of the transition that began it.

use crate::{db_error, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use std::collections::BTreeMap;
use varta_core::{err, Error};

/// One outage within the period (clipped to it).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Outage {
    /// Start (the period's start if it began before).
    pub start: DateTime<Utc>,
    /// End (the period's end if it was still going on).
    pub end: DateTime<Utc>,
    /// True when the camera was still down at the period's end.
    pub ongoing: bool,
    /// The state it began with (`backing_off`, `stalled`, `stopped`, `degraded`, …).
    pub state: String,
    /// Why, as recorded.
    pub reason: String,
    /// Length in seconds.
    pub secs: f64,
}

/// One camera over the period.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CameraUptime {
    /// Camera id.
    pub camera: String,
    /// Its site.
    pub site: String,
    /// Seconds in the period.
    pub period_secs: f64,
    /// Seconds online.
    pub online_secs: f64,
    /// Seconds down because `degraded`.
    pub degraded_secs: f64,
    /// Seconds in planned maintenance windows: not in `period_secs`, neither up nor down.
    pub planned_secs: f64,
    /// online / period × 100.
    pub uptime_percent: f64,
    /// Outages, oldest first (their planned parts left out).
    pub outages: Vec<Outage>,
}

/// One site: its cameras' time added up.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SiteUptime {
    /// Site id.
    pub site: String,
    /// Cameras counted.
    pub cameras: usize,
    /// Camera-seconds in the period.
    pub period_secs: f64,
    /// Camera-seconds online.
    pub online_secs: f64,
    /// online / period × 100.
    pub uptime_percent: f64,
    /// Outages of its cameras.
    pub outages: usize,
}

/// The report for a period.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct UptimeReport {
    /// Period start.
    pub from: DateTime<Utc>,
    /// Period end (at most now).
    pub to: DateTime<Utc>,
    /// Per camera.
    pub cameras: Vec<CameraUptime>,
    /// Per site.
    pub sites: Vec<SiteUptime>,
}

/// A transition as read back.
#[derive(Clone, Debug)]
pub struct Transition {
    /// When.
    pub at: DateTime<Utc>,
    /// New state.
    pub state: String,
    /// Why.
    pub reason: String,
}

fn secs(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_microseconds().unwrap_or(0) as f64 / 1e6
}

/// How long a new camera may take to stream for the first time before the wait counts
/// as downtime: its commissioning (a node starting, a first RTSP session).
pub const COMMISSIONING: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// When a camera existed: first configured, and removed from the config (if it was).
#[derive(Clone, Copy, Debug)]
pub struct Lifetime {
    /// `cameras.created_at`.
    pub created: DateTime<Utc>,
    /// `cameras.removed_at`.
    pub removed: Option<DateTime<Utc>>,
}

/// A span of time, [start, end).
pub type Span = (DateTime<Utc>, DateTime<Utc>);

/// The parts of [a, b) outside every window of `planned` (sorted by start,
/// overlapping allowed), and the length inside them in seconds.
fn unplanned(a: DateTime<Utc>, b: DateTime<Utc>, planned: &[Span]) -> (Vec<Span>, f64) {
    let (mut out, mut cur, mut inside) = (Vec::new(), a, 0.0);
    for &(ws, we) in planned {
        if we <= cur || ws >= b {
            continue;
        }
        if ws > cur {
            out.push((cur, ws));
        }
        let (s, e) = (ws.max(cur), we.min(b));
        inside += secs(s, e);
        cur = e;
        if cur >= b {
            break;
        }
    }
    if cur < b {
        out.push((cur, b));
    }
    (out, inside)
}

/// Uptime of one camera over [from, to) given its transitions (the last one before
/// `from`, if any, and all in the period, oldest first), counted only while the
/// camera existed (`life`) and outside planned maintenance (`planned`: windows
/// sorted by start).
pub fn camera_uptime(
    camera: &str,
    site: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    life: Lifetime,
    planned: &[Span],
    transitions: &[Transition],
) -> CameraUptime {
    let mut from = from.max(life.created).min(to);
    // Commissioning: a camera created in the period whose first states are `starting`
    // and then `streaming` within COMMISSIONING counts from that first `streaming`.
    if life.created >= from {
        let first_up = transitions
            .iter()
            .filter(|t| t.at >= life.created)
            .take_while(|t| t.state == "starting" || t.state == "streaming")
            .find(|t| t.state == "streaming");
        let first = transitions.iter().find(|t| t.at >= life.created);
        if let Some(up) = first_up.filter(|u| u.at - life.created <= COMMISSIONING) {
            from = up.at.min(to);
        } else if let Some(f) = first.filter(|f| f.at - life.created <= COMMISSIONING) {
            // The moments before a node first picked the camera up are no outage of
            // their own: a new camera that cannot connect is down from its first try.
            from = f.at.min(to);
        }
    }
    let to = life.removed.map_or(to, |r| r.min(to)).max(from);
    let mut online = 0.0;
    let mut degraded = 0.0;
    let mut outages: Vec<Outage> = Vec::new();
    // The state in force at each moment, starting with "unknown" at `from`.
    let mut cur: (DateTime<Utc>, String, String) = (from, "unknown".into(), "no status recorded".into());
    let mut segments: Vec<(DateTime<Utc>, DateTime<Utc>, String, String)> = Vec::new();
    for t in transitions {
        let at = t.at.clamp(from, to);
        if at > cur.0 {
            segments.push((cur.0, at, cur.1.clone(), cur.2.clone()));
        }
        cur = (at, t.state.clone(), t.reason.clone());
    }
    if to > cur.0 {
        segments.push((cur.0, to, cur.1, cur.2));
    }
    let mut planned_secs = 0.0;
    for (a, b, state, reason) in segments {
        let (parts, inside) = unplanned(a, b, planned);
        planned_secs += inside;
        for (a, b) in parts {
            let len = secs(a, b);
            if state == "streaming" {
                online += len;
                continue;
            }
            if state == "degraded" {
                degraded += len;
            }
            match outages.last_mut() {
                Some(o) if o.end == a => {
                    o.end = b;
                    o.secs += len;
                }
                _ => outages.push(Outage {
                    start: a,
                    end: b,
                    ongoing: false,
                    state: state.clone(),
                    reason: reason.clone(),
                    secs: len,
                }),
            }
        }
    }
    if let Some(o) = outages.last_mut() {
        o.ongoing = o.end == to;
    }
    let period = secs(from, to) - planned_secs;
    CameraUptime {
        camera: camera.to_owned(),
        site: site.to_owned(),
        period_secs: period,
        online_secs: online,
        degraded_secs: degraded,
        planned_secs,
        // No time to account for is no downtime.
        uptime_percent: if period > 0.0 { online / period * 100.0 } else { 100.0 },
        outages,
    }
}

impl Store {
    /// Uptime of every camera (not removed before `from`), optionally of one site
    /// or one camera, over [from, to).
    pub async fn uptime(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        site: Option<&str>,
        camera: Option<&str>,
    ) -> Result<UptimeReport, Error> {
        let to = to.min(Utc::now());
        if to <= from {
            return Err(err!(InvalidArgument, "`from` must be before `to` (and before now)"));
        }
        let cams = sqlx::query(
            "SELECT id, site_id, created_at, removed_at FROM cameras
             WHERE (removed_at IS NULL OR removed_at > $1) AND created_at < $4
               AND ($2::text IS NULL OR site_id = $2) AND ($3::text IS NULL OR id = $3)
             ORDER BY id",
        )
        .bind(from)
        .bind(site)
        .bind(camera)
        .bind(to)
        .fetch_all(self.pool())
        .await
        .map_err(|e| db_error("listing cameras", e))?;
        let ids: Vec<String> = cams.iter().map(|r| r.get(0)).collect();
        let rows = sqlx::query(
            "SELECT camera_id, at, state, reason FROM (
                SELECT DISTINCT ON (camera_id) camera_id, at, state, reason FROM camera_status
                WHERE camera_id = ANY($1) AND at < $2 ORDER BY camera_id, at DESC
             ) before
             UNION ALL
             SELECT camera_id, at, state, reason FROM camera_status
             WHERE camera_id = ANY($1) AND at >= $2 AND at < $3
             ORDER BY camera_id, at",
        )
        .bind(&ids)
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await
        .map_err(|e| db_error("reading camera status", e))?;
        let windows = sqlx::query(
            "SELECT site_id, camera_id, starts_at, ends_at FROM maintenance_windows
              WHERE starts_at < $2 AND ends_at > $1 ORDER BY starts_at",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await
        .map_err(|e| db_error("reading maintenance windows", e))?;
        // (site, camera or every camera of the site, span)
        let windows: Vec<(String, Option<String>, Span)> =
            windows.iter().map(|r| (r.get(0), r.get(1), (r.get(2), r.get(3)))).collect();
        let mut by_camera: BTreeMap<String, Vec<Transition>> = BTreeMap::new();
        for r in rows {
            by_camera.entry(r.get(0)).or_default().push(Transition { at: r.get(1), state: r.get(2), reason: r.get(3) });
        }
        let mut cameras = Vec::new();
        let mut sites: BTreeMap<String, SiteUptime> = BTreeMap::new();
        for r in &cams {
            let (id, site): (String, String) = (r.get(0), r.get(1));
            let life = Lifetime { created: r.get(2), removed: r.get(3) };
            let planned: Vec<_> =
                windows.iter().filter(|w| w.0 == site && w.1.as_ref().is_none_or(|c| *c == id)).map(|w| w.2).collect();
            let u = camera_uptime(
                &id,
                &site,
                from,
                to,
                life,
                &planned,
                by_camera.get(&id).map(|v| v.as_slice()).unwrap_or(&[]),
            );
            let s = sites.entry(site.clone()).or_insert_with(|| SiteUptime {
                site: site.clone(),
                cameras: 0,
                period_secs: 0.0,
                online_secs: 0.0,
                uptime_percent: 0.0,
                outages: 0,
            });
            s.cameras += 1;
            s.period_secs += u.period_secs;
            s.online_secs += u.online_secs;
            s.outages += u.outages.len();
            cameras.push(u);
        }
        let mut sites: Vec<SiteUptime> = sites.into_values().collect();
        for s in &mut sites {
            s.uptime_percent = if s.period_secs > 0.0 { s.online_secs / s.period_secs * 100.0 } else { 0.0 };
        }
        Ok(UptimeReport { from, to, cameras, sites })
    }
}

/// A planned maintenance window.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct WindowRow {
    /// Id.
    pub id: i64,
    /// Site.
    pub site: String,
    /// Camera; none: every camera of the site.
    pub camera: Option<String>,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// What is done.
    pub reason: String,
    /// Who recorded it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Planned maintenance windows overlapping [from, to), by start.
    pub async fn maintenance_windows(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<WindowRow>, Error> {
        sqlx::query_as(
            "SELECT id, site_id AS site, camera_id AS camera, starts_at, ends_at, reason, created_by, created_at
               FROM maintenance_windows WHERE starts_at < $2 AND ends_at > $1 ORDER BY starts_at, id",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await
        .map_err(|e| db_error("listing maintenance windows", e))
    }

    /// Records a planned maintenance window (`w.id` and `w.created_at` are ignored),
    /// with `audit` in the same transaction. `InvalidArgument` for an unknown site, a
    /// camera not of that site, or an end not after the start.
    pub async fn add_maintenance_window(
        &self,
        w: &WindowRow,
        audit: &crate::accounts::AuditEntry<'_>,
    ) -> Result<WindowRow, Error> {
        let (site, camera, starts_at, ends_at) = (&w.site, w.camera.as_deref(), w.starts_at, w.ends_at);
        let (reason, by) = (&w.reason, &w.created_by);
        if ends_at <= starts_at {
            return Err(err!(InvalidArgument, "`ends_at` must be after `starts_at`"));
        }
        let mut tx = self.pool().begin().await.map_err(|e| db_error("begin", e))?;
        let known: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM sites WHERE id = $1)
                AND ($2::text IS NULL OR EXISTS (SELECT FROM cameras WHERE id = $2 AND site_id = $1))",
        )
        .bind(site)
        .bind(camera)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_error("checking a maintenance window", e))?;
        if !known {
            return Err(err!(
                InvalidArgument,
                "no site `{site}`, or camera `{}` is not one of its cameras",
                camera.unwrap_or("")
            ));
        }
        let row: WindowRow = sqlx::query_as(
            "INSERT INTO maintenance_windows (site_id, camera_id, starts_at, ends_at, reason, created_by)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING id, site_id AS site, camera_id AS camera, starts_at, ends_at, reason, created_by, created_at",
        )
        .bind(site)
        .bind(camera)
        .bind(starts_at)
        .bind(ends_at)
        .bind(reason)
        .bind(by)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_error("recording a maintenance window", e))?;
        crate::accounts::insert_audit(&mut tx, &audit.with("window", row.id)).await?;
        tx.commit().await.map_err(|e| db_error("commit", e))?;
        Ok(row)
    }
}
