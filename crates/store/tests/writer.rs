//! The writer, the event log and queries against a real PostgreSQL (a fresh
//! database per test, made by `#[sqlx::test]` on the `DATABASE_URL` server, with our
//! migrations).

use chrono::{Duration, Utc};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Instant;
use varta_core::event::{CameraState, EndReason, EventPhase, EventRecord, StatusChange, StoreMsg};
use varta_core::journal::{Durability, Journal};
use varta_core::metrics::Registry;
use varta_store::queries::EventFilter;
use varta_store::writer::{Writer, WriterConfig, WriterHandle};
use varta_store::Store;

const CFG: &str = r#"
[[sites]]
id = "s1"
name = "One"
[[sites]]
id = "s2"
name = "Two"
[[cameras]]
id = "c1"
site = "s1"
url = "rtsp://h/1"
[[cameras]]
id = "c2"
site = "s2"
url = "rtsp://h/2"
"#;

/// The sites and cameras of a config text, synced as a node does.
async fn sync(s: &Store, text: &str) {
    #[derive(serde::Deserialize)]
    struct Layout {
        sites: Vec<varta_core::config::SiteConfig>,
        cameras: Vec<varta_core::config::CameraConfig>,
    }
    let l: Layout = toml::from_str(text).unwrap();
    s.sync_config(&l.sites, &l.cameras).await.unwrap();
}

