//! `varta bench run`: the simulator (or given URLs) → a whole node in this process →
//! a warm-up and a measured window → the floors → a [`BenchReport`].

use crate::report::*;
use crate::sys::{free_port, gpu, hostname, proc_cpu, progress, rss_mb, thread_cpu, Kill};
use crate::RunArgs;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, IsTerminal};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use varta_core::metrics::Registry;
use varta_node::config::Config;

/// Alerts the bench's SSE client received: event id and when.
type Received = Arc<Mutex<Vec<(String, DateTime<Utc>)>>>;

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
        c.received += s.counters.frames_received.get();
        c.decoded += s.counters.frames_decoded.get();
        c.sampled += s.counters.frames_sampled.get();
        c.offered += s.counters.frames_offered.get();
        c.analysed += s.counters.frames_analysed.get();
        c.unchanged += s.counters.frames_unchanged.get();
        c.dropped_queue += s.counters.frames_dropped.get();
        c.dropped_stale += s.counters.frames_stale.get();
        c.queue_wait_us += s.counters.queue_wait_us.get();
        c.restarts += s.restarts_total();
    }
    c.inferences = m.inference_seconds.count();
    c.inference_secs = m.inference_seconds.sum();
    c.events_written = m.totals.events_written.get();
    c
}

/// Plate counters: crops read, dropped, microseconds reading, plates decided.
fn plate_counts(m: &Registry) -> (u64, u64, u64, u64) {
    let t = &m.totals;
    (t.plate_crops_read.get(), t.plate_crops_dropped.get(), t.plate_read_micros.get(), t.plate_reads.get())
}

/// `varta sim` with `cams` cameras of `clip` on `port`, on the run's idle/active schedule.
fn simulator(a: &RunArgs, clip: &Path, cams: usize, port: u16, log: &Path) -> Result<std::process::Child> {
    let scene = if a.idle_share <= 0.0 {
        "active"
    } else if a.idle_share >= 1.0 {
        "idle"
    } else {
        "mixed"
    };
    Command::new(std::env::current_exe()?)
        .args(["sim", "--cameras", &cams.to_string(), "--listen", &format!("127.0.0.1:{port}")])
        .args(["--scene", scene, "--scene-period", &a.scene_period.to_string()])
        .args(["--active-share", &(1.0 - a.idle_share).clamp(0.0, 1.0).to_string(), "--clip"])
        .arg(clip)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("starting the simulator")
}

