//! The single writer: batches events and status changes into one transaction.
//!
//! Full-policy (STYLE.md 7): the channel in front of the writer is bounded and
//! senders block when it is full; nothing is dropped. While PostgreSQL is
//! unreachable the batch in hand is retried with backoff (so upstream blocks once
//! the channel fills). The on-disk spool that lets detection run on through a long
//! outage is issue #6's; until then an outage longer than the channel's capacity
//! stalls analysis instead of losing events.

use crate::{db_error, Store};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use varta_core::event::{EventRecord, StatusChange, StoreMsg};
use varta_core::metrics::Registry;
use varta_core::{Error, ErrorKind};

/// Writer settings.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Most rows per transaction.
    pub batch_max: usize,
    /// Longest a row waits for its batch.
    pub flush: Duration,
    /// This node's name, recorded with every row.
    pub node: String,
}

/// Runs until every sender is dropped and the channel is drained.
pub async fn run(store: Store, mut rx: mpsc::Receiver<StoreMsg>, cfg: WriterConfig, metrics: Arc<Registry>) {
    let mut batch: Vec<StoreMsg> = Vec::with_capacity(cfg.batch_max);
    loop {
        let Some(first) = rx.recv().await else { break };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + cfg.flush;
        while batch.len() < cfg.batch_max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => batch.push(m),
                Ok(None) | Err(_) => break,
            }
        }
        let written = write_with_retry(&store, &batch, &cfg.node).await;
        metrics.events_written.add(written as u64);
        batch.clear();
    }
    tracing::info!("store writer finished");
}

/// Writes `batch`, retrying while the database is unreachable (with backoff, up to
/// 10 s apart). A batch refused for its content is written row by row so that one
/// bad row cannot block the rest; a row refused on its own is logged with its id and
/// skipped (it can only be a bug: cameras are never deleted, only marked removed).
async fn write_with_retry(store: &Store, batch: &[StoreMsg], node: &str) -> usize {
    let mut delay = Duration::from_millis(200);
    loop {
        match write_batch(store, batch, node).await {
            Ok(n) => return n,
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                tracing::warn!(error = %e, rows = batch.len(), retry_in_ms = delay.as_millis() as u64, "database unavailable");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(e) if batch.len() > 1 => {
                tracing::warn!(error = %e, rows = batch.len(), "batch refused; writing its rows one by one");
                let mut n = 0;
                for m in batch {
                    n += Box::pin(write_with_retry(store, std::slice::from_ref(m), node)).await;
                }
                return n;
            }
            Err(e) => {
                tracing::error!(error = %e, row = ?batch[0], "row refused by the database; skipped");
                return 0;
            }
        }
    }
}

/// Writes one batch in one transaction; returns the number of event rows written.
pub async fn write_batch(store: &Store, batch: &[StoreMsg], node: &str) -> Result<usize, Error> {
    // The same event may be in a batch twice (confirmed, then ended): keep the last,
    // since ON CONFLICT cannot touch one row twice in a statement.
    // A later record without a snapshot keeps the earlier one's.
    let mut events: HashMap<uuid::Uuid, EventRecord> = HashMap::new();
    let mut statuses: Vec<&StatusChange> = Vec::new();
    for m in batch {
        match m {
            StoreMsg::Event(e) => {
                let mut e = e.clone();
                if let Some(prev) = events.get_mut(&e.id) {
                    if e.snapshot.is_none() {
                        e.snapshot = prev.snapshot.take();
                    }
                }
                events.insert(e.id, e);
            }
            StoreMsg::Status(s) => statuses.push(s),
        }
    }
    let mut tx = store.pool().begin().await.map_err(|e| db_error("begin", e))?;
    if !events.is_empty() {
        let mut qb = sqlx::QueryBuilder::new(
            "INSERT INTO events (id, camera_id, track_id, class, score, bbox, started_at, last_seen_at, ended_at, frames, \
             node, rule, zone, snapshot) ",
        );
        qb.push_values(events.values(), |mut b, e| {
            b.push_bind(e.id)
                .push_bind(e.camera.as_str())
                .push_bind(e.track_id as i64)
                .push_bind(&e.class)
                .push_bind(e.score)
                .push_bind(e.bbox.to_vec())
                .push_bind(e.started_at)
                .push_bind(e.last_seen_at)
                .push_bind(e.ended_at)
                .push_bind(e.frames as i32)
                .push_bind(node)
                .push_bind(&e.rule)
                .push_bind(&e.zone)
                .push_bind(&e.snapshot);
        });
        // Idempotent: a replay of the same record leaves the row as it was.
        qb.push(
            " ON CONFLICT (id) DO UPDATE SET score = GREATEST(events.score, EXCLUDED.score),
              bbox = CASE WHEN EXCLUDED.score >= events.score THEN EXCLUDED.bbox ELSE events.bbox END,
              last_seen_at = GREATEST(events.last_seen_at, EXCLUDED.last_seen_at),
              ended_at = COALESCE(EXCLUDED.ended_at, events.ended_at),
              frames = GREATEST(events.frames, EXCLUDED.frames),
              snapshot = COALESCE(EXCLUDED.snapshot, events.snapshot)",
        );
        qb.build().execute(&mut *tx).await.map_err(|e| db_error("writing events", e))?;
    }
    if !statuses.is_empty() {
        let mut qb = sqlx::QueryBuilder::new("INSERT INTO camera_status (camera_id, at, state, reason, node) ");
        qb.push_values(&statuses, |mut b, s| {
            b.push_bind(s.camera.as_str())
                .push_bind(s.at)
                .push_bind(s.state.as_str())
                .push_bind(&s.reason)
                .push_bind(node);
        });
        qb.build().execute(&mut *tx).await.map_err(|e| db_error("writing camera status", e))?;
    }
    tx.commit().await.map_err(|e| db_error("commit", e))?;
    Ok(events.len())
}
