//! Alert sinks with two `varta api` processes listening: Debian's mosquitto gets each
//! alert once (not once per process), and a webhook that fails at first is retried
//! until it takes the alert, once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use varta_e2e::*;

fn config(port: u16, mqtt_port: u16, hook: &str, dir: &std::path::Path) -> String {
    format!(
        "[node]\nname = \"sink-{port}\"\napi_listen = \"127.0.0.1:{port}\"\n\n[detect]\nsnapshot_dir = \"{}\"\n\n\
         [alerts]\nmqtt_url = \"mqtt://127.0.0.1:{mqtt_port}\"\nmqtt_topic = \"varta/alerts\"\n\
         webhooks = [\"{hook}\"]\nwebhook_attempts = 4\n\n\
         [[sites]]\nid = \"site-a\"\nname = \"A\"\n\n\
         [[cameras]]\nid = \"cam-1\"\nsite = \"site-a\"\nurl = \"rtsp://127.0.0.1:1/cam/1\"\n",
        dir.join("snapshots").display()
    )
}

/// Waits until the broker logging to `log` (verbose) has a subscription: MQTT keeps
/// no message for a subscriber that comes later.
async fn subscribed(log: std::path::PathBuf) {
    tokio::task::spawn_blocking(move || {
        wait_for("mosquitto_sub subscribed", Duration::from_secs(10), || {
            std::fs::read_to_string(&log).unwrap_or_default().contains("Received SUBSCRIBE").then_some(())
        })
    })
    .await
    .unwrap();
}

/// Requests a receiver got: the status it answered and the JSON body.
type Seen = Arc<Mutex<Vec<(u16, serde_json::Value)>>>;

