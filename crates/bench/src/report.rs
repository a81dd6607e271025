//! The report of one `varta bench run`: what `--json` writes, what `bench_runs.results`
//! holds (the admin console's Nodes view reads it from `GET /api/v1/bench/runs`), and
//! what `compare` and the tests read back, through these types.
//!
//! Field names are the JSON's; a field added later is `#[serde(default)]` so that
//! older reports (the baselines in `bench/baselines/`) still read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One measured run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    /// Always `"run"`.
    pub bench: String,
    /// Varta's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// The machine's host name (`/etc/hostname`).
    pub host: String,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// The settings of the run.
    pub params: Params,
    /// Frames per second summed over cameras, by stage.
    pub frames_per_sec: FramesPerSec,
    /// Frames per second per camera.
    pub per_camera: PerCamera,
    /// Cameras whose scene was active: what the scheduler serves first.
    pub active: Active,
    /// The model's work.
    pub inference: Inference,
    /// Events committed in the window.
    pub events_written: u64,
    /// Pipeline restarts in the window.
    pub restarts: u64,
    /// From capture to commit and to the bench's own alert client.
    pub latency: Latency,
    /// CPU of this process, split by thread.
    pub cpu: Cpu,
    /// Memory of this process.
    pub memory: Memory,
    /// The GPU, from `nvidia-smi`, when there is one.
    pub gpu: Option<Gpu>,
    /// The raw decoder and the raw model on the same input; `None` with `--no-floors`.
    pub floors: Option<Floors>,
    /// Number plate reading, with `--plate-share`.
    #[serde(default)]
    pub plates: Option<PlateFigures>,
}

/// What plate reading cost in the window (`--plate-share`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlateFigures {
    /// Cameras showing vehicles with plates.
    pub cameras: usize,
    /// Vehicle crops read, and dropped because the plates thread was behind.
    pub crops_read: u64,
    /// See `crops_read`.
    pub crops_dropped: u64,
    /// Plates decided (one per vehicle track at most).
    pub plate_reads: u64,
    /// Milliseconds the plates thread spent per crop (OCR on one thread).
    pub ms_per_crop: Option<f64>,
    /// Vehicle events and all events started in the window.
    pub vehicle_events: u64,
    /// See `vehicle_events`.
    pub all_events: u64,
    /// Plates thread milliseconds per vehicle track.
    pub ms_per_vehicle_track: Option<f64>,
    /// The plates thread's share of the run's CPU, percent.
    pub share_of_cpu_pct: f64,
}

/// The settings a run was made with.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    /// Cameras (streams) run.
    pub cameras: usize,
    /// Whether the streams came from `varta sim` (else `--urls`).
    pub simulated: bool,
    /// The simulator's clip.
    pub clip: PathBuf,
    /// Share of the time a simulated camera's scene is idle, 0..1.
    pub idle_share: f64,
    /// `full`, `keyframes` or `adaptive`.
    pub decode: String,
    /// Frames per second analysed per camera.
    pub analysis_fps: f64,
    /// Frames per second of the streams.
    pub stream_fps: f64,
    /// Seconds before measuring.
    pub warmup_secs: f64,
    /// Seconds measured (as elapsed).
    pub duration_secs: f64,
    /// Inference workers.
    pub workers: usize,
    /// The model's manifest name.
    pub model: String,
}

/// Frames per second, all cameras together.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FramesPerSec {
    /// Access units arriving.
    pub received: f64,
    /// Pictures decoded (the decode policy applies).
    pub decoded: f64,
    /// Pictures handed to analysis at the analysis rate.
    pub sampled: f64,
    /// Frames the scheduler was offered.
    pub offered: f64,
    /// Frames run through the model (or reused, below).
    pub analysed: f64,
    /// Of the analysed, frames whose picture had not changed (detections reused).
    #[serde(default)]
    pub unchanged: f64,
    /// Dropped because a camera's queue was full.
    pub dropped_queue_full: f64,
    /// Dropped because they waited longer than `max_frame_age_ms`.
    pub dropped_stale: f64,
}

/// Per camera, frames per second.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PerCamera {
    /// Access units arriving per camera.
    pub received_fps: f64,
    /// Frames analysed per camera.
    pub analysed_fps: f64,
}

