//! The NATS JetStream feed (issue #23) against Debian's `nats-server`: a node with
//! four simulated cameras publishes its events, alerts and camera status changes.
//! In the middle of the stream NATS is killed (SIGKILL) for 10 s, and 5 s into that
//! the cameras' simulator too (so that changes are certainly stored meanwhile: the
//! cameras go down, their events end); then both come back. Last the node stops, and a
//! `varta api` process, the second publisher of the region, sends what the node's
//! shutdown stored. A durable pull consumer (the situation centre) must have
//! received every change PostgreSQL holds, exactly once by message id, and
//! JetStream must have stored each once (its deduplication drops what the
//! publisher sent again after the outage).

use futures_util::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use varta_e2e::*;

const CAMERAS: usize = 4;
const OUTAGE: Duration = Duration::from_secs(10);

fn nats_server(port: u16, dir: &Path, n: u32) -> Proc {
    let mut c = Command::new("nats-server");
    c.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"]).arg(dir.join("jetstream"));
    Proc::spawn(c, dir.join(format!("nats-{n}.log")))
}

fn feed_section(nats_port: u16) -> String {
    format!(
        "[feed]\nnats_url = \"nats://127.0.0.1:{nats_port}\"\nstream = \"VARTA_TEST\"\n\
         duplicate_window_secs = 300.0\nack_timeout_secs = 1.0\nbatch_max = 64\n"
    )
}

fn node_config(api_port: u16, sim_port: u16, nats_port: u16, dir: &Path) -> String {
    let mut s = format!(
        "[node]\nname = \"feed-node\"\napi_listen = \"127.0.0.1:{api_port}\"\n\n\
         [ingest]\nbackoff_initial_secs = 0.5\nbackoff_max_secs = 2.0\nconnect_timeout_secs = 2.0\n\n\
         [detect]\nmodels = \"{}\"\nworkers = 1\nsnapshot_dir = \"{}\"\n\n\
         [clips]\nenabled = false\n\n\
         [store]\nflush_ms = 100\nspool_dir = \"{}\"\n\n{}\n\
         [[sites]]\nid = \"site-a\"\nname = \"A\"\n",
        root().join("models/models.toml").display(),
        dir.join("snapshots").display(),
        dir.join("spool").display(),
        feed_section(nats_port),
    );
    for i in 1..=CAMERAS {
        // A rule of its own: its events raise alerts, which the feed carries too.
        s += &format!(
            "\n[[cameras]]\nid = \"cam-{i}\"\nsite = \"site-a\"\nurl = \"rtsp://127.0.0.1:{sim_port}/cam/{i}\"\n\
             analysis_fps = 4.0\nclasses = [\"person\"]\n\
             [[cameras.rules]]\nname = \"people\"\nkind = \"presence\"\n"
        );
    }
    s
}

fn api_config(api_port: u16, nats_port: u16, dir: &Path) -> String {
    format!(
        "[node]\nname = \"feed-api\"\napi_listen = \"127.0.0.1:{api_port}\"\n\n\
         [detect]\nmodels = \"{}\"\nsnapshot_dir = \"{}\"\n\n{}",
        root().join("models/models.toml").display(),
        dir.join("api-snapshots").display(),
        feed_section(nats_port),
    )
}

/// One delivery to the consumer: the message id, JetStream's stream sequence, how
/// many times the server has delivered it, and whether our ack was confirmed.
#[derive(Clone, Debug)]
struct Delivery {
    msg_id: String,
    subject: String,
    stream_seq: u64,
    delivered: i64,
    acked: bool,
    payload: serde_json::Value,
    at: Instant,
}