/// A webhook receiver: answers 503 to the first request, 200 after; keeps the bodies.
fn receiver() -> (String, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/hook", l.local_addr().unwrap().port());
    let seen: Seen = Arc::default();
    let s = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let mut seen = s.lock().unwrap();
            let code = if seen.is_empty() { 503 } else { 200 };
            seen.push((code, serde_json::from_slice(&body).unwrap_or_default()));
            let _ = write!(c, "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn mqtt_and_webhooks_get_each_alert_once() {
    let db = fresh_database("varta_sinks").await;
    let dir = std::env::temp_dir().join(format!("varta-sinks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mqtt_port = free_port();
    let mut broker = Command::new("mosquitto");
    // Verbose: the log says when the subscriber has subscribed.
    broker.args(["-v", "-p", &mqtt_port.to_string()]);
    let _broker = Proc::spawn(broker, dir.join("mosquitto.log"));
    let (hook, seen) = receiver();

    {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            assert!(varta().arg("migrate").env("DATABASE_URL", &db).status().unwrap().success())
        })
        .await
        .unwrap();
    }
    let sql = |q: String| {
        let db = db.clone();
        async move {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
            sqlx::raw_sql(&q).execute(&mut c).await.unwrap();
        }
    };
    sql("INSERT INTO sites (id, name) VALUES ('site-a', 'A');
         INSERT INTO cameras (id, site_id, name, url, analysis_fps, classes, min_score, enabled)
         VALUES ('cam-1', 'site-a', 'Gate', 'rtsp://127.0.0.1:1/cam/1', 2, '{person}', 0.4, true);"
        .into())
    .await;

    let mut apis = Vec::new();
    for n in 0..2 {
        let port = free_port();
        let cfg = dir.join(format!("api{n}.toml"));
        std::fs::write(&cfg, config(port, mqtt_port, &hook, &dir)).unwrap();
        let mut cmd = varta();
        cmd.arg("api").arg("--config").arg(&cfg).env("DATABASE_URL", &db);
        apis.push(Proc::spawn(cmd, dir.join(format!("api{n}.log"))));
        let base = format!("http://127.0.0.1:{port}");
        tokio::task::spawn_blocking(move || {
            wait_for("varta api", Duration::from_secs(30), || get_json(&format!("{base}/readyz")))
        })
        .await
        .unwrap();
    }
    // A subscriber that prints every message for 12 seconds (from its start: room
    // for the subscription, a broker reconnect of 1 s and a loaded machine).
    let sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &mqtt_port.to_string(), "-t", "varta/alerts/#", "-v", "-W", "12"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The alert must not be raised before the subscription exists (MQTT keeps no
    // message for a subscriber that comes later).
    subscribed(dir.join("mosquitto.log")).await;

    let id = uuid::Uuid::now_v7();
    sql(format!(
        "SELECT varta_event_partition(current_date);
         INSERT INTO events (id, camera_id, track_id, class, score, bbox, started_at, last_seen_at, frames, node, rule, alert)
         VALUES ('{id}', 'cam-1', 1, 'person', 0.9, '{{1,2,3,4}}', now(), now(), 1, 't', 'intrusion', true)"
    ))
    .await;

    let out = tokio::task::spawn_blocking(move || sub.wait_with_output().unwrap()).await.unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 1, "one MQTT message for one alert from two API processes: {lines:?}");
    let (topic, payload) = lines[0].split_once(' ').unwrap();
    assert_eq!(topic, "varta/alerts/site-a/cam-1");
    let v: serde_json::Value = serde_json::from_str(payload).unwrap();
    assert_eq!(v["event_id"], id.to_string());

    // The webhook: refused once, taken on the retry, never twice.
    let seen2 = seen.clone();
    tokio::task::spawn_blocking(move || {
        wait_for("the webhook retried", Duration::from_secs(10), || (seen2.lock().unwrap().len() >= 2).then_some(()))
    })
    .await
    .unwrap();
    // The delivery is recorded by the process that sent it once it has read the reply.
    let want: Vec<(String, i32, bool)> = vec![("mqtt".into(), 1, true), ("webhook:0".into(), 2, true)];
    wait_until(&format!("deliveries {want:?}"), Duration::from_secs(15), || async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
        let rows: Vec<(String, i32, bool)> =
            sqlx::query_as("SELECT sink, attempts, delivered_at IS NOT NULL FROM alert_deliveries ORDER BY sink")
                .fetch_all(&mut c)
                .await
                .unwrap();
        rows == want
    })
    .await;
    // Delivered: nothing more may come, from either process (a 2 s window).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), vec![503, 200], "{seen:?}");
    assert!(seen.iter().all(|s| s.1["event_id"] == id.to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn mqtts_to_a_broker_with_a_private_ca() {
    let db = fresh_database("varta_mqtts").await;
    let dir = std::env::temp_dir().join(format!("varta-mqtts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("snapshots")).unwrap();
    let (ca, cert, key) = private_ca(&dir);
    let mqtt_port = free_port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {mqtt_port} 127.0.0.1\ncertfile {}\nkeyfile {}\nallow_anonymous true\nuser root\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let mut broker = Command::new("mosquitto");
    broker.arg("-v").arg("-c").arg(&conf);
    let _broker = Proc::spawn(broker, dir.join("mosquitto.log"));
    sql(
        &db,
        "INSERT INTO sites (id, name) VALUES ('site-a', 'A');
         INSERT INTO cameras (id, site_id, name, url, analysis_fps, classes, min_score, enabled)
         VALUES ('cam-1', 'site-a', 'Gate', 'rtsp://127.0.0.1:1/cam/1', 2, '{person}', 0.4, true);",
    )
    .await;
    let port = free_port();
    let cfg = dir.join("api.toml");
    std::fs::write(
        &cfg,
        format!(
            "[node]\nname = \"mqtts\"\napi_listen = \"127.0.0.1:{port}\"\n\n[detect]\nsnapshot_dir = \"{}\"\n\n\
             [alerts]\nmqtt_url = \"mqtts://127.0.0.1:{mqtt_port}\"\nmqtt_ca = \"{}\"\n\n\
             [[sites]]\nid = \"site-a\"\nname = \"A\"\n\n\
             [[cameras]]\nid = \"cam-1\"\nsite = \"site-a\"\nurl = \"rtsp://127.0.0.1:1/cam/1\"\n",
            dir.join("snapshots").display(),
            ca.display()
        ),
    )
    .unwrap();
    let mut cmd = varta();
    cmd.arg("api").arg("--config").arg(&cfg).env("DATABASE_URL", &db);
    let api = Proc::spawn(cmd, dir.join("api.log"));
    let base = format!("http://127.0.0.1:{port}");
    let broker_log = dir.join("mosquitto.log");
    tokio::task::spawn_blocking(move || {
        wait_for("varta api", Duration::from_secs(30), || get_json(&format!("{base}/readyz")));
        // varta's client has connected over TLS (the broker logs each client).
        wait_for("varta connected to the broker", Duration::from_secs(20), || {
            std::fs::read_to_string(&broker_log).unwrap_or_default().contains("New client connected").then_some(())
        });
    })
    .await
    .unwrap();
    // The test's subscriber checks the broker against the same CA (no host name check:
    // mosquitto_sub's is not what is under test).
    let sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &mqtt_port.to_string(), "--cafile"])
        .arg(&ca)
        .args(["--insecure", "-t", "varta/alerts/#", "-v", "-W", "8"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    subscribed(dir.join("mosquitto.log")).await;
    let ev = alerting_event(&db, "cam-1").await;
    let out = tokio::task::spawn_blocking(move || sub.wait_with_output().unwrap()).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains(&ev.to_string()), "the alert over mqtts: {text}\n{}", api.output());
    let _ = std::fs::remove_dir_all(&dir);
}