/// Sampled every second, over the seconds a camera's scene was active at both ends.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Active {
    /// Camera-seconds active.
    pub camera_secs: f64,
    /// Share of camera-seconds in full decoding, 0..1.
    #[serde(default)]
    pub full_decode_share: f64,
    /// Analysis rate active cameras got (the capacity target); `None` when none was active.
    pub analysed_fps_per_active_camera: Option<f64>,
    /// Stale drops on active cameras.
    pub stale_drops: u64,
}

/// The model's work in the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Inference {
    /// Frames per inference (1 on CPU: cameras are served one frame at a time).
    pub batch_size: usize,
    /// Inferences run.
    pub count: u64,
    /// Mean time per inference, ms (the histogram `varta_inference_seconds`).
    pub mean_ms: Option<f64>,
    /// Mean wait of an analysed frame in its queue, ms.
    pub mean_queue_wait_ms: Option<f64>,
}

/// Percentiles of a set of durations, ms.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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

impl Pcts {
    /// The percentiles of `v` (nearest rank); `None`s when empty.
    pub fn of(mut v: Vec<f64>) -> Pcts {
        v.sort_by(f64::total_cmp);
        let at = |p: f64| (!v.is_empty()).then(|| v[((v.len() as f64 - 1.0) * p).round() as usize]);
        Pcts { n: v.len(), p50_ms: at(0.5), p95_ms: at(0.95), p99_ms: at(0.99) }
    }
}

/// Latency over events that started in the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    /// From the capture time of an event's first frame to its row's commit (`events.written_at`).
    pub capture_to_commit: Pcts,
    /// From the same capture time to the bench's SSE client parsing the alert.
    pub capture_to_alert_client: Pcts,
}

/// CPU of the bench process (the node in it; the simulator is a child, not counted).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Cpu {
    /// Of cores × 100 (200% = both of two cores).
    pub total_pct: f64,
    /// Cores the machine has.
    pub cores: usize,
    /// CPU seconds per camera-minute, all threads.
    pub secs_per_camera_minute: f64,
    /// Of which the `infer-*` threads (preprocessing, inference, tracker, rules).
    pub detection_secs_per_camera_minute: f64,
    /// Of which every other thread (GStreamer ingest, store, API).
    pub ingest_store_api_secs_per_camera_minute: f64,
}

/// Memory of the bench process.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Memory {
    /// Peak of the resident set sampled each second, MB.
    pub rss_mb_peak: f64,
}

/// One GPU, from `nvidia-smi`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Gpu {
    /// The GPU's name.
    pub name: Option<String>,
    /// Utilisation, %.
    pub utilization_pct: Option<f64>,
    /// Memory used, MiB.
    pub memory_mib: Option<f64>,
}

/// The floors, measured in the same run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Floors {
    /// Plain GStreamer decoders against Varta's non-inference threads.
    pub decode: DecodeFloor,
    /// A raw ONNX Runtime loop against Varta's mean inference time.
    pub model: ModelFloor,
}

/// The decoder floor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecodeFloor {
    /// `gst-launch-1.0 rtspsrc ! depay ! parse ! avdec_h264 ! fakesink`, CPU s per camera-minute.
    pub raw_cpu_secs_per_camera_minute: f64,
    /// Varta's threads other than `infer-*`, CPU s per camera-minute.
    pub varta_ingest_cpu_secs_per_camera_minute: f64,
    /// Varta / raw: below 1 when the decode policy saved more than the rest costs.
    pub ratio: Option<f64>,
    /// What was compared, in words.
    pub note: String,
}

/// The model floor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelFloor {
    /// `Session::run` on a ready tensor, ms per inference.
    pub raw_ms_per_inference: f64,
    /// Varta's mean inference time, ms.
    pub varta_ms_per_inference: Option<f64>,
    /// Varta / raw.
    pub ratio: Option<f64>,
    /// Threads the raw loop ran in (as many as inference workers).
    pub threads: usize,
}

