//! The single writer: batches events and status changes, writes each batch in one
//! transaction, and spools to disk what PostgreSQL cannot take.
//!
//! Full-policy (STYLE.md 7): nothing is dropped. The channel in front of the writer
//! is bounded; a batch the database refuses for a transient reason (unreachable,
//! restarting, out of connections) goes to the [`Spool`] and the writer carries on
//! taking events. While anything is spooled, new batches are spooled behind it so
//! that order is kept, and the spool is replayed in chunks between batches once the
//! database answers again. Only when the spool reaches its cap does the writer stop
//! taking events (the channel then fills and detection backs up), with
//! `varta_spool_full` at 1, an error in the log and `/readyz` failing.
//!
//! Writes are idempotent: event ids are UUIDv7 made by the node and rows are
//! upserted by (id, started_at); status transitions are unique by (camera, at,
//! state). So a batch written twice (replayed after a crash between commit and the
//! spool cursor moving on) leaves the table as once.
//!
//! Event rows are written with binary `COPY`: rows whose first record in the batch
//! is `started` are new, and are copied straight into `events`; the rest is upserted
//! with a multi-row `INSERT … ON CONFLICT`. If a "new" row exists already (a
//! replay), the transaction is void and the batch is written again, all upserted.

use crate::spool::{OpenReport, Spool};
use crate::{db_error, Store};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use varta_core::event::{EventPhase, EventRecord, StatusChange, StoreMsg};
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
    /// Spool folder.
    pub spool_dir: PathBuf,
    /// Spool cap in bytes.
    pub spool_max_bytes: u64,
}

/// Where a batch went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Committed to PostgreSQL.
    Committed,
    /// Synced to the on-disk spool, to be replayed.
    Spooled,
}

/// Messages replayed per transaction.
const REPLAY_CHUNK: usize = 20_000;
/// Rows per multi-row INSERT (14 parameters each; PostgreSQL allows 65535).
const INSERT_ROWS: usize = 2_000;
/// Longest wait between attempts to reach the database during an outage.
const MAX_RETRY: Duration = Duration::from_secs(4);

/// The writer's state: the database, the spool, and when to try the database next.
pub struct Writer {
    store: Store,
    spool: Spool,
    node: String,
    metrics: Arc<Registry>,
    /// Days whose partition is known to exist.
    partitions: HashSet<NaiveDate>,
    /// While the database is down: when to try it next.
    retry_at: Option<Instant>,
    delay: Duration,
    full_reported: bool,
}

impl Writer {
    /// Opens the spool (reporting any torn or corrupt record it finds).
    pub fn open(store: Store, cfg: &WriterConfig, metrics: Arc<Registry>) -> Result<(Writer, OpenReport), Error> {
        let (spool, report) = Spool::open(&cfg.spool_dir, cfg.spool_max_bytes)?;
        metrics.store.spool_corrupt.add(report.corrupt);
        metrics.store.spool_bytes.set(spool.pending_bytes() as i64);
        if report.records > 0 {
            tracing::warn!(
                batches = report.records,
                bytes = spool.pending_bytes(),
                "spool holds batches from before; replaying them"
            );
        }
        let w = Writer {
            store,
            spool,
            node: cfg.node.clone(),
            metrics,
            partitions: HashSet::new(),
            retry_at: None,
            delay: Duration::from_millis(250),
            full_reported: false,
        };
        Ok((w, report))
    }

    /// True when nothing waits in the spool.
    pub fn spool_is_empty(&self) -> bool {
        self.spool.is_empty()
    }

    /// Batches waiting in the spool.
    pub fn spool_pending(&self) -> u64 {
        self.spool.pending_records()
    }

    /// When the database may be tried (now, unless an outage is being waited out).
    pub fn next_attempt(&self) -> Instant {
        self.retry_at.unwrap_or_else(Instant::now)
    }

    fn db_ready(&self) -> bool {
        self.retry_at.is_none_or(|t| Instant::now() >= t)
    }

    /// During an outage, a quick look before a real attempt: connecting to a server
    /// that is down can take the pool's whole acquire timeout, which would stall
    /// the writer (and the events behind it) at every retry.
    async fn db_back(&mut self) -> bool {
        if self.retry_at.is_none() {
            return true;
        }
        match tokio::time::timeout(Duration::from_millis(500), self.store.pool().acquire()).await {
            Ok(Ok(_)) => true,
            _ => {
                self.db_down(&varta_core::err!(Unavailable, "no connection"));
                false
            }
        }
    }

