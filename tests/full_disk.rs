//! A full disk under the event log: `varta serve` says so (`/readyz` fails with the
//! reason, `varta_wal_failing` 1, an error in its log), holds detection back
//! instead of dropping, and once there is room again everything it made reaches
//! PostgreSQL, once.
//!
//! The event log's folder is a 2 MiB tmpfs of the test's own, filled up but for a
//! few KiB (mounting needs root, as the test suite runs; see README.md).

use sqlx::Connection;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use varta_e2e::*;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(at).status();
        assert!(
            st.is_ok_and(|s| s.success()),
            "cannot mount a tmpfs at {} (the test suite runs as root: ./scripts/test)",
            at.display()
        );
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn ledger_ids(p: &Path) -> HashSet<String> {
    complete_lines(&std::fs::read(p).unwrap_or_default())
        .filter_map(|l| l.split(' ').next().filter(|id| uuid::Uuid::parse_str(id).is_ok()).map(str::to_owned))
        .collect()
}

/// `/readyz`: the status code and the body.
fn readyz(api: &str) -> Option<(u16, serde_json::Value)> {
    match ureq::get(&format!("{api}/readyz")).timeout(Duration::from_secs(5)).call() {
        Ok(r) => Some((r.status(), r.into_json().ok()?)),
        Err(ureq::Error::Status(code, r)) => Some((code, r.into_json().ok()?)),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_under_the_event_log_fails_readiness_holds_detection_back_and_loses_nothing() {
    let db = fresh_database("varta_full_disk").await;
    let dir = root().join("target/e2e-full-disk").join(format!("run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let spool = dir.join("spool");
    let _fs = Tmpfs::mount(&spool, "2m");
    let (sim_port, api_port) = (free_port(), free_port());
    let api = format!("http://127.0.0.1:{api_port}");
    let ledger = dir.join("ledger");
    let mut cfg = format!(
        "[node]\nname = \"full-disk\"\napi_listen = \"127.0.0.1:{api_port}\"\n\n\
         [detect]\nmodels = \"{}\"\nworkers = 1\nsnapshot_dir = \"{}\"\n\n\
         [store]\nflush_ms = 100\nspool_dir = \"{}\"\n\n\
         [[sites]]\nid = \"site-a\"\nname = \"A\"\n",
        root().join("models/models.toml").display(),
        dir.join("snapshots").display(),
        spool.display(),
    );
    for i in 1..=2 {
        cfg += &format!(
            "\n[[cameras]]\nid = \"cam-{i}\"\nsite = \"site-a\"\nurl = \"rtsp://127.0.0.1:{sim_port}/cam/{i}\"\n\
             classes = [\"person\"]\n"
        );
    }
    let cfg_path = dir.join("full-disk.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut sim_cmd = varta();
    sim_cmd.args(["sim", "--cameras", "2", "--listen", &format!("127.0.0.1:{sim_port}"), "--clip"]).arg(clip());
    let _sim = Proc::spawn(sim_cmd, dir.join("sim.log"));
    let mut c = varta();
    c.arg("serve").arg("--config").arg(&cfg_path).env("DATABASE_URL", &db).env("VARTA_TEST_LEDGER", &ledger);
    let mut serve = Proc::spawn(c, dir.join("serve.log"));
    wait_for("events", Duration::from_secs(60), || (!ledger_ids(&ledger).is_empty()).then_some(()));

    // The disk fills up: all but 8 KiB taken by another file.
    let filler = spool.join("filler");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "dd if=/dev/zero of={} bs=4k count=1000000 2>/dev/null; truncate -s -8K {}",
            filler.display(),
            filler.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    let (code, body) = wait_for("readyz to fail on the full disk", Duration::from_secs(60), || {
        readyz(&api).filter(|(code, _)| *code == 503)
    });
    assert_eq!(code, 503);
    let msg = body["error"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(msg.contains("event log on disk cannot be written"), "{body}");
    let metrics = metrics_text(&api, &token_for(&db, "disk-admin", "admin"));
    assert!(metrics.contains("varta_wal_failing 1"), "{metrics}");
    assert!(serve.output().contains("cannot write the event log"), "the error is in the log");
    // Detection is held back while the disk is full: nothing more becomes durable.
    let stuck = ledger_ids(&ledger).len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(ledger_ids(&ledger).len(), stuck, "records cannot be durable on a full disk");

    // Room again: the held records are written, and new ones follow.
    std::fs::remove_file(&filler).unwrap();
    wait_for("readyz again", Duration::from_secs(60), || readyz(&api).filter(|(code, _)| *code == 200));
    wait_for("new events", Duration::from_secs(60), || (ledger_ids(&ledger).len() > stuck + 5).then_some(()));
    assert_eq!(serve.terminate(Duration::from_secs(30)), Some(0), "{}", serve.output());

    let made = ledger_ids(&ledger);
    let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
    let stored: Vec<String> = sqlx::query_scalar("SELECT id::text FROM events").fetch_all(&mut c).await.unwrap();
    let distinct: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), distinct.len(), "an event stored twice");
    let lost = made.iter().filter(|id| !distinct.contains(*id)).count();
    assert_eq!(lost, 0, "durable events lost");
    let open: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE ended_at IS NULL").fetch_one(&mut c).await.unwrap();
    assert_eq!(open, 0);
    eprintln!("{} events made durable, {} stored", made.len(), stored.len());
    drop(_fs);
    let _ = std::fs::remove_dir_all(&dir);
}
