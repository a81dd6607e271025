//! The event store loses nothing and duplicates nothing: a PostgreSQL crash of 20 s
//! under load, SIGKILL of the writer while it spools and while it replays, a torn
//! spool record; and retention and uptime against a real PostgreSQL.
//!
//! The load is `varta store-load`, the real journal, event log and writer with
//! synthetic events; it logs every id before appending it to the journal (`--ids`),
//! and the WAL thread logs it once it is synced to disk (`--durable`). A SIGKILL can
//! cut either log in the middle of a line: readers keep complete lines only.

use chrono::{DateTime, Duration as Days, TimeZone, Utc};
use sqlx::Connection;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use varta_e2e::*;

fn work_dir(name: &str) -> PathBuf {
    let d = root().join("target/e2e-store").join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The ids of a log written by `varta store-load` (`--ids`: one id per line;
/// `--durable`: `ID CAMERA UNIX_MS`), complete lines only: the last line may have
/// been cut by a SIGKILL in the middle of a write.
fn read_ids(p: &Path) -> Vec<String> {
    complete_lines(&std::fs::read(p).unwrap_or_default())
        .filter_map(|l| l.split(' ').next().filter(|id| uuid::Uuid::parse_str(id).is_ok()).map(str::to_owned))
        .collect()
}

async fn stored_ids(url: &str) -> (Vec<String>, i64) {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let ids: Vec<String> = sqlx::query_scalar("SELECT id::text FROM events").fetch_all(&mut c).await.unwrap();
    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT id) FROM events").fetch_one(&mut c).await.unwrap();
    (ids, distinct)
}

async fn count_events(url: &str) -> i64 {
    match sqlx::PgConnection::connect(url).await {
        Ok(mut c) => sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&mut c).await.unwrap_or(-1),
        Err(_) => -1,
    }
}

