//! Two `varta serve` nodes share 16 simulated cameras through leases in PostgreSQL:
//! they split them; one is killed with SIGKILL and the other holds all 16, streaming,
//! within one lease TTL + 5 s; the first comes back and they split again. The lease
//! log must show no camera held by two nodes at once. A node whose clock runs ten
//! minutes ahead writes the shared history in database time.

use sqlx::{Connection, Row};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use varta_e2e::*;

const CAMERAS: usize = 16;
const TTL: f64 = 6.0;

/// A fresh database with an admin token, a simulator with `cameras` cameras, and
/// the configs of node-a and node-b (API ports `ports`) in a fresh folder.
struct Rig {
    db: String,
    token: String,
    dir: std::path::PathBuf,
    ports: [u16; 2],
    cfgs: [std::path::PathBuf; 2],
    _sim: Proc,
}

impl Rig {
    async fn new(name: &str, cameras: usize) -> Rig {
        let db = fresh_database(name).await;
        let token = {
            let db = db.clone();
            let user = format!("{name}-admin");
            tokio::task::spawn_blocking(move || {
                varta().args(["migrate"]).env("DATABASE_URL", &db).output().unwrap();
                token_for(&db, &user, "admin")
            })
            .await
            .unwrap()
        };
        let dir = std::env::temp_dir().join(format!("varta-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sim_port = free_port();
        let mut sim_cmd = varta();
        sim_cmd
            .args(["sim", "--cameras", &cameras.to_string(), "--listen", &format!("127.0.0.1:{sim_port}"), "--clip"])
            .arg(clip());
        let _sim = Proc::spawn(sim_cmd, dir.join("sim.log"));
        let ports = [free_port(), free_port()];
        let cfgs = [dir.join("a.toml"), dir.join("b.toml")];
        for (i, node) in ["node-a", "node-b"].into_iter().enumerate() {
            std::fs::write(&cfgs[i], config(node, sim_port, ports[i], &dir, cameras)).unwrap();
        }
        Rig { db, token, dir, ports, cfgs, _sim }
    }
}

fn config(name: &str, sim_port: u16, api_port: u16, dir: &Path, cameras: usize) -> String {
    let mut s = format!(
        "[node]\nname = \"{name}\"\napi_listen = \"127.0.0.1:{api_port}\"\nlease_ttl_secs = {TTL:.1}\n\
         lease_renew_secs = 1.0\n\n\
         [detect]\nmodels = \"{}\"\nworkers = 1\nsnapshot_dir = \"{}\"\n\n\
         [ingest]\nbackoff_initial_secs = 0.5\nconnect_timeout_secs = 2.0\n\n\
         [store]\nspool_dir = \"{}\"\n\n\
         [[sites]]\nid = \"site-a\"\nname = \"A\"\n",
        root().join("models/models.toml").display(),
        dir.join(format!("{name}-snapshots")).display(),
        dir.join(format!("{name}-spool")).display(),
    );
    for i in 1..=cameras {
        s += &format!(
            "\n[[cameras]]\nid = \"cam-{i:02}\"\nsite = \"site-a\"\nurl = \"rtsp://127.0.0.1:{sim_port}/cam/{i}\"\n\
             analysis_fps = 0.5\ndecode = \"keyframes\"\n"
        );
    }
    s
}

/// Streaming cameras in a node's API.
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn streaming(api_port: u16) -> usize {
    streaming_cameras(api_port, TOKEN.get().expect("token made"))
}

fn serve(name: &str, cfg: &Path, db: &str, dir: &Path, n: u32) -> Proc {
    let mut c = varta();
    c.arg("serve").arg("--config").arg(cfg).env("DATABASE_URL", db);
    Proc::spawn(c, dir.join(format!("{name}-{n}.log")))
}

async fn wait_split(db: &str, ports: [u16; 2], what: &str, timeout: Duration) {
    let end = Instant::now() + timeout;
    loop {
        let h = lease_holders(db).await;
        let s = [streaming(ports[0]), streaming(ports[1])];
        if h.get("node-a") == Some(&8) && h.get("node-b") == Some(&8) && s == [8, 8] {
            return;
        }
        assert!(Instant::now() < end, "{what}: leases {h:?}, streaming {s:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_split_cameras_take_over_a_dead_one_and_rebalance() {
    let Rig { db, token, dir, ports, cfgs: [cfg_a, cfg_b], _sim } = Rig::new("leases", CAMERAS).await;
    TOKEN.set(token).unwrap();

    let mut a = serve("node-a", &cfg_a, &db, &dir, 1);
    wait_for("node-a up", Duration::from_secs(60), || get_json(&format!("http://127.0.0.1:{}/healthz", ports[0])));
    let mut b = serve("node-b", &cfg_b, &db, &dir, 1);
    wait_split(&db, ports, "two nodes split the cameras", Duration::from_secs(60)).await;
    // Each holds its share: both ready.
    for p in ports {
        let r = get_json(&format!("http://127.0.0.1:{p}/readyz")).expect("ready");
        assert_eq!(r["status"], "ready", "{r}");
    }

    // SIGKILL node-a: node-b holds all 16, streaming, within one TTL + 5 s.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(a.child.id() as i32, libc::SIGKILL) };
    a.child.wait().unwrap();
    let killed = Instant::now();
    let limit = Duration::from_secs_f64(TTL + 5.0);
    loop {
        let h = lease_holders(&db).await;
        let s = streaming(ports[1]);
        if h.get("node-b") == Some(&CAMERAS) && s == CAMERAS {
            break;
        }
        assert!(killed.elapsed() < limit, "after {:?}: leases {h:?}, node-b streaming {s}", killed.elapsed());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let takeover = killed.elapsed();
    eprintln!("takeover of a SIGKILLed node's cameras: {takeover:?} (TTL {TTL} s)");

    // node-a comes back: they split again.
    let mut a2 = serve("node-a", &cfg_a, &db, &dir, 2);
    wait_split(&db, ports, "the cameras rebalance", Duration::from_secs(60)).await;

    // A clean stop hands the leases back at once.
    assert_eq!(b.terminate(Duration::from_secs(30)), Some(0), "{}", b.output());
    let end = Instant::now() + Duration::from_secs(2 * TTL as u64);
    while lease_holders(&db).await.get("node-a") != Some(&CAMERAS) {
        assert!(Instant::now() < end, "node-a took node-b's cameras after its clean stop");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(a2.terminate(Duration::from_secs(30)), Some(0), "{}", a2.output());

    // The lease log: per camera, each holding ends before the next begins.
    let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
    let rows = sqlx::query(
        "SELECT l.camera_id, n.name, l.acquired_at, l.released_at, l.release_reason
         FROM camera_lease_log l JOIN nodes n ON n.id = l.node_id ORDER BY l.camera_id, l.acquired_at",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    type Holding = (String, chrono::DateTime<chrono::Utc>, Option<chrono::DateTime<chrono::Utc>>, Option<String>);
    let mut by_cam: BTreeMap<String, Vec<Holding>> = BTreeMap::new();
    for r in &rows {
        by_cam.entry(r.get(0)).or_default().push((r.get(1), r.get(2), r.get(3), r.get(4)));
    }
    assert_eq!(by_cam.len(), CAMERAS);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for (cam, hs) in &by_cam {
        for w in hs.windows(2) {
            let end = w[0].2.unwrap_or_else(|| panic!("{cam}: an earlier holding is still open: {hs:?}"));
            assert!(end <= w[1].1, "{cam} held by two nodes at once: {hs:?}");
        }
        for h in hs {
            assert!(h.2.is_some(), "{cam}: holding not closed after both stopped: {hs:?}");
            *reasons.entry(h.3.clone().unwrap_or_default()).or_default() += 1;
        }
    }
    eprintln!("lease log: {} holdings, release reasons {reasons:?}", rows.len());
    assert_eq!(reasons.get("expired"), Some(&8), "the killed node's 8 leases expired: {reasons:?}");
    assert!(reasons.get("rebalance").is_some_and(|&n| n >= 8), "node-b handed back 8: {reasons:?}");
    assert_eq!(reasons.get("shutdown"), Some(&(CAMERAS + 8)), "{reasons:?}");
    // The lost cameras' downtime is on record.
    let lost: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM camera_status WHERE state = 'stopped' AND reason LIKE 'node node-a lost%'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(lost, 8);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_clock_runs_ten_minutes_ahead_writes_history_in_database_time() {
    // Issue #19: with one node's wall clock 10 minutes ahead, after it died and the
    // other took its cameras, `/api/v1/sites` showed them `stopped: node … lost`
    // "since" a time in the future for the next 10 minutes.
    const N: usize = 2;
    let Rig { db, token, dir, ports, cfgs: [cfg_a, cfg_b], _sim } = Rig::new("clock", N).await;

    // node-a, ten minutes ahead, takes both cameras.
    let mut ca = varta_with_clock("+600s");
    ca.arg("serve").arg("--config").arg(&cfg_a).env("DATABASE_URL", &db);
    let mut a = Proc::spawn(ca, dir.join("node-a.log"));
    let end = Instant::now() + Duration::from_secs(60);
    while streaming_cameras(ports[0], &token) < N {
        assert!(Instant::now() < end, "node-a never streamed: {}", a.output());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(a.output().contains("ahead of the database's"), "no clock warning at start: {}", a.output());
    let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
    let future: i64 = sqlx::query_scalar("SELECT count(*) FROM camera_status WHERE at > now() + interval '5 seconds'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(future, 0, "node-a stamped camera states with its own clock");

    // node-b joins; node-a dies.
    let mut b = serve("node-b", &cfg_b, &db, &dir, 1);
    wait_for("node-b up", Duration::from_secs(60), || get_json(&format!("http://127.0.0.1:{}/healthz", ports[1])));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(a.child.id() as i32, libc::SIGKILL) };
    a.child.wait().unwrap();
    let killed = Instant::now();
    while streaming_cameras(ports[1], &token) < N {
        assert!(killed.elapsed() < Duration::from_secs_f64(TTL + 10.0), "node-b did not take over: {}", b.output());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The history says so at once: the takeover row is not in the future, so the
    // live state is the newest.
    let took = Instant::now();
    let sites = format!("http://127.0.0.1:{}/api/v1/sites", ports[1]);
    let live = |v: &serde_json::Value| {
        v.as_array()
            .map(|s| s.iter().flat_map(|s| s["cameras"].as_array().cloned().unwrap_or_default()).collect::<Vec<_>>())
    };
    loop {
        let cams = get_json_as(&sites, &token).as_ref().and_then(live).unwrap_or_default();
        if cams.len() == N && cams.iter().all(|c| c["state"] == "streaming") {
            break;
        }
        assert!(took.elapsed() < Duration::from_secs(5), "sites after the takeover: {cams:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("sites show the live state {:?} after node-b streamed", took.elapsed());
    let future: i64 = sqlx::query_scalar("SELECT count(*) FROM camera_status WHERE at > now() + interval '5 seconds'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(future, 0);
    // The skew is reported with the node.
    let nodes = get_json_as(&format!("http://127.0.0.1:{}/api/v1/nodes", ports[1]), &token).unwrap();
    let a_row = nodes.as_array().unwrap().iter().find(|n| n["name"] == "node-a").cloned().unwrap();
    let offset = a_row["clock_offset_ms"].as_i64().unwrap();
    assert!((-605_000..=-595_000).contains(&offset), "node-a clock_offset_ms {offset}");
    let b_row = nodes.as_array().unwrap().iter().find(|n| n["name"] == "node-b").cloned().unwrap();
    assert!(b_row["clock_offset_ms"].as_i64().unwrap().abs() < 5_000, "{b_row}");
    assert_eq!(b.terminate(Duration::from_secs(30)), Some(0), "{}", b.output());
    let _ = std::fs::remove_dir_all(&dir);
}
