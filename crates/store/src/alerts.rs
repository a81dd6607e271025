//! Alerts: raised by the `events_raise_alert` trigger when an alerting event is
//! first committed, announced on the `varta_alerts` channel, acknowledged by name.

use crate::{db_error, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;
use varta_core::{err, Error};

/// The LISTEN/NOTIFY channel of alerts and acknowledgements. Payloads are JSON:
/// `{"alert": ID}` for a new alert, `{"ack": ID}` for an acknowledgement.
pub const CHANNEL: &str = "varta_alerts";

/// An alert with what the console shows of its event.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct AlertRow {
    /// Alert id: increasing, the SSE event id.
    pub id: i64,
    /// The event.
    pub event_id: uuid::Uuid,
    /// Camera id.
    pub camera: String,
    /// Camera name.
    pub camera_name: String,
    /// Site id.
    pub site: String,
    /// Site name.
    pub site_name: String,
    /// Rule that fired.
    pub rule: String,
    /// Its zone or line.
    pub zone: Option<String>,
    /// Class of the object.
    pub class: String,
    /// Detection score.
    pub score: f32,
    /// When the object was first seen.
    pub started_at: DateTime<Utc>,
    /// When the alert was raised (the event's commit).
    pub created_at: DateTime<Utc>,
    /// Whether the event has a snapshot (`/api/v1/events/{event_id}/snapshot`).
    pub has_snapshot: bool,
    /// Who acknowledged it.
    pub acked_by: Option<String>,
    /// When.
    pub acked_at: Option<DateTime<Utc>>,
    /// What came of it: `false_alarm`, `dispatched` or `other`.
    pub ack_outcome: Option<String>,
    /// The acknowledger's comment.
    pub ack_comment: Option<String>,
    /// A watchlist alert's plate, normalised Latin (`AX1234BI`).
    pub plate: Option<String>,
    /// The same as operators read it (`АХ 1234 ВІ`).
    #[sqlx(skip)]
    pub plate_display: Option<String>,
    /// The plate read (its crop: `/api/v1/plates/reads/{id}/crop`).
    pub plate_read_id: Option<uuid::Uuid>,
    /// Why the plate is wanted (the watchlist entry's reason).
    pub watchlist_reason: Option<String>,
}

impl AlertRow {
    fn displayed(mut self) -> AlertRow {
        self.plate_display = self.plate.as_deref().map(varta_core::plate::display);
        self
    }
}

const SELECT: &str =
    "SELECT a.id, a.event_id, a.camera_id AS camera, c.name AS camera_name, c.site_id AS site, s.name AS site_name,
        a.rule, e.zone, e.class, e.score, a.event_started_at AS started_at, a.created_at,
        e.snapshot IS NOT NULL AS has_snapshot, a.acked_by, a.acked_at, a.ack_outcome, a.ack_comment, a.plate, a.plate_read_id,
        w.reason AS watchlist_reason
   FROM alerts a
   JOIN cameras c ON c.id = a.camera_id
   JOIN sites s ON s.id = c.site_id
   JOIN events e ON e.id = a.event_id AND e.started_at = a.event_started_at
   LEFT JOIN watchlist_entries w ON w.id = a.watchlist_entry_id";

