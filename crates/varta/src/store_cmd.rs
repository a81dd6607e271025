//! `varta store-load`: drives the real store writer (database, spool, replay) with
//! synthetic events. It is the writer benchmark and the load of the outage and
//! crash tests: every id is logged before it is handed to the writer (`--ids`) and
//! again once the writer says it is durable, committed or synced to the spool
//! (`--durable`), so a test can compare what was made with what is stored.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Args as ClapArgs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use varta_core::event::{EventPhase, EventRecord, StoreMsg};
use varta_core::metrics::Registry;
use varta_store::writer::{write_until_kept, Outcome, Writer, WriterConfig};
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
    /// Events per batch (the writer's `batch_max`; the config's default).
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Cameras the events are spread over (`load-1` … in site `load`).
    #[arg(long, default_value_t = 16)]
    cameras: usize,
    /// Also send each event's `ended` record, one batch later (the upsert path).
    #[arg(long)]
    updates: bool,
    /// Spool folder.
    #[arg(long, default_value = ".varta/spool-load")]
    spool: PathBuf,
    /// Spool cap in MiB.
    #[arg(long, default_value_t = 4096)]
    spool_max_mb: u64,
    /// Append each generated event id to this file before it is written.
    #[arg(long)]
    ids: Option<PathBuf>,
    /// Append each event id to this file once the writer reports it durable.
    #[arg(long)]
    durable: Option<PathBuf>,
    /// Exit as soon as the events are generated, leaving the spool as it is.
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
        store.migrate().await?;
        sqlx::query("INSERT INTO sites (id, name) VALUES ('load', 'Load test') ON CONFLICT DO NOTHING")
            .execute(store.pool())
            .await
            .map_err(|e| varta_store::db_error("load site", e))?;
        sqlx::query(
            "INSERT INTO cameras (id, site_id, name, url, analysis_fps, classes, min_score, enabled)
             SELECT c, 'load', c, 'rtsp://127.0.0.1/' || c, 2, '{person}', 0.5, true FROM unnest($1::text[]) c
             ON CONFLICT DO NOTHING",
        )
        .bind(&cams)
        .execute(store.pool())
        .await
        .map_err(|e| varta_store::db_error("load cameras", e))?;
        Ok::<_, varta_core::Error>(())
    };
    if let Err(e) = tokio::time::timeout(Duration::from_secs(10), setup).await.unwrap_or(Ok(())) {
        eprintln!("store-load: database not set up now ({e}); going on");
    }

    let metrics = Arc::new(Registry::default());
    let wcfg = WriterConfig {
        batch_max: a.batch,
        flush: Duration::from_millis(250),
        node: a.node.clone(),
        spool_dir: a.spool.clone(),
        spool_max_bytes: a.spool_max_mb << 20,
    };
    let (mut w, report) = Writer::open(store.clone(), &wcfg, metrics.clone())?;
    let mut ids_log = open_log(&a.ids)?;
    let mut durable_log = open_log(&a.durable)?;
    let mut all: Vec<EventRecord> = Vec::new();
    let (mut committed, mut spooled) = (0u64, 0u64);
    // Events are made on their own thread, as detection makes them in the service,
    // and handed over a short queue: the writer's time is the writer's alone.
    let (btx, mut brx) = tokio::sync::mpsc::channel::<(Vec<StoreMsg>, usize)>(4);
    let producer = {
        let (events, batch, cameras, rate, updates) = (a.events, a.batch as u64, a.cameras, a.rate, a.updates);
        std::thread::spawn(move || -> Result<()> {
            let start = Instant::now();
            let mut pending_end: Vec<EventRecord> = Vec::new();
            let mut made = 0u64;
            while made < events {
                let n = batch.min(events - made);
                let now = Utc::now();
                let fresh: Vec<EventRecord> = (made..made + n).map(|i| make_event(i, cameras, now)).collect();
                made += n;
                append_ids(&mut ids_log, fresh.iter().map(|e| e.id))?;
                let mut out: Vec<StoreMsg> = pending_end.drain(..).map(StoreMsg::Event).collect();
                let ends = out.len();
                if updates {
                    pending_end = fresh
                        .iter()
                        .map(|e| EventRecord { ended_at: Some(now), frames: 5, phase: EventPhase::Ended, ..e.clone() })
                        .collect();
                }
                out.extend(fresh.into_iter().map(StoreMsg::Event));
                if btx.blocking_send((out, ends)).is_err() {
                    return Ok(());
                }
                if rate > 0.0 {
                    let due = start + Duration::from_secs_f64(made as f64 / rate);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                }
            }
            if !pending_end.is_empty() {
                let _ = btx.blocking_send((pending_end.into_iter().map(StoreMsg::Event).collect(), 0));
            }
            Ok(())
        })
    };
    let start = Instant::now();
    let mut made = 0u64;
    while let Some((batch, ends)) = brx.recv().await {
        match write_until_kept(&mut w, &batch).await {
            Outcome::Committed => committed += 1,
            Outcome::Spooled => spooled += 1,
        }
        let fresh = batch[ends..].iter().filter_map(|m| match m {
            StoreMsg::Event(e) if e.phase == EventPhase::Started => Some(e),
            _ => None,
        });
        append_ids(&mut durable_log, fresh.clone().map(|e| e.id))?;
        made += fresh.clone().count() as u64;
        if a.csv.is_some() {
            all.extend(fresh.cloned());
        }
        // Between batches, as the service's writer does.
        w.replay_some().await;
    }
    producer.join().map_err(|_| anyhow::anyhow!("event producer panicked"))??;
    let generate_secs = start.elapsed().as_secs_f64();
    let replay_start = Instant::now();
    let replayed_before = metrics.store.events_replayed.get();
    if !a.no_drain {
        let deadline = Instant::now() + Duration::from_secs_f64(a.drain_timeout);
        while !w.spool_is_empty() && Instant::now() < deadline {
            if w.replay_some().await == 0 {
                tokio::time::sleep_until(w.next_attempt().min((Instant::now() + Duration::from_secs(1)).into())).await;
            }
        }
    }
    let replay_secs = replay_start.elapsed().as_secs_f64();
    let replayed = metrics.store.events_replayed.get() - replayed_before;
    if let Some(p) = &a.csv {
        write_csv(p, &all, &a.node)?;
    }
    let out = serde_json::json!({
        "events": made,
        "batches_committed": committed,
        "batches_spooled": spooled,
        "generate_secs": generate_secs,
        "events_per_sec": if generate_secs > 0.0 { made as f64 / generate_secs } else { 0.0 },
        "spool_at_open": { "records": report.records, "corrupt": report.corrupt },
        "replayed_events_at_end": replayed,
        "replay_secs": replay_secs,
        "replay_events_per_sec": if replay_secs > 0.0 { replayed as f64 / replay_secs } else { 0.0 },
        "events_replayed_total": metrics.store.events_replayed.get(),
        "spool_left_batches": w.spool_pending(),
    });
    println!("{out}");
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