/// The answer of `varta bench capacity`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CapacityReport {
    /// Always `"capacity"`.
    pub bench: String,
    /// The most cameras that met every target (0: none did).
    pub cameras: usize,
    /// The first failure: at how many cameras, and which stage.
    pub limited_by: Option<Limit>,
    /// The targets.
    pub targets: Targets,
    /// Every run made, in order.
    pub steps: Vec<CapacityStep>,
}

/// Where capacity ran out.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Limit {
    /// Cameras of the failing run.
    pub at_cameras: usize,
    /// The stage and figure that failed, in words (`detection: …`).
    pub stage: String,
}

/// What a capacity step must meet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Targets {
    /// Analysed fps per active camera, at least.
    pub analysed_fps_per_active_camera: f64,
    /// Capture → commit p95, ms, at most.
    pub capture_to_commit_p95_ms: f64,
    /// Stale drops on active cameras, at most.
    pub stale_drops_active: u64,
    /// Frames per second received per camera, at least.
    pub received_fps_per_camera: f64,
}

/// One run of a capacity search.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CapacityStep {
    /// Cameras run.
    pub cameras: usize,
    /// The target it failed, if any.
    pub limit: Option<String>,
    /// Its report.
    pub report: BenchReport,
}

impl BenchReport {
    /// The first target this run misses, by stage (ingest, detection, events);
    /// `None` when every target is met.
    pub fn limiting_stage(&self, t: &Targets) -> Option<String> {
        let recv = self.per_camera.received_fps;
        if recv < t.received_fps_per_camera {
            return Some(format!("ingest: {recv:.1} frames/s received per camera of {:.1}", t.received_fps_per_camera));
        }
        let stale = self.active.stale_drops;
        if stale > t.stale_drops_active {
            return Some(format!("detection: {stale} stale drops on active cameras"));
        }
        if let Some(fps) = self.active.analysed_fps_per_active_camera {
            if fps < t.analysed_fps_per_active_camera {
                return Some(format!(
                    "detection: {fps:.2} analysed fps per active camera (< {:.2})",
                    t.analysed_fps_per_active_camera
                ));
            }
        }
        if let Some(p95) = self.latency.capture_to_commit.p95_ms {
            if p95 > t.capture_to_commit_p95_ms {
                return Some(format!("events: capture → commit p95 {p95:.0} ms (> {:.0})", t.capture_to_commit_p95_ms));
            }
        }
        None
    }

    /// The figures `compare` weighs: (name, value, whether higher is better).
    pub fn compared(&self) -> Vec<(&'static str, Option<f64>, bool)> {
        let fl = self.floors.as_ref();
        vec![
            ("frames_per_sec.analysed", Some(self.frames_per_sec.analysed), true),
            ("per_camera.received_fps", Some(self.per_camera.received_fps), true),
            ("active.analysed_fps_per_active_camera", self.active.analysed_fps_per_active_camera, true),
            ("inference.mean_ms", self.inference.mean_ms, false),
            ("latency.capture_to_commit.p95_ms", self.latency.capture_to_commit.p95_ms, false),
            ("latency.capture_to_alert_client.p95_ms", self.latency.capture_to_alert_client.p95_ms, false),
            ("cpu.secs_per_camera_minute", Some(self.cpu.secs_per_camera_minute), false),
            ("cpu.detection_secs_per_camera_minute", Some(self.cpu.detection_secs_per_camera_minute), false),
            (
                "cpu.ingest_store_api_secs_per_camera_minute",
                Some(self.cpu.ingest_store_api_secs_per_camera_minute),
                false,
            ),
            ("memory.rss_mb_peak", Some(self.memory.rss_mb_peak), false),
            ("floors.decode.ratio", fl.and_then(|f| f.decode.ratio), false),
            ("floors.model.ratio", fl.and_then(|f| f.model.ratio), false),
        ]
    }

