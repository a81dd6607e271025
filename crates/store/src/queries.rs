//! Reads for the API.

use crate::{db_error, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;
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
    /// Continue after this (started_at, id), the last row of the previous page.
    pub after: Option<(DateTime<Utc>, uuid::Uuid)>,
}

/// One event as the API shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
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
    /// When the event ended; null while it is open. For an event closed by recovery
    /// (`end_reason` other than `ended`), when the object was last seen.
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it ended: `ended` (the object left, or the count fell), `node_stopped`
    /// (the node stopped analysing the camera), `node_lost` (the process that made it
    /// died; closed by recovery), `camera_lost` (the camera stopped sending
    /// pictures); null while open.
    pub end_reason: Option<String>,
    /// Analysed frames the object was matched in.
    pub frames: i32,
    /// Rule that fired.
    pub rule: String,
    /// Its zone or line.
    pub zone: Option<String>,
    /// Snapshot file in the snapshot directory.
    pub snapshot: Option<String>,
    /// The clip's URL (`/api/v1/events/{id}/clip`) once it is written, else null.
    pub clip: Option<String>,
    /// SHA-256 of the clip file as written (lower-case hex).
    pub clip_sha256: Option<String>,
    /// SHA-256 of the snapshot (`<id>.jpg`) as written (lower-case hex).
    pub snapshot_sha256: Option<String>,
    /// SHA-256 of the crop (`<id>.crop.jpg`) as written (lower-case hex).
    pub crop_sha256: Option<String>,
    /// Id of the node key that signed the event's manifest; null until the event
    /// has ended and been signed ([`crate::evidence`]).
    pub manifest_key: Option<String>,
}

/// The columns of an [`EventRow`], from `events e JOIN cameras c`.
const EVENT_ROW: &str = "e.id, e.camera_id AS camera, c.site_id AS site, e.track_id, e.class, e.score, e.bbox,
    e.started_at, e.last_seen_at, e.ended_at, e.frames, e.rule, e.zone, e.snapshot,
    CASE WHEN e.clip IS NOT NULL THEN '/api/v1/events/' || e.id || '/clip' END AS clip, e.clip_sha256,
    e.snapshot_sha256, e.crop_sha256, e.manifest_key,
    CASE WHEN e.ended_at IS NOT NULL THEN COALESCE(e.end_reason, 'ended') END AS end_reason";

impl Store {
    /// Events newest first, filtered.
    pub async fn list_events(&self, f: &EventFilter) -> Result<Vec<EventRow>, Error> {
        sqlx::query_as(&format!(
            "SELECT {EVENT_ROW}
               FROM events e JOIN cameras c ON c.id = e.camera_id
              WHERE ($1::text IS NULL OR e.camera_id = $1)
                AND ($2::text IS NULL OR c.site_id = $2)
                AND ($3::text IS NULL OR e.class = $3)
                AND ($4::timestamptz IS NULL OR e.started_at >= $4)
                AND ($5::timestamptz IS NULL OR e.started_at < $5)
                AND ($7::timestamptz IS NULL OR (e.started_at, e.id) < ($7, $8::uuid))
              ORDER BY e.started_at DESC, e.id DESC
              LIMIT $6"
        ))
        .bind(&f.camera)
        .bind(&f.site)
        .bind(&f.class)
        .bind(f.since)
        .bind(f.until)
        .bind(f.limit.clamp(1, 1000))
        .bind(f.after.map(|a| a.0))
        .bind(f.after.map(|a| a.1))
        .fetch_all(self.pool())
        .await
        .map_err(|e| db_error("listing events", e))
    }

