//! `varta bench`: what one node holds, where the time goes, and how it compares with
//! the raw decoder and the raw model on the same machine, in the same run.
//!
//! - `run`: the simulator (a child process, so its CPU is not counted) or given RTSP
//!   URLs → a whole node in this process (ingest, detection, store, API) for a
//!   warm-up and a measured window; then the floors: the same streams through plain
//!   `gst-launch-1.0` decoders (one process each), and a raw ONNX Runtime loop on the
//!   same model. Prints a table (a progress bar while it runs), writes `--json`, and
//!   stores the run in `bench_runs` (the admin console lists them).
//! - `capacity`: repeated short runs, doubling then bisecting the number of cameras,
//!   for the largest that meets the targets; names the stage that failed first.
//! - `compare`: a run's JSON against a baseline file (`bench/baselines/`).
//!
//! CPU is split by thread: the `infer-*` threads are detection (preprocessing,
//! inference, tracker, rules); every other thread of the process is ingest, store and
//! API. The decoder floor is compared with the latter.

use crate::{localpg, serve};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use varta_core::config::{Config, DecodePolicy};
use varta_core::metrics::Registry;

/// `varta bench …`.
#[derive(clap::Subcommand)]
pub enum BenchCmd {
    /// One measured run: per-stage figures, latency, CPU, memory, and the floors.
    Run(RunArgs),
    /// The largest number of cameras that meets the targets, and the limiting stage.
    Capacity(CapacityArgs),
    /// A run's JSON against a baseline (regressions marked).
    Compare(CompareArgs),
}

/// `varta bench run`.
#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {
    /// Simulated cameras (ignored with --urls).
    #[arg(long, default_value_t = 8)]
    pub cameras: usize,
    /// RTSP URLs to use instead of the simulator (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub urls: Vec<String>,
    /// Clip the simulator serves (its resolution and fps are the streams').
    #[arg(long, default_value = ".cache/media/vtest.mp4")]
    pub clip: PathBuf,
    /// Share of the time each simulated camera shows an idle scene (0 = always active).
    #[arg(long, default_value_t = 0.8)]
    pub idle_share: f64,
    /// Seconds of one idle + active cycle of the simulator.
    #[arg(long, default_value_t = 50.0)]
    pub scene_period: f64,
    /// Decode policy of every camera.
    #[arg(long, default_value = "adaptive", value_parser = crate::parse_decode)]
    pub decode: DecodePolicy,
    /// Frames per second analysed per camera.
    #[arg(long, default_value_t = 2.0)]
    pub analysis_fps: f64,
    /// Config whose [detect], [ingest] and first camera (with its rules) are the template.
    #[arg(long, default_value = "config/demo.toml")]
    pub config: PathBuf,
    /// Inference workers (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Seconds before measuring.
    #[arg(long, default_value_t = 15.0)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Seconds of each floor measurement.
    #[arg(long, default_value_t = 15.0)]
    pub floor_secs: f64,
    /// Skip the floors.
    #[arg(long)]
    pub no_floors: bool,
    /// Streams the decoder floor decodes (the first ones): per camera-minute it is the
    /// same figure, and more plain decoders than cores would starve each other.
    #[arg(long, default_value_t = 16)]
    pub floor_streams: usize,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Frames per second of the streams (for expected rates; the vtest clip is 10).
    #[arg(long, default_value_t = 10.0)]
    pub stream_fps: f64,
}

/// `varta bench capacity`.
#[derive(clap::Args, Clone, Debug)]
pub struct CapacityArgs {
    /// The run's settings (cameras is the first try).
    #[command(flatten)]
    pub run: RunArgs,
    /// Most cameras tried.
    #[arg(long, default_value_t = 512)]
    pub max_cameras: usize,
    /// Target: analysed fps per active camera (default 90% of --analysis-fps).
    #[arg(long)]
    pub target_fps: Option<f64>,
    /// Target: p95 from capture to event commit, ms.
    #[arg(long, default_value_t = 3000.0)]
    pub target_latency_p95_ms: f64,
}

/// `varta bench compare`.
#[derive(clap::Args, Clone, Debug)]
pub struct CompareArgs {
    /// A report written by `varta bench run --json`.
    pub run: PathBuf,
    /// Baseline report (default: bench/baselines/HOSTNAME.json).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Changes worse than this many percent are marked as regressions.
    #[arg(long, default_value_t = 10.0)]
    pub tolerance_pct: f64,
}

