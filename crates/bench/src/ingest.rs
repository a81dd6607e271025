//! `varta ingest-bench`: the ingest alone (no detection, no database) pulling N
//! cameras, for the benchmarks in `bench/`. Frames handed to analysis are taken and
//! discarded at once, so what is measured is RTSP, depayloading, the decode gate,
//! decoding, sampling, scaling and conversion: everything Varta does before a model.

use crate::sys::cpu_secs;
use anyhow::Result;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use varta_core::config::DecodePolicy;
use varta_core::frame::FrameHub;
use varta_core::metrics::{CameraStats, Registry};
use varta_core::CameraId;
use varta_ingest::config::{HealthConfig, IngestConfig};
use varta_ingest::{CameraSpec, Ingest, IngestSettings};

/// Arguments of `varta ingest-bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Camera URL prefix, e.g. rtsp://127.0.0.1:8554/cam/; cameras are PREFIX1 … PREFIXN.
    #[arg(long)]
    pub url_prefix: String,
    /// Number of cameras.
    #[arg(long, default_value_t = 8)]
    pub cameras: usize,
    /// Decode policy of every camera: full, keyframes or adaptive.
    #[arg(long, default_value = "adaptive", value_parser = crate::parse_decode)]
    pub decode: DecodePolicy,
    /// Analysis fps of every camera.
    #[arg(long, default_value_t = 2.0)]
    pub analysis_fps: f64,
    /// Seconds before measuring.
    #[arg(long, default_value_t = 10.0)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Progress line every this many seconds (stderr).
    #[arg(long, default_value_t = 10.0)]
    pub report_every: f64,
    /// `adaptive`: decode an idle camera's keyframe at most this often (default: the
    /// config's); a large value measures receiving alone (bench/ingest-idle.sh).
    #[arg(long)]
    pub idle_keyframe_secs: Option<f64>,
    /// Append every switch to full decoding as a JSON line (`{"camera","at_ms"}`) here.
    #[arg(long)]
    pub switch_log: Option<PathBuf>,
}

/// Sum of one counter over every camera.
fn sum(metrics: &Registry, f: fn(&CameraStats) -> u64) -> u64 {
    metrics.cameras().iter().map(|(_, s)| f(s)).sum()
}

fn proc_status(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

/// Runs the benchmark and prints one JSON line of results.
pub fn run(a: Args) -> Result<()> {
    let metrics = Arc::new(Registry::default());
    let hub = FrameHub::new(2);
    let journal = varta_core::journal::Journal::new(10_000);
    journal.drain_with(|_| {});
    let mut ingest = IngestConfig::default();
    if let Some(v) = a.idle_keyframe_secs {
        ingest.idle_keyframe_secs = v;
    }
    let settings = IngestSettings { ingest, health: HealthConfig::default(), clips: None };
    let mut ingest = Ingest::new(settings, hub.clone(), metrics.clone(), journal)?;
    let stop = Arc::new(AtomicBool::new(false));
    let drain = {
        let (hub, stop) = (hub.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(t) = hub.take(Duration::from_millis(200)) {
                    hub.done(&t.frame.camera);
                }
            }
        })
    };
    let specs: Vec<CameraSpec> = (1..=a.cameras)
        .map(|i| CameraSpec {
            id: CameraId(format!("cam-{i:03}")),
            url: format!("{}{i}", a.url_prefix),
            main_url: None,
            credentials: None,
            analysis_fps: a.analysis_fps,
            expected_fps: None,
            decode: a.decode,
        })
        .collect();
    ingest.apply(specs);

    let mut log = match &a.switch_log {
        Some(p) => Some(std::fs::OpenOptions::new().create(true).append(true).open(p)?),
        None => None,
    };
    let cams = || metrics.cameras();
    let mut full: Vec<bool> = vec![false; a.cameras];
    let started = Instant::now();
    let mut measured_from: Option<(Instant, f64, u64, u64, u64)> = None;
    let mut next_report = Duration::from_secs_f64(a.report_every);
    let total = Duration::from_secs_f64(a.warmup + a.duration);
    while started.elapsed() < total {
        std::thread::sleep(Duration::from_millis(20));
        for (i, (_, s)) in cams().iter().enumerate() {
            let f = s.decode_full();
            if f && !full[i] {
                if let (Some(log), Some(at)) = (log.as_mut(), s.last_switch_at()) {
                    writeln!(log, r#"{{"camera":{},"at_ms":{}}}"#, i + 1, at.timestamp_millis())?;
                }
            }
            full[i] = f;
        }
        if measured_from.is_none() && started.elapsed().as_secs_f64() >= a.warmup {
            measured_from = Some((
                Instant::now(),
                cpu_secs(),
                sum(&metrics, |s| s.counters.frames_received.get()),
                sum(&metrics, |s| s.counters.frames_decoded.get()),
                sum(&metrics, |s| s.restarts_total()),
            ));
        }
        if started.elapsed() >= next_report {
            next_report += Duration::from_secs_f64(a.report_every);
            let up = cams().iter().filter(|(_, s)| s.state().is_up()).count();
            eprintln!(
                "t={:.0}s streaming={up}/{} restarts={} rss_kib={} threads={} cpu_s={:.1}",
                started.elapsed().as_secs_f64(),
                a.cameras,
                sum(&metrics, |s| s.restarts_total()),
                proc_status("VmRSS:"),
                proc_status("Threads:"),
                cpu_secs()
            );
        }
    }
    let (t0, cpu0, rec0, dec0, rst0) = measured_from.expect("measured");
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let up = cams().iter().filter(|(_, s)| s.state().is_up()).count();
    let degraded: Vec<String> = cams()
        .iter()
        .filter(|(_, s)| s.state() == varta_core::event::CameraState::Degraded)
        .map(|(id, s)| format!("{id}: {:?}", s.health().problems))
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "cameras": a.cameras,
            "decode": a.decode.as_str(),
            "seconds": secs,
            "cpu_seconds": cpu,
            "cpu_percent": 100.0 * cpu / secs,
            "cpu_seconds_per_camera_minute": cpu / secs * 60.0 / a.cameras as f64,
            "received_fps": (sum(&metrics, |s| s.counters.frames_received.get()) - rec0) as f64 / secs,
            "decoded_fps": (sum(&metrics, |s| s.counters.frames_decoded.get()) - dec0) as f64 / secs,
            "restarts": sum(&metrics, |s| s.restarts_total()) - rst0,
            "streaming_at_end": up,
            "degraded_at_end": degraded,
            "rss_kib": proc_status("VmRSS:"),
            "threads": proc_status("Threads:"),
        })
    );
    ingest.stop_all();
    stop.store(true, Ordering::Relaxed);
    let _ = drain.join();
    Ok(())
}