    /// One event, by id.
    pub async fn event(&self, id: uuid::Uuid) -> Result<Option<EventRow>, Error> {
        sqlx::query_as(&format!(
            "SELECT {EVENT_ROW} FROM events e JOIN cameras c ON c.id = e.camera_id WHERE e.id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(|e| db_error("reading an event", e))
    }

    /// The clip file of event `id` and its SHA-256: `None` if there is no such event,
    /// `Some(None)` if it has no clip (yet).
    pub async fn event_clip(&self, id: uuid::Uuid) -> Result<Option<Option<(String, String)>>, Error> {
        let row: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT clip, clip_sha256 FROM events WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await
                .map_err(|e| db_error("reading an event", e))?;
        Ok(row.map(|(f, h)| f.zip(h)))
    }

    /// The node that made event `id` (its files are on that node's disk), if any.
    pub async fn event_node(&self, id: uuid::Uuid) -> Result<Option<String>, Error> {
        sqlx::query_scalar("SELECT node FROM events WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| db_error("reading an event", e))
    }

    /// Where the running process of node `name` serves its API (`host:port`, as it
    /// registered it), if it runs and registered one: the newest of its live rows.
    pub async fn node_api_addr(&self, name: &str) -> Result<Option<String>, Error> {
        sqlx::query_scalar(
            "SELECT api_addr FROM nodes WHERE name = $1 AND stopped_at IS NULL AND api_addr IS NOT NULL
              ORDER BY started_at DESC LIMIT 1",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .map_err(|e| db_error("reading nodes", e))
    }

    /// The signed manifest of event `id` (its exact bytes) and its signature
    /// (base64): `None` if there is no such event, `Some(None)` until it is signed.
    pub async fn event_manifest(&self, id: uuid::Uuid) -> Result<Option<Option<(String, String)>>, Error> {
        let row: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT manifest, manifest_sig FROM events WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await
                .map_err(|e| db_error("reading an event", e))?;
        Ok(row.map(|(m, s)| m.zip(s)))
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

/// A camera's last recorded state, from `camera_status` (whichever node wrote it).
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct CameraStatusRow {
    /// Camera id.
    pub camera: String,
    /// Camera name.
    pub name: String,
    /// Site id.
    pub site: String,
    /// Site name.
    pub site_name: String,
    /// Site latitude, WGS 84 degrees (`[[sites]] lat`), if configured.
    pub site_lat: Option<f64>,
    /// Site longitude, WGS 84 degrees, if configured.
    pub site_lon: Option<f64>,
    /// Whether the camera is configured to be pulled.
    pub enabled: bool,
    /// Last state (`streaming`, `degraded`, `backing_off`, …); null if none recorded.
    pub state: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// Since when.
    pub since: Option<DateTime<Utc>>,
    /// Node holding its lease, if any.
    pub node: Option<String>,
    /// Open maintenance tasks of the camera.
    pub open_tasks: i64,
}

/// A node with its leases.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct NodeRow {
    /// Node run id.
    pub id: uuid::Uuid,
    /// Configured name.
    pub name: String,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Last heartbeat.
    pub last_heartbeat: DateTime<Utc>,
    /// Set on clean shutdown.
    pub stopped_at: Option<DateTime<Utc>>,
    /// Most cameras it may hold.
    pub capacity: i32,
    /// Its API address.
    pub api_addr: Option<String>,
    /// Varta version.
    pub version: String,
    /// Cameras it holds now.
    pub cameras: Vec<String>,
    /// Its clock against the database's at its last lease tick: database minus
    /// node, in milliseconds (null before the first).
    pub clock_offset_ms: Option<i64>,
    /// Seconds since its last heartbeat, by the database's clock (so a browser's
    /// clock does not matter).
    pub heartbeat_age_secs: f64,
}

impl Store {
    /// Every configured camera (not removed) with its last recorded state.
    pub async fn camera_states(&self) -> Result<Vec<CameraStatusRow>, Error> {
        sqlx::query_as(
            "SELECT c.id AS camera, c.name, c.site_id AS site, s.name AS site_name, s.lat AS site_lat, s.lon AS site_lon,
                    c.enabled, st.state, st.reason,
                    st.at AS since, n.name AS node,
                    (SELECT count(*) FROM maintenance_tasks t
                      WHERE t.camera_id = c.id AND t.state IN ('open', 'assigned', 'in_progress')) AS open_tasks
               FROM cameras c JOIN sites s ON s.id = c.site_id
               LEFT JOIN LATERAL (SELECT state, reason, at FROM camera_status x
                                   WHERE x.camera_id = c.id ORDER BY at DESC LIMIT 1) st ON true
               LEFT JOIN camera_leases l ON l.camera_id = c.id AND l.expires_at > now()
               LEFT JOIN nodes n ON n.id = l.node_id
              WHERE c.removed_at IS NULL
              ORDER BY c.site_id, c.id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|e| db_error("reading camera states", e))
    }

    /// Nodes seen in the last `days` days, newest first, with the cameras they hold.
    pub async fn nodes(&self, days: i32) -> Result<Vec<NodeRow>, Error> {
        sqlx::query_as(
            "SELECT n.id, n.name, n.started_at, n.last_heartbeat, n.stopped_at, n.capacity, n.api_addr, n.version,
                    n.clock_offset_ms, extract(epoch FROM now() - n.last_heartbeat)::float8 AS heartbeat_age_secs,
                    COALESCE(array_agg(l.camera_id ORDER BY l.camera_id) FILTER (WHERE l.camera_id IS NOT NULL), '{}')
                      AS cameras
               FROM nodes n
               LEFT JOIN camera_leases l ON l.node_id = n.id AND l.expires_at > now()
              WHERE n.last_heartbeat > now() - make_interval(days => $1)
              GROUP BY n.id ORDER BY n.stopped_at IS NOT NULL, n.last_heartbeat DESC",
        )
        .bind(days)
        .fetch_all(self.pool())
        .await
        .map_err(|e| db_error("listing nodes", e))
    }
}