impl Store {
    /// One alert.
    pub async fn alert(&self, id: i64) -> Result<Option<AlertRow>, Error> {
        sqlx::query_as(&format!("{SELECT} WHERE a.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map(|r| r.map(AlertRow::displayed))
            .map_err(|e| db_error("reading an alert", e))
    }

    /// Alerts newest first: only unacknowledged ones when `open`, before id `before`.
    pub async fn list_alerts(&self, open: bool, before: Option<i64>, limit: i64) -> Result<Vec<AlertRow>, Error> {
        sqlx::query_as(&format!(
            "{SELECT} WHERE (NOT $1 OR a.acked_at IS NULL) AND ($2::bigint IS NULL OR a.id < $2)
              ORDER BY a.id DESC LIMIT $3"
        ))
        .bind(open)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map(|rows| rows.into_iter().map(AlertRow::displayed).collect())
        .map_err(|e| db_error("listing alerts", e))
    }

    /// Alerts a client that last saw `last_id` may have missed, oldest first: every
    /// later id, and also lower ids raised within `overlap_secs` before it, since ids
    /// are taken at insert and two nodes' transactions may commit out of id order.
    /// Clients tell repeats apart by id.
    pub async fn alerts_since(&self, last_id: i64, overlap_secs: f64, limit: i64) -> Result<Vec<AlertRow>, Error> {
        let rows: Vec<AlertRow> = sqlx::query_as(&format!(
            "{SELECT} WHERE a.id > $1 OR a.created_at >= (SELECT created_at FROM alerts WHERE id = $1)
                  - make_interval(secs => $2)
              ORDER BY a.id LIMIT $3"
        ))
        .bind(last_id)
        .bind(overlap_secs)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("reading missed alerts", e))?;
        Ok(rows.into_iter().filter(|r| r.id != last_id).map(AlertRow::displayed).collect())
    }

    /// Records that `by` acknowledged alert `id`, with what came of it (`outcome`:
    /// `false_alarm`, `dispatched` or `other`) and a comment, and `audit` (its detail
    /// gets the event id) in the same transaction; announces it. An alert already
    /// acknowledged keeps its first acknowledgement (`Conflict`).
    pub async fn ack_alert(
        &self,
        id: i64,
        by: &str,
        outcome: Option<&str>,
        comment: Option<&str>,
        audit: &crate::accounts::AuditEntry<'_>,
    ) -> Result<AlertRow, Error> {
        let mut tx = self.pool.begin().await.map_err(|e| db_error("acknowledging an alert", e))?;
        let event: Option<uuid::Uuid> = sqlx::query_scalar(
            "UPDATE alerts SET acked_by = $2, acked_at = now(), ack_outcome = $3, ack_comment = $4
              WHERE id = $1 AND acked_at IS NULL RETURNING event_id",
        )
        .bind(id)
        .bind(by)
        .bind(outcome)
        .bind(comment)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| db_error("acknowledging an alert", e))?;
        let n = event.is_some() as u64;
        if let Some(event) = event {
            crate::accounts::insert_audit(&mut tx, &audit.with("event", event.to_string())).await?;
            sqlx::query("SELECT pg_notify($1, json_build_object('ack', $2::bigint)::text)")
                .bind(CHANNEL)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error("announcing an acknowledgement", e))?;
        }
        tx.commit().await.map_err(|e| db_error("acknowledging an alert", e))?;
        let a = self.alert(id).await?.ok_or_else(|| err!(NotFound, "no alert {id}"))?;
        if n == 0 {
            return Err(err!(
                Conflict,
                "alert {id} was already acknowledged by {} at {}",
                a.acked_by.as_deref().unwrap_or("?"),
                a.acked_at.map(|t| t.to_rfc3339()).unwrap_or_default()
            ));
        }
        Ok(a)
    }
}

impl Store {
    /// Claims the delivery of alert `id` to `sink` for `node`; false when another
    /// process has claimed it already.
    pub async fn claim_delivery(&self, id: i64, sink: &str, node: &str) -> Result<bool, Error> {
        let r = sqlx::query(
            "INSERT INTO alert_deliveries (alert_id, sink, claimed_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(sink)
        .bind(node)
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("claiming an alert delivery", e))?;
        Ok(r.rows_affected() == 1)
    }

    /// Records how a delivery ended: delivered (no error) or given up.
    pub async fn finish_delivery(&self, id: i64, sink: &str, attempts: u32, error: Option<&str>) -> Result<(), Error> {
        sqlx::query(
            "UPDATE alert_deliveries SET attempts = $3, last_error = $4,
                    delivered_at = CASE WHEN $4::text IS NULL THEN now() END
              WHERE alert_id = $1 AND sink = $2",
        )
        .bind(id)
        .bind(sink)
        .bind(attempts as i32)
        .bind(error)
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("recording an alert delivery", e))?;
        Ok(())
    }
}
