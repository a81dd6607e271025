//! A rolling restart as a Kubernetes StatefulSet rollout does it (issue #23): three
//! `varta serve` nodes share 24 simulated cameras through leases; each node in turn
//! gets SIGTERM and exits; once the other two hold its cameras (a pod is recreated in
//! seconds, longer than a lease renewal) it starts again under the same name
//! (`VARTA_NODE_NAME`), and the next is restarted only once it is ready and the
//! cameras are spread again (the others hand some back to it).
//!
//! Measured per camera, from PostgreSQL's own records: the longest time no node held
//! its lease (the lease log), and the longest time between one node's `stopped` and
//! the next node's `streaming` (camera_status: no node analysing it). Checked: no
//! holder for at most `lease_renew_secs` + 2 s (the target), no analysis for
//! at most that plus one GOP (a new decoder waits for the camera's next keyframe),
//! never two holders at once, and every event made durable (the ledger) is stored
//! exactly once.

use sqlx::{Connection, Row};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};
use varta_e2e::*;

const CAMERAS: usize = 24;
const NODES: usize = 3;
const RENEW: f64 = 1.0;
const TTL: f64 = 6.0;
/// Keyframe interval of the simulator's clip (vtest.mp4), seconds.
const GOP: f64 = 2.0;

fn config(api_port: u16, sim_port: u16, dir: &Path, node: usize) -> String {
    // The node's name is not here: VARTA_NODE_NAME gives it, as a StatefulSet does.
    let mut s = format!(
        "[node]\napi_listen = \"127.0.0.1:{api_port}\"\nlease_ttl_secs = {TTL:.1}\nlease_renew_secs = {RENEW:.1}\n\n\
         [detect]\nmodels = \"{}\"\nworkers = 1\nsnapshot_dir = \"{}\"\n\n\
         [clips]\nenabled = false\n\n\
         [ingest]\nbackoff_initial_secs = 0.5\nconnect_timeout_secs = 2.0\n\n\
         [store]\nflush_ms = 100\nspool_dir = \"{}\"\n\n\
         [[sites]]\nid = \"site-a\"\nname = \"A\"\n",
        root().join("models/models.toml").display(),
        dir.join(format!("node-{node}-snapshots")).display(),
        dir.join(format!("node-{node}-spool")).display(),
    );
    for i in 1..=CAMERAS {
        s += &format!(
            "\n[[cameras]]\nid = \"cam-{i:02}\"\nsite = \"site-a\"\nurl = \"rtsp://127.0.0.1:{sim_port}/cam/{i}\"\n\
             analysis_fps = 0.5\ndecode = \"keyframes\"\nclasses = [\"person\"]\n"
        );
    }
    s
}

struct Node {
    name: String,
    cfg: std::path::PathBuf,
    port: u16,
    ledger: std::path::PathBuf,
    starts: u32,
}

impl Node {
    fn start(&mut self, db: &str, dir: &Path) -> Proc {
        self.starts += 1;
        let mut c = varta();
        c.arg("serve")
            .arg("--config")
            .arg(&self.cfg)
            .env("DATABASE_URL", db)
            .env("VARTA_NODE_NAME", &self.name)
            .env("VARTA_TEST_LEDGER", &self.ledger);
        Proc::spawn(c, dir.join(format!("{}-{}.log", self.name, self.starts)))
    }
}

