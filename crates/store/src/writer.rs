//! Events from the journal to PostgreSQL, through the write-ahead log.
//!
//! Two stages, started together by [`start`]:
//! 1. **The WAL thread** (an OS thread, never a tokio worker) takes what the ingest
//!    and detection appended to the [`Journal`], writes it to the [`Wal`] on local
//!    disk and syncs it: one `fdatasync` for everything that arrived within a flush
//!    interval (group commit). A record is durable from then on, and only then marked
//!    so in the journal. When nothing was synced for a flush interval, the next
//!    record is synced at once, so a quiet node adds one sync's latency, a busy one
//!    at most a flush interval.
//! 2. **The PostgreSQL writer** (a tokio task: sqlx is asynchronous) takes the synced
//!    records, in order, as far as the journal has released them (see
//!    [`Journal::released_through`]: an event waiting for its snapshot file waits),
//!    writes them in one transaction per batch, and then moves the log's cursor past
//!    them. Records still in memory are written from memory; those that are not (from
//!    before this start, or shed while PostgreSQL was away) are read back from disk
//!    (on a blocking thread), a chunk at a time.
//!
//! So **a SIGKILL loses at most what was appended in the last flush interval (plus
//! one sync)**; everything else is on disk and reaches PostgreSQL at the next start,
//! in order. Writes are idempotent: event ids are UUIDv7 made by the node and rows
//! are upserted by (id, started_at); status transitions are unique by (camera, at,
//! state). A record written twice (its batch committed, the process killed before
//! the cursor moved) leaves the table as once.
//!
//! Full-policy (STYLE.md 7): nothing is dropped. While PostgreSQL is unreachable the
//! log simply grows; at `spool_max_mb` the WAL thread stops taking records (the
//! journal fills and detection backs up) with `varta_spool_full` at 1, an error in
//! the log and `/readyz` failing. A disk that refuses writes (full, read-only) is
//! retried every second with `varta_wal_failing` at 1, the same back-pressure and
//! `/readyz` failing.
//!
//! Event rows are written with binary `COPY`: rows whose first record in the batch
//! is `started` are new, and are copied straight into `events`; the rest is upserted
//! with a multi-row `INSERT … ON CONFLICT`. If a "new" row exists already (a
//! replay), the transaction is void and the batch is written again, all upserted.

use crate::evidence::{Manifest, ManifestFile, NodeKey, MANIFEST_FORMAT};
use crate::wal::{Pos, Wal};
use crate::{db_error, Store};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use varta_core::event::{
    ClipRecord, EndReason, EventPhase, EventRecord, PlateRecord, SnapshotRecord, StatusChange, StoreMsg,
};
use varta_core::journal::Journal;
use varta_core::metrics::Registry;
use varta_core::{Error, ErrorKind};

/// Writer settings.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Most messages per WAL record and per PostgreSQL transaction.
    pub batch_max: usize,
    /// Group-commit interval: the WAL syncs at most once per interval, and a record
    /// is on disk at most this long (plus one sync) after it was appended.
    pub flush: Duration,
    /// This node's name, recorded with every row.
    pub node: String,
    /// This process's id (`nodes.id`), stamped on every event record it makes.
    pub run_id: uuid::Uuid,
    /// The write-ahead log's folder (`[store] spool_dir`).
    pub spool_dir: PathBuf,
    /// Most bytes the log may hold that PostgreSQL has not taken yet.
    pub spool_max_bytes: u64,
    /// Snapshot folder: a record naming a snapshot that is not there (its writing
    /// failed, or the process died between the record and its file) is stored
    /// without the name.
    pub snapshot_dir: Option<PathBuf>,
    /// A test hook: after each sync, one line `ID CAMERA DURABLE_UNIX_MS` per
    /// `started` event record made durable (`VARTA_TEST_LEDGER` in `varta serve`,
    /// `--durable` in `varta store-load`).
    pub ledger: Option<PathBuf>,
    /// The node's evidence key: when set, the writer signs each ended event's
    /// manifest whenever its evidence changes ([`crate::evidence`]).
    pub signer: Option<Arc<NodeKey>>,
}

/// Messages read back from disk per transaction.
const REPLAY_CHUNK: usize = 20_000;
/// Messages kept in memory for the PostgreSQL writer; beyond that it reads them
/// back from disk when it gets to them (PostgreSQL away for long). While PostgreSQL
/// answers, producers are held back before this (at twice the journal's capacity).
const MEMORY_MSGS: usize = 100_000;
/// Rows per multi-row INSERT (17 parameters each; PostgreSQL allows 65535).
const INSERT_ROWS: usize = 2_000;
/// Longest wait between attempts to reach the database during an outage.
const MAX_RETRY: Duration = Duration::from_secs(4);