    fn db_down(&mut self, e: &Error) {
        if self.retry_at.is_none() {
            tracing::warn!(error = %e, "database unavailable: spooling events to disk");
        }
        self.retry_at = Some(Instant::now() + self.delay);
        self.delay = (self.delay * 2).min(MAX_RETRY);
    }

    fn db_up(&mut self) {
        if self.retry_at.take().is_some() {
            tracing::info!(spooled_batches = self.spool.pending_records(), "database reachable again");
        }
        self.delay = Duration::from_millis(250);
    }

    /// Writes `batch` to the database, or to the spool if the database cannot take
    /// it now (or older batches are still spooled). An error means neither worked
    /// (the spool's disk failed): the caller keeps the batch and tries again.
    pub async fn write(&mut self, batch: &[StoreMsg]) -> Result<Outcome, Error> {
        if self.spool.is_empty() && self.db_ready() && self.db_back().await {
            match self.write_robust(batch).await {
                Ok(n) => {
                    self.db_up();
                    self.metrics.events_written.add(n as u64);
                    return Ok(Outcome::Committed);
                }
                Err(e) => self.db_down(&e),
            }
        }
        while self.spool.is_full() {
            if !self.full_reported {
                self.full_reported = true;
                self.metrics.store.spool_full.set(1);
                tracing::error!(
                    bytes = self.spool.pending_bytes(),
                    "event spool is full: the writer stops taking events until PostgreSQL is back \
                     (detection backs up; nothing is dropped)"
                );
            }
            tokio::time::sleep_until(self.next_attempt()).await;
            self.replay_some().await;
        }
        if self.full_reported {
            self.full_reported = false;
            self.metrics.store.spool_full.set(0);
            tracing::info!("event spool below its cap again");
        }
        self.spool.append(batch)?;
        let events = batch.iter().filter(|m| matches!(m, StoreMsg::Event(_))).count();
        self.metrics.store.events_spooled.add(events as u64);
        self.metrics.store.spool_bytes.set(self.spool.pending_bytes() as i64);
        Ok(Outcome::Spooled)
    }

    /// Replays one chunk of the spool if the database may be tried; returns the
    /// number of event records replayed (0 when nothing was or the database is down).
    pub async fn replay_some(&mut self) -> usize {
        if self.spool.is_empty() || !self.db_ready() || !self.db_back().await {
            return 0;
        }
        let (msgs, pos) = match self.spool.peek(REPLAY_CHUNK) {
            Ok(x) => x,
            Err(e) => {
                // A record that passed its CRC but does not decode is a bug, not
                // disk damage: stop replaying rather than skip evidence.
                tracing::error!(error = %e, "cannot read the spool; replay paused");
                self.retry_at = Some(Instant::now() + MAX_RETRY);
                return 0;
            }
        };
        match self.write_robust(&msgs).await {
            Ok(n) => {
                self.db_up();
                if let Err(e) = self.spool.commit(pos) {
                    tracing::error!(error = %e, "cannot move the spool cursor; the batches will be replayed again");
                }
                let events = msgs.iter().filter(|m| matches!(m, StoreMsg::Event(_))).count();
                self.metrics.events_written.add(n as u64);
                self.metrics.store.events_replayed.add(events as u64);
                self.metrics.store.spool_bytes.set(self.spool.pending_bytes() as i64);
                if self.spool.is_empty() {
                    tracing::info!("spool replayed: back to writing directly");
                }
                events
            }
            Err(e) => {
                self.db_down(&e);
                0
            }
        }
    }

    /// Writes `batch`; a batch refused for its content is written row by row so one
    /// bad row cannot block the rest, and a row refused on its own is logged with
    /// its id and skipped (it can only be a bug: cameras are never deleted). Only
    /// transient errors come back.
    async fn write_robust(&mut self, batch: &[StoreMsg]) -> Result<usize, Error> {
        let first = match self.write_batch(batch).await {
            Ok(n) => return Ok(n),
            Err(e) if is_transient(&e) => return Err(e),
            Err(e) => e,
        };
        // Retention may have dropped a partition this writer thought was there (an
        // old event replayed late): forget what it knew and try once more.
        self.partitions.clear();
        match self.write_batch(batch).await {
            Ok(n) => Ok(n),
            Err(e) if is_transient(&e) => Err(e),
            Err(_) if batch.len() > 1 => {
                let e = first;
                tracing::warn!(error = %e, rows = batch.len(), "batch refused; writing its rows one by one");
                let mut n = 0;
                for m in batch {
                    match self.write_batch(std::slice::from_ref(m)).await {
                        Ok(k) => n += k,
                        Err(e) if is_transient(&e) => return Err(e),
                        Err(e) => tracing::error!(error = %e, row = ?m, "row refused by the database; skipped"),
                    }
                }
                Ok(n)
            }
            Err(e) => {
                tracing::error!(error = %e, row = ?batch[0], "row refused by the database; skipped");
                Ok(0)
            }
        }
    }

