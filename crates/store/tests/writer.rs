//! The writer and queries against a real PostgreSQL (a fresh database per test,
//! made by `#[sqlx::test]` on the `DATABASE_URL` server, with our migrations).

use chrono::{Duration, Utc};
use sqlx::PgPool;
use varta_core::config::Config;
use varta_core::event::{CameraState, EventRecord, StatusChange, StoreMsg};
use varta_store::queries::EventFilter;
use varta_store::writer::{Writer, WriterConfig};
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

fn writer_config(name: &str) -> WriterConfig {
    let spool_dir = std::env::temp_dir().join(format!("varta-writer-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool_dir);
    WriterConfig {
        batch_max: 10,
        flush: std::time::Duration::from_millis(50),
        node: "n".into(),
        spool_dir,
        spool_max_bytes: 1 << 30,
    }
}

fn writer(s: &Store, name: &str) -> Writer {
    Writer::open(s.clone(), &writer_config(name), Default::default()).unwrap().0
}

async fn store(pool: PgPool) -> Store {
    let s = Store::from_pool(pool);
    s.sync_config(&Config::parse("t.toml", CFG).unwrap()).await.unwrap();
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
    let mut w = writer(&s, "replay");
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
    writer(&s, "filters").write_batch(&batch).await.unwrap();
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
    let mut w = writer(&s, "status");
    let batch = [st(CameraState::Starting), st(CameraState::Streaming)];
    w.write_batch(&batch).await.unwrap();
    // Replayed after a crash: recognised, not added again.
    w.write_batch(&batch).await.unwrap();
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM camera_status WHERE camera_id = 'c2'").fetch_one(&pool).await.unwrap();
    assert_eq!(n, 2);
    // c2 leaves the config: it is marked removed, its history stays.
    let cfg = CFG.split("[[cameras]]\nid = \"c2\"").next().unwrap();
    s.sync_config(&Config::parse("t.toml", cfg).unwrap()).await.unwrap();
    let removed: Vec<String> =
        sqlx::query_scalar("SELECT id FROM cameras WHERE removed_at IS NOT NULL").fetch_all(&pool).await.unwrap();
    assert_eq!(removed, ["c2"]);
    // An event for an unknown camera is refused as invalid, not silently dropped.
    let e = w.write_batch(&[StoreMsg::Event(event("nope", "person", 1))]).await.unwrap_err();
    assert_eq!(e.kind(), varta_core::ErrorKind::InvalidArgument);
}

#[sqlx::test(migrator = "varta_store::MIGRATOR")]
async fn a_refused_row_does_not_block_the_rest(pool: PgPool) {
    use std::sync::Arc;
    let s = store(pool).await;
    let (tx, rx) = tokio::sync::mpsc::channel(10);
    let metrics = Arc::new(varta_core::metrics::Registry::default());
    let cfg = writer_config("refused");
    let (writer, _) = Writer::open(s.clone(), &cfg, metrics.clone()).unwrap();
    let w = tokio::spawn(varta_store::writer::run(writer, rx, cfg));
    for cam in ["c1", "nope", "c2"] {
        tx.send(StoreMsg::Event(event(cam, "person", 1))).await.unwrap();
    }
    drop(tx);
    tokio::time::timeout(std::time::Duration::from_secs(10), w).await.expect("writer finishes").unwrap();
    assert_eq!(metrics.events_written.get(), 2);
    assert_eq!(s.list_events(&EventFilter { limit: 10, ..Default::default() }).await.unwrap().len(), 2);
}

/// With the database down and the spool at its cap, the writer stops taking
/// batches (the caller waits) and says so in `varta_spool_full`, rather than drop.
#[tokio::test]
async fn a_full_spool_stops_the_writer_loudly_instead_of_dropping() {
    use std::sync::Arc;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let s = Store::connect_lazy(&format!("postgres://varta@127.0.0.1:{port}/nowhere")).unwrap();
    let metrics = Arc::new(varta_core::metrics::Registry::default());
    let cfg = WriterConfig { spool_max_bytes: 1, ..writer_config("full") };
    let (mut w, _) = Writer::open(s, &cfg, metrics.clone()).unwrap();
    let batch = [StoreMsg::Event(event("c1", "person", 1))];
    assert_eq!(w.write(&batch).await.unwrap(), varta_store::writer::Outcome::Spooled);
    assert_eq!(metrics.store.events_spooled.get(), 1);
    assert_eq!(metrics.store.spool_full.get(), 0);
    let blocked = tokio::time::timeout(std::time::Duration::from_secs(3), w.write(&batch)).await;
    assert!(blocked.is_err(), "the writer must wait for room, not drop or overrun the cap");
    assert_eq!(metrics.store.spool_full.get(), 1);
    assert!(metrics.render_prometheus().contains("varta_spool_full 1"));
    assert_eq!(metrics.store.events_spooled.get(), 1);
}
