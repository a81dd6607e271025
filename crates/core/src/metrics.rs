//! Counters and the Prometheus text exposition.
//!
//! Per-camera counters live in [`CameraStats`], shared by the ingest (writes), the
//! detector (writes) and the API (reads), so the numbers in `GET /api/v1/cameras`
//! and in `/metrics` are the same atomics. Names come from this one list.

use crate::event::{CameraState, RestartReason};
use crate::CameraId;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Metric names, in one place (see ARCHITECTURE.md).
pub mod names {
    /// Compressed frames (access units) received from the camera.
    pub const FRAMES_RECEIVED: &str = "varta_frames_received_total";
    /// Frames out of the decoder.
    pub const FRAMES_DECODED: &str = "varta_frames_decoded_total";
    /// Frames dropped before analysis, by stage.
    pub const FRAMES_DROPPED: &str = "varta_frames_dropped_total";
    /// Frames analysed (run through the detector, or found unchanged).
    pub const FRAMES_ANALYSED: &str = "varta_frames_analysed_total";
    /// Analysed frames of idle cameras whose picture had not changed since the last
    /// inference, so its detections were reused without running the model.
    pub const FRAMES_UNCHANGED: &str = "varta_frames_unchanged_total";
    /// Frames offered to the inference scheduler, per camera.
    pub const FRAMES_OFFERED: &str = "varta_frames_offered_total";
    /// Microseconds analysed frames waited for a worker, per camera.
    pub const QUEUE_WAIT: &str = "varta_analysis_queue_wait_microseconds_total";
    /// Inference time histogram.
    pub const INFERENCE_SECONDS: &str = "varta_inference_seconds";
    /// Event rows written (inserts and updates).
    pub const EVENTS_WRITTEN: &str = "varta_events_written_total";
    /// 1 while a camera is streaming.
    pub const CAMERA_UP: &str = "varta_camera_up";
    /// Pipeline restarts, by reason.
    pub const PIPELINE_RESTARTS: &str = "varta_pipeline_restarts_total";
    /// Compressed bytes received from the camera.
    pub const BYTES_RECEIVED: &str = "varta_bytes_received_total";
    /// Decoder and stream errors and warnings.
    pub const DECODE_ERRORS: &str = "varta_decode_errors_total";
    /// 1 while every frame is decoded, 0 while only keyframes are.
    pub const DECODE_FULL: &str = "varta_camera_decode_full";
    /// Switches between keyframe and full decoding.
    pub const DECODE_SWITCHES: &str = "varta_decode_mode_switches_total";
    /// Bytes in the event log on disk (the write-ahead log) that PostgreSQL has not
    /// taken yet.
    pub const SPOOL_BYTES: &str = "varta_spool_bytes";
    /// 1 while the event log is at its cap and no more records are taken.
    pub const SPOOL_FULL: &str = "varta_spool_full";
    /// Event records written (synced) to the event log: every event record passes it.
    pub const EVENTS_SPOOLED: &str = "varta_events_spooled_total";
    /// Event records read back from the event log into PostgreSQL (from before a
    /// start, or after a PostgreSQL outage).
    pub const EVENTS_REPLAYED: &str = "varta_events_replayed_total";
    /// Event log records found torn or corrupt (set aside, reported).
    pub const SPOOL_CORRUPT: &str = "varta_spool_corrupt_records_total";
    /// 1 while the event log cannot be written (disk full, read-only, I/O error).
    pub const WAL_FAILING: &str = "varta_wal_failing";
    /// Time of one group commit to the event log: write and `fdatasync`.
    pub const WAL_SYNC_SECONDS: &str = "varta_wal_sync_seconds";
    /// Event partitions dropped by retention.
    pub const PARTITIONS_DROPPED: &str = "varta_retention_partitions_dropped_total";
    /// Snapshot files deleted by retention.
    pub const SNAPSHOTS_DELETED: &str = "varta_retention_snapshots_deleted_total";
    /// Bytes in the snapshot folder after the last retention run.
    pub const SNAPSHOT_BYTES: &str = "varta_snapshot_bytes";
    /// Camera leases this node holds.
    pub const LEASES_HELD: &str = "varta_leases_held";
}