    async fn ensure_partitions(&mut self, days: Vec<NaiveDate>) -> Result<(), Error> {
        for day in days {
            if !self.partitions.contains(&day) {
                self.store.ensure_partition(day).await?;
                self.partitions.insert(day);
            }
        }
        Ok(())
    }

    /// Writes one batch in one transaction; returns the number of event rows written.
    pub async fn write_batch(&mut self, batch: &[StoreMsg]) -> Result<usize, Error> {
        let merged = merge(batch);
        let mut days: Vec<NaiveDate> = merged.events.iter().map(|(e, _)| day_of(e.started_at)).collect();
        days.dedup();
        self.ensure_partitions(days).await?;
        match self.write_merged(&merged, true).await {
            // Some "new" events were written before (a replay): the transaction is
            // void; write the batch again, upserting everything.
            Err(WriteError::Exists) => self.write_merged(&merged, false).await,
            r => r,
        }
        .map_err(|e| match e {
            WriteError::Db(e) => e,
            WriteError::Exists => varta_core::err!(Internal, "unique violation on upsert"),
        })
    }

    /// One transaction: new events by COPY (when `copy_fresh`), the others upserted,
    /// then the status transitions. No savepoint around the COPY: a subtransaction
    /// per batch costs more than redoing the rare batch that meets an existing row.
    async fn write_merged(&self, merged: &Merged<'_>, copy_fresh: bool) -> Result<usize, WriteError> {
        let (fresh, updates): (Vec<&EventRecord>, Vec<&EventRecord>) = {
            let (f, u): (Vec<_>, Vec<_>) = merged.events.iter().partition(|(_, fresh)| *fresh && copy_fresh);
            (f.into_iter().map(|x| &x.0).collect(), u.into_iter().map(|x| &x.0).collect())
        };
        let mut tx = self.store.pool().begin().await.map_err(|e| db_error("begin", e))?;
        if !fresh.is_empty() {
            let data = crate::copy::encode_events(fresh.iter().copied(), &self.node);
            match copy_in(&mut tx, data).await {
                Ok(_) => {}
                Err(sqlx::Error::Database(d)) if d.is_unique_violation() => return Err(WriteError::Exists),
                Err(e) => return Err(db_error("copying events", e).into()),
            }
        }
        for chunk in updates.chunks(INSERT_ROWS) {
            upsert_events(&mut tx, chunk, &self.node).await?;
        }
        if !merged.statuses.is_empty() {
            insert_statuses(&mut tx, &merged.statuses, &self.node).await?;
        }
        tx.commit().await.map_err(|e| db_error("commit", e))?;
        Ok(merged.events.len())
    }
}

enum WriteError {
    /// The COPY met an event already stored.
    Exists,
    Db(Error),
}

impl From<Error> for WriteError {
    fn from(e: Error) -> Self {
        WriteError::Db(e)
    }
}

/// A batch with each event once (its last state) and whether it is new.
struct Merged<'a> {
    events: Vec<(EventRecord, bool)>,
    statuses: Vec<&'a StatusChange>,
}

/// The same event may be in a batch twice (started, then ended): keep the last,
/// since a statement cannot touch one row twice; a later record without a snapshot
/// keeps the earlier one's. An event is new if its first record here is `started`.
fn merge(batch: &[StoreMsg]) -> Merged<'_> {
    let mut index: HashMap<uuid::Uuid, usize> = HashMap::new();
    let mut events: Vec<(EventRecord, bool)> = Vec::new();
    let mut statuses = Vec::new();
    for m in batch {
        match m {
            StoreMsg::Event(e) => match index.get(&e.id) {
                Some(&i) => {
                    let prev = &mut events[i].0;
                    let snapshot = e.snapshot.clone().or_else(|| prev.snapshot.take());
                    *prev = EventRecord { snapshot, ..e.clone() };
                }
                None => {
                    index.insert(e.id, events.len());
                    events.push((e.clone(), e.phase == EventPhase::Started));
                }
            },
            StoreMsg::Status(s) => statuses.push(s),
        }
    }
    Merged { events, statuses }
}

