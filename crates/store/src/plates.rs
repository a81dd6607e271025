//! Number plates (issue #20): the search over `plate_reads` (partial, by trigram, and
//! within one OCR confusion), a plate's sightings across cameras and sites, and the
//! wanted-vehicle watchlist. Plate texts given here are normalised by the caller
//! (`varta_core::plate::normalise`).

use crate::{db_error, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;
use varta_core::{err, Error};

/// A plate found by a search, with its sightings summed up.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct PlateHitRow {
    /// Normalised Latin text.
    pub plate: String,
    /// As operators read it ([`varta_core::plate::display`]).
    #[sqlx(skip)]
    pub display: String,
    /// How it matched: `exact`, `partial` (the query is part of it), `confusion` (one
    /// OCR confusion away) or `similar` (trigram similarity ≥ 0.3).
    pub matched: String,
    /// Sightings (vehicle passages).
    pub sightings: i64,
    /// Cameras it was seen on.
    pub cameras: i64,
    /// First sighting.
    pub first_seen: DateTime<Utc>,
    /// Last sighting.
    pub last_seen: DateTime<Utc>,
    /// Best vote confidence, 0–1.
    pub best_confidence: f32,
}

/// One sighting of a plate: a vehicle passage on one camera.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct PlateSightingRow {
    /// Plate read id (its crop: `/api/v1/plates/reads/{id}/crop`).
    pub id: uuid::Uuid,
    /// The vehicle's event.
    pub event_id: uuid::Uuid,
    /// Normalised plate as voted.
    pub plate: String,
    /// As operators read it.
    #[sqlx(skip)]
    pub display: String,
    /// When the best read's frame was captured.
    pub read_at: DateTime<Utc>,
    /// Camera id.
    pub camera: String,
    /// Camera name.
    pub camera_name: String,
    /// Site id.
    pub site: String,
    /// Site name.
    pub site_name: String,
    /// Vote confidence, 0–1.
    pub confidence: f32,
    /// Reads that voted.
    pub reads: i32,
    /// Class of the vehicle (`car`, `bus`, …).
    pub class: Option<String>,
    /// Whether the plate's crop exists.
    pub has_crop: bool,
}

/// A watchlist entry.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct WatchlistRow {
    /// Entry id.
    pub id: i64,
    /// Normalised Latin plate.
    pub plate: String,
    /// As operators read it.
    #[sqlx(skip)]
    pub display: String,
    /// Why it is wanted.
    pub reason: String,
    /// Who added it.
    pub added_by: String,
    /// When.
    pub added_at: DateTime<Utc>,
    /// When it stops matching (none: until removed).
    pub expires_at: Option<DateTime<Utc>>,
    /// Who removed it.
    pub removed_by: Option<String>,
    /// When.
    pub removed_at: Option<DateTime<Utc>>,
    /// Why.
    pub removed_reason: Option<String>,
}

/// Rows whose `display` is filled from their `plate`.
trait Displayed {
    fn fill(self) -> Self;
}

macro_rules! displayed {
    ($($t:ty),*) => {$(
        impl Displayed for $t {
            fn fill(mut self) -> Self {
                self.display = varta_core::plate::display(&self.plate);
                self
            }
        }
    )*};
}
displayed!(PlateHitRow, PlateSightingRow, WatchlistRow);

fn fill<T: Displayed>(rows: Vec<T>) -> Vec<T> {
    rows.into_iter().map(Displayed::fill).collect()
}

const SIGHTING: &str = "SELECT p.id, p.event_id, p.plate, p.read_at, p.camera_id AS camera, c.name AS camera_name,
        p.site_id AS site, s.name AS site_name, p.confidence, p.reads, e.class, p.crop IS NOT NULL AS has_crop
   FROM plate_reads p
   JOIN cameras c ON c.id = p.camera_id
   JOIN sites s ON s.id = p.site_id
   LEFT JOIN events e ON e.id = p.event_id AND e.started_at = p.event_started_at";