/// A camera's health measurements and the problems they show.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Health {
    /// Frames per second the camera should send (config, else the stream's own).
    pub fps_expected: Option<f64>,
    /// Frames per second received over the last health window.
    pub fps_measured: Option<f64>,
    /// Kilobits per second received over the last health window (absent for
    /// contractors: it rises with motion in the scene).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitrate_kbps: Option<f64>,
    /// Mean luma (0–255) of the last analysed frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_luma: Option<f64>,
    /// Standard deviation of luma of the last analysed frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub luma_stddev: Option<f64>,
    /// Seconds the picture has not changed (absent for contractors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unchanged_secs: Option<f64>,
    /// Current problems.
    pub problems: Vec<HealthProblem>,
}

/// A problem of a camera that streams: what makes it `degraded`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthProblem {
    /// Fewer frames per second than `[health] min_fps_ratio` of the expected.
    LowFps,
    /// `[health] max_decode_errors` or more in one window.
    DecodeErrors,
    /// The picture has not changed for `[health] frozen_secs`.
    Frozen,
    /// Dark or featureless for `[health] blackout_secs` (covered lens, blank screen).
    Blackout,
}

impl HealthProblem {
    /// The name in the API and in maintenance task kinds.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthProblem::LowFps => "low_fps",
            HealthProblem::DecodeErrors => "decode_errors",
            HealthProblem::Frozen => "frozen",
            HealthProblem::Blackout => "blackout",
        }
    }
}

/// The result of the last probe of a camera's main stream.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct MainStream {
    /// Main stream URL, credentials removed.
    pub url: String,
    /// Whether the last probe received video; `None` before the first probe.
    pub ok: Option<bool>,
    /// When the last probe finished.
    pub checked_at: Option<DateTime<Utc>>,
    /// Frames per second seen by the last probe.
    pub fps: Option<f64>,
    /// Kilobits per second seen by the last probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitrate_kbps: Option<f64>,
    /// Codec of the main stream (`h264`, `h265`).
    pub codec: Option<String>,
    /// Why the last probe failed.
    pub error: Option<String>,
}

/// Slow-changing facts about a camera, behind one lock.
#[derive(Debug, Default)]
struct Live {
    last_error: Option<String>,
    decoder: Option<String>,
    codec: Option<String>,
    health: Health,
    main: Option<MainStream>,
    last_switch_at: Option<DateTime<Utc>>,
}

/// A monotonically increasing counter.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Default, Debug)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Adds `d` (negative to take away).
    pub fn add(&self, d: i64) {
        self.0.fetch_add(d, Ordering::Relaxed);
    }
}

/// Live counters and state of one camera.
#[derive(Debug)]
pub struct CameraStats {
    /// Access units that reached the decoder.
    pub frames_received: Counter,
    /// Frames out of the decoder.
    pub frames_decoded: Counter,
    /// Frames handed to analysis (after sampling to the analysis fps).
    pub frames_sampled: Counter,
    /// Frames dropped because the analysis queue was full.
    pub frames_dropped: Counter,
    /// Frames offered to the inference scheduler (equals `frames_sampled` in the service).
    pub frames_offered: Counter,
    /// Frames dropped by the scheduler because they waited longer than the stale limit.
    pub frames_stale: Counter,
    /// Frames analysed (run through the detector, or found unchanged).
    pub frames_analysed: Counter,
    /// Analysed frames whose inference was skipped: an idle camera's picture had not
    /// changed since its last inference (`varta_detect::unchanged`).
    pub frames_unchanged: Counter,
    /// Total time analysed frames waited in the queue, in microseconds (mean wait =
    /// this / `frames_analysed`).
    pub queue_wait_us: Counter,
    /// Compressed bytes that reached the decoder stage.
    pub bytes_received: Counter,
    /// Errors and warnings from the depayloader, parser and decoder.
    pub decode_errors: Counter,
    /// Switches between keyframe and full decoding.
    pub mode_switches: Counter,
    /// Unix milliseconds of the last decoded frame, 0 if none yet.
    pub last_frame_ms: AtomicI64,
    /// Unix milliseconds of the last compressed buffer received, 0 if none yet.
    pub last_buffer_ms: AtomicI64,
    /// Unix milliseconds of the last analysed frame with an object of interest, 0 if
    /// none yet (the detector's confirmation of activity for the decode gate).
    pub last_detection_ms: AtomicI64,
    restarts: [Counter; RestartReason::ALL.len()],
    state: AtomicU8,
    state_since_ms: AtomicI64,
    decode_full: AtomicBool,
    activity: AtomicU32,
    scene_active: AtomicBool,
    live: Mutex<Live>,
}