/// Waits until every node holds and streams CAMERAS / NODES cameras.
async fn wait_spread(db: &str, nodes: &[Node], token: &str, what: &str) {
    let share = CAMERAS / NODES;
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        let h = lease_holders(db).await;
        let s: Vec<usize> = nodes.iter().map(|n| streaming_cameras(n.port, token)).collect();
        if nodes.iter().all(|n| h.get(&n.name) == Some(&share)) && s.iter().all(|&x| x == share) {
            return;
        }
        assert!(Instant::now() < end, "{what}: leases {h:?}, streaming {s:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Event ids in a ledger (one line `ID CAMERA UNIX_MS` per durable `started` record;
/// a torn last line is skipped).
fn ledger_ids(path: &Path) -> HashSet<String> {
    let bytes = std::fs::read(path).unwrap_or_default();
    complete_lines(&bytes).filter_map(|l| l.split(' ').next().map(str::to_owned)).collect()
}

/// p-th percentile (0..=100) of `v`, nearest rank.
fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_leaves_no_camera_unanalysed_for_long() {
    let db = fresh_database("rolling").await;
    let dir = std::env::temp_dir().join(format!("varta-rolling-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let token = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            varta().args(["migrate"]).env("DATABASE_URL", &db).output().unwrap();
            token_for(&db, "rolling-admin", "admin")
        })
        .await
        .unwrap()
    };
    let sim_port = free_port();
    let mut sim_cmd = varta();
    sim_cmd
        .args(["sim", "--cameras", &CAMERAS.to_string(), "--listen", &format!("127.0.0.1:{sim_port}"), "--clip"])
        .arg(clip());
    let _sim = Proc::spawn(sim_cmd, dir.join("sim.log"));
    let mut nodes: Vec<Node> = (0..NODES)
        .map(|i| {
            let port = free_port();
            let cfg = dir.join(format!("node-{i}.toml"));
            std::fs::write(&cfg, config(port, sim_port, &dir, i)).unwrap();
            Node { name: format!("varta-node-{i}"), cfg, port, ledger: dir.join(format!("ledger-{i}")), starts: 0 }
        })
        .collect();
    let mut procs: Vec<Proc> = nodes.iter_mut().map(|n| n.start(&db, &dir)).collect();
    wait_spread(&db, &nodes, &token, "three nodes spread the cameras").await;

    // The rollout: highest ordinal first, as a StatefulSet does.
    let rollout_start = chrono::Utc::now();
    for i in (0..NODES).rev() {
        let t0 = Instant::now();
        let code = procs[i].terminate(Duration::from_secs(60));
        assert_eq!(code, Some(0), "{} did not stop cleanly: {}", nodes[i].name, procs[i].output());
        let stopped = t0.elapsed();
        // A pod is recreated in seconds, longer than a lease renewal: the others take
        // its cameras first (waited for here), then hand some back to it once it is up.
        let others: Vec<String> = nodes.iter().filter(|n| n.name != nodes[i].name).map(|n| n.name.clone()).collect();
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let h = lease_holders(&db).await;
            if others.iter().map(|n| h.get(n).copied().unwrap_or(0)).sum::<usize>() == CAMERAS {
                break;
            }
            assert!(Instant::now() < end, "the others did not take {}'s cameras: {h:?}", nodes[i].name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let taken = t0.elapsed();
        procs[i] = nodes[i].start(&db, &dir);
        let port = nodes[i].port;
        wait_for("the restarted node ready", Duration::from_secs(90), || {
            get_json(&format!("http://127.0.0.1:{port}/readyz")).filter(|r| r["status"] == "ready")
        });
        let ready = t0.elapsed();
        wait_spread(&db, &nodes, &token, "the cameras spread again").await;
        eprintln!(
            "{}: stopped in {stopped:?}, its cameras taken by the others after {taken:?}, ready after {ready:?}, \
             cameras spread again after {:?}",
            nodes[i].name,
            t0.elapsed()
        );
    }
    let rollout_end = chrono::Utc::now();
    for (p, n) in procs.iter_mut().zip(&nodes) {
        assert_eq!(p.terminate(Duration::from_secs(60)), Some(0), "{}: {}", n.name, p.output());
    }

    let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
    // The lease log: per camera, no two holdings overlap; the gaps between them
    // during the rollout are the time nobody held the camera.
    type Holding = (chrono::DateTime<chrono::Utc>, Option<chrono::DateTime<chrono::Utc>>, String);
    let mut log: BTreeMap<String, Vec<Holding>> = BTreeMap::new();
    for r in sqlx::query(
        "SELECT l.camera_id, l.acquired_at, l.released_at, n.name
           FROM camera_lease_log l JOIN nodes n ON n.id = l.node_id ORDER BY l.camera_id, l.acquired_at",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    {
        log.entry(r.get(0)).or_default().push((r.get(1), r.get(2), r.get(3)));
    }
    assert_eq!(log.len(), CAMERAS);
    let mut unowned: Vec<f64> = Vec::new();
    for (cam, hs) in &log {
        let mut worst = 0.0f64;
        for w in hs.windows(2) {
            let end = w[0].1.unwrap_or_else(|| panic!("{cam}: a holding is still open: {hs:?}"));
            assert!(end <= w[1].0, "{cam} held by two nodes at once: {hs:?}");
            if w[1].0 > rollout_start && end < rollout_end {
                worst = worst.max((w[1].0 - end).num_milliseconds() as f64 / 1000.0);
            }
        }
        unowned.push(worst);
    }
    // Analysis: from the `stopped` a node records when it lets a camera go to the next
    // `streaming` (the next node's first frame), per camera, during the rollout.
    let rows: Vec<(String, chrono::DateTime<chrono::Utc>, String)> = sqlx::query_as(
        "SELECT camera_id, at, state FROM camera_status WHERE at BETWEEN $1 AND $2 ORDER BY camera_id, at",
    )
    .bind(rollout_start)
    .bind(rollout_end)
    .fetch_all(&mut c)
    .await
    .unwrap();
    let mut blind: HashMap<String, f64> = HashMap::new();
    let mut since: HashMap<String, chrono::DateTime<chrono::Utc>> = HashMap::new();
    for (cam, at, state) in rows {
        match state.as_str() {
            "stopped" => {
                since.entry(cam).or_insert(at);
            }
            "streaming" => {
                if let Some(t) = since.remove(&cam) {
                    let s = (at - t).num_milliseconds() as f64 / 1000.0;
                    let e = blind.entry(cam).or_default();
                    *e = e.max(s);
                }
            }
            _ => {}
        }
    }
    let blind: Vec<f64> = log.keys().map(|cam| blind.get(cam).copied().unwrap_or(0.0)).collect();
    let (u_max, u_p95) = (percentile(unowned.clone(), 100.0), percentile(unowned, 95.0));
    let (b_max, b_p95) = (percentile(blind.clone(), 100.0), percentile(blind, 95.0));
    eprintln!(
        "rolling restart of {NODES} nodes, {CAMERAS} cameras, lease_renew_secs {RENEW}: per camera, longest \
         unowned (lease log) max {u_max:.2} s, p95 {u_p95:.2} s; longest without analysis (stopped -> \
         streaming) max {b_max:.2} s, p95 {b_p95:.2} s"
    );
    // The target, lease_renew_secs + 2 s, on what Varta controls: the time
    // nobody holds a camera (freed leases are claimed at once, on the releasing
    // node's NOTIFY: seen 0.02-0.03 s). A new holder's first picture also waits for
    // the camera's next keyframe (the simulator's clip has one every 2 s), and, now
    // and then, for a second connection: the simulator gives no data to a session
    // that joins its shared media while the previous holder's TEARDOWN is taking it
    // down, and the node reconnects after connect_timeout_secs (2 s). So the bound on
    // time without analysis is the target plus one GOP (seen, 6 runs: max 0.46-0.51 s in 3,
    // 2.88-2.89 s in the 3 with that reconnection; 3.35 s once under a
    // concurrent release build before claims were prompt).
    assert!(u_max <= RENEW + 2.0, "a camera had no holder for {u_max:.2} s");
    assert!(b_max <= RENEW + 2.0 + GOP, "a camera was not analysed for {b_max:.2} s");

    // Every durable event stored, once.
    let mut durable: HashSet<String> = HashSet::new();
    for n in &nodes {
        durable.extend(ledger_ids(&n.ledger));
    }
    let stored: Vec<String> = sqlx::query_scalar("SELECT id::text FROM events").fetch_all(&mut c).await.unwrap();
    let distinct: HashSet<&String> = stored.iter().collect();
    assert_eq!(distinct.len(), stored.len(), "an event stored twice");
    let lost: Vec<&String> = durable.iter().filter(|id| !distinct.contains(id)).collect();
    eprintln!("events: {} durable, {} stored, {} lost", durable.len(), stored.len(), lost.len());
    assert!(lost.is_empty(), "durable events not stored: {lost:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
