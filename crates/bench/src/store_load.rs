//! `varta store-load`: drives the real store path (journal, event log on disk, WAL
//! thread, PostgreSQL writer, replay) with synthetic events. It is the writer
//! benchmark and the load of the outage and crash tests: every id is logged before
//! it is appended to the journal (`--ids`) and again by the WAL thread once it is
//! synced to disk (`--durable`, the same ledger `varta serve` writes under
//! `VARTA_TEST_LEDGER`), so a test can compare what was made, what was durable and
//! what is stored.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Args as ClapArgs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use varta_core::event::{EventPhase, EventRecord, StoreMsg};
use varta_core::journal::Journal;
use varta_core::metrics::Registry;
use varta_store::writer::WriterConfig;
use varta_store::Store;

/// `varta store-load` arguments.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Events to generate (0: only replay what the spool holds).
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Events per second (0: as fast as the writer takes them).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Events per append to the journal, and the writer's `batch_max` (the config's
    /// default).
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Group-commit interval of the event log in milliseconds (`[store] flush_ms`).
    #[arg(long, default_value_t = 250)]
    flush_ms: u64,
    /// Messages the journal holds before the producer blocks.
    #[arg(long, default_value_t = 20_000)]
    queue: usize,
    /// Cameras the events are spread over (`load-1` … in site `load`).
    #[arg(long, default_value_t = 16)]
    cameras: usize,
    /// Also send each event's `ended` record, one batch later (the upsert path; each
    /// ended event's manifest is signed, as a node does).
    #[arg(long)]
    updates: bool,
    /// Do not sign ended events' manifests (to measure what signing costs).
    #[arg(long)]
    unsigned: bool,
    /// Spool folder.
    #[arg(long, default_value = ".varta/spool-load")]
    spool: PathBuf,
    /// Spool cap in MiB.
    #[arg(long, default_value_t = 4096)]
    spool_max_mb: u64,
    /// Append each generated event id to this file before it is written.
    #[arg(long)]
    ids: Option<PathBuf>,
    /// Ledger of the event records made durable (one line `ID CAMERA UNIX_MS` per
    /// `started` record, written by the WAL thread after each sync).
    #[arg(long)]
    durable: Option<PathBuf>,
    /// Exit as soon as the events are on disk, leaving the log as it is.
    #[arg(long)]
    no_drain: bool,
    /// Longest to wait for the database to take the spool before exiting.
    #[arg(long, default_value_t = 300.0)]
    drain_timeout: f64,
    /// After the run, write the generated rows here as CSV (for `psql \copy`).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Node name recorded with the rows.
    #[arg(long, default_value = "load")]
    node: String,
    /// Database URL (default: `DATABASE_URL`). The database may be down at start.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
}

fn make_event(i: u64, cameras: usize, now: DateTime<Utc>) -> EventRecord {
    let x = (i % 700) as f32;
    EventRecord {
        id: uuid::Uuid::now_v7(),
        camera: format!("load-{}", i as usize % cameras + 1).as_str().into(),
        track_id: i,
        class: "person".into(),
        score: 0.5 + (i % 50) as f32 / 100.0,
        bbox: [x, 100.0, x + 60.0, 260.0],
        started_at: now,
        last_seen_at: now,
        ended_at: None,
        frames: 2,
        rule: "presence".into(),
        alert: false,
        zone: None,
        snapshot: None,
        phase: EventPhase::Started,
        end_reason: None,
        run_id: None,
    }
}

fn append_ids(file: &mut Option<std::fs::File>, ids: impl Iterator<Item = uuid::Uuid>) -> Result<()> {
    if let Some(f) = file {
        let mut s = String::new();
        for id in ids {
            s.push_str(&id.to_string());
            s.push('\n');
        }
        // One write per batch: the kernel has it once this returns, which is what
        // survives a SIGKILL.
        f.write_all(s.as_bytes())?;
    }
    Ok(())
}

fn open_log(p: &Option<PathBuf>) -> Result<Option<std::fs::File>> {
    p.as_ref()
        .map(|p| {
            std::fs::OpenOptions::new().create(true).append(true).open(p).with_context(|| format!("{}", p.display()))
        })
        .transpose()
}