impl Default for CameraStats {
    fn default() -> Self {
        CameraStats {
            frames_received: Counter::default(),
            frames_decoded: Counter::default(),
            frames_sampled: Counter::default(),
            frames_dropped: Counter::default(),
            frames_offered: Counter::default(),
            frames_stale: Counter::default(),
            frames_analysed: Counter::default(),
            frames_unchanged: Counter::default(),
            queue_wait_us: Counter::default(),
            bytes_received: Counter::default(),
            decode_errors: Counter::default(),
            mode_switches: Counter::default(),
            last_frame_ms: AtomicI64::new(0),
            last_buffer_ms: AtomicI64::new(0),
            last_detection_ms: AtomicI64::new(0),
            restarts: Default::default(),
            state: AtomicU8::new(CameraState::Starting.as_u8()),
            state_since_ms: AtomicI64::new(Utc::now().timestamp_millis()),
            decode_full: AtomicBool::new(false),
            activity: AtomicU32::new(0),
            scene_active: AtomicBool::new(false),
            live: Mutex::new(Live::default()),
        }
    }
}

impl CameraStats {
    /// Current state.
    pub fn state(&self) -> CameraState {
        CameraState::from_u8(self.state.load(Ordering::Relaxed))
    }
    /// Sets the state; returns the previous one.
    pub fn set_state(&self, s: CameraState) -> CameraState {
        let old = CameraState::from_u8(self.state.swap(s.as_u8(), Ordering::Relaxed));
        if old != s {
            self.state_since_ms.store(Utc::now().timestamp_millis(), Ordering::Relaxed);
        }
        old
    }
    /// When the current state began.
    pub fn state_since(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.state_since_ms.load(Ordering::Relaxed))
    }
    /// Counts a restart for `reason`.
    pub fn count_restart(&self, reason: RestartReason) {
        self.restarts[reason as usize].inc();
    }
    /// Restarts for `reason`.
    pub fn restarts(&self, reason: RestartReason) -> u64 {
        self.restarts[reason as usize].get()
    }
    /// Restarts for any reason.
    pub fn restarts_total(&self) -> u64 {
        self.restarts.iter().map(Counter::get).sum()
    }
    /// Whether every frame is being decoded (false: keyframes only).
    pub fn decode_full(&self) -> bool {
        self.decode_full.load(Ordering::Relaxed)
    }
    /// Records the decode mode; counts a switch when it changes.
    pub fn set_decode_full(&self, full: bool) {
        if self.decode_full.swap(full, Ordering::Relaxed) != full {
            self.mode_switches.inc();
            self.live.lock().unwrap().last_switch_at = Some(Utc::now());
        }
    }
    /// When the decode mode last changed.
    pub fn last_switch_at(&self) -> Option<DateTime<Utc>> {
        self.live.lock().unwrap().last_switch_at
    }
    /// Activity score of the compressed stream (1 = the idle baseline).
    pub fn activity(&self) -> f32 {
        f32::from_bits(self.activity.load(Ordering::Relaxed))
    }
    /// Records the activity score, and whether the scene counts as active (score
    /// above the threshold, or objects of interest seen, within the quiet time).
    pub fn set_activity(&self, a: f32, active: bool) {
        self.activity.store(a.to_bits(), Ordering::Relaxed);
        self.scene_active.store(active, Ordering::Relaxed);
    }
    /// Whether the scene is active now (what the inference scheduler serves first).
    pub fn scene_active(&self) -> bool {
        self.scene_active.load(Ordering::Relaxed)
    }
    /// Last error, credentials already removed.
    pub fn last_error(&self) -> Option<String> {
        self.live.lock().unwrap().last_error.clone()
    }
    /// Records the last error (must already be redacted).
    pub fn set_last_error(&self, e: Option<String>) {
        self.live.lock().unwrap().last_error = e;
    }
    /// GStreamer decoder element in use.
    pub fn decoder(&self) -> Option<String> {
        self.live.lock().unwrap().decoder.clone()
    }
    /// Records the decoder element and codec in use.
    pub fn set_decoder(&self, decoder: &str, codec: &str) {
        let mut l = self.live.lock().unwrap();
        l.decoder = Some(decoder.to_owned());
        l.codec = Some(codec.to_owned());
    }
    /// Codec of the analysed stream (`h264`, `h265`).
    pub fn codec(&self) -> Option<String> {
        self.live.lock().unwrap().codec.clone()
    }
    /// Latest health measurements.
    pub fn health(&self) -> Health {
        self.live.lock().unwrap().health.clone()
    }
    /// Records health measurements.
    pub fn set_health(&self, h: Health) {
        self.live.lock().unwrap().health = h;
    }
    /// Last main-stream probe, if the camera has a main stream.
    pub fn main_stream(&self) -> Option<MainStream> {
        self.live.lock().unwrap().main.clone()
    }
    /// Records a main-stream probe.
    pub fn set_main_stream(&self, m: Option<MainStream>) {
        self.live.lock().unwrap().main = m;
    }
}

