//! `varta alert-bench`: alert latency from commit to SSE client.
//!
//! Connects `--clients` SSE clients to `--api`, then commits `--alerts` alerting
//! events into DATABASE_URL one at a time (`--interval-ms` apart), each in its own
//! transaction, and times from the moment COMMIT returns to the moment each client
//! has parsed the alert. Prints one JSON line with p50/p99/max over every
//! (alert, client) pair. Used by `bench/api-alerts.sh`.

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Arguments.
#[derive(ClapArgs)]
pub struct Args {
    /// API base URL.
    #[arg(long)]
    api: String,
    /// Bearer token of an operator or admin (or VARTA_TOKEN).
    #[arg(long, env = "VARTA_TOKEN", hide_env_values = true)]
    token: String,
    /// Camera id to raise alerts on (must exist in the database).
    #[arg(long)]
    camera: String,
    /// SSE clients.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Alerts to commit.
    #[arg(long, default_value_t = 200)]
    alerts: usize,
    /// Pause between alerts.
    #[arg(long, default_value_t = 50)]
    interval_ms: u64,
}

/// (client, event id, when parsed).
type Seen = (usize, String, Instant);

fn client(n: usize, url: String, token: String, tx: mpsc::Sender<Seen>, ready: mpsc::Sender<()>) -> Result<()> {
    let resp = ureq::get(&url)
        .set("Authorization", &format!("Bearer {token}"))
        .timeout(Duration::from_secs(3600))
        .call()
        .context("SSE connect")?;
    let _ = ready.send(());
    let mut lines = BufReader::new(resp.into_reader()).lines();
    let mut event = String::new();
    while let Some(Ok(line)) = lines.next() {
        if let Some(e) = line.strip_prefix("event:") {
            event = e.trim().to_owned();
        } else if let Some(d) = line.strip_prefix("data:") {
            if event == "alert" {
                let v: serde_json::Value = serde_json::from_str(d.trim())?;
                let id = v["event_id"].as_str().unwrap_or_default().to_owned();
                if tx.send((n, id, Instant::now())).is_err() {
                    return Ok(());
                }
            }
        } else if line.is_empty() {
            event.clear();
        }
    }
    Ok(())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs the benchmark.
pub async fn run(a: Args, database_url: &str) -> Result<()> {
    let url = format!("{}/api/v1/alerts/stream", a.api.trim_end_matches('/'));
    let (tx, rx) = mpsc::channel::<Seen>();
    let (ready_tx, ready_rx) = mpsc::channel();
    for n in 0..a.clients {
        let (url, token, tx, ready) = (url.clone(), a.token.clone(), tx.clone(), ready_tx.clone());
        std::thread::spawn(move || {
            if let Err(e) = client(n, url, token, tx, ready) {
                eprintln!("client {n}: {e:#}");
            }
        });
    }
    drop(tx);
    for _ in 0..a.clients {
        ready_rx.recv_timeout(Duration::from_secs(30)).context("SSE clients did not connect")?;
    }
    let store = varta_store::Store::connect(database_url).await?;
    let mut committed: HashMap<String, Instant> = HashMap::new();
    for _ in 0..a.alerts {
        let id = uuid::Uuid::now_v7();
        store.insert_bench_alert(id, &a.camera).await?;
        committed.insert(id.to_string(), Instant::now());
        tokio::time::sleep(Duration::from_millis(a.interval_ms)).await;
    }
    let expected = a.alerts * a.clients;
    let mut lat: Vec<f64> = Vec::with_capacity(expected);
    let end = Instant::now() + Duration::from_secs(10);
    while lat.len() < expected && Instant::now() < end {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((_, id, at)) => {
                if let Some(t) = committed.get(&id) {
                    lat.push(at.saturating_duration_since(*t).as_secs_f64());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    lat.sort_by(f64::total_cmp);
    let out = serde_json::json!({
        "bench": "alert_latency",
        "clients": a.clients,
        "alerts": a.alerts,
        "deliveries_expected": expected,
        "deliveries": lat.len(),
        "p50_ms": pct(&lat, 0.50) * 1e3,
        "p99_ms": pct(&lat, 0.99) * 1e3,
        "max_ms": lat.last().copied().unwrap_or(f64::NAN) * 1e3,
    });
    println!("{out}");
    if lat.len() < expected {
        anyhow::bail!("{} of {expected} alert deliveries missing", expected - lat.len());
    }
    Ok(())
}