fn local_pg(dir: &Path, port: u16, action: &[&str]) {
    let st = varta()
        .args(["local-pg"])
        .args(action)
        .arg("--dir")
        .arg(dir)
        .args(["--port", &port.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "varta local-pg {action:?} failed");
}

fn last_json(out: &str) -> serde_json::Value {
    out.lines().rev().find_map(|l| serde_json::from_str(l).ok()).unwrap_or_else(|| panic!("no JSON in:\n{out}"))
}

fn wait_exit(p: &mut Proc, timeout: Duration) -> i32 {
    let end = Instant::now() + timeout;
    loop {
        if let Some(st) = p.child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        assert!(Instant::now() < end, "process did not finish in {timeout:?}:\n{}", p.output());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every id made is stored, exactly once, and nothing else is.
async fn assert_exactly_once(url: &str, made: &[String]) {
    let (stored, distinct) = stored_ids(url).await;
    assert_eq!(stored.len() as i64, distinct, "an event is stored twice");
    let made: HashSet<&String> = made.iter().collect();
    let stored: HashSet<&String> = stored.iter().collect();
    let missing = made.difference(&stored).count();
    let extra = stored.difference(&made).count();
    assert_eq!((missing, extra), (0, 0), "{missing} events lost, {extra} stored that were never made");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_crash_of_20s_loses_and_duplicates_nothing() {
    let dir = work_dir("outage");
    let port = free_port();
    let pg = dir.join("pg");
    local_pg(&pg, port, &["start"]);
    let url = format!("postgres://varta@127.0.0.1:{port}/varta");

    // 1000 events/s for 32 s, with their `ended` updates; the crash is at ~5 s.
    let ids = dir.join("ids");
    let mut load = Proc::spawn(
        {
            let mut c = varta();
            c.args(["store-load", "--events", "32000", "--rate", "1000", "--batch", "250", "--updates"])
                .args(["--database-url", &url])
                .arg("--spool")
                .arg(dir.join("spool"))
                .arg("--ids")
                .arg(&ids);
            c
        },
        dir.join("load.log"),
    );
    wait_for("events flowing", Duration::from_secs(30), || (read_ids(&ids).len() > 4000).then_some(()));
    local_pg(&pg, port, &["stop", "--mode", "immediate"]);
    let down_at = read_ids(&ids).len();
    std::thread::sleep(Duration::from_secs(20));
    let during = read_ids(&ids).len() - down_at;
    assert!(during > 15_000, "events kept being made during the outage ({during})");
    local_pg(&pg, port, &["start"]);
    let code = wait_exit(&mut load, Duration::from_secs(180));
    let out = load.output();
    assert_eq!(code, 0, "{out}");
    let res = last_json(&out);
    // 20 s at 1000 events/s waited on disk while the database was away.
    assert!(res["max_pending_records"].as_u64().unwrap() >= 40, "the outage was held in the event log: {res}");
    assert_eq!(res["spool_left_records"], 0, "{res}");

    let made = read_ids(&ids);
    assert_eq!(made.len(), 32000);
    assert_exactly_once(&url, &made).await;
    // The `ended` updates were replayed too (the last batch's arrived directly).
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    let open: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE ended_at IS NULL").fetch_one(&mut c).await.unwrap();
    assert_eq!(open, 0, "every event got its end");
    local_pg(&pg, port, &["stop"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_spooling_and_while_replaying_loses_and_duplicates_nothing() {
    let dir = work_dir("crash");
    let url = fresh_database("crash").await;
    let spool = dir.join("spool");
    let (ids, durable) = (dir.join("ids"), dir.join("durable"));
    let load = |events: u64, db: &str, log: &str| {
        let mut c = varta();
        c.args(["store-load", "--events", &events.to_string(), "--batch", "500", "--drain-timeout", "60"])
            .args(["--database-url", db])
            .arg("--spool")
            .arg(&spool)
            .arg("--ids")
            .arg(&ids)
            .arg("--durable")
            .arg(&durable);
        Proc::spawn(c, dir.join(log))
    };
    // Cameras and schema first, while the database is up.
    let mut setup = load(0, &url, "setup.log");
    assert_eq!(wait_exit(&mut setup, Duration::from_secs(60)), 0, "{}", setup.output());

    // 1. The database is unreachable: everything is spooled. Kill mid-way.
    let down = format!("postgres://varta@127.0.0.1:{}/nowhere", free_port());
    let mut p = load(1_000_000, &down, "spooling.log");
    wait_for("100k events spooled", Duration::from_secs(120), || (read_ids(&durable).len() >= 100_000).then_some(()));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(p.child.id() as i32, libc::SIGKILL) };
    p.child.wait().unwrap();
    let made_1 = read_ids(&ids).len();
    let durable_1 = read_ids(&durable).len();
    assert!(made_1 < 1_000_000, "killed before the end");

    // 2. A crash in the middle of an append leaves a torn record at the tail.
    let mut segs: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segs.sort();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(segs.last().unwrap()).unwrap();
        f.write_all(&5000u32.to_le_bytes()).unwrap();
        f.write_all(b"\x01\x02\x03\x04[{\"event\":{\"id\":").unwrap();
    }

    // 3. The database is back: replay, and kill in the middle of it.
    let mut p = load(0, &url, "replay1.log");
    let mut seen = 0;
    let end = Instant::now() + Duration::from_secs(120);
    while seen <= 0 {
        seen = count_events(&url).await.max(0);
        assert!(Instant::now() < end, "replay did not start:\n{}", p.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unsafe { libc::kill(p.child.id() as i32, libc::SIGKILL) };
    p.child.wait().unwrap();
    let at_kill = count_events(&url).await;
    assert!(at_kill > 0 && (at_kill as usize) < durable_1, "killed during replay ({at_kill} of {durable_1} written)");
    let out1 = p.output();
    assert!(out1.contains("torn or corrupt record"), "the torn record is reported:\n{out1}");

    // 4. Start again: the rest is replayed, and the run ends with an empty spool.
    let mut p = load(0, &url, "replay2.log");
    assert_eq!(wait_exit(&mut p, Duration::from_secs(120)), 0, "{}", p.output());
    let res = last_json(&p.output());
    assert_eq!(res["spool_left_records"], 0, "{res}");

    // Every event reported durable is stored once; nothing stored that was not made.
    let (stored, distinct) = stored_ids(&url).await;
    assert_eq!(stored.len() as i64, distinct, "an event is stored twice");
    let stored: HashSet<String> = stored.into_iter().collect();
    let made: HashSet<String> = read_ids(&ids).into_iter().collect();
    let lost = read_ids(&durable).iter().filter(|id| !stored.contains(*id)).count();
    assert_eq!(lost, 0, "durable events lost");
    assert!(stored.is_subset(&made));
    // Not yet durable at the kill: at most what the journal holds (store-load's
    // --queue, 20,000 messages), the group the WAL thread was syncing (at most as
    // much) and the batch waiting to be appended, as in the service. Nothing the WAL
    // thread had reported.
    assert!(made_1 - durable_1 <= 2 * 20_000 + 500, "made {made_1}, durable {durable_1}");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn setup_db(prefix: &str) -> (String, varta_store::Store) {
    let url = fresh_database(prefix).await;
    let store = varta_store::Store::connect(&url).await.unwrap();
    sqlx::query("INSERT INTO sites (id, name) VALUES ('s1', 'One'), ('s2', 'Two')")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO cameras (id, site_id, name, url, analysis_fps, classes, min_score, enabled) VALUES
         ('cam-a', 's1', 'A', 'rtsp://x/a', 2, '{person}', 0.5, true),
         ('cam-b', 's1', 'B', 'rtsp://x/b', 2, '{person}', 0.5, true),
         ('cam-c', 's2', 'C', 'rtsp://x/c', 2, '{person}', 0.5, true)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    (url, store)
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_drops_old_partitions_and_keeps_snapshots_within_budget() {
    let (_, store) = setup_db("retention").await;
    let today = Utc::now().date_naive();
    for back in [10, 6, 5, 2, 0] {
        let day = today - Days::days(back);
        store.ensure_partition(day).await.unwrap();
        let at = Utc.from_utc_datetime(&day.and_hms_opt(12, 0, 0).unwrap());
        sqlx::query(
            "INSERT INTO events (id, camera_id, track_id, class, score, bbox, started_at, last_seen_at, frames, node)
             VALUES ($1, 'cam-a', 1, 'person', 0.9, '{0,0,1,1}', $2, $2, 1, 't')",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(at)
        .execute(store.pool())
        .await
        .unwrap();
    }
    let r = store.maintain_partitions(today, 3, 5).await.unwrap();
    let name = |back: i64| varta_store::retention::partition_name(today - Days::days(back));
    assert_eq!(r.dropped, vec![name(10), name(6)], "{r:?}");
    assert_eq!(r.created, (1..=3).map(|d| name(-d)).collect::<Vec<_>>());
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(store.pool()).await.unwrap();
    assert_eq!(left, 3, "the events of days 5, 2 and 0 stay");
    // Again: nothing more to do.
    let r = store.maintain_partitions(today, 3, 5).await.unwrap();
    assert!(r.dropped.is_empty() && r.created.is_empty(), "{r:?}");

    // Snapshots and clips: 10 files of 1000 bytes, one per day back; 30 days max age
    // gets none, 7 days gets 3 (days 7, 8, 9); then a budget of 4500 bytes leaves the
    // 4 newest, pictures and clips alike.
    let dir = work_dir("snapshots");
    let now = std::time::SystemTime::now();
    for i in 0..10u64 {
        let p = dir.join(format!("ev{i}.{}", if i % 2 == 1 { "mp4" } else { "jpg" }));
        std::fs::write(&p, vec![0u8; 1000]).unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(now - Duration::from_secs(i * 86400 + 3600)).unwrap();
    }
    std::fs::write(dir.join("notes.txt"), "not a snapshot").unwrap();
    let day = Duration::from_secs(86400);
    use varta_store::retention::trim_snapshots;
    let r = trim_snapshots(&dir, Some(day * 30), None, now).unwrap();
    assert_eq!((r.deleted_for_age, r.deleted_for_budget, r.bytes_left), (0, 0, 10_000));
    let r = trim_snapshots(&dir, Some(day * 7), Some(4500), now).unwrap();
    assert_eq!((r.deleted_for_age, r.deleted_for_budget), (3, 3), "{r:?}");
    assert_eq!((r.bytes_freed, r.bytes_left), (6000, 4000));
    let mut left: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["ev0.jpg", "ev1.mp4", "ev2.jpg", "ev3.mp4", "notes.txt"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn uptime_of_a_scripted_outage_history_is_exact() {
    let (_, store) = setup_db("uptime").await;
    let t0: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
    let h = |hours: f64| t0 + chrono::Duration::milliseconds((hours * 3_600_000.0) as i64);
    let history = [
        ("cam-a", h(-1.0), "streaming", "connected"),
        ("cam-a", h(1.0), "backing_off", "connection refused"),
        ("cam-a", h(1.0 + 5.0 / 60.0), "starting", "retry"),
        ("cam-a", h(1.1), "streaming", "connected"),
        ("cam-a", h(5.0), "degraded", "frozen picture"),
        ("cam-a", h(5.5), "streaming", "picture moves again"),
        ("cam-a", h(9.0), "stopped", "shutdown"),
        ("cam-a", h(11.0), "streaming", "after the period"),
        // cam-b: nothing recorded in or before the period.
        ("cam-c", h(2.5), "streaming", "connected"),
        // cam-d: configured at 4 h, streaming from then on: 100%, not 60%.
        ("cam-d", h(4.0), "starting", "new camera"),
        ("cam-d", h(4.0) + chrono::Duration::seconds(2), "streaming", "connected"),
        // cam-f: configured at 4 h but unreachable for its first hour: that hour is down.
        ("cam-f", h(4.0) + chrono::Duration::seconds(1), "starting", "new camera"),
        ("cam-f", h(4.0) + chrono::Duration::seconds(3), "backing_off", "connection refused"),
        ("cam-f", h(5.0), "streaming", "connected"),
        // cam-e: streaming until removed from the config at 6 h: 100%.
        ("cam-e", h(-1.0), "streaming", "connected"),
        ("cam-e", h(6.0), "stopped", "removed from the config"),
    ];
    // When each camera was first configured (and cam-e removed).
    sqlx::query(
        "INSERT INTO cameras (id, site_id, name, url, analysis_fps, classes, min_score, enabled) VALUES
         ('cam-d', 's2', 'D', 'rtsp://x/d', 2, '{person}', 0.5, true),
         ('cam-e', 's2', 'E', 'rtsp://x/e', 2, '{person}', 0.5, true),
         ('cam-f', 's2', 'F', 'rtsp://x/f', 2, '{person}', 0.5, true)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    for (cam, created, removed) in [
        ("cam-a", h(-48.0), None),
        ("cam-b", h(-48.0), None),
        ("cam-c", h(-48.0), None),
        ("cam-d", h(4.0), None),
        ("cam-e", h(-48.0), Some(h(6.0))),
        ("cam-f", h(4.0), None),
    ] {
        sqlx::query("UPDATE cameras SET created_at = $2, removed_at = $3 WHERE id = $1")
            .bind(cam)
            .bind(created)
            .bind(removed)
            .execute(store.pool())
            .await
            .unwrap();
    }
    for (cam, at, state, reason) in history {
        sqlx::query("INSERT INTO camera_status (camera_id, at, state, reason, node) VALUES ($1, $2, $3, $4, 't')")
            .bind(cam)
            .bind(at)
            .bind(state)
            .bind(reason)
            .execute(store.pool())
            .await
            .unwrap();
    }
    // Planned maintenance: the whole of site s2 until 2.5 h, and cam-f from 4.5 h to 5 h.
    for (site, cam, a, b) in [("s2", None, t0, h(2.5)), ("s2", Some("cam-f"), h(4.5), h(5.0))] {
        sqlx::query(
            "INSERT INTO maintenance_windows (site_id, camera_id, starts_at, ends_at, reason, created_by)
             VALUES ($1, $2, $3, $4, 'planned work', 'test')",
        )
        .bind(site)
        .bind(cam)
        .bind(a)
        .bind(b)
        .execute(store.pool())
        .await
        .unwrap();
    }
    let r = store.uptime(t0, h(10.0), None, None).await.unwrap();
    let a = &r.cameras[0];
    assert_eq!(a.camera, "cam-a");
    // Online: 1 h + (5 − 1.1) h + (9 − 5.5) h = 8.4 h of 10 h.
    assert_eq!(a.period_secs, 36000.0);
    assert_eq!(a.online_secs, 8.4 * 3600.0);
    assert!((a.uptime_percent - 84.0).abs() < 1e-9, "{}", a.uptime_percent);
    assert_eq!(a.degraded_secs, 1800.0);
    let outages: Vec<_> =
        a.outages.iter().map(|o| (o.start, o.end, o.state.as_str(), o.reason.as_str(), o.ongoing)).collect();
    assert_eq!(
        outages,
        vec![
            (h(1.0), h(1.1), "backing_off", "connection refused", false),
            (h(5.0), h(5.5), "degraded", "frozen picture", false),
            (h(9.0), h(10.0), "stopped", "shutdown", true),
        ]
    );
    let b = &r.cameras[1];
    assert_eq!((b.camera.as_str(), b.uptime_percent, b.outages.len()), ("cam-b", 0.0, 1));
    assert_eq!(b.outages[0].reason, "no status recorded");
    // Down until 2.5 h, but that was planned: neither up nor down.
    let c = &r.cameras[2];
    assert_eq!((c.period_secs, c.planned_secs, c.uptime_percent), (7.5 * 3600.0, 2.5 * 3600.0, 100.0), "{c:?}");
    assert!(c.outages.is_empty(), "{c:?}");
    // Counted from its creation (its first 2 s starting are commissioning): 100%.
    let d = &r.cameras[3];
    assert_eq!((d.camera.as_str(), d.period_secs), ("cam-d", 6.0 * 3600.0 - 2.0));
    assert_eq!(d.uptime_percent, 100.0, "{d:?}");
    // Counted until its removal.
    let e = &r.cameras[4];
    assert_eq!((e.camera.as_str(), e.period_secs, e.uptime_percent), ("cam-e", 3.5 * 3600.0, 100.0));
    assert!(e.outages.is_empty(), "{e:?}");
    // Unreachable from 4 h to 5 h, of which the last half hour was planned.
    let f = &r.cameras[5];
    assert_eq!((f.camera.as_str(), f.period_secs, f.online_secs), ("cam-f", 5.5 * 3600.0 - 1.0, 5.0 * 3600.0));
    assert_eq!(f.outages.len(), 1, "{f:?}");
    let o = &f.outages[0];
    assert_eq!(
        (o.start, o.end, o.secs, o.state.as_str()),
        (h(4.0) + chrono::Duration::seconds(1), h(4.5), 1799.0, "starting")
    );
    // A camera created after the period is not in it.
    let before_d = store.uptime(t0, h(3.0), Some("s2"), None).await.unwrap();
    assert_eq!(before_d.cameras.iter().map(|c| c.camera.as_str()).collect::<Vec<_>>(), ["cam-c", "cam-e"]);
    // Site s1: (8.4 + 0) of 20 camera-hours.
    assert_eq!(r.sites[0].site, "s1");
    assert!((r.sites[0].uptime_percent - 42.0).abs() < 1e-9, "{:?}", r.sites[0]);
    assert_eq!(r.sites[0].outages, 4);
    // One site, one camera.
    let r = store.uptime(t0, h(10.0), Some("s2"), None).await.unwrap();
    assert_eq!(r.cameras.len(), 4);
    let r = store.uptime(h(1.0), h(1.1), None, Some("cam-a")).await.unwrap();
    assert_eq!(r.cameras[0].uptime_percent, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_samples_read_back_as_series_and_expire_after_two_days() {
    use varta_store::samples::{CameraSample, NodeSample};
    let (_, store) = setup_db("samples").await;
    let node = uuid::Uuid::now_v7();
    let cam =
        |id: &str, fps: f32| CameraSample { camera: id.into(), fps, kbps: 800.0, decode_errors: 0, analysed_fps: 2.0 };
    for (i, fps) in [10.0, 12.5].into_iter().enumerate() {
        let n = NodeSample {
            cameras: 2,
            capacity: 8,
            decoded_fps: 2.0 * fps,
            analysed_fps: 4.0,
            cpu_percent: 30.0 + i as f32,
        };
        store.record_samples(node, "n1", &n, &[cam("cam-a", fps), cam("cam-b", fps + 1.0)]).await.unwrap();
    }
    // A sample from three days ago, as an old node would have left it.
    sqlx::query(
        "INSERT INTO node_samples (node_id, node, at, cameras, capacity, decoded_fps, analysed_fps, cpu_percent)
         VALUES ($1, 'n1', now() - interval '3 days', 1, 8, 1, 1, 1)",
    )
    .bind(node)
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO camera_samples (camera_id, at, node, fps, kbps, decode_errors, analysed_fps)
         VALUES ('cam-a', now() - interval '3 days', 'n1', 1, 1, 0, 1)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let since = Utc::now() - Days::hours(1);
    let nodes = store.node_series(since).await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!((nodes[0].node.as_str(), nodes[0].cpu_percent.clone()), ("n1", vec![30.0, 31.0]));
    let cams = store.camera_series(since, None).await.unwrap();
    let fps: Vec<(String, Vec<f32>)> = cams.iter().map(|c| (c.camera.clone(), c.fps.clone())).collect();
    assert_eq!(fps, [("cam-a".into(), vec![10.0, 12.5]), ("cam-b".into(), vec![11.0, 13.5])]);
    assert_eq!(store.camera_series(since, Some("cam-b")).await.unwrap().len(), 1);
    let old = scalar_of(&store, "SELECT count(*) FROM node_samples WHERE at < now() - interval '2 days'").await;
    assert_eq!(old, 1, "the old sample is there before the clean-up");
    assert_eq!(store.delete_old_samples().await.unwrap(), 2, "one node and one camera sample older than 48 h");
    assert_eq!(store.node_series(Utc::now() - Days::days(4)).await.unwrap()[0].at.len(), 2);
}

async fn scalar_of(store: &varta_store::Store, q: &str) -> i64 {
    sqlx::query_scalar(q).fetch_one(store.pool()).await.unwrap()
}

/// A person on `cam-a` for 4 s from `t`, ended when `phase` is `Ended`.
fn four_second_event(
    id: uuid::Uuid,
    t: chrono::DateTime<Utc>,
    phase: varta_core::event::EventPhase,
) -> varta_core::event::EventRecord {
    varta_core::event::EventRecord {
        id,
        camera: "cam-a".into(),
        track_id: 7,
        class: "person".into(),
        score: 0.8,
        bbox: [1.0, 2.0, 3.0, 4.0],
        started_at: t,
        last_seen_at: t + Days::seconds(4),
        ended_at: (phase == varta_core::event::EventPhase::Ended).then_some(t + Days::seconds(4)),
        end_reason: None,
        frames: 8,
        rule: "presence".into(),
        alert: false,
        zone: None,
        snapshot: None,
        phase,
        run_id: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_events_clip_is_recorded_on_its_row_once_whatever_the_replays() {
    use varta_core::event::{ClipRecord, EventPhase, StoreMsg};
    let (_, store) = setup_db("clips").await;
    let mut w = varta_store::writer::Writer::new(store.clone(), "n1");
    let t = Utc::now() - Days::seconds(30);
    let ev = |id: uuid::Uuid, phase| four_second_event(id, t, phase);
    let clip = |id: uuid::Uuid| ClipRecord {
        event_id: id,
        event_started_at: t,
        file: format!("{id}.mp4"),
        sha256: "ab".repeat(32),
        bytes: 123_456,
        secs: 19.5,
    };
    let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    // One event stored before its clip, one in the same batch as its clip.
    w.write_batch(&[StoreMsg::Event(ev(a, EventPhase::Started))]).await.unwrap();
    w.write_batch(&[StoreMsg::Event(ev(a, EventPhase::Ended)), StoreMsg::Clip(clip(a))]).await.unwrap();
    w.write_batch(&[StoreMsg::Event(ev(b, EventPhase::Started)), StoreMsg::Clip(clip(b))]).await.unwrap();
    // A replay of the log (after a crash) writes the same again.
    w.write_batch(&[StoreMsg::Event(ev(b, EventPhase::Started)), StoreMsg::Clip(clip(b))]).await.unwrap();
    let rows: Vec<(uuid::Uuid, String, String, i64, f64)> =
        sqlx::query_as("SELECT id, clip, clip_sha256, clip_bytes, clip_secs FROM events ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(
        rows,
        [a, b].map(|id| (id, format!("{id}.mp4"), "ab".repeat(32), 123_456, 19.5)).to_vec(),
        "each event once, with its clip"
    );
    // A clip whose event is not (yet, or any more) stored changes nothing and stops
    // nothing: the log's writer goes on.
    let orphan = clip(uuid::Uuid::now_v7());
    w.write_batch(&[StoreMsg::Clip(orphan)]).await.unwrap();
    assert_eq!(scalar_of(&store, "SELECT count(*) FROM events WHERE clip IS NOT NULL").await, 2);
}

/// Issue #22: the writer signs an ended event's manifest from its row (ids, camera,
/// times, the hashes of its snapshot, crop and clip as written), again whenever its
/// evidence changes; replays sign the same bytes; an open event has no manifest.
#[tokio::test(flavor = "multi_thread")]
async fn an_ended_events_manifest_is_signed_over_its_files_hashes() {
    use varta_core::event::{ClipRecord, EventPhase, EventRecord, SnapshotRecord, StoreMsg};
    use varta_store::evidence::{verify_signature, Manifest, NodeKey};
    let (_, store) = setup_db("manifests").await;
    let key = std::sync::Arc::new(NodeKey::from_seed([3; 32]));
    store.register_node_key("n1", &key).await.unwrap();
    // The same id for another node's key is refused.
    assert!(store.register_node_key("n2", &key).await.is_err());
    let mut w = varta_store::writer::Writer::new(store.clone(), "n1");
    w.signer = Some(key.clone());
    let t = Utc::now() - Days::seconds(30);
    let ev =
        |id: uuid::Uuid, phase| EventRecord { snapshot: Some(format!("{id}.jpg")), ..four_second_event(id, t, phase) };
    let pictures = |id: uuid::Uuid| SnapshotRecord {
        event_id: id,
        event_started_at: t,
        snapshot_sha256: "11".repeat(32),
        crop_sha256: "22".repeat(32),
    };
    let clip = |id: uuid::Uuid| ClipRecord {
        event_id: id,
        event_started_at: t,
        file: format!("{id}.mp4"),
        sha256: "33".repeat(32),
        bytes: 1000,
        secs: 9.0,
    };
    let (a, open) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let batches = [
        vec![StoreMsg::Event(ev(a, EventPhase::Started)), StoreMsg::Event(ev(open, EventPhase::Started))],
        // The hashes may come after the end (the snapshot thread journals them after
        // the files are written).
        vec![StoreMsg::Event(ev(a, EventPhase::Ended)), StoreMsg::Snapshot(pictures(open))],
        vec![StoreMsg::Snapshot(pictures(a))],
        vec![StoreMsg::Clip(clip(a))],
    ];
    for b in &batches {
        w.write_batch(b).await.unwrap();
    }
    let row = || async {
        sqlx::query_as::<_, (Option<String>, Option<String>, Option<String>)>(
            "SELECT manifest, manifest_sig, manifest_key FROM events WHERE id = $1",
        )
        .bind(a)
        .fetch_one(store.pool())
        .await
        .unwrap()
    };
    let (m, sig, kid) = row().await;
    let (m, sig) = (m.expect("signed"), sig.unwrap());
    assert_eq!(kid.as_deref(), Some(key.id()));
    let registered = store.node_key(key.id()).await.unwrap().expect("registered");
    verify_signature(&registered.public_key, m.as_bytes(), &sig).unwrap();
    let parsed: Manifest = serde_json::from_str(&m).unwrap();
    assert_eq!((parsed.event_id, parsed.camera.as_str(), parsed.node.as_str()), (a, "cam-a", "n1"));
    assert_eq!(parsed.site.as_deref(), Some("s1"));
    let files: Vec<(&str, String, String)> =
        parsed.files.iter().map(|f| (f.role.as_str(), f.name.clone(), f.sha256.clone())).collect();
    assert_eq!(
        files,
        vec![
            ("snapshot", format!("{a}.jpg"), "11".repeat(32)),
            ("crop", format!("{a}.crop.jpg"), "22".repeat(32)),
            ("clip", format!("{a}.mp4"), "33".repeat(32)),
        ]
    );
    // A replay of the whole log signs the same bytes (Ed25519 is deterministic).
    for b in &batches {
        w.write_batch(b).await.unwrap();
    }
    assert_eq!(row().await, (Some(m), Some(sig), kid));
    // The open event has its hashes but no manifest yet.
    let open_row: (Option<String>, Option<String>) =
        sqlx::query_as("SELECT snapshot_sha256, manifest FROM events WHERE id = $1")
            .bind(open)
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(open_row, (Some("11".repeat(32)), None));
}