/// Alerts the bench's SSE client received: event id and when.
type Received = Arc<Mutex<Vec<(String, DateTime<Utc>)>>>;

/// Percentiles of a set of durations.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Pcts {
    /// Samples.
    pub n: usize,
    /// Median, ms.
    pub p50_ms: Option<f64>,
    /// 95th percentile, ms.
    pub p95_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
}

fn pcts(mut v: Vec<f64>) -> Pcts {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| (!v.is_empty()).then(|| v[((v.len() as f64 - 1.0) * p).round() as usize]);
    Pcts { n: v.len(), p50_ms: at(0.5), p95_ms: at(0.95), p99_ms: at(0.99) }
}

/// Counters summed over cameras at one moment.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    received: u64,
    decoded: u64,
    sampled: u64,
    offered: u64,
    analysed: u64,
    unchanged: u64,
    dropped_queue: u64,
    dropped_stale: u64,
    queue_wait_us: u64,
    restarts: u64,
    inferences: u64,
    inference_secs: f64,
    events_written: u64,
}

fn counts(m: &Registry) -> Counts {
    let mut c = Counts::default();
    for (_, s) in m.cameras() {
        c.received += s.frames_received.get();
        c.decoded += s.frames_decoded.get();
        c.sampled += s.frames_sampled.get();
        c.offered += s.frames_offered.get();
        c.analysed += s.frames_analysed.get();
        c.unchanged += s.frames_unchanged.get();
        c.dropped_queue += s.frames_dropped.get();
        c.dropped_stale += s.frames_stale.get();
        c.queue_wait_us += s.queue_wait_us.get();
        c.restarts += s.restarts_total();
    }
    c.inferences = m.inference_seconds.count();
    c.inference_secs = m.inference_seconds.sum();
    c.events_written = m.events_written.get();
    c
}