    /// The human table `varta bench run` prints.
    pub fn table(&self) -> String {
        fn f(v: Option<f64>) -> String {
            match v {
                Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
                Some(x) => format!("{x:.2}"),
                None => "—".into(),
            }
        }
        let s = |x: f64| f(Some(x));
        let (p, fr, a) = (&self.params, &self.frames_per_sec, &self.active);
        let mut o = String::new();
        let mut row = |k: &str, v: String| o.push_str(&format!("  {k:<44} {v}\n"));
        row(
            "cameras",
            format!("{} ({}; idle share {}; decode {})", p.cameras, p.clip.display(), p.idle_share, p.decode),
        );
        row(
            "window",
            format!("{} s after {:?} s warm-up; {} inference workers", s(p.duration_secs), p.warmup_secs, p.workers),
        );
        row(
            "frames/s received → decoded → sampled",
            format!("{} → {} → {}", s(fr.received), s(fr.decoded), s(fr.sampled)),
        );
        row(
            "frames/s offered → analysed (of which unchanged)",
            format!("{} → {} ({})", s(fr.offered), s(fr.analysed), s(fr.unchanged)),
        );
        row("share of camera-seconds in full decoding", s(a.full_decode_share));
        row("frames/s dropped: queue full / stale", format!("{} / {}", s(fr.dropped_queue_full), s(fr.dropped_stale)));
        row(
            "per camera: received fps / analysed fps",
            format!("{} / {}", s(self.per_camera.received_fps), s(self.per_camera.analysed_fps)),
        );
        row(
            "active cameras: analysed fps / stale drops",
            format!(
                "{} / {} ({} camera-s active)",
                f(a.analysed_fps_per_active_camera),
                a.stale_drops,
                s(a.camera_secs)
            ),
        );
        let i = &self.inference;
        row(
            "inference: batch / mean ms / mean queue wait ms",
            format!("{} / {} / {}", i.batch_size, f(i.mean_ms), f(i.mean_queue_wait_ms)),
        );
        for (l, name) in [
            (&self.latency.capture_to_commit, "capture → event committed p50/p95/p99 ms"),
            (&self.latency.capture_to_alert_client, "capture → alert on client p50/p95/p99 ms"),
        ] {
            row(name, format!("{} / {} / {} (n={})", f(l.p50_ms), f(l.p95_ms), f(l.p99_ms), l.n));
        }
        row("events written", self.events_written.to_string());
        let c = &self.cpu;
        row("CPU total % (of cores × 100)", format!("{} (cores {})", s(c.total_pct), c.cores));
        row(
            "CPU s per camera-minute: all / detection / rest",
            format!(
                "{} / {} / {}",
                s(c.secs_per_camera_minute),
                s(c.detection_secs_per_camera_minute),
                s(c.ingest_store_api_secs_per_camera_minute)
            ),
        );
        row("RSS peak MB", s(self.memory.rss_mb_peak));
        row(
            "GPU",
            match &self.gpu {
                None => "none".into(),
                Some(g) => {
                    format!("{} {}% {} MiB", g.name.as_deref().unwrap_or("?"), f(g.utilization_pct), f(g.memory_mib))
                }
            },
        );
        if let Some(pl) = &self.plates {
            row(
                "plates: cameras / crops read (dropped) / plates",
                format!("{} / {} ({}) / {}", pl.cameras, pl.crops_read, pl.crops_dropped, pl.plate_reads),
            );
            row(
                "plates: vehicle tracks / all tracks",
                format!(
                    "{} / {} ({} %)",
                    pl.vehicle_events,
                    pl.all_events,
                    s(pl.vehicle_events as f64 * 100.0 / pl.all_events.max(1) as f64)
                ),
            );
            row(
                "plates: ms per crop / per vehicle track / % of CPU",
                format!("{} / {} / {}", f(pl.ms_per_crop), f(pl.ms_per_vehicle_track), s(pl.share_of_cpu_pct)),
            );
        }
        if let Some(fl) = &self.floors {
            row(
                "floor: raw decode CPU s/camera-min vs varta",
                format!(
                    "{} vs {} → ratio {}",
                    s(fl.decode.raw_cpu_secs_per_camera_minute),
                    s(fl.decode.varta_ingest_cpu_secs_per_camera_minute),
                    f(fl.decode.ratio)
                ),
            );
            row(
                "floor: raw ort ms/inference vs varta",
                format!(
                    "{} vs {} → ratio {}",
                    s(fl.model.raw_ms_per_inference),
                    f(fl.model.varta_ms_per_inference),
                    f(fl.model.ratio)
                ),
            );
        }
        o
    }
}