/// Synced records on their way from the WAL thread to the PostgreSQL writer.
#[derive(Debug)]
struct Durable {
    /// Position after the record(s).
    end: Pos,
    /// Bytes on disk (0 for records from before this start: counted when read).
    bytes: u64,
    /// WAL records this covers.
    records: u64,
    /// Highest journal sequence number in it (0: from before this start).
    last_seq: u64,
    /// The messages, or `None` when they must be read back from disk.
    msgs: Option<Vec<StoreMsg>>,
}

/// The hand-off from the WAL thread to the PostgreSQL writer: never blocks the
/// WAL thread.
#[derive(Default)]
struct Feed {
    items: Mutex<(VecDeque<Durable>, bool)>,
    notify: tokio::sync::Notify,
}

impl Feed {
    fn push(&self, items: impl IntoIterator<Item = Durable>) {
        self.items.lock().unwrap().0.extend(items);
        self.notify.notify_one();
    }

    fn close(&self) {
        self.items.lock().unwrap().1 = true;
        self.notify.notify_one();
    }

    /// Takes what is there; true once closed and empty.
    fn take(&self, into: &mut VecDeque<Durable>) -> bool {
        let mut g = self.items.lock().unwrap();
        into.extend(g.0.drain(..));
        g.1
    }
}

/// A running writer: the WAL thread and the PostgreSQL writer.
pub struct WriterHandle {
    wal: Arc<Wal>,
    wal_thread: std::thread::JoinHandle<()>,
    pg: tokio::task::JoinHandle<()>,
    journal: Arc<Journal>,
    stopping: Arc<AtomicBool>,
    stop_notify: Arc<tokio::sync::Notify>,
    replayed: watch::Receiver<bool>,
    report: crate::wal::OpenReport,
}

impl WriterHandle {
    /// Becomes true once every record from before this start (the log as it was
    /// opened) is in PostgreSQL: then the events a previous process left open can be
    /// closed without a later replay opening them again.
    pub fn replayed(&self) -> watch::Receiver<bool> {
        self.replayed.clone()
    }

    /// What opening the log found.
    pub fn open_report(&self) -> &crate::wal::OpenReport {
        &self.report
    }

    /// Records on disk that PostgreSQL has not taken yet.
    pub fn pending_records(&self) -> u64 {
        self.wal.pending_records()
    }

    /// Stops: closes the journal, waits for the WAL thread to sync what was queued,
    /// then for PostgreSQL to take what it can now. What the database cannot take
    /// (it is away) stays in the log for the next start.
    pub async fn finish(self) {
        self.journal.close();
        let t = self.wal_thread;
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
        self.stopping.store(true, Ordering::Relaxed);
        self.stop_notify.notify_one();
        let _ = self.pg.await;
        tracing::info!("store writer finished");
    }
}

/// Opens the write-ahead log in `cfg.spool_dir` and starts the WAL thread and the
/// PostgreSQL writer. The writer waits for `db_ready` (the schema migrated) before it
/// writes; until then, and while PostgreSQL is away, records stay on disk. Fails
/// when the log's folder cannot be opened or is used by another process.
pub fn start(
    store: Store,
    cfg: &WriterConfig,
    journal: Arc<Journal>,
    metrics: Arc<Registry>,
    db_ready: watch::Receiver<bool>,
) -> Result<WriterHandle, Error> {
    let (wal, report) = Wal::open(&cfg.spool_dir, cfg.spool_max_bytes)?;
    metrics.store.spool_corrupt.add(report.corrupt);
    metrics.store.spool_bytes.set(wal.pending_bytes() as i64);
    let wal = Arc::new(wal);
    let feed = Arc::new(Feed::default());
    if report.records > 0 {
        tracing::warn!(
            records = report.records,
            bytes = wal.pending_bytes(),
            "the event log holds records PostgreSQL has not taken yet; writing them first"
        );
        feed.push([Durable { end: wal.end(), bytes: 0, records: 0, last_seq: 0, msgs: None }]);
    }
    let ledger = match &cfg.ledger {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| Error::wrap(ErrorKind::Internal, format!("opening the ledger {}", p.display()), e))?,
        ),
        None => None,
    };
    let wal_thread = {
        let (wal, journal, feed, metrics) = (wal.clone(), journal.clone(), feed.clone(), metrics.clone());
        let (flush, batch_max, run_id) = (cfg.flush, cfg.batch_max.max(1), cfg.run_id);
        std::thread::Builder::new()
            .name("wal".into())
            .spawn(move || wal_thread(&wal, &journal, &feed, &metrics, flush, batch_max, run_id, ledger))
            .map_err(|e| Error::wrap(ErrorKind::Internal, "spawning the WAL thread", e))?
    };
    let (replayed_tx, replayed) = watch::channel(report.records == 0);
    let stopping = Arc::new(AtomicBool::new(false));
    let stop_notify = Arc::new(tokio::sync::Notify::new());
    let pg = tokio::spawn(pg_writer(PgWriter {
        w: Writer { signer: cfg.signer.clone(), ..Writer::new(store, &cfg.node) },
        wal: wal.clone(),
        feed,
        journal: journal.clone(),
        metrics,
        batch_max: cfg.batch_max.max(1),
        snapshot_dir: cfg.snapshot_dir.clone(),
        db_ready,
        replayed: replayed_tx,
        stopping: stopping.clone(),
        stop_notify: stop_notify.clone(),
    }));
    Ok(WriterHandle { wal, wal_thread, pg, journal, stopping, stop_notify, replayed, report })
}