/// CPU seconds of this process's threads: (`infer-*` threads, all others).
fn thread_cpu() -> (f64, f64) {
    let tck = 100.0; // USER_HZ on Linux
    let (mut infer, mut other) = (0.0, 0.0);
    for t in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = &stat[open + 1..close];
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        // After the name: state is field 3, utime 14 and stime 15 (1-based) → 11, 12 here.
        let secs = (f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
            / tck;
        if name.starts_with("infer-") {
            infer += secs;
        } else {
            other += secs;
        }
    }
    (infer, other)
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.to_owned()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// CPU seconds of another process (utime + stime).
fn proc_cpu(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let Some(close) = stat.rfind(')') else { return 0.0 };
    let f: Vec<&str> = stat[close + 2..].split(' ').collect();
    (f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
        / 100.0
}

/// GPU utilisation % and memory MiB from nvidia-smi, when there is one.
fn gpu() -> Option<Value> {
    let out = Command::new("nvidia-smi")
        .args(["--query-gpu=name,utilization.gpu,memory.used", "--format=csv,noheader,nounits"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout).lines().next()?.to_owned();
    let p: Vec<&str> = line.split(',').map(str::trim).collect();
    Some(json!({"name": p.first(), "utilization_pct": p.get(1).and_then(|v| v.parse::<f64>().ok()),
                "memory_mib": p.get(2).and_then(|v| v.parse::<f64>().ok())}))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Kill(Vec<Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A progress line on stderr (a bar when stderr is a terminal).
fn progress(what: &str, done: f64, total: f64, extra: &str) {
    let width = 30;
    let filled = ((done / total).clamp(0.0, 1.0) * width as f64) as usize;
    let bar = format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled));
    if std::io::stderr().is_terminal() {
        eprint!("\r{what} {bar} {done:>4.0}/{total:.0} s  {extra}    ");
    } else if (done as u64).is_multiple_of(10) {
        eprintln!("{what} {bar} {done:.0}/{total:.0} s  {extra}");
    }
    let _ = std::io::stderr().flush();
}

/// Runs one benchmark; returns the report.
pub async fn run(a: &RunArgs, database_url: &str) -> Result<Value> {
    let started = Utc::now();
    let work = PathBuf::from(format!(".varta/bench/run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let mut children = Kill(Vec::new());

    // The streams.
    let urls: Vec<String> = if a.urls.is_empty() {
        let port = free_port()?;
        let scene = if a.idle_share <= 0.0 {
            "active"
        } else if a.idle_share >= 1.0 {
            "idle"
        } else {
            "mixed"
        };
        let child = Command::new(std::env::current_exe()?)
            .args(["sim", "--cameras", &a.cameras.to_string(), "--listen", &format!("127.0.0.1:{port}")])
            .args(["--scene", scene, "--scene-period", &a.scene_period.to_string()])
            .args(["--active-share", &(1.0 - a.idle_share).clamp(0.0, 1.0).to_string(), "--clip"])
            .arg(&a.clip)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("sim.log"))?)
            .spawn()
            .context("starting the simulator")?;
        children.0.push(child);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let end = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            anyhow::ensure!(Instant::now() < end, "the simulator did not start (see {})", work.display());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (1..=a.cameras).map(|i| format!("rtsp://127.0.0.1:{port}/cam/{i}")).collect()
    } else {
        a.urls.clone()
    };
    let n = urls.len();

    // The node's config: the template's first camera, N times.
    let mut cfg = Config::load(&a.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let template = cfg.cameras.first().cloned().context("the bench config needs a camera as a template")?;
    let site = template.site.clone();
    cfg.sites.retain(|s| s.id == site);
    cfg.cameras = urls
        .iter()
        .enumerate()
        .map(|(i, u)| varta_core::config::CameraConfig {
            id: format!("bench-{:03}", i + 1),
            name: None,
            url: u.clone(),
            credentials: None,
            decode: a.decode,
            analysis_fps: a.analysis_fps,
            ..template.clone()
        })
        .collect();
    let api_port = free_port()?;
    let node = format!("bench-{}", std::process::id());
    cfg.node.name = node.clone();
    cfg.node.api_listen = format!("127.0.0.1:{api_port}").parse()?;
    cfg.node.capacity = (n as u32).max(1);
    cfg.store.spool_dir = work.join("spool");
    cfg.detect.snapshot_dir = work.join("snapshots");
    cfg.detect.workers = a.workers;
    cfg.maintenance.offline_after_secs = 3600.0;

    // An account for the alert stream.
    let store = varta_store::Store::connect(database_url).await?;
    store.ensure_schema(crate::owner_url().as_deref()).await?;
    let (pw, _) = varta_api::auth::new_token();
    let hash = tokio::task::spawn_blocking(move || varta_api::auth::hash_password(&pw)).await??;
    let audit =
        |action| varta_store::accounts::AuditEntry::by("cli:varta-bench", action, "varta-bench", serde_json::json!({}));
    let uid =
        store.upsert_user("varta-bench", varta_api::auth::Role::Operator, &hash, true, &audit("user_add")).await?;
    let (token, th) = varta_api::auth::new_token();
    let expires = Some(Utc::now() + chrono::Duration::hours(6));
    store.add_token(uid, "machine", &th, Some("varta bench"), expires, &audit("token_add")).await?;

    // The node, in this process.
    let metrics = Arc::new(Registry::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node_task = {
        let (cfg, url, metrics) = (cfg.clone(), database_url.to_owned(), metrics.clone());
        tokio::spawn(async move {
            serve::run_with(cfg, None, &url, metrics, async move {
                let _ = stop_rx.await;
            })
            .await
        })
    };
    let api = format!("http://127.0.0.1:{api_port}");
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        let r = ureq::get(&format!("{api}/readyz")).timeout(Duration::from_secs(2)).call();
        if r.is_ok() {
            break;
        }
        if node_task.is_finished() || Instant::now() > end {
            let r = node_task.await;
            anyhow::bail!("the node did not become ready: {r:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // An SSE client: when each alert arrives.
    let alerts: Received = Arc::default();
    {
        let (alerts, url, token) = (alerts.clone(), format!("{api}/api/v1/alerts/stream"), token.clone());
        std::thread::spawn(move || {
            let Ok(resp) = ureq::get(&url)
                .set("Authorization", &format!("Bearer {token}"))
                .timeout(Duration::from_secs(24 * 3600))
                .call()
            else {
                return;
            };
            let mut event = String::new();
            for line in BufReader::new(resp.into_reader()).lines() {
                let Ok(line) = line else { return };
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_owned();
                } else if let Some(d) = line.strip_prefix("data:") {
                    if event == "alert" {
                        if let Ok(v) = serde_json::from_str::<Value>(d.trim()) {
                            let id = v["event_id"].as_str().unwrap_or_default().to_owned();
                            alerts.lock().unwrap().push((id, Utc::now()));
                        }
                    }
                }
            }
        });
    }

    // Warm-up, then the measured window, sampled every second.
    let t = Instant::now();
    while t.elapsed().as_secs_f64() < a.warmup {
        progress("warm-up ", t.elapsed().as_secs_f64(), a.warmup, "");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let c0 = counts(&metrics);
    let (i0, o0) = thread_cpu();
    let w0 = Utc::now();
    let t0 = Instant::now();
    // Per camera: (was active, analysed, stale) at the last sample.
    let mut last: HashMap<String, (bool, u64, u64)> = HashMap::new();
    let (mut active_secs, mut active_analysed, mut active_stale) = (0.0f64, 0u64, 0u64);
    // Camera-seconds sampled, and those in full decoding.
    let (mut sampled_secs, mut full_secs) = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut peak_rss = 0.0f64;
    loop {
        tick.tick().await;
        let el = t0.elapsed().as_secs_f64();
        for (id, s) in metrics.cameras() {
            let now = (s.scene_active(), s.frames_analysed.get(), s.frames_stale.get());
            sampled_secs += 1;
            full_secs += s.decode_full() as u64;
            if let Some(prev) = last.get(id.as_str()) {
                if prev.0 && now.0 {
                    active_secs += 1.0;
                    active_analysed += now.1 - prev.1;
                    active_stale += now.2 - prev.2;
                }
            }
            last.insert(id.as_str().to_owned(), now);
        }
        peak_rss = peak_rss.max(rss_mb());
        let c = counts(&metrics);
        let rate = (c.analysed - c0.analysed) as f64 / el.max(1.0);
        progress(
            "measuring",
            el,
            a.duration,
            &format!("analysed {rate:.1}/s, events {}", c.events_written - c0.events_written),
        );
        if el >= a.duration {
            break;
        }
    }
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let c1 = counts(&metrics);
    let (i1, o1) = thread_cpu();
    let w1 = Utc::now();
    let secs = t0.elapsed().as_secs_f64();
    let gpu_now = gpu();
    let _ = stop_tx.send(());
    match node_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "node stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "node task failed"),
    }

    // Latency, from the database: capture (first frame) → commit; → alert on the client.
    let rows: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id::text, started_at, written_at FROM events WHERE node = $1 AND started_at >= $2 AND started_at < $3",
    )
    .bind(&node)
    .bind(w0)
    .bind(w1)
    .fetch_all(store.pool())
    .await?;
    let ms = |a: DateTime<Utc>, b: DateTime<Utc>| (b - a).num_microseconds().unwrap_or(0) as f64 / 1000.0;
    let commit = pcts(rows.iter().map(|r| ms(r.1, r.2)).collect());
    let first_seen: HashMap<&str, DateTime<Utc>> = rows.iter().map(|r| (r.0.as_str(), r.1)).collect();
    let alert = pcts(
        alerts.lock().unwrap().iter().filter_map(|(id, at)| first_seen.get(id.as_str()).map(|s| ms(*s, *at))).collect(),
    );

    // Floors on the same streams and model.
    let d = |f: fn(&Counts) -> u64| f(&c1) - f(&c0);
    let cam_min = n as f64 * secs / 60.0;
    let varta_other_cpm = (o1 - o0) / cam_min;
    let varta_infer_ms = if c1.inferences > c0.inferences {
        Some((c1.inference_secs - c0.inference_secs) / (c1.inferences - c0.inferences) as f64 * 1000.0)
    } else {
        None
    };
    let workers = match cfg.detect.workers {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        w => w,
    };
    let floors = if a.no_floors {
        Value::Null
    } else {
        let decode_cpm = decode_floor(&urls[..urls.len().min(a.floor_streams.max(1))], a.floor_secs, &work)?;
        let spec = varta_detect::manifest::load(&cfg.detect.models, &cfg.detect.model)?;
        let clip = a.clip.clone();
        let fs = a.floor_secs;
        let raw = tokio::task::spawn_blocking(move || -> Result<f64> {
            let mut frame = None;
            varta_ingest::file::decode_file(&clip, &varta_core::CameraId::from("floor"), 1.0, Utc::now(), |f| {
                if frame.is_none() {
                    frame = Some(f)
                }
            })?;
            let frame = frame.context("no frame in the clip")?;
            let rate = crate::detect_bench::raw_loop(&spec, &frame, workers, fs.ceil() as u64)?;
            Ok(workers as f64 * 1000.0 / rate)
        })
        .await??;
        json!({
            "decode": {
                "raw_cpu_secs_per_camera_minute": decode_cpm,
                "varta_ingest_cpu_secs_per_camera_minute": varta_other_cpm,
                "ratio": (decode_cpm > 0.0).then(|| varta_other_cpm / decode_cpm),
                "note": "raw: gst-launch rtspsrc ! depay ! parse ! avdec (every frame) per stream; \
                         varta: every thread but infer-* (decode policy applies)",
            },
            "model": {
                "raw_ms_per_inference": raw,
                "varta_ms_per_inference": varta_infer_ms,
                "ratio": varta_infer_ms.map(|v| v / raw),
                "threads": workers,
            },
        })
    };
    drop(children);

    let report = json!({
        "bench": "run",
        "version": env!("CARGO_PKG_VERSION"),
        "host": hostname(),
        "started_at": started,
        "params": {
            "cameras": n, "simulated": a.urls.is_empty(), "clip": a.clip, "idle_share": a.idle_share,
            "decode": format!("{:?}", a.decode).to_lowercase(), "analysis_fps": a.analysis_fps,
            "stream_fps": a.stream_fps, "warmup_secs": a.warmup, "duration_secs": secs, "workers": workers,
            "model": cfg.detect.model,
        },
        "frames_per_sec": {
            "received": d(|c| c.received) as f64 / secs,
            "decoded": d(|c| c.decoded) as f64 / secs,
            "sampled": d(|c| c.sampled) as f64 / secs,
            "offered": d(|c| c.offered) as f64 / secs,
            "analysed": d(|c| c.analysed) as f64 / secs,
            "unchanged": d(|c| c.unchanged) as f64 / secs,
            "dropped_queue_full": d(|c| c.dropped_queue) as f64 / secs,
            "dropped_stale": d(|c| c.dropped_stale) as f64 / secs,
        },
        "per_camera": {
            "received_fps": d(|c| c.received) as f64 / secs / n as f64,
            "analysed_fps": d(|c| c.analysed) as f64 / secs / n as f64,
        },
        "active": {
            "camera_secs": active_secs,
            "full_decode_share": full_secs as f64 / sampled_secs.max(1) as f64,
            "analysed_fps_per_active_camera": (active_secs > 0.0).then(|| active_analysed as f64 / active_secs),
            "stale_drops": active_stale,
        },
        "inference": {
            "batch_size": 1,
            "count": d(|c| c.inferences),
            "mean_ms": varta_infer_ms,
            "mean_queue_wait_ms": (d(|c| c.analysed) > 0).then(|| d(|c| c.queue_wait_us) as f64 / 1000.0 / d(|c| c.analysed) as f64),
        },
        "events_written": d(|c| c.events_written),
        "restarts": d(|c| c.restarts),
        "latency": {"capture_to_commit": commit, "capture_to_alert_client": alert},
        "cpu": {
            "total_pct": ((i1 - i0) + (o1 - o0)) / secs * 100.0,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "secs_per_camera_minute": ((i1 - i0) + (o1 - o0)) / cam_min,
            "detection_secs_per_camera_minute": (i1 - i0) / cam_min,
            "ingest_store_api_secs_per_camera_minute": varta_other_cpm,
        },
        "memory": {"rss_mb_peak": peak_rss},
        "gpu": gpu_now,
        "floors": floors,
    });
    sqlx::query(
        "INSERT INTO bench_runs (started_at, finished_at, node, kind, params, results, version)
         VALUES ($1, now(), $2, 'run', $3, $4, $5)",
    )
    .bind(started)
    .bind(hostname())
    .bind(&report["params"])
    .bind(&report)
    .bind(env!("CARGO_PKG_VERSION"))
    .execute(store.pool())
    .await?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(report)
}

/// CPU seconds per camera-minute of plain GStreamer decoders, one process per stream.
fn decode_floor(urls: &[String], secs: f64, work: &Path) -> Result<f64> {
    let mut kids = Kill(Vec::new());
    for u in urls {
        let c = Command::new("gst-launch-1.0")
            .args(["-q", "rtspsrc", &format!("location={u}"), "protocols=tcp", "latency=200", "!"])
            .args(["rtph264depay", "!", "h264parse", "!", "avdec_h264", "max-threads=1", "!", "fakesink", "sync=false"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("floor.log"))?)
            .spawn()
            .context("starting gst-launch-1.0 (the decoder floor)")?;
        kids.0.push(c);
    }
    std::thread::sleep(Duration::from_secs(3));
    let c0: f64 = kids.0.iter().map(|c| proc_cpu(c.id())).sum();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let c1: f64 = kids.0.iter().map(|c| proc_cpu(c.id())).sum();
    let el = t0.elapsed().as_secs_f64();
    Ok((c1 - c0) / (urls.len() as f64 * el / 60.0))
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_owned()).unwrap_or_else(|_| "unknown".into())
}

fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
        None => "—".into(),
    }
}

/// The human table of a report.
pub fn table(r: &Value) -> String {
    let p = &r["params"];
    let mut o = String::new();
    let mut row = |k: &str, v: String| o.push_str(&format!("  {k:<44} {v}\n"));
    row(
        "cameras",
        format!(
            "{} ({}; idle share {}; decode {})",
            p["cameras"],
            p["clip"].as_str().unwrap_or(""),
            p["idle_share"],
            p["decode"].as_str().unwrap_or("")
        ),
    );
    row(
        "window",
        format!(
            "{} s after {} s warm-up; {} inference workers",
            f(&p["duration_secs"]),
            p["warmup_secs"],
            p["workers"]
        ),
    );
    let fr = &r["frames_per_sec"];
    row(
        "frames/s received → decoded → sampled",
        format!("{} → {} → {}", f(&fr["received"]), f(&fr["decoded"]), f(&fr["sampled"])),
    );
    row(
        "frames/s offered → analysed (of which unchanged)",
        format!("{} → {} ({})", f(&fr["offered"]), f(&fr["analysed"]), f(&fr["unchanged"])),
    );
    row("share of camera-seconds in full decoding", f(&r["active"]["full_decode_share"]));
    row(
        "frames/s dropped: queue full / stale",
        format!("{} / {}", f(&fr["dropped_queue_full"]), f(&fr["dropped_stale"])),
    );
    row(
        "per camera: received fps / analysed fps",
        format!("{} / {}", f(&r["per_camera"]["received_fps"]), f(&r["per_camera"]["analysed_fps"])),
    );
    row(
        "active cameras: analysed fps / stale drops",
        format!(
            "{} / {} ({} camera-s active)",
            f(&r["active"]["analysed_fps_per_active_camera"]),
            r["active"]["stale_drops"],
            f(&r["active"]["camera_secs"])
        ),
    );
    row(
        "inference: batch / mean ms / mean queue wait ms",
        format!(
            "{} / {} / {}",
            r["inference"]["batch_size"],
            f(&r["inference"]["mean_ms"]),
            f(&r["inference"]["mean_queue_wait_ms"])
        ),
    );
    let l = &r["latency"];
    for (k, name) in [
        ("capture_to_commit", "capture → event committed p50/p95/p99 ms"),
        ("capture_to_alert_client", "capture → alert on client p50/p95/p99 ms"),
    ] {
        row(
            name,
            format!("{} / {} / {} (n={})", f(&l[k]["p50_ms"]), f(&l[k]["p95_ms"]), f(&l[k]["p99_ms"]), l[k]["n"]),
        );
    }
    row("events written", r["events_written"].to_string());
    let c = &r["cpu"];
    row("CPU total % (of cores × 100)", format!("{} (cores {})", f(&c["total_pct"]), c["cores"]));
    row(
        "CPU s per camera-minute: all / detection / rest",
        format!(
            "{} / {} / {}",
            f(&c["secs_per_camera_minute"]),
            f(&c["detection_secs_per_camera_minute"]),
            f(&c["ingest_store_api_secs_per_camera_minute"])
        ),
    );
    row("RSS peak MB", f(&r["memory"]["rss_mb_peak"]));
    row("GPU", if r["gpu"].is_null() { "none".into() } else { r["gpu"].to_string() });
    let fl = &r["floors"];
    if !fl.is_null() {
        row(
            "floor: raw decode CPU s/camera-min vs varta",
            format!(
                "{} vs {} → ratio {}",
                f(&fl["decode"]["raw_cpu_secs_per_camera_minute"]),
                f(&fl["decode"]["varta_ingest_cpu_secs_per_camera_minute"]),
                f(&fl["decode"]["ratio"])
            ),
        );
        row(
            "floor: raw ort ms/inference vs varta",
            format!(
                "{} vs {} → ratio {}",
                f(&fl["model"]["raw_ms_per_inference"]),
                f(&fl["model"]["varta_ms_per_inference"]),
                f(&fl["model"]["ratio"])
            ),
        );
    }
    o
}

/// The database: DATABASE_URL, or the demo's local cluster.
async fn database() -> Result<String> {
    match std::env::var("DATABASE_URL") {
        Ok(u) => Ok(u),
        Err(_) => Ok(localpg::start(Path::new(".varta/pg"), localpg::DEFAULT_PORT).await?),
    }
}

/// Runs a `varta bench` command.
pub async fn main(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Run(a) => {
            let url = database().await?;
            let r = run(&a, &url).await?;
            println!("varta bench run\n{}", table(&r));
            if let Some(p) = &a.json {
                std::fs::write(p, serde_json::to_string_pretty(&r)?)?;
            }
            Ok(())
        }
        BenchCmd::Capacity(c) => capacity(c).await,
        BenchCmd::Compare(c) => compare(&c),
    }
}

/// What failed in a capacity step, by stage; `None` when every target is met.
fn limiting_stage(r: &Value, target_fps: f64, target_p95: f64, stream_fps: f64) -> Option<String> {
    let recv = r["per_camera"]["received_fps"].as_f64().unwrap_or(0.0);
    if recv < 0.9 * stream_fps {
        return Some(format!("ingest: {recv:.1} frames/s received per camera of {stream_fps}"));
    }
    let stale = r["active"]["stale_drops"].as_u64().unwrap_or(0);
    if stale > 0 {
        return Some(format!("detection: {stale} stale drops on active cameras"));
    }
    if let Some(fps) = r["active"]["analysed_fps_per_active_camera"].as_f64() {
        if fps < target_fps {
            return Some(format!("detection: {fps:.2} analysed fps per active camera (< {target_fps:.2})"));
        }
    }
    if let Some(p95) = r["latency"]["capture_to_commit"]["p95_ms"].as_f64() {
        if p95 > target_p95 {
            return Some(format!("events: capture → commit p95 {p95:.0} ms (> {target_p95:.0})"));
        }
    }
    None
}

async fn capacity(c: CapacityArgs) -> Result<()> {
    let url = database().await?;
    let target_fps = c.target_fps.unwrap_or(0.9 * c.run.analysis_fps);
    let mut steps = Vec::new();
    let (mut good, mut bad): (Option<usize>, Option<(usize, String)>) = (None, None);
    let mut n = c.run.cameras.max(1);
    loop {
        let a = RunArgs { cameras: n, no_floors: true, json: None, ..c.run.clone() };
        eprintln!("capacity: trying {n} cameras");
        let r = run(&a, &url).await?;
        let fail = limiting_stage(&r, target_fps, c.target_latency_p95_ms, c.run.stream_fps);
        eprintln!("capacity: {n} cameras: {}", fail.as_deref().unwrap_or("all targets met"));
        steps.push(json!({"cameras": n, "limit": fail, "report": r}));
        match fail {
            None => good = Some(n),
            Some(why) => bad = Some((n, why)),
        }
        n = match (good, &bad) {
            (Some(g), None) if g * 2 <= c.max_cameras => g * 2,
            (Some(g), None) => {
                if g >= c.max_cameras {
                    break;
                }
                c.max_cameras
            }
            (g, Some((b, _))) => {
                let lo = g.unwrap_or(0);
                if *b - lo <= (lo / 10).max(1) {
                    break;
                }
                (lo + b) / 2
            }
            (None, None) => unreachable!("a step either passed or failed"),
        };
        if n == 0 {
            break;
        }
    }
    let answer = json!({
        "bench": "capacity",
        "cameras": good.unwrap_or(0),
        "limited_by": bad.as_ref().map(|b| json!({"at_cameras": b.0, "stage": b.1})),
        "targets": {"analysed_fps_per_active_camera": target_fps, "capture_to_commit_p95_ms": c.target_latency_p95_ms,
                    "stale_drops_active": 0, "received_fps_per_camera": 0.9 * c.run.stream_fps},
        "steps": steps,
    });
    println!("varta bench capacity: this node sustains {} cameras", good.unwrap_or(0));
    if let Some((at, why)) = &bad {
        println!("  limiting stage (first failure, at {at} cameras): {why}");
    }
    if let Some(p) = &c.run.json {
        std::fs::write(p, serde_json::to_string_pretty(&answer)?)?;
    }
    let store = varta_store::Store::connect(&url).await?;
    sqlx::query(
        "INSERT INTO bench_runs (started_at, finished_at, node, kind, params, results, version)
         VALUES (now(), now(), $1, 'capacity', $2, $3, $4)",
    )
    .bind(hostname())
    .bind(&answer["targets"])
    .bind(json!({"cameras": answer["cameras"], "limited_by": answer["limited_by"]}))
    .bind(env!("CARGO_PKG_VERSION"))
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Figures compared, and whether higher is better.
const COMPARED: &[(&str, bool)] = &[
    ("/frames_per_sec/analysed", true),
    ("/per_camera/received_fps", true),
    ("/active/analysed_fps_per_active_camera", true),
    ("/inference/mean_ms", false),
    ("/latency/capture_to_commit/p95_ms", false),
    ("/latency/capture_to_alert_client/p95_ms", false),
    ("/cpu/secs_per_camera_minute", false),
    ("/cpu/detection_secs_per_camera_minute", false),
    ("/cpu/ingest_store_api_secs_per_camera_minute", false),
    ("/memory/rss_mb_peak", false),
    ("/floors/decode/ratio", false),
    ("/floors/model/ratio", false),
];

fn compare(c: &CompareArgs) -> Result<()> {
    let base_path = c.baseline.clone().unwrap_or_else(|| PathBuf::from(format!("bench/baselines/{}.json", hostname())));
    let read = |p: &Path| -> Result<Value> {
        serde_json::from_str(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
            .with_context(|| format!("{} is not a bench report", p.display()))
    };
    let (run, base) = (read(&c.run)?, read(&base_path)?);
    if run["params"]["cameras"] != base["params"]["cameras"] || run["params"]["decode"] != base["params"]["decode"] {
        println!(
            "note: different settings (cameras {} vs {}, decode {} vs {}): figures are not like for like",
            run["params"]["cameras"], base["params"]["cameras"], run["params"]["decode"], base["params"]["decode"]
        );
    }
    println!("{:<46} {:>12} {:>12} {:>9}", "figure", "baseline", "this run", "change");
    let mut worse = 0;
    for (path, higher_better) in COMPARED {
        let (b, r) = (base.pointer(path).and_then(Value::as_f64), run.pointer(path).and_then(Value::as_f64));
        let (Some(b), Some(r)) = (b, r) else {
            println!(
                "{path:<46} {:>12} {:>12}",
                b.map(|v| format!("{v:.2}")).unwrap_or("—".into()),
                r.map(|v| format!("{v:.2}")).unwrap_or("—".into())
            );
            continue;
        };
        let pct = if b != 0.0 { (r - b) / b.abs() * 100.0 } else { 0.0 };
        let bad = if *higher_better { pct < -c.tolerance_pct } else { pct > c.tolerance_pct };
        worse += bad as usize;
        println!("{path:<46} {b:>12.2} {r:>12.2} {pct:>+8.1}%{}", if bad { "  REGRESSION" } else { "" });
    }
    if worse > 0 {
        anyhow::bail!("{worse} figure(s) worse than the baseline by more than {}%", c.tolerance_pct);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_limits() {
        let p = pcts((1..=100).map(f64::from).collect());
        assert_eq!((p.n, p.p50_ms, p.p99_ms), (100, Some(51.0), Some(99.0)));
        assert_eq!(pcts(vec![]).p50_ms, None);
        let ok = json!({"per_camera": {"received_fps": 10.0}, "active": {"stale_drops": 0, "analysed_fps_per_active_camera": 2.0},
                        "latency": {"capture_to_commit": {"p95_ms": 900.0}}});
        assert_eq!(limiting_stage(&ok, 1.8, 3000.0, 10.0), None);
        let mut slow = ok.clone();
        slow["active"]["stale_drops"] = json!(3);
        assert!(limiting_stage(&slow, 1.8, 3000.0, 10.0).unwrap().starts_with("detection"));
        let mut starved = ok.clone();
        starved["per_camera"]["received_fps"] = json!(6.0);
        assert!(limiting_stage(&starved, 1.8, 3000.0, 10.0).unwrap().starts_with("ingest"));
    }
}