/// The situation centre: a durable pull consumer on the stream, fetching and
/// acknowledging (with the server's confirmation) until told to stop, riding out
/// the server's absence.
async fn consume(nats_url: String, stream: &'static str, out: Arc<Mutex<Vec<Delivery>>>, stop: Arc<Mutex<bool>>) {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    let client = async_nats::ConnectOptions::new().retry_on_initial_connect().connect(nats_url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let consumer = loop {
        match js.get_stream(stream).await {
            Ok(s) => {
                let c = s
                    .get_or_create_consumer(
                        "situation-centre",
                        pull::Config {
                            durable_name: Some("situation-centre".into()),
                            ack_policy: AckPolicy::Explicit,
                            deliver_policy: DeliverPolicy::All,
                            ack_wait: Duration::from_secs(5),
                            ..Default::default()
                        },
                    )
                    .await;
                match c {
                    Ok(c) => break c,
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            // The node makes the stream.
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    while !*stop.lock().unwrap() {
        let batch = consumer.fetch().max_messages(100).expires(Duration::from_millis(500)).messages().await;
        let Ok(mut batch) = batch else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while let Some(m) = batch.next().await {
            let Ok(m) = m else { break };
            let info = m.info().unwrap();
            let (stream_seq, delivered) = (info.stream_sequence, info.delivered);
            let msg_id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            let subject = m.subject.to_string();
            let payload = serde_json::from_slice(&m.payload).unwrap_or_default();
            let acked = m.double_ack().await.is_ok();
            let at = Instant::now();
            out.lock().unwrap().push(Delivery { msg_id, subject, stream_seq, delivered, acked, payload, at });
        }
    }
}

async fn outbox(db: &str) -> i64 {
    scalar(db, "SELECT count(*) FROM feed_outbox").await
}

/// Every message id PostgreSQL says the feed must carry: each event's start and
/// (if ended) end, each alert, each plate read, each camera status transition.
async fn expected_ids(db: &str) -> BTreeSet<String> {
    use sqlx::{Connection, Row};
    let mut c = sqlx::PgConnection::connect(db).await.unwrap();
    let q = "SELECT id::text || ':started' FROM events
             UNION ALL SELECT id::text || ':ended' FROM events WHERE ended_at IS NOT NULL
             UNION ALL SELECT 'alert:' || id FROM alerts
             UNION ALL SELECT 'plate:' || id FROM plate_reads
             UNION ALL SELECT 'status:' || camera_id || ':' || state || ':' || (extract(epoch FROM at) * 1000000)::bigint
                         FROM camera_status";
    sqlx::query(q).fetch_all(&mut c).await.unwrap().iter().map(|r| r.get::<String, _>(0)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_durable_consumer_gets_every_change_once_across_a_nats_outage() {
    let db = fresh_database("feed").await;
    let dir = std::env::temp_dir().join(format!("varta-feed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let token = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || token_for(&db, "feed-admin", "admin")).await.unwrap()
    };

    let nats_port = free_port();
    let mut nats = nats_server(nats_port, &dir, 1);
    let nats_url = format!("nats://127.0.0.1:{nats_port}");
    let sim_port = free_port();
    let sim = |n: u32| {
        let mut c = varta();
        c.args(["sim", "--cameras", &CAMERAS.to_string(), "--listen", &format!("127.0.0.1:{sim_port}"), "--clip"])
            .arg(clip());
        Proc::spawn(c, dir.join(format!("sim-{n}.log")))
    };
    let mut cameras = sim(1);

    let node_port = free_port();
    let node_cfg = dir.join("node.toml");
    std::fs::write(&node_cfg, node_config(node_port, sim_port, nats_port, &dir)).unwrap();
    let mut cmd = varta();
    cmd.arg("serve").arg("--config").arg(&node_cfg).env("DATABASE_URL", &db);
    let mut node = Proc::spawn(cmd, dir.join("node.log"));
    let node_base = format!("http://127.0.0.1:{node_port}");

    // The API process: a second publisher, standing by while the node publishes.
    let api_port = free_port();
    let api_cfg = dir.join("api.toml");
    std::fs::write(&api_cfg, api_config(api_port, nats_port, &dir)).unwrap();
    let mut cmd = varta();
    cmd.arg("api").arg("--config").arg(&api_cfg).env("DATABASE_URL", &db);
    let api = Proc::spawn(cmd, dir.join("api.log"));
    let api_base = format!("http://127.0.0.1:{api_port}");

    let deliveries = Arc::new(Mutex::new(Vec::<Delivery>::new()));
    let stop = Arc::new(Mutex::new(false));
    let consumer = tokio::spawn(consume(nats_url.clone(), "VARTA_TEST", deliveries.clone(), stop.clone()));
    let received = |d: &Arc<Mutex<Vec<Delivery>>>| d.lock().unwrap().len();

    // Mid-stream: events are flowing to the consumer.
    let started = Instant::now();
    let events_received =
        |d: &Arc<Mutex<Vec<Delivery>>>| d.lock().unwrap().iter().filter(|d| d.msg_id.ends_with(":started")).count();
    wait_until("the first 3 events through the feed", Duration::from_secs(90), || async {
        events_received(&deliveries) >= 3
    })
    .await;
    let first = started.elapsed();
    let before = received(&deliveries);
    let stored_before = scalar(&db, "SELECT count(*) FROM events").await;

    // The outage, the cameras' with it.
    nats.child.kill().unwrap();
    nats.child.wait().unwrap();
    let down = Instant::now();
    let mut peak_backlog = 0;
    while down.elapsed() < OUTAGE / 2 {
        peak_backlog = peak_backlog.max(outbox(&db).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(cameras);
    while down.elapsed() < OUTAGE {
        peak_backlog = peak_backlog.max(outbox(&db).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let during = scalar(&db, "SELECT count(*) FROM events").await - stored_before;
    // Whichever process tried to send meanwhile (they take turns) says so.
    let failing = {
        let (n, a, t) = (node_base.clone(), api_base.clone(), token.clone());
        tokio::task::spawn_blocking(move || {
            metric(&metrics_text(&n, &t), "varta_feed_failing") + metric(&metrics_text(&a, &t), "varta_feed_failing")
        })
        .await
        .unwrap()
    };
    assert!(failing >= 1, "a publisher reports NATS away");
    assert!(peak_backlog > 0, "changes stored during the outage wait in the outbox");
    let _nats2 = nats_server(nats_port, &dir, 2);
    cameras = sim(2);

    // Back: the outbox drains, the consumer gets the rest.
    wait_until("the outbox to drain after the outage", Duration::from_secs(60), || async { outbox(&db).await == 0 })
        .await;
    let recovered = down.elapsed();
    let scrape = |base: &str| {
        let (b, t) = (base.to_owned(), token.clone());
        tokio::task::spawn_blocking(move || metrics_text(&b, &t))
    };
    let node_metrics = scrape(&node_base).await.unwrap();
    // Both processes publish, taking turns (one at a time holds the feed's lock).
    let api_sent_before = metric(&scrape(&api_base).await.unwrap(), "varta_feed_published_total");

    // The node stops (its open events end); the API process sends what that stored
    // (unless the node's publisher did before it exited) and what is stored after.
    assert_eq!(node.terminate(Duration::from_secs(60)), Some(0), "node: {}", node.output());
    cameras.terminate(Duration::from_secs(10));
    // A change stored now has only the API process to send it.
    let late = alerting_event(&db, "cam-1").await;
    wait_until("the API process to send the node's last changes", Duration::from_secs(60), || async {
        outbox(&db).await == 0
    })
    .await;
    let expected = expected_ids(&db).await;
    wait_until("the consumer to receive every change", Duration::from_secs(60), || {
        let have: BTreeSet<String> = deliveries.lock().unwrap().iter().map(|d| d.msg_id.clone()).collect();
        let done = expected.is_subset(&have);
        async move { done }
    })
    .await;
    // Anything stored twice, or anything new, would arrive within the consumer's
    // next fetches. Counted as distinct stream messages: a redelivery of one whose
    // ack was not confirmed (ack_wait 5 s) may land in the window, and is judged
    // with the other redeliveries below.
    let stream_messages =
        |d: &Arc<Mutex<Vec<Delivery>>>| d.lock().unwrap().iter().map(|d| d.stream_seq).collect::<BTreeSet<u64>>();
    let quiet = stream_messages(&deliveries);
    tokio::time::sleep(Duration::from_secs(2)).await;
    *stop.lock().unwrap() = true;
    consumer.await.unwrap();
    let api_metrics = scrape(&api_base).await.unwrap();
    drop(api);

    let all = deliveries.lock().unwrap().clone();
    // By stream sequence: what JetStream stored, and how often it was delivered.
    let mut by_seq: BTreeMap<u64, Vec<&Delivery>> = BTreeMap::new();
    for d in &all {
        by_seq.entry(d.stream_seq).or_default().push(d);
    }
    let mut seqs_by_id: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for d in &all {
        seqs_by_id.entry(&d.msg_id).or_default().insert(d.stream_seq);
    }
    let stored_twice: Vec<_> = seqs_by_id.iter().filter(|(_, s)| s.len() > 1).collect();
    assert!(stored_twice.is_empty(), "JetStream stored a change twice: {stored_twice:?}");
    let have: BTreeSet<String> = seqs_by_id.keys().map(|s| s.to_string()).collect();
    let missing: Vec<_> = expected.difference(&have).collect();
    assert!(missing.is_empty(), "{} changes never reached the consumer: {missing:?}", missing.len());
    let unexpected: Vec<_> = have.difference(&expected).collect();
    assert!(unexpected.is_empty(), "messages for changes PostgreSQL does not hold: {unexpected:?}");
    // A stored message is delivered again only when its ack was not confirmed, or
    // when NATS crashed after confirming it: the server writes a consumer's acks to
    // disk lazily, so after a SIGKILL it may resume from an older ack floor (and
    // says `delivered: 1` again). A consumer tells such a repeat by its stream
    // sequence (or Nats-Msg-Id). Nothing delivered after the restart is repeated.
    let mut redelivered = 0;
    for (seq, ds) in &by_seq {
        if ds.len() > 1 {
            redelivered += ds.len() - 1;
            for d in &ds[..ds.len() - 1] {
                assert!(
                    !d.acked || d.at < down,
                    "stream message {seq} delivered again after an ack confirmed after the restart: {ds:?}"
                );
            }
        }
    }
    assert_eq!(stream_messages(&deliveries), quiet, "nothing new arrived once every change had");
    // Subjects and bodies: PREFIX.SITE.CAMERA.KIND, and the body names the change.
    for d in &all {
        let kind = d.subject.rsplit('.').next().unwrap();
        assert!(d.subject.starts_with("varta.site-a.cam-"), "{}", d.subject);
        let body_kind = d.payload["kind"].as_str().unwrap_or("");
        assert_eq!(format!("{body_kind}s").replace("statuss", "status"), kind, "{d:?}");
        if kind == "events" {
            assert_eq!(
                format!("{}:{}", d.payload["id"].as_str().unwrap(), d.payload["phase"].as_str().unwrap()),
                d.msg_id
            );
        }
    }
    // Redeliveries the server counted (an ack not confirmed in time).
    let server_redeliveries = all.iter().filter(|d| d.delivered > 1).count();
    let count = |p: &str| expected.iter().filter(|i| i.contains(p)).count();
    let dups =
        metric(&node_metrics, "varta_feed_duplicates_total") + metric(&api_metrics, "varta_feed_duplicates_total");
    let api_sent = metric(&api_metrics, "varta_feed_published_total") - api_sent_before;
    println!(
        "feed: {} changes (events started {}, ended {}, alerts {}, status {}), {} deliveries, {} repeated \
         ({} of them counted as redeliveries by the server, the rest acks lost with the crash); first 3 events after {:.1} s, {} received before the outage; outage {:.0} s with {} \
         events started meanwhile, outbox peak {}; drained {:.1} s after NATS was killed; resent after the outage and \
         dropped by JetStream as duplicates (by then): {}; sent by the API process after the node stopped: {}",
        expected.len(),
        count(":started"),
        count(":ended"),
        count("alert:"),
        count("status:"),
        all.len(),
        redelivered,
        server_redeliveries,
        first.as_secs_f64(),
        before,
        OUTAGE.as_secs_f64(),
        during,
        peak_backlog,
        recovered.as_secs_f64(),
        dups,
        api_sent,
    );
    assert!(count(":ended") > 0 && count("alert:") > 0 && count("status:") > 0);
    assert!(api_sent > 0, "the API process sent the node's last changes once the node had stopped");
    assert!(have.contains(&format!("{late}:started")), "the change stored after the node stopped");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The outbox itself, through the statements the writer uses: each change once,
/// however often it is written again (a replay), plate reads included; nothing while
/// no publisher has been seen within a day.
#[tokio::test(flavor = "multi_thread")]
async fn the_outbox_holds_each_change_once_and_only_while_a_publisher_is_registered() {
    let db = fresh_database("feed_outbox").await;
    let now = chrono::Utc::now();
    sql(
        &db,
        &format!(
            "INSERT INTO sites (id, name) VALUES ('site.x', 'X');
         INSERT INTO cameras (id, site_id, name, url, analysis_fps, classes, min_score, enabled)
         VALUES ('cam-1', 'site.x', 'Gate', 'rtsp://127.0.0.1:1/cam/1', 2, '{{car}}', 0.4, true);
         SELECT varta_event_partition('{}');",
            now.date_naive()
        ),
    )
    .await;
    let ev = uuid::Uuid::now_v7();
    // One start time for every write of the event, as the writer's records carry.
    let t0 = now.to_rfc3339();
    let event = |ended: &str| {
        format!(
            "INSERT INTO events (id, camera_id, track_id, class, score, bbox, started_at, last_seen_at, ended_at,
                                 frames, node, rule, alert)
             VALUES ('{ev}', 'cam-1', 7, 'car', 0.9, '{{1,2,3,4}}', '{t0}', now(), {ended},
                     1, 't', 'cars', true)
             ON CONFLICT (id, started_at) DO UPDATE SET ended_at = COALESCE(EXCLUDED.ended_at, events.ended_at)"
        )
    };
    let plate = uuid::Uuid::now_v7();
    let read = format!(
        "INSERT INTO plate_reads (id, event_id, event_started_at, camera_id, site_id, track_id, read_at, text, plate,
                                  format, confidence, reads, bbox, node)
         SELECT '{plate}', e.id, e.started_at, e.camera_id, 'site.x', 7, now(), 'AX1234BI', 'AX1234BI', 'ua_civil',
                0.95, 3, '{{1,2,3,4}}', 't' FROM events e WHERE e.id = '{ev}'
         ON CONFLICT DO NOTHING"
    );
    let status = "INSERT INTO camera_status (camera_id, at, state, reason, node)
                  VALUES ('cam-1', '2026-12-01T10:00:00Z', 'streaming', 'frames arriving', 't')
                  ON CONFLICT (camera_id, at, state) DO NOTHING";

    // No publisher: nothing is kept.
    sql(&db, &event("NULL")).await;
    sql(&db, status).await;
    assert_eq!(scalar(&db, "SELECT count(*) FROM feed_outbox").await, 0);
    // A publisher last seen two days ago counts as gone.
    sql(&db, "INSERT INTO feed_publishers (node, seen_at) VALUES ('old', now() - interval '2 days')").await;
    sql(&db, "DELETE FROM camera_status").await;
    sql(&db, status).await;
    assert_eq!(scalar(&db, "SELECT count(*) FROM feed_outbox").await, 0);

    sql(&db, "DELETE FROM events; DELETE FROM alerts; DELETE FROM camera_status").await;
    varta_store::Store::connect(&db).await.unwrap().feed_register("n1").await.unwrap();
    // Each written twice, as a replay of the event log does.
    for _ in 0..2 {
        sql(&db, &event("NULL")).await;
        sql(&db, &read).await;
        sql(&db, status).await;
    }
    for _ in 0..2 {
        sql(&db, &event("now()")).await;
    }
    use sqlx::{Connection, Row};
    let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
    let rows: Vec<(String, String, Option<String>, serde_json::Value)> =
        sqlx::query("SELECT kind, msg_id, site_id, payload::jsonb FROM feed_outbox ORDER BY seq")
            .fetch_all(&mut c)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
    let alert: i64 = scalar(&db, "SELECT id FROM alerts").await;
    let ids: Vec<(&str, &str)> = rows.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect();
    let (started, ended) = (format!("{ev}:started"), format!("{ev}:ended"));
    let (alert_id, plate_id) = (format!("alert:{alert}"), format!("plate:{plate}"));
    // The alert is raised by the event's insert, inside it: it comes first.
    assert_eq!(
        ids,
        [
            ("alerts", alert_id.as_str()),
            ("events", started.as_str()),
            ("plates", plate_id.as_str()),
            ("status", "status:cam-1:streaming:1796119200000000"),
            ("events", ended.as_str()),
        ],
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r.2.as_deref() == Some("site.x")));
    assert_eq!(rows[1].3["phase"], "started");
    assert_eq!(rows[4].3["end_reason"], serde_json::Value::Null, "{:?}", rows[4].3);
    assert!(rows[4].3["ended_at"].is_string());
    assert_eq!(rows[2].3["plate"], "AX1234BI");
    // The subject's tokens: `.` in a site id is not a subject separator.
    let m = varta_store::feed::FeedMessage {
        seq: 0,
        kind: rows[2].0.clone(),
        site_id: rows[2].2.clone(),
        camera_id: "cam-1".into(),
        msg_id: rows[2].1.clone(),
        payload: String::new(),
    };
    assert_eq!(varta_node::feed::subject("varta", &m), "varta.site_x.cam-1.plates");
}

/// The feed over TLS to a NATS server with a private CA and a user and password
/// (from the environment, as a Secret gives them): an alert reaches the stream,
/// and the password appears in no log line; with a wrong password nothing is sent
/// and the message waits in the outbox.
#[tokio::test(flavor = "multi_thread")]
async fn the_feed_speaks_tls_with_credentials_and_keeps_them_out_of_the_logs() {
    const PASSWORD: &str = "s3cret-nats-pass-42";
    let db = fresh_database("feed_tls").await;
    let dir = std::env::temp_dir().join(format!("varta-feed-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = private_ca(&dir);
    let nats_port = free_port();
    let conf = dir.join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{nats_port}\njetstream {{ store_dir: \"{}\" }}\n\
             tls {{ cert_file: \"{}\"\n key_file: \"{}\" }}\n\
             authorization {{ user: varta\n password: \"{PASSWORD}\" }}\n",
            dir.join("js").display(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let mut c = Command::new("nats-server");
    c.arg("-c").arg(&conf);
    let _nats = Proc::spawn(c, dir.join("nats.log"));
    sql(
        &db,
        "INSERT INTO sites (id, name) VALUES ('site-a', 'A');
         INSERT INTO cameras (id, site_id, name, url, analysis_fps, classes, min_score, enabled)
         VALUES ('cam-1', 'site-a', 'Gate', 'rtsp://127.0.0.1:1/cam/1', 2, '{person}', 0.4, true);",
    )
    .await;
    let api = |name: &str, password: &str| {
        let port = free_port();
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[node]\nname = \"{name}\"\napi_listen = \"127.0.0.1:{port}\"\n\n[detect]\nsnapshot_dir = \"{}\"\n\n\
                 [feed]\nnats_url = \"tls://127.0.0.1:{nats_port}\"\nca = \"{}\"\ncredentials = \"nats\"\n\
                 stream = \"VARTA_TLS\"\nack_timeout_secs = 1.0\n",
                dir.join("snapshots").display(),
                ca.display()
            ),
        )
        .unwrap();
        let mut cmd = varta();
        cmd.arg("api")
            .arg("--config")
            .arg(&cfg)
            .env("DATABASE_URL", &db)
            .env("VARTA_CREDENTIALS_NATS", format!("varta:{password}"))
            // Everything the publisher says, so that the password check covers it.
            .env("VARTA_LOG", "debug");
        Proc::spawn(cmd, dir.join(format!("{name}.log")))
    };

    // A wrong password: refused by the server, the message stays in the outbox.
    let wrong = api("wrong", "not-the-password");
    wait_until("the publisher to register", Duration::from_secs(30), || async {
        scalar(&db, "SELECT count(*) FROM feed_publishers").await == 1
    })
    .await;
    let ev = alerting_event(&db, "cam-1").await;
    wait_until("the wrong password to be refused", Duration::from_secs(30), || {
        let log = wrong.output();
        // Said at the default level, without the password.
        async move { log.contains("WARN") && log.contains("feed: NATS") && log.contains("uthoriz") }
    })
    .await;
    assert!(scalar(&db, "SELECT count(*) FROM feed_outbox").await >= 2, "the event and its alert wait");
    drop(wrong);

    // The right one: the alert reaches the stream over TLS.
    let right = api("right", PASSWORD);
    wait_until("the outbox to drain over TLS", Duration::from_secs(30), || async {
        scalar(&db, "SELECT count(*) FROM feed_outbox").await == 0
    })
    .await;
    let client = async_nats::ConnectOptions::with_user_and_password("varta".into(), PASSWORD.into())
        .add_root_certificates(ca.clone())
        .require_tls(true)
        .connect(format!("tls://127.0.0.1:{nats_port}"))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("VARTA_TLS").await.unwrap();
    let m = stream.get_last_raw_message_by_subject("varta.site-a.cam-1.alerts").await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(body["event_id"], ev.to_string(), "{body}");
    drop(right);
    for log in ["wrong.log", "right.log"] {
        let text = std::fs::read_to_string(dir.join(log)).unwrap();
        assert!(!text.contains(PASSWORD), "{log} shows the NATS password");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