/// The WAL thread: group commit from the journal to the log.
#[allow(clippy::too_many_arguments)]
fn wal_thread(
    wal: &Wal,
    journal: &Journal,
    feed: &Feed,
    metrics: &Registry,
    flush: Duration,
    batch_max: usize,
    run_id: uuid::Uuid,
    mut ledger: Option<std::fs::File>,
) {
    let mut last_sync: Option<std::time::Instant> = None;
    let mut full_reported = false;
    let group = (journal.capacity() / 2).max(1);
    loop {
        if !journal.wait_pending(Duration::from_millis(200)) {
            if journal.drained() {
                break;
            }
            continue;
        }
        if let Some(t) = last_sync {
            journal.wait_group(t + flush, group);
        }
        // At the cap: stop taking records until PostgreSQL takes some (the journal
        // fills and detection waits). At shutdown the cap gives way after a while:
        // what is queued is written rather than lost.
        let full_since = std::time::Instant::now();
        while wal.is_full() && !(journal.is_closed() && full_since.elapsed() > Duration::from_secs(5)) {
            if !full_reported {
                full_reported = true;
                metrics.store.spool_full.set(1);
                tracing::error!(
                    bytes = wal.pending_bytes(),
                    "event log is full: no more records are taken until PostgreSQL takes some \
                     (detection backs up; nothing is dropped)"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if full_reported && !wal.is_full() {
            full_reported = false;
            metrics.store.spool_full.set(0);
            tracing::info!("event log below its cap again");
        }
        let mut p = journal.take_pending();
        if p.msgs.is_empty() {
            journal.mark_durable(p.last_seq());
            continue;
        }
        for m in &mut p.msgs {
            if let StoreMsg::Event(e) = m {
                e.run_id.get_or_insert(run_id);
            }
        }
        // Records of at most `batch_max` messages, each with the highest sequence
        // number of the appends it holds.
        let mut cuts: Vec<(usize, u64)> = Vec::new();
        let mut k = 0;
        for start in (0..p.msgs.len()).step_by(batch_max) {
            let end = (start + batch_max).min(p.msgs.len());
            while k + 1 < p.seqs.len() && p.seqs[k + 1].1 < end {
                k += 1;
            }
            cuts.push((end, p.seqs[k].0));
        }
        let appended = {
            let mut groups: Vec<&[StoreMsg]> = Vec::with_capacity(cuts.len());
            let mut from = 0;
            for &(end, _) in &cuts {
                groups.push(&p.msgs[from..end]);
                from = end;
            }
            append_until_written(wal, journal, metrics, &groups)
        };
        let Some(appended) = appended else {
            continue;
        };
        last_sync = Some(std::time::Instant::now());
        let events = p.msgs.iter().filter(|m| matches!(m, StoreMsg::Event(_))).count();
        metrics.store.events_spooled.add(events as u64);
        metrics.store.spool_bytes.set(wal.pending_bytes() as i64);
        if let Some(f) = &mut ledger {
            write_ledger(f, &p.msgs);
        }
        journal.mark_durable(p.last_seq());
        let mut items = Vec::with_capacity(cuts.len());
        let mut rest = p.msgs;
        for i in (0..cuts.len()).rev() {
            let from = if i == 0 { 0 } else { cuts[i - 1].0 };
            let msgs = rest.split_off(from);
            let a = appended[i];
            items.push(Durable { end: a.end, bytes: a.bytes, records: 1, last_seq: cuts[i].1, msgs: Some(msgs) });
        }
        items.reverse();
        feed.push(items);
    }
    journal.wal_gone();
    feed.close();
}

/// Appends and syncs `groups`, retrying every second while the disk refuses
/// (`varta_wal_failing` 1, `/readyz` failing). Gives up only when stopping and the
/// disk has refused for 10 s: those records are lost, and said so.
fn append_until_written(
    wal: &Wal,
    journal: &Journal,
    metrics: &Registry,
    groups: &[&[StoreMsg]],
) -> Option<Vec<crate::wal::Appended>> {
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        let t0 = std::time::Instant::now();
        match wal.append(groups) {
            Ok(a) => {
                metrics.wal_sync_seconds.observe(t0.elapsed().as_secs_f64());
                if failing_since.is_some() {
                    metrics.store.wal_failing.set(0);
                    tracing::info!("event log writable again");
                }
                return Some(a);
            }
            Err(e) => {
                metrics.store.wal_failing.set(1);
                let since = *failing_since.get_or_insert_with(|| {
                    tracing::error!(error = %e, dir = %wal.dir().display(),
                        "cannot write the event log; retrying every second (detection backs up)");
                    std::time::Instant::now()
                });
                if journal.is_closed() && since.elapsed() > Duration::from_secs(10) {
                    let n: usize = groups.iter().map(|g| g.len()).sum();
                    tracing::error!(error = %e, records = n, "stopping with an unwritable event log: records lost");
                    return None;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// One line per `started` event record just made durable; one write per sync, so a
/// kill can cut at most the last line (readers skip an unfinished line).
fn write_ledger(f: &mut std::fs::File, msgs: &[StoreMsg]) {
    let now = Utc::now().timestamp_millis();
    let mut s = String::new();
    for m in msgs {
        if let StoreMsg::Event(e) = m {
            if e.phase == EventPhase::Started {
                s.push_str(&format!("{} {} {now}\n", e.id, e.camera));
            }
        }
    }
    if !s.is_empty() {
        if let Err(e) = f.write_all(s.as_bytes()) {
            tracing::warn!(error = %e, "cannot write the ledger");
        }
    }
}

struct PgWriter {
    w: Writer,
    wal: Arc<Wal>,
    feed: Arc<Feed>,
    journal: Arc<Journal>,
    metrics: Arc<Registry>,
    batch_max: usize,
    snapshot_dir: Option<PathBuf>,
    db_ready: watch::Receiver<bool>,
    replayed: watch::Sender<bool>,
    stopping: Arc<AtomicBool>,
    stop_notify: Arc<tokio::sync::Notify>,
}

/// The PostgreSQL writer's loop (see the module docs).
async fn pg_writer(mut s: PgWriter) {
    let mut pending: VecDeque<Durable> = VecDeque::new();
    let (feed, journal, stop_notify) = (s.feed.clone(), s.journal.clone(), s.stop_notify.clone());
    loop {
        // Wake-ups are registered before the state is read, so none is missed.
        let feed_changed = feed.notify.notified();
        let released_changed = journal.released_changed();
        let stop = stop_notify.notified();
        let closed = s.feed.take(&mut pending);
        // Keep at most MEMORY_MSGS messages in memory; the rest is read back later.
        let mut in_memory = 0;
        for d in pending.iter_mut() {
            if let Some(m) = &d.msgs {
                if in_memory + m.len() > MEMORY_MSGS {
                    d.msgs = None;
                } else {
                    in_memory += m.len();
                }
            }
        }
        // While PostgreSQL answers, what waits for it in memory holds the producers
        // back at the journal's limit; while it is away the log grows instead.
        s.journal.set_downstream(if s.w.retry_at.is_none() { in_memory } else { 0 });
        let released = s.journal.released_through();
        let ready = pending.front().is_some_and(|d| d.last_seq <= released);
        let db_open = *s.db_ready.borrow();
        let stopping = s.stopping.load(Ordering::Relaxed);
        if ready && db_open && s.w.db_ready() {
            if s.w.db_back().await {
                write_some(&mut s, &mut pending, released).await;
            }
            continue;
        }
        if pending.is_empty() && closed {
            s.journal.set_downstream(0);
            break;
        }
        if stopping && (!db_open || !s.w.db_ready() || !ready) {
            // Stopping, and PostgreSQL cannot take the rest now: it stays in the log.
            if !pending.is_empty() {
                tracing::warn!(
                    records = s.wal.pending_records(),
                    "store writer stopping with records PostgreSQL has not taken; the next start writes them"
                );
            }
            s.journal.set_downstream(0);
            break;
        }
        let retry = s.w.next_attempt();
        tokio::select! {
            _ = feed_changed => {}
            _ = released_changed => {}
            _ = stop => {}
            _ = s.db_ready.changed(), if !db_open => {}
            _ = tokio::time::sleep_until(retry), if ready && db_open => {}
        }
    }
}

/// Writes the first released records, from memory or read back from disk, and
/// moves the cursor past them.
async fn write_some(s: &mut PgWriter, pending: &mut VecDeque<Durable>, released: u64) {
    let from_disk = pending.front().is_some_and(|d| d.msgs.is_none());
    if from_disk {
        // The run of released records not in memory, read back a chunk at a time.
        let to = pending.iter().take_while(|d| d.msgs.is_none() && d.last_seq <= released).last().expect("front").end;
        let (wal, from) = (s.wal.clone(), s.wal.cursor());
        let read = tokio::task::spawn_blocking(move || wal.read(from, to, REPLAY_CHUNK)).await;
        let mut r = match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                // A record that passed its CRC but does not decode is a bug, not disk
                // damage: stop rather than skip evidence.
                tracing::error!(error = %e, "cannot read the event log back; writing to PostgreSQL paused");
                s.w.retry_at = Some(Instant::now() + MAX_RETRY);
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the event log back failed");
                return;
            }
        };
        if r.records == 0 {
            // Positions that do not match the files: a bug. Say so and try again
            // later rather than spin or skip records.
            tracing::error!(from = ?from, to = ?to, "nothing to read back between these event log positions");
            s.w.retry_at = Some(Instant::now() + MAX_RETRY);
            return;
        }
        drop_missing_snapshots(&s.snapshot_dir, &mut r.msgs);
        let refs: Vec<&StoreMsg> = r.msgs.iter().collect();
        match s.w.write(&refs).await {
            Ok(n) => {
                s.w.db_up();
                commit(s, r.end, r.bytes, r.records).await;
                let events = r.msgs.iter().filter(|m| matches!(m, StoreMsg::Event(_))).count();
                s.metrics.totals.events_written.add(n as u64);
                s.metrics.store.events_replayed.add(events as u64);
                while pending.front().is_some_and(|d| d.end <= r.end) {
                    pending.pop_front();
                }
                if pending.front().is_none_or(|d| d.last_seq > 0) && !*s.replayed.borrow() {
                    tracing::info!("the event log's records from before this start are in PostgreSQL");
                    let _ = s.replayed.send(true);
                }
            }
            Err(e) => s.w.db_down(&e),
        }
        return;
    }
    // In memory: whole records, up to `batch_max` messages (at least one record).
    let mut n_items = 0;
    let mut msgs = 0;
    for d in pending.iter() {
        let Some(m) = &d.msgs else { break };
        if d.last_seq > released || (n_items > 0 && msgs + m.len() > s.batch_max) {
            break;
        }
        n_items += 1;
        msgs += m.len();
    }
    for d in pending.iter_mut().take(n_items) {
        drop_missing_snapshots(&s.snapshot_dir, d.msgs.as_mut().expect("in memory"));
    }
    let refs: Vec<&StoreMsg> = pending.iter().take(n_items).flat_map(|d| d.msgs.as_deref().unwrap_or(&[])).collect();
    match s.w.write(&refs).await {
        Ok(n) => {
            s.w.db_up();
            let (end, bytes, records) = pending
                .iter()
                .take(n_items)
                .fold((Pos::default(), 0, 0), |(_, b, r), d| (d.end, b + d.bytes, r + d.records));
            commit(s, end, bytes, records).await;
            s.metrics.totals.events_written.add(n as u64);
            pending.drain(..n_items);
        }
        Err(e) => s.w.db_down(&e),
    }
}

/// Moves the log's cursor (a file write and perhaps a segment deletion: on a
/// blocking thread).
async fn commit(s: &PgWriter, end: Pos, bytes: u64, records: u64) {
    let wal = s.wal.clone();
    match tokio::task::spawn_blocking(move || wal.commit(end, bytes, records)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot move the event log's cursor; those records will be written again")
        }
        Err(e) => tracing::error!(error = %e, "moving the event log's cursor failed"),
    }
    s.metrics.store.spool_bytes.set(s.wal.pending_bytes() as i64);
}

/// A record that names a snapshot the folder does not have (its writing failed, or
/// the process died between the record and the file) is stored without the name,
/// so the API never offers a picture that is not there.
fn drop_missing_snapshots(dir: &Option<PathBuf>, msgs: &mut [StoreMsg]) {
    let Some(dir) = dir else { return };
    for m in msgs {
        match m {
            StoreMsg::Event(e) if e.snapshot.as_ref().is_some_and(|name| !dir.join(name).exists()) => {
                tracing::warn!(event = %e.id, "snapshot file missing; the event is stored without it");
                e.snapshot = None;
            }
            StoreMsg::Plate(p) if p.crop.as_ref().is_some_and(|name| !dir.join(name).exists()) => {
                tracing::warn!(plate_read = %p.id, "plate crop missing; the read is stored without it");
                p.crop = None;
            }
            // A clip record is written after its file; a missing file (deleted by
            // retention while the database was away) leaves the event without a clip.
            StoreMsg::Clip(c) if !dir.join(&c.file).exists() => {
                tracing::warn!(event = %c.event_id, "clip file missing; the event is stored without it");
                c.file.clear();
            }
            // The hashes of pictures that are gone would sign for files nobody has.
            StoreMsg::Snapshot(p) if !dir.join(format!("{}.jpg", p.event_id)).exists() => {
                p.snapshot_sha256.clear();
            }
            _ => {}
        }
    }
}

/// The PostgreSQL side: batches to transactions, and the backoff while the
/// database is away.
pub struct Writer {
    store: Store,
    node: String,
    /// Signs ended events' manifests (None: rows get no manifest).
    pub signer: Option<Arc<NodeKey>>,
    /// Days whose partition is known to exist.
    partitions: HashSet<NaiveDate>,
    /// While the database is down: when to try it next.
    retry_at: Option<Instant>,
    delay: Duration,
}

impl Writer {
    /// A writer recording `node` with every row.
    pub fn new(store: Store, node: &str) -> Writer {
        Writer {
            store,
            node: node.to_owned(),
            signer: None,
            partitions: HashSet::new(),
            retry_at: None,
            delay: Duration::from_millis(250),
        }
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
            tracing::warn!(error = %e, "database unavailable: events stay in the event log on disk");
        }
        self.retry_at = Some(Instant::now() + self.delay);
        self.delay = (self.delay * 2).min(MAX_RETRY);
    }

    fn db_up(&mut self) {
        if self.retry_at.take().is_some() {
            tracing::info!("database reachable again");
        }
        self.delay = Duration::from_millis(250);
    }

    /// Writes `batch` in one transaction; a batch refused for its content is written
    /// row by row so one bad row cannot block the rest, and a row refused on its own
    /// is logged with its id and skipped (it can only be a bug: cameras are never
    /// deleted). Only transient errors (`Unavailable`) come back. Returns the event
    /// rows written.
    pub async fn write(&mut self, batch: &[&StoreMsg]) -> Result<usize, Error> {
        let first = match self.write_refs(batch).await {
            Ok(n) => return Ok(n),
            Err(e) if is_transient(&e) => return Err(e),
            Err(e) => e,
        };
        // Retention may have dropped a partition this writer thought was there (an
        // old event replayed late): forget what it knew and try once more.
        self.partitions.clear();
        match self.write_refs(batch).await {
            Ok(n) => Ok(n),
            Err(e) if is_transient(&e) => Err(e),
            Err(_) if batch.len() > 1 => {
                let e = first;
                tracing::warn!(error = %e, rows = batch.len(), "batch refused; writing its rows one by one");
                let mut n = 0;
                for m in batch {
                    match self.write_refs(std::slice::from_ref(m)).await {
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
    /// Any error comes back (none is skipped).
    pub async fn write_batch(&mut self, batch: &[StoreMsg]) -> Result<usize, Error> {
        let refs: Vec<&StoreMsg> = batch.iter().collect();
        self.write_refs(&refs).await
    }

    async fn write_refs(&mut self, batch: &[&StoreMsg]) -> Result<usize, Error> {
        let merged = merge(batch);
        let mut days: Vec<NaiveDate> = merged.events.iter().map(|(e, _)| day_of(e.started_at)).collect();
        days.extend(merged.plates.iter().map(|p| day_of(p.event_started_at)));
        days.sort_unstable();
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
            insert_statuses(&mut tx, &merged.statuses, &self.node, self.store.clock_offset_ms()).await?;
        }
        // After the events: a plate's alert (trigger plate_reads_raise_alert) shows
        // its vehicle's event.
        for p in &merged.plates {
            insert_plate(&mut tx, p, &self.node).await?;
        }
        // After the events too: a clip names its event's row.
        for c in &merged.clips {
            set_clip(&mut tx, c).await?;
        }
        for p in &merged.snapshots {
            set_snapshot_hashes(&mut tx, p).await?;
        }
        if let Some(key) = &self.signer {
            sign_manifests(&mut tx, &merged.evidence_changed(), key).await?;
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
    plates: Vec<&'a PlateRecord>,
    clips: Vec<&'a ClipRecord>,
    snapshots: Vec<&'a SnapshotRecord>,
}

impl Merged<'_> {
    /// Events whose evidence this batch changes (ended, or a file hashed): their
    /// manifests are signed again, if they have ended.
    fn evidence_changed(&self) -> Vec<(uuid::Uuid, DateTime<Utc>)> {
        let mut v: Vec<_> =
            self.events.iter().filter(|(e, _)| e.ended_at.is_some()).map(|(e, _)| (e.id, e.started_at)).collect();
        v.extend(self.clips.iter().map(|c| (c.event_id, c.event_started_at)));
        v.extend(self.snapshots.iter().map(|p| (p.event_id, p.event_started_at)));
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// The same event may be in a batch twice (started, then ended): keep the last,
/// since a statement cannot touch one row twice; a later record without a snapshot
/// keeps the earlier one's. An event is new if its first record here is `started`.
fn merge<'a>(batch: &[&'a StoreMsg]) -> Merged<'a> {
    let mut index: HashMap<uuid::Uuid, usize> = HashMap::new();
    let mut events: Vec<(EventRecord, bool)> = Vec::new();
    let mut statuses = Vec::new();
    let mut plates = Vec::new();
    let mut clips = Vec::new();
    let mut snapshots = Vec::new();
    for m in batch {
        match *m {
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
            StoreMsg::Plate(p) => plates.push(p),
            StoreMsg::Clip(c) if !c.file.is_empty() => clips.push(c),
            StoreMsg::Clip(_) => {}
            StoreMsg::Snapshot(p) if !p.snapshot_sha256.is_empty() => snapshots.push(p),
            StoreMsg::Snapshot(_) => {}
        }
    }
    // Records from before end reasons existed ended normally.
    for (e, _) in &mut events {
        if e.ended_at.is_some() && e.end_reason.is_none() {
            e.end_reason = Some(EndReason::Ended);
        }
    }
    Merged { events, statuses, plates, clips, snapshots }
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
            .push_bind(e.alert)
            .push_bind(e.end_reason.map(|r| r.as_str()))
            .push_bind(e.run_id);
    });
    // Idempotent and order-free: a replay of an older record leaves the row as it was.
    qb.push(
        " ON CONFLICT (id, started_at) DO UPDATE SET score = GREATEST(events.score, EXCLUDED.score),
          bbox = CASE WHEN EXCLUDED.score >= events.score THEN EXCLUDED.bbox ELSE events.bbox END,
          last_seen_at = GREATEST(events.last_seen_at, EXCLUDED.last_seen_at),
          ended_at = COALESCE(EXCLUDED.ended_at, events.ended_at),
          end_reason = CASE WHEN EXCLUDED.ended_at IS NOT NULL THEN EXCLUDED.end_reason ELSE events.end_reason END,
          run_id = COALESCE(events.run_id, EXCLUDED.run_id),
          frames = GREATEST(events.frames, EXCLUDED.frames),
          snapshot = COALESCE(EXCLUDED.snapshot, events.snapshot)",
    );
    qb.build().execute(&mut *tx).await.map_err(|e| db_error("writing events", e))?;
    Ok(())
}

/// Writes status transitions, their local times moved to database time by
/// `offset_ms` (database minus local, [`Store::measure_clock`]), so that another
/// node's transitions of the same camera sort with them.
async fn insert_statuses(
    tx: &mut sqlx::PgConnection,
    statuses: &[&StatusChange],
    node: &str,
    offset_ms: i64,
) -> Result<(), Error> {
    let mut qb = sqlx::QueryBuilder::new("INSERT INTO camera_status (camera_id, at, state, reason, node) ");
    let offset = chrono::Duration::milliseconds(offset_ms);
    qb.push_values(statuses, |mut b, s| {
        b.push_bind(s.camera.as_str())
            .push_bind(s.at + offset)
            .push_bind(s.state.as_str())
            .push_bind(&s.reason)
            .push_bind(node);
    });
    qb.push(" ON CONFLICT (camera_id, at, state) DO NOTHING");
    qb.build().execute(&mut *tx).await.map_err(|e| db_error("writing camera status", e))?;
    Ok(())
}

/// Records an event's clip and its hash on the event's row; a replay writes the
/// same values again.
async fn set_clip(tx: &mut sqlx::PgConnection, c: &ClipRecord) -> Result<(), Error> {
    sqlx::query(
        "UPDATE events SET clip = $3, clip_sha256 = $4, clip_bytes = $5, clip_secs = $6
          WHERE id = $1 AND started_at = $2",
    )
    .bind(c.event_id)
    .bind(c.event_started_at)
    .bind(&c.file)
    .bind(&c.sha256)
    .bind(c.bytes as i64)
    .bind(c.secs)
    .execute(&mut *tx)
    .await
    .map_err(|e| db_error("recording a clip", e))?;
    Ok(())
}

/// Records the hashes of an event's snapshot and crop as written; the last record
/// (an `updated` event's rewrite) wins, a replay writes the same values again.
async fn set_snapshot_hashes(tx: &mut sqlx::PgConnection, p: &SnapshotRecord) -> Result<(), Error> {
    sqlx::query("UPDATE events SET snapshot_sha256 = $3, crop_sha256 = $4 WHERE id = $1 AND started_at = $2")
        .bind(p.event_id)
        .bind(p.event_started_at)
        .bind(&p.snapshot_sha256)
        .bind(&p.crop_sha256)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("recording a snapshot's hashes", e))?;
    Ok(())
}

/// An ended event's row, as its manifest needs it.
#[derive(sqlx::FromRow)]
struct ManifestRow {
    id: uuid::Uuid,
    camera_id: String,
    site_id: Option<String>,
    node: String,
    rule: String,
    class: String,
    track_id: i64,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    snapshot: Option<String>,
    snapshot_sha256: Option<String>,
    crop_sha256: Option<String>,
    clip: Option<String>,
    clip_sha256: Option<String>,
}

impl ManifestRow {
    /// The manifest of this row, signed by `key`: (its bytes, the signature).
    fn sign(self, key: &NodeKey) -> (String, String) {
        let mut files = Vec::new();
        // Files without a hash are left out: they were not hashed as written.
        if let (Some(name), Some(sha)) = (&self.snapshot, self.snapshot_sha256.filter(|s| !s.is_empty())) {
            files.push(ManifestFile { role: "snapshot".into(), name: name.clone(), sha256: sha });
            if let Some(sha) = self.crop_sha256.filter(|s| !s.is_empty()) {
                let crop = format!("{}.crop.jpg", name.trim_end_matches(".jpg"));
                files.push(ManifestFile { role: "crop".into(), name: crop, sha256: sha });
            }
        }
        if let (Some(name), Some(sha)) = (self.clip, self.clip_sha256) {
            files.push(ManifestFile { role: "clip".into(), name, sha256: sha });
        }
        let bytes = Manifest {
            format: MANIFEST_FORMAT.into(),
            event_id: self.id,
            camera: self.camera_id,
            site: self.site_id,
            node: self.node,
            rule: self.rule,
            class: self.class,
            track_id: self.track_id,
            started_at: self.started_at,
            ended_at: self.ended_at,
            files,
            key_id: key.id().into(),
        }
        .to_bytes();
        let sig = key.sign(&bytes);
        (String::from_utf8(bytes).expect("JSON is UTF-8"), sig)
    }
}

/// Signs the manifests of the ended events among `ids`, from their rows as this
/// transaction leaves them. A replay signs the same bytes again: Ed25519 signatures
/// are deterministic. Measured (bench/evidence-sign.sh): ~45 µs per manifest to
/// build and sign, ~30 µs per row to store.
async fn sign_manifests(
    tx: &mut sqlx::PgConnection,
    ids: &[(uuid::Uuid, DateTime<Utc>)],
    key: &Arc<NodeKey>,
) -> Result<(), Error> {
    if ids.is_empty() {
        return Ok(());
    }
    // Ids are unique (UUIDv7), so the two ANYs select the pairs (and use the index).
    let (id, st): (Vec<_>, Vec<_>) = ids.iter().copied().unzip();
    let rows: Vec<ManifestRow> = sqlx::query_as(
        "SELECT e.id, e.camera_id, c.site_id, e.node, e.rule, e.class, e.track_id, e.started_at, e.ended_at,
                e.snapshot, e.snapshot_sha256, e.crop_sha256, e.clip, e.clip_sha256
           FROM events e LEFT JOIN cameras c ON c.id = e.camera_id
          WHERE e.id = ANY($1) AND e.started_at = ANY($2) AND e.ended_at IS NOT NULL",
    )
    .bind(&id)
    .bind(&st)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| db_error("reading events to sign", e))?;
    // Off the async workers (the API shares them): a replay's batch of 5,000 takes
    // ~0.2 s of CPU here.
    let k = key.clone();
    let (keys, signed): (Vec<_>, Vec<_>) = tokio::task::spawn_blocking(move || {
        rows.into_iter().map(|r| ((r.id, r.started_at), r.sign(&k))).unzip::<_, _, Vec<_>, Vec<_>>()
    })
    .await
    .map_err(|e| varta_core::err!(Internal, "signing manifests: {e}"))?;
    let (ids, starts): (Vec<_>, Vec<_>) = keys.into_iter().unzip();
    let (manifests, sigs): (Vec<_>, Vec<_>) = signed.into_iter().unzip();
    sqlx::query(
        "UPDATE events SET manifest = v.m, manifest_sig = v.s, manifest_key = $5
           FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[]) AS v(id, started_at, m, s)
          WHERE events.id = v.id AND events.started_at = v.started_at",
    )
    .bind(&ids)
    .bind(&starts)
    .bind(&manifests)
    .bind(&sigs)
    .bind(key.id())
    .execute(&mut *tx)
    .await
    .map_err(|e| db_error("signing events' manifests", e))?;
    Ok(())
}

/// Writes one plate read; its site is the camera's. A replay (same id, or a second
/// read of the same event) changes nothing, and raises no second alert.
async fn insert_plate(tx: &mut sqlx::PgConnection, p: &PlateRecord, node: &str) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO plate_reads (id, event_id, event_started_at, camera_id, site_id, track_id, read_at, text, plate,
                                  format, confidence, reads, bbox, crop, node)
         SELECT $1, $2, $3, c.id, c.site_id, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 FROM cameras c WHERE c.id = $4
         ON CONFLICT DO NOTHING",
    )
    .bind(p.id)
    .bind(p.event_id)
    .bind(p.event_started_at)
    .bind(p.camera.as_str())
    .bind(p.track_id as i64)
    .bind(p.read_at)
    .bind(&p.text)
    .bind(&p.plate)
    .bind(varta_core::plate::format_of(&p.plate).as_str())
    .bind(p.confidence.clamp(0.0, 1.0))
    .bind(p.reads as i32)
    .bind(p.bbox.to_vec())
    .bind(&p.crop)
    .bind(node)
    .execute(&mut *tx)
    .await
    .map_err(|e| db_error("writing a plate read", e))?;
    Ok(())
}

fn is_transient(e: &Error) -> bool {
    e.kind() == ErrorKind::Unavailable
}