fn writer_config(name: &str) -> WriterConfig {
    let spool_dir = std::env::temp_dir().join(format!("varta-writer-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool_dir);
    WriterConfig {
        batch_max: 10,
        flush: std::time::Duration::from_millis(50),
        node: "n".into(),
        run_id: uuid::Uuid::now_v7(),
        spool_dir,
        spool_max_bytes: 1 << 30,
        snapshot_dir: None,
        ledger: None,
        // Signing on, as in a node: replays must sign the same bytes again.
        signer: Some(std::sync::Arc::new(varta_store::evidence::NodeKey::from_seed([7; 32]))),
    }
}

fn writer(s: &Store) -> Writer {
    Writer::new(s.clone(), "n")
}

/// The writer's two stages on `store`, with the database open for writing.
fn started(s: &Store, cfg: &WriterConfig, metrics: &Arc<Registry>) -> (Arc<Journal>, WriterHandle) {
    let journal = Journal::new(1000);
    let (_, ready) = tokio::sync::watch::channel(true);
    let h = varta_store::writer::start(s.clone(), cfg, journal.clone(), metrics.clone(), ready).unwrap();
    (journal, h)
}

/// A store whose server is not there (nothing listens on the port).
fn unreachable_store() -> Store {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    Store::connect_lazy(&format!("postgres://varta@127.0.0.1:{port}/nowhere")).unwrap()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Polls `sql` (a count) until it is `want`, for up to 20 s.
async fn wait_count(pool: &PgPool, sql: &str, want: i64) {
    let end = Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let n = count(pool, sql).await;
        if n == want {
            return;
        }
        assert!(Instant::now() < end, "{sql}: {n}, waiting for {want}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn store(pool: PgPool) -> Store {
    let s = Store::from_pool(pool);
    sync(&s, CFG).await;
    s
}

fn event(camera: &str, class: &str, mins_ago: i64) -> EventRecord {
    let t = Utc::now() - Duration::minutes(mins_ago);
    EventRecord {
        id: varta_core::ids::new_event_id(),
        camera: camera.into(),
        track_id: 1,
        class: class.into(),
        score: 0.5,
        bbox: [1., 2., 3., 4.],
        started_at: t,
        last_seen_at: t,
        ended_at: None,
        frames: 2,
        rule: "presence".into(),
        alert: false,
        zone: None,
        snapshot: None,
        phase: varta_core::event::EventPhase::Started,
        end_reason: None,
        run_id: None,
    }
}

#[sqlx::test(migrator = "varta_store::MIGRATOR")]
async fn replays_never_duplicate_and_the_end_updates_the_row(pool: PgPool) {
    let s = store(pool.clone()).await;
    let mut start = event("c1", "person", 1);
    start.snapshot = Some(format!("{}.jpg", start.id));
    start.zone = Some("door".into());
    let mut end = start.clone();
    // The end has no new snapshot: the row keeps the start's.
    end.snapshot = None;
    end.phase = varta_core::event::EventPhase::Ended;
    end.ended_at = Some(start.started_at + Duration::seconds(9));
    end.score = 0.9;
    end.frames = 20;
    // Start and end in one batch, then the same batch replayed, then the start alone again.
    // The first write takes the COPY path; the replays find the row there and upsert.
    let mut w = writer(&s);
    let batch = vec![StoreMsg::Event(start.clone()), StoreMsg::Event(end.clone())];
    assert_eq!(w.write_batch(&batch).await.unwrap(), 1);
    w.write_batch(&batch).await.unwrap();
    w.write_batch(&[StoreMsg::Event(start.clone())]).await.unwrap();
    let rows = s.list_events(&EventFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, start.id);
    assert_eq!(rows[0].ended_at.map(|t| t.timestamp_millis()), end.ended_at.map(|t| t.timestamp_millis()));
    assert!((rows[0].score - 0.9).abs() < 1e-6);
    assert_eq!(rows[0].frames, 20);
    assert_eq!(rows[0].snapshot, start.snapshot);
    assert_eq!((rows[0].rule.as_str(), rows[0].zone.as_deref()), ("presence", Some("door")));
}

#[sqlx::test(migrator = "varta_store::MIGRATOR")]
async fn filters_and_order(pool: PgPool) {
    let s = store(pool).await;
    let evs = [event("c1", "person", 30), event("c1", "car", 20), event("c2", "person", 10)];
    let batch: Vec<_> = evs.iter().cloned().map(StoreMsg::Event).collect();
    writer(&s).write_batch(&batch).await.unwrap();
    let all = s.list_events(&EventFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![evs[2].id, evs[1].id, evs[0].id]);
    let f = |camera: Option<&str>, site: Option<&str>, class: Option<&str>, since_mins: Option<i64>| EventFilter {
        camera: camera.map(String::from),
        site: site.map(String::from),
        class: class.map(String::from),
        since: since_mins.map(|m| Utc::now() - Duration::minutes(m)),
        until: None,
        limit: 10,
        after: None,
    };
    assert_eq!(s.list_events(&f(Some("c1"), None, None, None)).await.unwrap().len(), 2);
    assert_eq!(s.list_events(&f(None, Some("s2"), None, None)).await.unwrap().len(), 1);
    assert_eq!(s.list_events(&f(None, None, Some("person"), None)).await.unwrap().len(), 2);
    assert_eq!(s.list_events(&f(None, None, None, Some(15))).await.unwrap().len(), 1);
    let one = s.list_events(&EventFilter { limit: 1, ..Default::default() }).await.unwrap();
    assert_eq!(one[0].id, evs[2].id);
}

#[sqlx::test(migrator = "varta_store::MIGRATOR")]
async fn status_changes_are_recorded_and_removed_cameras_marked(pool: PgPool) {
    let s = store(pool.clone()).await;
    let st = |state| StoreMsg::Status(StatusChange { camera: "c2".into(), at: Utc::now(), state, reason: "r".into() });
    let mut w = writer(&s);
    let batch = [st(CameraState::Starting), st(CameraState::Streaming)];
    w.write_batch(&batch).await.unwrap();
    // Replayed after a crash: recognised, not added again.
    w.write_batch(&batch).await.unwrap();
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM camera_status WHERE camera_id = 'c2'").fetch_one(&pool).await.unwrap();
    assert_eq!(n, 2);
    // c2 leaves the config: it is marked removed, its history stays.
    let cfg = CFG.split("[[cameras]]\nid = \"c2\"").next().unwrap();
    sync(&s, cfg).await;
    let removed: Vec<String> =
        sqlx::query_scalar("SELECT id FROM cameras WHERE removed_at IS NOT NULL").fetch_all(&pool).await.unwrap();
    assert_eq!(removed, ["c2"]);
    // An event for an unknown camera is refused as invalid, not silently dropped.
    let e = w.write_batch(&[StoreMsg::Event(event("nope", "person", 1))]).await.unwrap_err();
    assert_eq!(e.kind(), varta_core::ErrorKind::InvalidArgument);
}

#[sqlx::test(migrator = "varta_store::MIGRATOR")]
async fn a_refused_row_does_not_block_the_rest(pool: PgPool) {
    let s = store(pool).await;
    let metrics = Arc::new(Registry::default());
    let (journal, h) = started(&s, &writer_config("refused"), &metrics);
    for cam in ["c1", "nope", "c2"] {
        journal.append(vec![StoreMsg::Event(event(cam, "person", 1))]).unwrap();
    }
    tokio::time::timeout(std::time::Duration::from_secs(10), h.finish()).await.expect("writer finishes");
    assert_eq!(metrics.totals.events_written.get(), 2);
    assert_eq!(s.list_events(&EventFilter { limit: 10, ..Default::default() }).await.unwrap().len(), 2);
}

/// Every record is on disk before PostgreSQL sees it: with the database away the
/// records wait in the event log, and the next start writes them, once.
#[sqlx::test(migrator = "varta_store::MIGRATOR")]
async fn records_wait_on_disk_while_the_database_is_away_and_the_next_start_writes_them_once(pool: PgPool) {
    let s = store(pool.clone()).await;
    let cfg = writer_config("outage");
    let metrics = Arc::new(Registry::default());
    let (journal, h) = started(&unreachable_store(), &cfg, &metrics);
    let made: Vec<EventRecord> = (0..25).map(|i| event(if i % 2 == 0 { "c1" } else { "c2" }, "person", 1)).collect();
    let mut last = 0;
    for e in &made {
        last = journal.append(vec![StoreMsg::Event(e.clone())]).unwrap();
    }
    assert_eq!(journal.wait_durable(last, std::time::Duration::from_secs(10)), Durability::Durable);
    // 25 messages in records of at most batch_max = 10 (how many depends on how
    // the appends fell into groups).
    let records = h.pending_records();
    assert!(records >= 3, "{records} records");
    assert_eq!(metrics.store.events_spooled.get(), 25);
    h.finish().await;

    // The next start, with the database there: the log is replayed first.
    let metrics = Arc::new(Registry::default());
    let (journal, h) = started(&s, &cfg, &metrics);
    assert_eq!(h.open_report().records, records);
    let mut replayed = h.replayed();
    tokio::time::timeout(std::time::Duration::from_secs(20), replayed.wait_for(|r| *r)).await.unwrap().unwrap();
    assert_eq!(count(&pool, "SELECT count(*) FROM events").await, 25);
    assert_eq!(count(&pool, "SELECT count(DISTINCT id) FROM events").await, 25);
    assert_eq!(metrics.store.events_replayed.get(), 25);
    // The end of one of them arrives now, written from memory.
    let mut end = made[3].clone();
    end.phase = EventPhase::Ended;
    end.ended_at = Some(end.last_seen_at);
    journal.append(vec![StoreMsg::Event(end)]).unwrap();
    wait_count(&pool, "SELECT count(*) FROM events WHERE end_reason = 'ended'", 1).await;
    h.finish().await;
    assert_eq!(count(&pool, "SELECT count(*) FROM events").await, 25);
    let _ = std::fs::remove_dir_all(&cfg.spool_dir);
}

/// A held record (an event waiting for its snapshot file) keeps itself and the
/// records after it from PostgreSQL until it is released; a snapshot that was
/// never written is not named by the row.
#[sqlx::test(migrator = "varta_store::MIGRATOR")]
async fn held_records_wait_for_their_release_and_missing_snapshots_are_not_named(pool: PgPool) {
    let s = store(pool.clone()).await;
    let snapshots = std::env::temp_dir().join(format!("varta-writer-snap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&snapshots);
    std::fs::create_dir_all(&snapshots).unwrap();
    let cfg = WriterConfig { snapshot_dir: Some(snapshots.clone()), ..writer_config("held") };
    let (journal, h) = started(&s, &cfg, &Arc::new(Registry::default()));
    let mut with_file = event("c1", "person", 1);
    with_file.snapshot = Some(format!("{}.jpg", with_file.id));
    let mut without_file = event("c2", "person", 1);
    without_file.snapshot = Some(format!("{}.jpg", without_file.id));
    let after = event("c1", "car", 1);
    let hold = journal.append_held(vec![StoreMsg::Event(with_file.clone())]).unwrap();
    let hold2 = journal.append_held(vec![StoreMsg::Event(without_file.clone())]).unwrap();
    let seq = journal.append(vec![StoreMsg::Event(after.clone())]).unwrap();
    assert_eq!(journal.wait_durable(seq, std::time::Duration::from_secs(10)), Durability::Durable);
    // Durable, but held: nothing may reach PostgreSQL for as long as we look.
    let end = Instant::now() + std::time::Duration::from_millis(500);
    while Instant::now() < end {
        assert_eq!(count(&pool, "SELECT count(*) FROM events").await, 0, "a held record reached PostgreSQL");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    std::fs::write(snapshots.join(with_file.snapshot.as_ref().unwrap()), b"jpeg").unwrap();
    hold.release();
    drop(hold2); // released without its file
    wait_count(&pool, "SELECT count(*) FROM events", 3).await;
    let rows = s.list_events(&EventFilter { limit: 10, ..Default::default() }).await.unwrap();
    let snap = |id| rows.iter().find(|r| r.id == id).unwrap().snapshot.clone();
    assert_eq!(snap(with_file.id), with_file.snapshot);
    assert_eq!(snap(without_file.id), None, "the file was never written");
    h.finish().await;
    let _ = std::fs::remove_dir_all(&snapshots);
    let _ = std::fs::remove_dir_all(&cfg.spool_dir);
}

/// With the database down and the event log at its cap, the WAL thread stops
/// taking records (the producers wait) and says so in `varta_spool_full`, rather
/// than drop or overrun the cap.
#[tokio::test]
async fn a_full_event_log_holds_records_back_loudly_instead_of_dropping() {
    let metrics = Arc::new(Registry::default());
    let cfg = WriterConfig { spool_max_bytes: 1, ..writer_config("full") };
    let (journal, h) = started(&unreachable_store(), &cfg, &metrics);
    let first = journal.append(vec![StoreMsg::Event(event("c1", "person", 1))]).unwrap();
    assert_eq!(journal.wait_durable(first, std::time::Duration::from_secs(10)), Durability::Durable);
    assert_eq!(metrics.store.events_spooled.get(), 1);
    let second = journal.append(vec![StoreMsg::Event(event("c1", "person", 1))]).unwrap();
    assert_eq!(
        journal.wait_durable(second, std::time::Duration::from_secs(3)),
        Durability::NotYet,
        "the log must wait for room, not overrun its cap"
    );
    assert_eq!(metrics.store.spool_full.get(), 1);
    assert!(metrics.render_prometheus().contains("varta_spool_full 1"));
    assert_eq!(metrics.store.events_spooled.get(), 1);
    assert_eq!(journal.queued(), 1, "the record waits in the journal, not dropped");
    h.finish().await;
    // At shutdown the cap gives way: what was queued is written, not lost.
    assert_eq!(metrics.store.events_spooled.get(), 2);
    let _ = std::fs::remove_dir_all(&cfg.spool_dir);
}

/// The end reason is stored with the end; a replayed record without an end does
/// not reopen the event, and a real end replaces a recovered one.
#[sqlx::test(migrator = "varta_store::MIGRATOR")]
async fn end_reasons_are_stored_and_recovery_closes_only_other_processes_events(pool: PgPool) {
    let s = store(pool.clone()).await;
    let (old_run, new_run) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let mut w = writer(&s);
    let mut lost = event("c1", "person", 5);
    lost.run_id = Some(old_run);
    lost.last_seen_at = lost.started_at + Duration::seconds(7);
    let mut mine = event("c2", "person", 1);
    mine.run_id = Some(new_run);
    let mut other_node = event("c1", "car", 1);
    other_node.run_id = Some(uuid::Uuid::now_v7());
    let batch = [StoreMsg::Event(lost.clone()), StoreMsg::Event(mine.clone())];
    w.write_batch(&batch).await.unwrap();
    sqlx::query("UPDATE events SET node = 'other' WHERE id = $1").bind(other_node.id).execute(&pool).await.unwrap();
    Writer::new(s.clone(), "other").write_batch(&[StoreMsg::Event(other_node.clone())]).await.unwrap();

    // The next process of node `n` closes what its earlier one left open, at the
    // last sighting; its own events and another node's stay open.
    assert_eq!(s.close_lost_events_of_node("n", new_run).await.unwrap(), 1);
    let row = |id: uuid::Uuid| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (Option<chrono::DateTime<Utc>>, Option<String>)>(
                "SELECT ended_at, end_reason FROM events WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (ended, reason) = row(lost.id).await;
    assert_eq!(ended.map(|t| t.timestamp_millis()), Some(lost.last_seen_at.timestamp_millis()));
    assert_eq!(reason.as_deref(), Some("node_lost"));
    assert_eq!(row(mine.id).await, (None, None));
    assert_eq!(row(other_node.id).await, (None, None));
    // Its `updated` record replayed late does not reopen it; its real end replaces
    // the recovered one.
    let mut update = lost.clone();
    update.phase = EventPhase::Updated;
    w.write_batch(&[StoreMsg::Event(update.clone())]).await.unwrap();
    assert_eq!(row(lost.id).await.1.as_deref(), Some("node_lost"));
    let mut end = lost.clone();
    end.phase = EventPhase::Ended;
    end.ended_at = Some(lost.last_seen_at + Duration::seconds(3));
    end.end_reason = Some(EndReason::Ended);
    w.write_batch(&[StoreMsg::Event(end.clone())]).await.unwrap();
    let (ended, reason) = row(lost.id).await;
    assert_eq!(ended.map(|t| t.timestamp_millis()), end.ended_at.map(|t| t.timestamp_millis()));
    assert_eq!(reason.as_deref(), Some("ended"));
    // A node that stopped analysing a camera records why.
    let mut stopped = mine.clone();
    stopped.phase = EventPhase::Ended;
    stopped.ended_at = Some(mine.last_seen_at);
    stopped.end_reason = Some(EndReason::NodeStopped);
    w.write_batch(&[StoreMsg::Event(stopped)]).await.unwrap();
    assert_eq!(row(mine.id).await.1.as_deref(), Some("node_stopped"));
    // The run that made it is kept from its first record.
    let run: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT run_id FROM events WHERE id = $1").bind(mine.id).fetch_one(&pool).await.unwrap();
    assert_eq!(run, Some(new_run));
}