/// Runs one benchmark; returns the report.
/// Runs one benchmark against `database_url` (migrated first, as `owner_url` when
/// given); returns the report, also stored in `bench_runs`.
pub async fn run(a: &RunArgs, database_url: &str, owner_url: Option<&str>) -> Result<BenchReport> {
    let started = Utc::now();
    let work = PathBuf::from(format!(".varta/bench/run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let mut children = Kill(Vec::new());

    // The streams: with --plate-share, the last cameras come from a second simulator
    // serving vehicles with plates.
    let plate_cams = if a.urls.is_empty() && a.plate_share > 0.0 {
        ((a.cameras as f64 * a.plate_share).round() as usize).clamp(1, a.cameras)
    } else {
        0
    };
    let urls: Vec<String> = if a.urls.is_empty() {
        let mut urls = Vec::new();
        let plate_clip = work.join("plates.mp4");
        if plate_cams > 0 {
            gstreamer::init()?;
            let images = a.clip.parent().unwrap_or(Path::new(".")).join("images");
            let plates = ["AX1234BI", "BI0001AA", "KA7702CT"].map(String::from);
            varta_sim::plates::write_scene(&plate_clip, &images, &plates).map_err(anyhow::Error::msg)?;
        }
        for (clip, cams, log) in
            [(&a.clip, a.cameras - plate_cams, "sim.log"), (&plate_clip, plate_cams, "sim-plates.log")]
        {
            if cams == 0 {
                continue;
            }
            let port = free_port()?;
            children.0.push(simulator(a, clip, cams, port, &work.join(log))?);
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
            let end = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                anyhow::ensure!(Instant::now() < end, "the simulator did not start (see {})", work.display());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            urls.extend((1..=cams).map(|i| format!("rtsp://127.0.0.1:{port}/cam/{i}")));
        }
        urls
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
        .map(|(i, u)| {
            // Plate cameras report every vehicle: `car` among their classes and the
            // implicit presence rule (the template's rules may be for people only).
            let plate_cam = i >= n - plate_cams;
            let mut classes = template.classes.clone();
            if plate_cam && !classes.iter().any(|c| c == "car") {
                classes.push("car".into());
            }
            let rules = if plate_cam { Vec::new() } else { template.rules.clone() };
            varta_core::config::CameraConfig {
                id: format!("bench-{:03}", i + 1),
                name: None,
                url: u.clone(),
                credentials: None,
                decode: a.decode,
                analysis_fps: a.analysis_fps,
                classes,
                rules,
                ..template.clone()
            }
        })
        .collect();
    cfg.detect.plates.enabled = plate_cams > 0 && !a.no_plate_reading;
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
    store.ensure_schema(owner_url).await?;
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
    let opts = varta_node::NodeOptions {
        database_url: database_url.to_owned(),
        owner_url: owner_url.map(str::to_owned),
        config_path: None,
        metrics: metrics.clone(),
    };
    let node_handle = varta_node::Node::start(cfg.clone(), opts).await?;
    let api = node_handle.api_url();
    let end = Instant::now() + Duration::from_secs(90);
    while ureq::get(&format!("{api}/readyz")).timeout(Duration::from_secs(2)).call().is_err() {
        anyhow::ensure!(Instant::now() < end, "the node did not become ready in 90 s");
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
                        if let Ok(v) = serde_json::from_str::<serde_json::Value>(d.trim()) {
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
    let p0 = plate_counts(&metrics);
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
            let now = (s.scene_active(), s.counters.frames_analysed.get(), s.counters.frames_stale.get());
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
    let p1 = plate_counts(&metrics);
    let (i1, o1) = thread_cpu();
    let w1 = Utc::now();
    let secs = t0.elapsed().as_secs_f64();
    let gpu_now = gpu();
    if let Err(e) = node_handle.stop().await {
        tracing::warn!(error = %e, "node stopped with an error");
    }

    // Latency, from the database: capture (first frame) → commit; → alert on the client.
    let rows = store.event_commit_times(&node, w0, w1).await?;
    let ms = |a: DateTime<Utc>, b: DateTime<Utc>| (b - a).num_microseconds().unwrap_or(0) as f64 / 1000.0;
    let commit = Pcts::of(rows.iter().map(|r| ms(r.1, r.2)).collect());
    let first_seen: HashMap<&str, DateTime<Utc>> = rows.iter().map(|r| (r.0.as_str(), r.1)).collect();
    let alert = Pcts::of(
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
    let workers = cfg.detect.worker_count();
    let floors = if a.no_floors {
        None
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
            let rate = crate::detect::raw_loop(&spec, &frame, workers, fs.ceil() as u64)?;
            Ok(workers as f64 * 1000.0 / rate)
        })
        .await??;
        Some(Floors {
            decode: DecodeFloor {
                raw_cpu_secs_per_camera_minute: decode_cpm,
                varta_ingest_cpu_secs_per_camera_minute: varta_other_cpm,
                ratio: (decode_cpm > 0.0).then(|| varta_other_cpm / decode_cpm),
                note: "raw: gst-launch rtspsrc ! depay ! parse ! avdec (every frame) per stream; \
                       varta: every thread but infer-* (decode policy applies)"
                    .into(),
            },
            model: ModelFloor {
                raw_ms_per_inference: raw,
                varta_ms_per_inference: varta_infer_ms,
                ratio: varta_infer_ms.map(|v| v / raw),
                threads: workers,
            },
        })
    };
    drop(children);

    let plates = if plate_cams > 0 && !a.no_plate_reading {
        let (crops, dropped, micros, reads) = (p1.0 - p0.0, p1.1 - p0.1, p1.2 - p0.2, p1.3 - p0.3);
        let (vehicles, all) = store.event_class_counts(&node, w0, w1, &cfg.detect.plates.classes).await?;
        let ms = micros as f64 / 1000.0;
        Some(PlateFigures {
            cameras: plate_cams,
            crops_read: crops,
            crops_dropped: dropped,
            plate_reads: reads,
            ms_per_crop: (crops > 0).then(|| ms / crops as f64),
            vehicle_events: vehicles,
            all_events: all,
            ms_per_vehicle_track: (vehicles > 0).then(|| ms / vehicles as f64),
            share_of_cpu_pct: ms / 1000.0 / ((i1 - i0) + (o1 - o0)).max(1e-9) * 100.0,
        })
    } else {
        None
    };
    let per_sec = |f: fn(&Counts) -> u64| d(f) as f64 / secs;
    let report = BenchReport {
        bench: "run".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        host: hostname(),
        started_at: started,
        params: Params {
            cameras: n,
            simulated: a.urls.is_empty(),
            clip: a.clip.clone(),
            idle_share: a.idle_share,
            decode: a.decode.as_str().into(),
            analysis_fps: a.analysis_fps,
            stream_fps: a.stream_fps,
            warmup_secs: a.warmup,
            duration_secs: secs,
            workers,
            model: cfg.detect.model.clone(),
        },
        frames_per_sec: FramesPerSec {
            received: per_sec(|c| c.received),
            decoded: per_sec(|c| c.decoded),
            sampled: per_sec(|c| c.sampled),
            offered: per_sec(|c| c.offered),
            analysed: per_sec(|c| c.analysed),
            unchanged: per_sec(|c| c.unchanged),
            dropped_queue_full: per_sec(|c| c.dropped_queue),
            dropped_stale: per_sec(|c| c.dropped_stale),
        },
        per_camera: PerCamera {
            received_fps: per_sec(|c| c.received) / n as f64,
            analysed_fps: per_sec(|c| c.analysed) / n as f64,
        },
        active: Active {
            camera_secs: active_secs,
            full_decode_share: full_secs as f64 / sampled_secs.max(1) as f64,
            analysed_fps_per_active_camera: (active_secs > 0.0).then(|| active_analysed as f64 / active_secs),
            stale_drops: active_stale,
        },
        inference: Inference {
            batch_size: 1,
            count: d(|c| c.inferences),
            mean_ms: varta_infer_ms,
            mean_queue_wait_ms: (d(|c| c.analysed) > 0)
                .then(|| d(|c| c.queue_wait_us) as f64 / 1000.0 / d(|c| c.analysed) as f64),
        },
        events_written: d(|c| c.events_written),
        restarts: d(|c| c.restarts),
        latency: Latency { capture_to_commit: commit, capture_to_alert_client: alert },
        cpu: Cpu {
            total_pct: ((i1 - i0) + (o1 - o0)) / secs * 100.0,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            secs_per_camera_minute: ((i1 - i0) + (o1 - o0)) / cam_min,
            detection_secs_per_camera_minute: (i1 - i0) / cam_min,
            ingest_store_api_secs_per_camera_minute: varta_other_cpm,
        },
        memory: Memory { rss_mb_peak: peak_rss },
        gpu: gpu_now,
        floors,
        plates,
    };
    store
        .insert_bench_run(
            "run",
            started,
            &hostname(),
            &serde_json::to_value(&report.params)?,
            &serde_json::to_value(&report)?,
            env!("CARGO_PKG_VERSION"),
        )
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
