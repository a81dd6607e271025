//! Uptime and outages, computed from `camera_status` transitions alone (never
//! from a node's memory), so every node and the API give the same numbers.
//!
//! A camera is **online** while its last transition is `streaming`. Every other
//! state counts as down, `degraded` included (frames arrive, but the picture is
//! frozen or black, or the rate is too low: not the service a maintenance contract
//! pays for); `degraded_secs` says how much of the downtime was that. Time in the
//! period before the camera's first recorded transition counts as down with the
//! reason "no status recorded". A period ending in the future ends now.
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
    /// online / period × 100.
    pub uptime_percent: f64,
    /// Outages, oldest first.
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

/// Uptime of one camera over [from, to) given its transitions: the last one before
/// `from` (if any) and all in the period, oldest first.
pub fn camera_uptime(
    camera: &str,
    site: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    transitions: &[Transition],
) -> CameraUptime {
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
    for (a, b, state, reason) in segments {
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
            _ => outages.push(Outage { start: a, end: b, ongoing: false, state, reason, secs: len }),
        }
    }
    if let Some(o) = outages.last_mut() {
        o.ongoing = o.end == to;
    }
    let period = secs(from, to);
    CameraUptime {
        camera: camera.to_owned(),
        site: site.to_owned(),
        period_secs: period,
        online_secs: online,
        degraded_secs: degraded,
        uptime_percent: if period > 0.0 { online / period * 100.0 } else { 0.0 },
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
            "SELECT id, site_id FROM cameras
             WHERE (removed_at IS NULL OR removed_at > $1) AND ($2::text IS NULL OR site_id = $2)
               AND ($3::text IS NULL OR id = $3)
             ORDER BY id",
        )
        .bind(from)
        .bind(site)
        .bind(camera)
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
        let mut by_camera: BTreeMap<String, Vec<Transition>> = BTreeMap::new();
        for r in rows {
            by_camera.entry(r.get(0)).or_default().push(Transition { at: r.get(1), state: r.get(2), reason: r.get(3) });
        }
        let mut cameras = Vec::new();
        let mut sites: BTreeMap<String, SiteUptime> = BTreeMap::new();
        for r in &cams {
            let (id, site): (String, String) = (r.get(0), r.get(1));
            let u = camera_uptime(&id, &site, from, to, by_camera.get(&id).map(|v| v.as_slice()).unwrap_or(&[]));
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