impl Store {
    /// Plates like `q` (normalised, 2+ characters), best matches first: the plate
    /// itself, plates holding `q`, plates one OCR confusion from it, then plates of
    /// trigram similarity ≥ 0.3; at most `limit`.
    pub async fn search_plates(&self, q: &str, limit: i64) -> Result<Vec<PlateHitRow>, Error> {
        sqlx::query_as(
            "WITH hits AS (
                SELECT plate,
                       CASE WHEN plate = $1 THEN 'exact'
                            WHEN strpos(plate, $1) > 0 THEN 'partial'
                            WHEN varta_plate_match(plate, $1) IS NOT NULL THEN 'confusion'
                            ELSE 'similar' END AS matched,
                       count(*) AS sightings, count(DISTINCT camera_id) AS cameras,
                       min(read_at) AS first_seen, max(read_at) AS last_seen, max(confidence) AS best_confidence
                  FROM plate_reads
                 WHERE strpos(plate, $1) > 0 OR varta_plate_match(plate, $1) IS NOT NULL
                       OR similarity(plate, $1) >= 0.3
                 GROUP BY plate)
             SELECT * FROM hits
              ORDER BY array_position(ARRAY['exact', 'partial', 'confusion', 'similar'], matched),
                       similarity(plate, $1) DESC, last_seen DESC
              LIMIT $2",
        )
        .bind(q)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map(fill)
        .map_err(|e| db_error("searching plates", e))
    }

    /// The sightings of `plate` (normalised) in time order, between `since` and
    /// `until` when given; with `fuzzy`, also those read one OCR confusion away.
    pub async fn plate_track(
        &self,
        plate: &str,
        fuzzy: bool,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        limit: i64,
    ) -> Result<Vec<PlateSightingRow>, Error> {
        sqlx::query_as(&format!(
            "{SIGHTING} WHERE (p.plate = $1 OR ($2 AND varta_plate_match(p.plate, $1) IS NOT NULL))
                AND ($3::timestamptz IS NULL OR p.read_at >= $3) AND ($4::timestamptz IS NULL OR p.read_at < $4)
              ORDER BY p.read_at, p.id LIMIT $5"
        ))
        .bind(plate)
        .bind(fuzzy)
        .bind(since)
        .bind(until)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map(fill)
        .map_err(|e| db_error("reading a plate's sightings", e))
    }

    /// The crop file of plate read `id`: `None` for no such read, `Some(None)` for a
    /// read without a crop.
    pub async fn plate_crop(&self, id: uuid::Uuid) -> Result<Option<Option<String>>, Error> {
        let row: Option<(Option<String>,)> = sqlx::query_as("SELECT crop FROM plate_reads WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| db_error("reading a plate read", e))?;
        Ok(row.map(|r| r.0))
    }

    /// The watchlist: active entries (not removed, not expired), or with `all` every
    /// entry ever made; newest first.
    pub async fn watchlist(&self, all: bool) -> Result<Vec<WatchlistRow>, Error> {
        sqlx::query_as(
            "SELECT id, plate, reason, added_by, added_at, expires_at, removed_by, removed_at, removed_reason
               FROM watchlist_entries
              WHERE $1 OR (removed_at IS NULL AND (expires_at IS NULL OR expires_at > now()))
              ORDER BY id DESC",
        )
        .bind(all)
        .fetch_all(&self.pool)
        .await
        .map(fill)
        .map_err(|e| db_error("reading the watchlist", e))
    }

    /// Adds `plate` (normalised) to the watchlist, with `audit` (its detail gets the
    /// entry id) in the same transaction. `Conflict` when it is already on it (not
    /// removed; an expired entry is removed first, by `by`).
    pub async fn add_to_watchlist(
        &self,
        plate: &str,
        reason: &str,
        by: &str,
        expires_at: Option<DateTime<Utc>>,
        audit: &crate::accounts::AuditEntry<'_>,
    ) -> Result<WatchlistRow, Error> {
        let mut tx = self.pool.begin().await.map_err(|e| db_error("begin", e))?;
        sqlx::query(
            "UPDATE watchlist_entries SET removed_at = now(), removed_by = $2, removed_reason = 'expired'
              WHERE plate = $1 AND removed_at IS NULL AND expires_at <= now()",
        )
        .bind(plate)
        .bind(by)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("retiring an expired watchlist entry", e))?;
        let row: WatchlistRow = sqlx::query_as(
            "INSERT INTO watchlist_entries (plate, reason, added_by, expires_at) VALUES ($1, $2, $3, $4)
             RETURNING id, plate, reason, added_by, added_at, expires_at, removed_by, removed_at, removed_reason",
        )
        .bind(plate)
        .bind(reason)
        .bind(by)
        .bind(expires_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                err!(Conflict, "{plate} is already on the watchlist")
            }
            _ => db_error("adding to the watchlist", e),
        })?;
        crate::accounts::insert_audit(&mut tx, &audit.with("entry", row.id)).await?;
        tx.commit().await.map_err(|e| db_error("commit", e))?;
        Ok(Displayed::fill(row))
    }

    /// Removes entry `id` from the watchlist (kept, marked removed), with `audit` in
    /// the same transaction. `NotFound` when there is no such active entry.
    pub async fn remove_from_watchlist(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        audit: &crate::accounts::AuditEntry<'_>,
    ) -> Result<WatchlistRow, Error> {
        let mut tx = self.pool.begin().await.map_err(|e| db_error("begin", e))?;
        let row: WatchlistRow = sqlx::query_as(
            "UPDATE watchlist_entries SET removed_at = now(), removed_by = $2, removed_reason = $3
              WHERE id = $1 AND removed_at IS NULL
             RETURNING id, plate, reason, added_by, added_at, expires_at, removed_by, removed_at, removed_reason",
        )
        .bind(id)
        .bind(by)
        .bind(reason)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| db_error("removing from the watchlist", e))?
        .ok_or_else(|| err!(NotFound, "no watchlist entry {id} on the list"))?;
        crate::accounts::insert_audit(&mut tx, &audit.with("entry", row.id)).await?;
        tx.commit().await.map_err(|e| db_error("commit", e))?;
        Ok(Displayed::fill(row))
    }
}