/// A histogram with fixed buckets, lock-free on the hot path.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// A histogram with the given upper bounds (seconds), ascending.
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
    /// Records one observation in seconds.
    pub fn observe(&self, secs: f64) {
        for (b, n) in self.bounds.iter().zip(&self.buckets) {
            if secs <= *b {
                n.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
    /// Sum of observations in seconds.
    pub fn sum(&self) -> f64 {
        self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    }
}

/// All live counters of one process.
pub struct Registry {
    cameras: RwLock<Vec<(CameraId, Arc<CameraStats>)>>,
    /// Inference latency.
    pub inference_seconds: Histogram,
    /// Event rows written to PostgreSQL.
    pub events_written: Counter,
    /// Store writer and spool.
    pub store: StoreStats,
    /// Camera leases held.
    pub leases_held: Gauge,
    /// From an alert's commit to this process hearing of it (LISTEN/NOTIFY). Kept
    /// for `varta bench`; not rendered in `/metrics`, whose scrapes would otherwise
    /// time every alert (issue #17).
    pub alert_latency: Histogram,
    /// The API's edge: connections and password checks.
    pub api: ApiStats,
}

/// The API's edge (`varta_api::tls::serve`, the login handler).
#[derive(Debug, Default)]
pub struct ApiStats {
    /// Connections open now.
    pub connections_open: Gauge,
    /// Connections closed at once because a cap (total or per address) was reached.
    pub connections_refused: Counter,
    /// Connections closed because their request head did not arrive in time.
    pub header_timeouts: Counter,
    /// Passwords checked (argon2 runs) by logins.
    pub password_checks: Counter,
    /// Logins refused before their password was checked: the (account, address)
    /// pair used its places (429), or the hashing pool was full (503).
    pub logins_refused: Counter,
}

/// The store writer's event log and retention numbers.
#[derive(Debug)]
pub struct StoreStats {
    /// Bytes in the event log not yet in PostgreSQL.
    pub spool_bytes: Gauge,
    /// 1 while the event log is full.
    pub spool_full: Gauge,
    /// 1 while the event log cannot be written.
    pub wal_failing: Gauge,
    /// Group commits to the event log (write + fdatasync), in seconds.
    pub wal_sync_seconds: Histogram,
    /// Event records written to the event log.
    pub events_spooled: Counter,
    /// Event records replayed.
    pub events_replayed: Counter,
    /// Torn or corrupt spool records skipped.
    pub spool_corrupt: Counter,
    /// Partitions dropped by retention.
    pub partitions_dropped: Counter,
    /// Snapshot files deleted by retention.
    pub snapshots_deleted: Counter,
    /// Bytes in the snapshot folder.
    pub snapshot_bytes: Gauge,
}

impl Default for StoreStats {
    fn default() -> Self {
        StoreStats {
            spool_bytes: Gauge::default(),
            spool_full: Gauge::default(),
            wal_failing: Gauge::default(),
            wal_sync_seconds: Histogram::new(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
            events_spooled: Counter::default(),
            events_replayed: Counter::default(),
            spool_corrupt: Counter::default(),
            partitions_dropped: Counter::default(),
            snapshots_deleted: Counter::default(),
            snapshot_bytes: Gauge::default(),
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            cameras: RwLock::new(Vec::new()),
            inference_seconds: Histogram::new(&[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            events_written: Counter::default(),
            store: StoreStats::default(),
            leases_held: Gauge::default(),
            alert_latency: Histogram::new(&[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            api: ApiStats::default(),
        }
    }
}

impl Registry {
    /// The stats of `camera`, created on first use.
    pub fn camera(&self, camera: &CameraId) -> Arc<CameraStats> {
        if let Some((_, s)) = self.cameras.read().unwrap().iter().find(|(c, _)| c == camera) {
            return s.clone();
        }
        let mut w = self.cameras.write().unwrap();
        if let Some((_, s)) = w.iter().find(|(c, _)| c == camera) {
            return s.clone();
        }
        let s = Arc::new(CameraStats::default());
        w.push((camera.clone(), s.clone()));
        s
    }

    /// Forgets a camera that is gone from the config.
    pub fn remove_camera(&self, camera: &CameraId) {
        self.cameras.write().unwrap().retain(|(c, _)| c != camera);
    }

    /// A snapshot of every camera's stats, in registration order.
    pub fn cameras(&self) -> Vec<(CameraId, Arc<CameraStats>)> {
        self.cameras.read().unwrap().clone()
    }

    /// Renders everything in the Prometheus text format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        let cams = self.cameras();
        let mut out = String::with_capacity(256 + cams.len() * 512);
        type Getter = fn(&CameraStats) -> u64;
        let per_camera: [(&str, &str, Getter); 11] = [
            (names::FRAMES_RECEIVED, "counter", |s| s.frames_received.get()),
            (names::FRAMES_DECODED, "counter", |s| s.frames_decoded.get()),
            (names::FRAMES_ANALYSED, "counter", |s| s.frames_analysed.get()),
            (names::FRAMES_UNCHANGED, "counter", |s| s.frames_unchanged.get()),
            (names::FRAMES_OFFERED, "counter", |s| s.frames_offered.get()),
            (names::QUEUE_WAIT, "counter", |s| s.queue_wait_us.get()),
            (names::BYTES_RECEIVED, "counter", |s| s.bytes_received.get()),
            (names::DECODE_ERRORS, "counter", |s| s.decode_errors.get()),
            (names::DECODE_SWITCHES, "counter", |s| s.mode_switches.get()),
            (names::DECODE_FULL, "gauge", |s| s.decode_full() as u64),
            (names::CAMERA_UP, "gauge", |s| s.state().is_up() as u64),
        ];
        for (name, kind, get) in per_camera {
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (id, s) in &cams {
                let _ = writeln!(out, "{name}{{camera=\"{id}\"}} {}", get(s));
            }
        }
        let _ = writeln!(out, "# TYPE {} counter", names::FRAMES_DROPPED);
        for (id, s) in &cams {
            for (stage, n) in [("analysis_queue", s.frames_dropped.get()), ("stale", s.frames_stale.get())] {
                let _ = writeln!(out, "{}{{camera=\"{id}\",stage=\"{stage}\"}} {n}", names::FRAMES_DROPPED);
            }
        }
        let _ = writeln!(out, "# TYPE {} counter", names::PIPELINE_RESTARTS);
        for (id, s) in &cams {
            for r in RestartReason::ALL {
                let (name, reason) = (names::PIPELINE_RESTARTS, r.as_str());
                let _ = writeln!(out, "{name}{{camera=\"{id}\",reason=\"{reason}\"}} {}", s.restarts(r));
            }
        }
        for (name, h) in [
            (names::INFERENCE_SECONDS, &self.inference_seconds),
            (names::WAL_SYNC_SECONDS, &self.store.wal_sync_seconds),
        ] {
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (b, n) in h.bounds.iter().zip(&h.buckets) {
                let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", n.load(Ordering::Relaxed));
            }
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count());
            let _ = writeln!(out, "{name}_sum {}", h.sum());
            let _ = writeln!(out, "{name}_count {}", h.count());
        }
        let _ = writeln!(out, "# TYPE {} counter", names::EVENTS_WRITTEN);
        let _ = writeln!(out, "{} {}", names::EVENTS_WRITTEN, self.events_written.get());
        let st = &self.store;
        let api = &self.api;
        let totals: [(&str, &str, i64); 15] = [
            ("varta_api_connections_open", "gauge", api.connections_open.get()),
            ("varta_api_connections_refused_total", "counter", api.connections_refused.get() as i64),
            ("varta_api_header_timeouts_total", "counter", api.header_timeouts.get() as i64),
            ("varta_password_checks_total", "counter", api.password_checks.get() as i64),
            ("varta_logins_refused_total", "counter", api.logins_refused.get() as i64),
            (names::SPOOL_BYTES, "gauge", st.spool_bytes.get()),
            (names::SPOOL_FULL, "gauge", st.spool_full.get()),
            (names::WAL_FAILING, "gauge", st.wal_failing.get()),
            (names::EVENTS_SPOOLED, "counter", st.events_spooled.get() as i64),
            (names::EVENTS_REPLAYED, "counter", st.events_replayed.get() as i64),
            (names::SPOOL_CORRUPT, "counter", st.spool_corrupt.get() as i64),
            (names::PARTITIONS_DROPPED, "counter", st.partitions_dropped.get() as i64),
            (names::SNAPSHOTS_DELETED, "counter", st.snapshots_deleted.get() as i64),
            (names::SNAPSHOT_BYTES, "gauge", st.snapshot_bytes.get()),
            (names::LEASES_HELD, "gauge", self.leases_held.get()),
        ];
        for (name, kind, v) in totals {
            let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_camera_metric() {
        let r = Registry::default();
        let s = r.camera(&"cam-1".into());
        s.frames_received.add(5);
        s.set_state(CameraState::Streaming);
        s.count_restart(RestartReason::Stall);
        r.inference_seconds.observe(0.03);
        let text = r.render_prometheus();
        assert!(text.contains("varta_frames_received_total{camera=\"cam-1\"} 5"), "{text}");
        assert!(text.contains("varta_camera_up{camera=\"cam-1\"} 1"), "{text}");
        assert!(text.contains("varta_pipeline_restarts_total{camera=\"cam-1\",reason=\"stall\"} 1"), "{text}");
        assert!(text.contains("varta_pipeline_restarts_total{camera=\"cam-1\",reason=\"eos\"} 0"), "{text}");
        assert!(text.contains("varta_inference_seconds_bucket{le=\"0.05\"} 1"), "{text}");
        assert!(text.contains("varta_inference_seconds_bucket{le=\"0.025\"} 0"), "{text}");
        assert!(Arc::ptr_eq(&s, &r.camera(&"cam-1".into())));
    }
}
