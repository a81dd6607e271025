//! Reads for the API.

use crate::{db_error, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use varta_core::Error;

/// Filters of `GET /api/v1/events`.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Only this camera.
    pub camera: Option<String>,
    /// Only cameras of this site.
    pub site: Option<String>,
    /// Only this class.
    pub class: Option<String>,
    /// Started at or after.
    pub since: Option<DateTime<Utc>>,
    /// Started before.
    pub until: Option<DateTime<Utc>>,
    /// Most rows (1..=1000).
    pub limit: i64,
}

/// One event as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct EventRow {
    /// UUIDv7.
    pub id: uuid::Uuid,
    /// Camera id.
    pub camera: String,
    /// Site id of the camera.
    pub site: String,
    /// Tracker id.
    pub track_id: i64,
    /// Class label.
    pub class: String,
    /// Best score.
    pub score: f32,
    /// Left, top, right, bottom in source pixels.
    pub bbox: Vec<f32>,
    /// First seen.
    pub started_at: DateTime<Utc>,
    /// Last seen.
    pub last_seen_at: DateTime<Utc>,
    /// When the track ended; null while it is live.
    pub ended_at: Option<DateTime<Utc>>,
    /// Analysed frames the object was matched in.
    pub frames: i32,
    /// Rule that fired.
    pub rule: String,
    /// Its zone or line.
    pub zone: Option<String>,
    /// Snapshot file in the snapshot directory.
    pub snapshot: Option<String>,
}

impl Store {
    /// Events newest first, filtered.
    pub async fn list_events(&self, f: &EventFilter) -> Result<Vec<EventRow>, Error> {
        let rows = sqlx::query(
            "SELECT e.id, e.camera_id, c.site_id, e.track_id, e.class, e.score, e.bbox,
                    e.started_at, e.last_seen_at, e.ended_at, e.frames, e.rule, e.zone, e.snapshot
               FROM events e JOIN cameras c ON c.id = e.camera_id
              WHERE ($1::text IS NULL OR e.camera_id = $1)
                AND ($2::text IS NULL OR c.site_id = $2)
                AND ($3::text IS NULL OR e.class = $3)
                AND ($4::timestamptz IS NULL OR e.started_at >= $4)
                AND ($5::timestamptz IS NULL OR e.started_at < $5)
              ORDER BY e.started_at DESC, e.id DESC
              LIMIT $6",
        )
        .bind(&f.camera)
        .bind(&f.site)
        .bind(&f.class)
        .bind(f.since)
        .bind(f.until)
        .bind(f.limit.clamp(1, 1000))
        .fetch_all(self.pool())
        .await
        .map_err(|e| db_error("listing events", e))?;
        rows.iter()
            .map(|r| {
                Ok(EventRow {
                    id: r.try_get(0)?,
                    camera: r.try_get(1)?,
                    site: r.try_get(2)?,
                    track_id: r.try_get(3)?,
                    class: r.try_get(4)?,
                    score: r.try_get(5)?,
                    bbox: r.try_get(6)?,
                    started_at: r.try_get(7)?,
                    last_seen_at: r.try_get(8)?,
                    ended_at: r.try_get(9)?,
                    frames: r.try_get(10)?,
                    rule: r.try_get(11)?,
                    zone: r.try_get(12)?,
                    snapshot: r.try_get(13)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| db_error("reading events", e))
    }

    /// The snapshot file of event `id`: `None` if there is no such event,
    /// `Some(None)` if it has no snapshot.
    pub async fn event_snapshot(&self, id: uuid::Uuid) -> Result<Option<Option<String>>, Error> {
        sqlx::query_scalar::<_, Option<String>>("SELECT snapshot FROM events WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| db_error("reading an event", e))
    }
}