fn day_of(t: DateTime<Utc>) -> NaiveDate {
    t.date_naive()
}

/// Copies a binary COPY stream into `events`.
async fn copy_in(conn: &mut sqlx::PgConnection, data: Vec<u8>) -> Result<u64, sqlx::Error> {
    let mut copy =
        conn.copy_in_raw(&format!("COPY events ({}) FROM STDIN (FORMAT binary)", crate::copy::EVENT_COLUMNS)).await?;
    copy.send(data).await?;
    copy.finish().await
}

async fn upsert_events(tx: &mut sqlx::PgConnection, events: &[&EventRecord], node: &str) -> Result<(), Error> {
    let mut qb = sqlx::QueryBuilder::new(format!("INSERT INTO events ({}) ", crate::copy::EVENT_COLUMNS));
    qb.push_values(events, |mut b, e| {
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
            .push_bind(&e.snapshot)
            .push_bind(e.alert);
    });
    // Idempotent and order-free: a replay of an older record leaves the row as it was.
    qb.push(
        " ON CONFLICT (id, started_at) DO UPDATE SET score = GREATEST(events.score, EXCLUDED.score),
          bbox = CASE WHEN EXCLUDED.score >= events.score THEN EXCLUDED.bbox ELSE events.bbox END,
          last_seen_at = GREATEST(events.last_seen_at, EXCLUDED.last_seen_at),
          ended_at = COALESCE(EXCLUDED.ended_at, events.ended_at),
          frames = GREATEST(events.frames, EXCLUDED.frames),
          snapshot = COALESCE(EXCLUDED.snapshot, events.snapshot)",
    );
    qb.build().execute(&mut *tx).await.map_err(|e| db_error("writing events", e))?;
    Ok(())
}

async fn insert_statuses(tx: &mut sqlx::PgConnection, statuses: &[&StatusChange], node: &str) -> Result<(), Error> {
    let mut qb = sqlx::QueryBuilder::new("INSERT INTO camera_status (camera_id, at, state, reason, node) ");
    qb.push_values(statuses, |mut b, s| {
        b.push_bind(s.camera.as_str()).push_bind(s.at).push_bind(s.state.as_str()).push_bind(&s.reason).push_bind(node);
    });
    qb.push(" ON CONFLICT (camera_id, at, state) DO NOTHING");
    qb.build().execute(&mut *tx).await.map_err(|e| db_error("writing camera status", e))?;
    Ok(())
}

fn is_transient(e: &Error) -> bool {
    e.kind() == ErrorKind::Unavailable
}

/// Runs until every sender is dropped and the channel is drained. Batches go to
/// the database or the spool; spooled batches are replayed between batches. On
/// exit, whatever the database cannot take now stays in the spool for next start.
pub async fn run(mut w: Writer, mut rx: mpsc::Receiver<StoreMsg>, cfg: WriterConfig) {
    let mut batch: Vec<StoreMsg> = Vec::with_capacity(cfg.batch_max);
    let mut open = true;
    while open {
        let first = if w.spool_is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout_at(w.next_attempt(), rx.recv()).await {
                Ok(m) => m,
                Err(_) => {
                    w.replay_some().await;
                    continue;
                }
            }
        };
        match first {
            Some(m) => batch.push(m),
            None => open = false,
        }
        let deadline = Instant::now() + cfg.flush;
        while open && batch.len() < cfg.batch_max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => batch.push(m),
                Ok(None) => open = false,
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            write_until_kept(&mut w, &batch).await;
            batch.clear();
        }
        w.replay_some().await;
    }
    while !w.spool_is_empty() && w.replay_some().await > 0 {}
    if !w.spool_is_empty() {
        tracing::warn!(
            batches = w.spool_pending(),
            "store writer stopping with batches in the spool; the next start replays them"
        );
    }
    tracing::info!("store writer finished");
}

/// Writes `batch` to the database or the spool, retrying while the spool's disk fails.
pub async fn write_until_kept(w: &mut Writer, batch: &[StoreMsg]) -> Outcome {
    loop {
        match w.write(batch).await {
            Ok(o) => return o,
            Err(e) => {
                tracing::error!(error = %e, rows = batch.len(), "cannot write to the database or the spool; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