/// Runs the load; prints one JSON line of results.
pub async fn run(a: Args) -> Result<()> {
    let store = Store::connect_lazy(&a.database_url)?;
    // The cameras the events refer to; skipped while the database is down (a
    // previous run created them).
    let cams: Vec<String> = (1..=a.cameras).map(|i| format!("load-{i}")).collect();
    let setup = async {
        store.ensure_schema(varta_node::owner_url_from_env().as_deref()).await?;
        store.ensure_load_cameras(&cams).await?;
        Ok::<_, varta_core::Error>(())
    };
    if let Err(e) = tokio::time::timeout(Duration::from_secs(10), setup).await.unwrap_or(Ok(())) {
        eprintln!("store-load: database not set up now ({e}); going on");
    }

    let metrics = Arc::new(Registry::default());
    let journal = Journal::new(a.queue);
    let wcfg = WriterConfig {
        batch_max: a.batch,
        flush: Duration::from_millis(a.flush_ms),
        node: a.node.clone(),
        run_id: uuid::Uuid::now_v7(),
        spool_dir: a.spool.clone(),
        spool_max_bytes: a.spool_max_mb << 20,
        snapshot_dir: None,
        ledger: a.durable.clone(),
        // As a node does: every ended event's manifest signed (a throwaway key).
        signer: (!a.unsigned).then(|| Arc::new(varta_store::evidence::NodeKey::from_seed(rand::random()))),
    };
    let (_db_ready_tx, db_ready) = tokio::sync::watch::channel(true);
    let writer = varta_store::writer::start(store.clone(), &wcfg, journal.clone(), metrics.clone(), db_ready)?;
    let report = writer.open_report().clone();
    let mut ids_log = open_log(&a.ids)?;
    let (made_tx, made_rx) = std::sync::mpsc::channel::<Vec<EventRecord>>();
    // Events are made on their own thread, as detection makes them in the service.
    let producer = {
        let (events, batch, cameras, rate, updates) = (a.events, a.batch as u64, a.cameras, a.rate, a.updates);
        let (journal, csv) = (journal.clone(), a.csv.is_some());
        std::thread::spawn(move || -> Result<u64> {
            let start = Instant::now();
            let mut pending_end: Vec<EventRecord> = Vec::new();
            let mut made = 0u64;
            let mut last_seq = 0;
            while made < events {
                let n = batch.min(events - made);
                let now = Utc::now();
                let fresh: Vec<EventRecord> = (made..made + n).map(|i| make_event(i, cameras, now)).collect();
                made += n;
                append_ids(&mut ids_log, fresh.iter().map(|e| e.id))?;
                let mut out: Vec<StoreMsg> = pending_end.drain(..).map(StoreMsg::Event).collect();
                if updates {
                    pending_end = fresh
                        .iter()
                        .map(|e| EventRecord { ended_at: Some(now), frames: 5, phase: EventPhase::Ended, ..e.clone() })
                        .collect();
                }
                if csv {
                    let _ = made_tx.send(fresh.clone());
                }
                out.extend(fresh.into_iter().map(StoreMsg::Event));
                match journal.append(out) {
                    Ok(s) => last_seq = s,
                    Err(_) => return Ok(last_seq),
                }
                if rate > 0.0 {
                    let due = start + Duration::from_secs_f64(made as f64 / rate);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                }
            }
            if !pending_end.is_empty() {
                if let Ok(s) = journal.append(pending_end.into_iter().map(StoreMsg::Event).collect()) {
                    last_seq = s;
                }
            }
            Ok(last_seq)
        })
    };
    let start = Instant::now();
    let mut max_pending = 0u64;
    while !producer.is_finished() {
        max_pending = max_pending.max(writer.pending_records());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last_seq = producer.join().map_err(|_| anyhow::anyhow!("event producer panicked"))??;
    // Every event made is on disk...
    while journal.durable() < last_seq {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let durable_secs = start.elapsed().as_secs_f64();
    // ... and, unless told not to wait, in PostgreSQL.
    let deadline = Instant::now() + Duration::from_secs_f64(a.drain_timeout);
    if !a.no_drain {
        while writer.pending_records() > 0 && Instant::now() < deadline {
            max_pending = max_pending.max(writer.pending_records());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let written_secs = start.elapsed().as_secs_f64();
    // Records read back from disk over the whole run (those of an earlier run, and
    // any this run could not keep in memory), and the time until all were written.
    let (replayed, replay_secs) = (metrics.store.events_replayed.get(), written_secs);
    let left = writer.pending_records();
    writer.finish().await;
    if let Some(p) = &a.csv {
        let all: Vec<EventRecord> = made_rx.try_iter().flatten().collect();
        write_csv(p, &all, &a.node)?;
    }
    // The rate: events made until all were in PostgreSQL (or on disk, with
    // --no-drain or when PostgreSQL never took them).
    let secs = if a.no_drain || left > 0 { durable_secs } else { written_secs };
    let out = serde_json::json!({
        "events": a.events,
        "generate_secs": secs,
        "events_per_sec": if secs > 0.0 { a.events as f64 / secs } else { 0.0 },
        "durable_secs": durable_secs,
        "spool_at_open": { "records": report.records, "corrupt": report.corrupt },
        "max_pending_records": max_pending,
        "replayed_events_at_end": replayed,
        "replay_secs": replay_secs,
        "replay_events_per_sec": if replay_secs > 0.0 { replayed as f64 / replay_secs } else { 0.0 },
        "events_replayed_total": metrics.store.events_replayed.get(),
        "wal_syncs": metrics.wal_sync_seconds.count(),
        "spool_left_records": left,
    });
    println!("{out}");
    Ok(())
}

/// `varta spool-dump`: one JSON line per record of the event log in `dir`.
pub fn dump(dir: &std::path::Path, only_pending: bool) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut result = Ok(());
    varta_store::wal::dump(dir, |d| {
        if only_pending && !d.pending || result.is_err() {
            return;
        }
        let line = serde_json::json!({
            "segment": d.at.segment,
            "offset": d.at.offset,
            "pending": d.pending,
            "msgs": d.msgs.as_ref().ok(),
            "error": d.msgs.as_ref().err(),
        });
        result = writeln!(out, "{line}");
    })?;
    result?;
    out.flush()?;
    Ok(())
}

/// The rows as `psql \copy events (…) FROM FILE WITH (FORMAT csv)` reads them.
fn write_csv(path: &std::path::Path, events: &[EventRecord], node: &str) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    for e in events {
        let b = e.bbox;
        writeln!(
            f,
            "{},{},{},{},{},\"{{{},{},{},{}}}\",{},{},{},{},{},{},{},{}",
            e.id,
            e.camera,
            e.track_id,
            e.class,
            e.score,
            b[0],
            b[1],
            b[2],
            b[3],
            ts(e.started_at),
            ts(e.last_seen_at),
            e.ended_at.map(ts).unwrap_or_default(),
            e.frames,
            node,
            e.rule,
            e.zone.as_deref().unwrap_or(""),
            e.snapshot.as_deref().unwrap_or(""),
        )?;
    }
    f.flush()?;
    Ok(())
}
