//! Counters and the Prometheus text exposition.
//!
//! Per-camera counters live in [`CameraStats`], shared by the ingest (writes), the
//! detector (writes) and the API (reads), so the numbers in `GET /api/v1/cameras`
//! and in `/metrics` are the same atomics. Every counter and gauge is declared once
//! in a [`metric_set!`] (field, help, type, name, labels), which makes the struct
//! and its rendering.

use crate::event::{CameraState, RestartReason};
use crate::CameraId;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

/// Metric names, in one place (see ARCHITECTURE.md).
/// Names of the metrics not declared in a [`metric_set!`]: histograms and the
/// per-camera series derived from state (see ARCHITECTURE.md).
pub mod names {
    /// Inference time histogram.
    pub const INFERENCE_SECONDS: &str = "varta_inference_seconds";
    /// 1 while a camera is streaming.
    pub const CAMERA_UP: &str = "varta_camera_up";
    /// Pipeline restarts, by reason.
    pub const PIPELINE_RESTARTS: &str = "varta_pipeline_restarts_total";
    /// 1 while every frame is decoded, 0 while only keyframes are.
    pub const DECODE_FULL: &str = "varta_camera_decode_full";
    /// Time of one group commit to the event log: write and `fdatasync`.
    pub const WAL_SYNC_SECONDS: &str = "varta_wal_sync_seconds";
}

/// A camera's health measurements and the problems they show.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Health {
    /// Frames per second the camera should send: the camera's `expected_fps` in the
    /// config, else the highest rate measured over a full health window of this
    /// session, capped at the rate the stream declares (SDP or SPS VUI); `None` before
    /// the first full window. A declared rate is never trusted alone (stale SDPs and
    /// VUI timing fixed at 30 fps are common).
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
    /// RTP packets lost over the last health window, in percent of those sent
    /// (lost / (received + lost), from the jitter buffer's sequence numbers); absent
    /// until packets arrived in a window.
    pub packet_loss_pct: Option<f64>,
    /// Mean RTP interarrival jitter, in milliseconds (the jitter buffer's
    /// `avg-jitter`).
    pub jitter_ms: Option<f64>,
    /// Seconds between the last two keyframes received: the GOP length as the
    /// camera sends it (smart codecs stretch it to 10–60 s on a quiet scene).
    pub gop_secs: Option<f64>,
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
    /// Sessions that delivered video keep ending after a short while (a flapping radio
    /// link, a camera or NVR that closes sessions): 3 or more within 5 minutes, each
    /// shorter than `[ingest] backoff_reset_secs`.
    LinkDrops,
    /// More RTP packets lost than `[health] max_packet_loss_pct` over one window.
    PacketLoss,
}

impl HealthProblem {
    /// The name in the API and in maintenance task kinds.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthProblem::LowFps => "low_fps",
            HealthProblem::DecodeErrors => "decode_errors",
            HealthProblem::Frozen => "frozen",
            HealthProblem::Blackout => "blackout",
            HealthProblem::LinkDrops => "link_drops",
            HealthProblem::PacketLoss => "packet_loss",
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

/// What a camera is doing now, as its ingest supervisor publishes it on a
/// `tokio::sync::watch` channel ([`CameraStats::subscribe`]): the state machine, its
/// reason, health and the last error. Readers (the API, the maintenance policy, the
/// inference pool, `varta bench`) take copies or wait for changes; only the ingest
/// writes ([`CameraStats::publish`]).
#[derive(Clone, Debug, PartialEq)]
pub struct CameraLive {
    /// State of the camera's pipeline.
    pub state: CameraState,
    /// Why it is in that state (no credentials: redacted by the ingest).
    pub reason: String,
    /// When the state began.
    pub since: DateTime<Utc>,
    /// Latest health measurements and problems.
    pub health: Health,
    /// Last error, credentials removed.
    pub last_error: Option<String>,
    /// GStreamer decoder element in use.
    pub decoder: Option<String>,
    /// Codec of the analysed stream (`h264`, `h265`).
    pub codec: Option<String>,
    /// Last probe of the camera's main stream, if it has one.
    pub main: Option<MainStream>,
    /// When the decode mode last changed.
    pub last_switch_at: Option<DateTime<Utc>>,
}

impl Default for CameraLive {
    fn default() -> Self {
        CameraLive {
            state: CameraState::Starting,
            reason: String::new(),
            since: Utc::now(),
            health: Health::default(),
            last_error: None,
            decoder: None,
            codec: None,
            main: None,
            last_switch_at: None,
        }
    }
}

/// Detection's one signal back to the ingest: objects of interest were seen in an
/// analysed frame. The decode gate keeps full decoding and the scheduler serves the
/// camera first while such detections are recent. A narrow handle: it can do
/// nothing else with the camera's stats.
#[derive(Clone, Debug)]
pub struct ActivityFeedback(Arc<CameraStats>);

impl ActivityFeedback {
    /// Records that objects of interest were seen at `at`.
    pub fn objects_seen(&self, at: DateTime<Utc>) {
        self.0.last_detection_ms.store(at.timestamp_millis(), Ordering::Relaxed);
    }
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

/// A metric's value as the Prometheus text format shows it, and its type there.
pub trait Metric {
    /// `counter` or `gauge`.
    const KIND: &'static str;
    /// The current value.
    fn value(&self) -> i64;
}

impl Metric for Counter {
    const KIND: &'static str = "counter";
    fn value(&self) -> i64 {
        self.get() as i64
    }
}

impl Metric for Gauge {
    const KIND: &'static str = "gauge";
    fn value(&self) -> i64 {
        self.get()
    }
}

/// What is declared of one metric: name, type, help, and labels of its own
/// (`stage="stale"`) besides the `camera` label of per-camera metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    /// Prometheus name, e.g. `varta_frames_received_total`.
    pub name: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    /// One line for `# HELP` (the field's doc comment).
    pub help: &'static str,
    /// Extra labels, rendered as is (`stage="stale"`); empty for none.
    pub labels: &'static str,
}

/// Declares a set of metrics once: each field with its doc comment (the help), its
/// type (`Counter` or `Gauge`) and its Prometheus name (and labels of its own); the
/// struct, its `Default` and its rendering ([`render_set`]) all come from this one
/// list, so adding a metric is one entry. Vector's `internal_events` is the model.
macro_rules! metric_set {
    (
        $(#[$sm:meta])*
        pub struct $S:ident {
            $( $(#[doc = $help:literal])+ $field:ident : $ty:ident => $name:literal $({ $labels:literal })? ),* $(,)?
        }
    ) => {
        $(#[$sm])*
        #[derive(Debug, Default)]
        pub struct $S {
            $( $(#[doc = $help])+ pub $field: $ty, )*
        }

        impl $S {
            /// Every metric of the set with its value, in declaration order.
            pub fn each(&self) -> Vec<(Desc, i64)> {
                vec![$((
                    Desc {
                        name: $name,
                        kind: <$ty as Metric>::KIND,
                        help: concat!($($help),+),
                        labels: metric_set!(@labels $($labels)?),
                    },
                    Metric::value(&self.$field),
                ),)*]
            }
        }
    };
    (@labels) => { "" };
    (@labels $l:literal) => { $l };
}

metric_set! {
    /// The counters of one camera, each a `{camera="ID"}` series in `/metrics`.
    pub struct CameraCounters {
        /// Compressed frames (access units) received from the camera.
        frames_received: Counter => "varta_frames_received_total",
        /// Frames out of the decoder.
        frames_decoded: Counter => "varta_frames_decoded_total",
        /// Frames handed to analysis at the analysis fps (after the sampler).
        frames_sampled: Counter => "varta_frames_sampled_total",
        /// Frames dropped before analysis, by stage (the analysis queue was full, or
        /// the frame waited longer than max_frame_age_ms).
        frames_dropped: Counter => "varta_frames_dropped_total" { "stage=\"analysis_queue\"" },
        /// Frames dropped before analysis, by stage (the analysis queue was full, or
        /// the frame waited longer than max_frame_age_ms).
        frames_stale: Counter => "varta_frames_dropped_total" { "stage=\"stale\"" },
        /// Frames offered to the inference scheduler.
        frames_offered: Counter => "varta_frames_offered_total",
        /// Frames analysed (run through the detector, or found unchanged).
        frames_analysed: Counter => "varta_frames_analysed_total",
        /// Analysed frames of an idle camera whose picture had not changed since its
        /// last inference, so its detections were reused without running the model.
        frames_unchanged: Counter => "varta_frames_unchanged_total",
        /// Microseconds analysed frames waited for a worker (mean wait: this / frames analysed).
        queue_wait_us: Counter => "varta_analysis_queue_wait_microseconds_total",
        /// Compressed bytes received from the camera.
        bytes_received: Counter => "varta_bytes_received_total",
        /// Decoder and stream errors and warnings (depayloader, parser, decoder).
        decode_errors: Counter => "varta_decode_errors_total",
        /// Switches between keyframe and full decoding.
        mode_switches: Counter => "varta_decode_mode_switches_total",
        /// RTP packets the jitter buffer passed on (rtpjitterbuffer `num-pushed`).
        rtp_packets_received: Counter => "varta_rtp_packets_received_total",
        /// RTP packets that never arrived, by sequence number (`num-lost`).
        rtp_packets_lost: Counter => "varta_rtp_packets_lost_total",
        /// RTP packets that arrived too late to be used (`num-late`).
        rtp_packets_late: Counter => "varta_rtp_packets_late_total",
        /// RTP packets that arrived twice (`num-duplicates`).
        rtp_packets_duplicate: Counter => "varta_rtp_packets_duplicate_total",
    }
}

metric_set! {
    /// The API's edge (`varta_api::tls::serve`, the login handler).
    pub struct ApiStats {
        /// Connections open now.
        connections_open: Gauge => "varta_api_connections_open",
        /// Connections closed at once because a cap (total or per address) was reached.
        connections_refused: Counter => "varta_api_connections_refused_total",
        /// Connections closed because their request head did not arrive in time.
        header_timeouts: Counter => "varta_api_header_timeouts_total",
        /// Passwords checked (argon2 runs) by logins.
        password_checks: Counter => "varta_password_checks_total",
        /// Logins refused before their password was checked: the (account, address)
        /// pair used its places (429), or the hashing pool was full (503).
        logins_refused: Counter => "varta_logins_refused_total",
    }
}

metric_set! {
    /// The store writer's event log and retention numbers (its histogram is
    /// [`Registry::wal_sync_seconds`]).
    pub struct StoreStats {
        /// Bytes in the event log on disk (the write-ahead log) not yet in PostgreSQL.
        spool_bytes: Gauge => "varta_spool_bytes",
        /// 1 while the event log is at its cap and no more records are taken.
        spool_full: Gauge => "varta_spool_full",
        /// 1 while the event log cannot be written (disk full, read-only, I/O error).
        wal_failing: Gauge => "varta_wal_failing",
        /// Event records written (synced) to the event log: every event record passes it.
        events_spooled: Counter => "varta_events_spooled_total",
        /// Event records read back from the event log into PostgreSQL.
        events_replayed: Counter => "varta_events_replayed_total",
        /// Event log records found torn or corrupt (set aside, reported).
        spool_corrupt: Counter => "varta_spool_corrupt_records_total",
        /// Event partitions dropped by retention.
        partitions_dropped: Counter => "varta_retention_partitions_dropped_total",
        /// Snapshot files deleted by retention.
        snapshots_deleted: Counter => "varta_retention_snapshots_deleted_total",
        /// Bytes in the snapshot folder after the last retention run.
        snapshot_bytes: Gauge => "varta_snapshot_bytes",
    }
}

metric_set! {
    /// The NATS JetStream feed's publisher (`[feed]`, issue #23).
    pub struct FeedStats {
        /// Messages JetStream acked as stored (duplicates included).
        published: Counter => "varta_feed_published_total",
        /// Acked messages JetStream found it had stored already (a batch sent again
        /// after a failure): dropped by its deduplication, not stored twice.
        duplicates: Counter => "varta_feed_duplicates_total",
        /// Batches that failed (NATS away, an ack missing) and were kept to send again.
        failures: Counter => "varta_feed_failures_total",
        /// 1 while the last attempt to send failed.
        failing: Gauge => "varta_feed_failing",
        /// Messages waiting in PostgreSQL's outbox (all processes), at the last count.
        backlog: Gauge => "varta_feed_backlog",
        /// Age in seconds of the oldest message waiting, at the last count (0: none).
        backlog_age_secs: Gauge => "varta_feed_backlog_age_seconds",
    }
}

metric_set! {
    /// Node-wide totals.
    pub struct NodeTotals {
        /// Event rows written to PostgreSQL (inserts and updates).
        events_written: Counter => "varta_events_written_total",
        /// Camera leases this node holds.
        leases_held: Gauge => "varta_leases_held",
        /// Vehicle crops read by the plate reader (issue #20).
        plate_crops_read: Counter => "varta_plate_crops_read_total",
        /// Vehicle crops dropped, not read, because the plates thread was behind.
        plate_crops_dropped: Counter => "varta_plate_crops_dropped_total",
        /// Microseconds the plates thread spent reading crops (OCR, one thread).
        plate_read_micros: Counter => "varta_plate_read_microseconds_total",
        /// Vehicle tracks whose plate was decided and recorded.
        plate_reads: Counter => "varta_plate_reads_total",
    }
}

/// Writes the metrics `descs` declares for every one of `series` (the labels of one
/// series, e.g. `camera="cam-1"`, and its values) in the Prometheus text format:
/// `# HELP` and `# TYPE` once per name, in declaration order, then each sample.
pub fn render_set(out: &mut String, descs: &[Desc], series: &[(String, Vec<(Desc, i64)>)]) {
    let mut done: Vec<&str> = Vec::new();
    for d in descs {
        if done.contains(&d.name) {
            continue;
        }
        done.push(d.name);
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {}", d.name, d.help.trim(), d.name, d.kind);
        for (labels, values) in series {
            for (vd, v) in values.iter().filter(|(vd, _)| vd.name == d.name) {
                let all: Vec<&str> = [labels.as_str(), vd.labels].into_iter().filter(|l| !l.is_empty()).collect();
                if all.is_empty() {
                    let _ = writeln!(out, "{} {v}", d.name);
                } else {
                    let _ = writeln!(out, "{}{{{}}} {v}", d.name, all.join(","));
                }
            }
        }
    }
}

/// Live counters and state of one camera.
#[derive(Debug)]
pub struct CameraStats {
    /// The camera's counters ([`CameraCounters`]).
    pub counters: CameraCounters,
    /// Unix milliseconds of the last decoded frame, 0 if none yet.
    pub last_frame_ms: AtomicI64,
    /// Unix milliseconds of the last compressed buffer received, 0 if none yet.
    pub last_buffer_ms: AtomicI64,
    /// Unix milliseconds of the last analysed frame with an object of interest, 0 if
    /// none yet (written through [`ActivityFeedback`]).
    last_detection_ms: AtomicI64,
    restarts: [Counter; RestartReason::ALL.len()],
    decode_full: AtomicBool,
    activity: AtomicU32,
    scene_active: AtomicBool,
    live: watch::Sender<CameraLive>,
}

impl Default for CameraStats {
    fn default() -> Self {
        CameraStats {
            counters: CameraCounters::default(),
            last_frame_ms: AtomicI64::new(0),
            last_buffer_ms: AtomicI64::new(0),
            last_detection_ms: AtomicI64::new(0),
            restarts: Default::default(),
            decode_full: AtomicBool::new(false),
            activity: AtomicU32::new(0),
            scene_active: AtomicBool::new(false),
            live: watch::Sender::new(CameraLive::default()),
        }
    }
}

impl CameraStats {
    /// A receiver of the camera's live state: `borrow()` for now, `changed()` to wait.
    pub fn subscribe(&self) -> watch::Receiver<CameraLive> {
        self.live.subscribe()
    }
    /// A copy of the camera's live state now.
    pub fn live(&self) -> CameraLive {
        self.live.borrow().clone()
    }
    /// The ingest's write: changes the live state with `f`; receivers are woken only
    /// when something changed.
    pub fn publish(&self, f: impl FnOnce(&mut CameraLive)) {
        self.live.send_if_modified(|l| {
            let before = l.clone();
            f(l);
            *l != before
        });
    }
    /// The narrow handle detection reports activity through.
    pub fn activity_feedback(self: &Arc<Self>) -> ActivityFeedback {
        ActivityFeedback(self.clone())
    }
    /// Unix milliseconds of the last analysed frame with objects of interest, 0 if none.
    pub fn last_detection_ms(&self) -> i64 {
        self.last_detection_ms.load(Ordering::Relaxed)
    }
    /// Current state.
    pub fn state(&self) -> CameraState {
        self.live.borrow().state
    }
    /// Publishes state `s` with `reason`; returns the previous state. The state's
    /// start time moves only when the state changes.
    pub fn set_state(&self, s: CameraState, reason: &str) -> CameraState {
        let mut old = s;
        self.publish(|l| {
            old = l.state;
            if l.state != s {
                l.state = s;
                l.since = Utc::now();
            }
            if l.reason != reason {
                l.reason = reason.to_owned();
            }
        });
        old
    }
    /// When the current state began.
    pub fn state_since(&self) -> Option<DateTime<Utc>> {
        Some(self.live.borrow().since)
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
            self.counters.mode_switches.inc();
            self.publish(|l| l.last_switch_at = Some(Utc::now()));
        }
    }
    /// When the decode mode last changed.
    pub fn last_switch_at(&self) -> Option<DateTime<Utc>> {
        self.live.borrow().last_switch_at
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
        self.live.borrow().last_error.clone()
    }
    /// Records the last error (must already be redacted).
    pub fn set_last_error(&self, e: Option<String>) {
        self.publish(|l| l.last_error = e);
    }
    /// GStreamer decoder element in use.
    pub fn decoder(&self) -> Option<String> {
        self.live.borrow().decoder.clone()
    }
    /// Records the decoder element and codec in use.
    pub fn set_decoder(&self, decoder: &str, codec: &str) {
        self.publish(|l| {
            l.decoder = Some(decoder.to_owned());
            l.codec = Some(codec.to_owned());
        });
    }
    /// Codec of the analysed stream (`h264`, `h265`).
    pub fn codec(&self) -> Option<String> {
        self.live.borrow().codec.clone()
    }
    /// Latest health measurements.
    pub fn health(&self) -> Health {
        self.live.borrow().health.clone()
    }
    /// Records health measurements.
    pub fn set_health(&self, h: Health) {
        self.publish(|l| l.health = h);
    }
    /// Last main-stream probe, if the camera has a main stream.
    pub fn main_stream(&self) -> Option<MainStream> {
        self.live.borrow().main.clone()
    }
    /// Records a main-stream probe.
    pub fn set_main_stream(&self, m: Option<MainStream>) {
        self.publish(|l| l.main = m);
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
    /// Node-wide totals: events written, leases held.
    pub totals: NodeTotals,
    /// Store writer and spool.
    pub store: StoreStats,
    /// Group commits to the event log (write + fdatasync), in seconds.
    pub wal_sync_seconds: Histogram,
    /// From an alert's commit to this process hearing of it (LISTEN/NOTIFY). Kept
    /// for `varta bench`; not rendered in `/metrics`, whose scrapes would otherwise
    /// time every alert (issue #17).
    pub alert_latency: Histogram,
    /// The API's edge: connections and password checks.
    pub api: ApiStats,
    /// The NATS JetStream feed's publisher.
    pub feed: FeedStats,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            cameras: RwLock::new(Vec::new()),
            inference_seconds: Histogram::new(&[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            totals: NodeTotals::default(),
            store: StoreStats::default(),
            wal_sync_seconds: Histogram::new(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
            alert_latency: Histogram::new(&[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            api: ApiStats::default(),
            feed: FeedStats::default(),
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
        let series: Vec<(String, Vec<(Desc, i64)>)> =
            cams.iter().map(|(id, s)| (format!("camera=\"{id}\""), s.counters.each())).collect();
        let descs: Vec<Desc> = CameraCounters::default().each().into_iter().map(|d| d.0).collect();
        render_set(&mut out, &descs, &series);
        // Per camera, from its state rather than a counter.
        type Derived = fn(&CameraStats) -> i64;
        let derived: [(&str, &str, Derived); 2] = [
            (names::DECODE_FULL, "1 while every frame is decoded, 0 while only keyframes are.", |s| {
                s.decode_full() as i64
            }),
            (names::CAMERA_UP, "1 while the camera is streaming.", |s| s.state().is_up() as i64),
        ];
        for (name, help, get) in derived {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (id, s) in &cams {
                let _ = writeln!(out, "{name}{{camera=\"{id}\"}} {}", get(s));
            }
        }
        let name = names::PIPELINE_RESTARTS;
        let _ = writeln!(out, "# HELP {name} Pipeline restarts, by reason.\n# TYPE {name} counter");
        for (id, s) in &cams {
            for r in RestartReason::ALL {
                let (name, reason) = (names::PIPELINE_RESTARTS, r.as_str());
                let _ = writeln!(out, "{name}{{camera=\"{id}\",reason=\"{reason}\"}} {}", s.restarts(r));
            }
        }
        for (name, help, h) in [
            (
                names::INFERENCE_SECONDS,
                "Seconds of one detector run: preprocessing, the model and decoding its outputs.",
                &self.inference_seconds,
            ),
            (
                names::WAL_SYNC_SECONDS,
                "Seconds of one group commit to the event log: write and fdatasync.",
                &self.wal_sync_seconds,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (b, n) in h.bounds.iter().zip(&h.buckets) {
                let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", n.load(Ordering::Relaxed));
            }
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count());
            let _ = writeln!(out, "{name}_sum {}", h.sum());
            let _ = writeln!(out, "{name}_count {}", h.count());
        }
        for set in [self.totals.each(), self.store.each(), self.api.each(), self.feed.each()] {
            let descs: Vec<Desc> = set.iter().map(|d| d.0).collect();
            render_set(&mut out, &descs, &[(String::new(), set)]);
        }
        out
    }
}

/// CPU seconds (user + system) of this process so far, every thread (getrusage(2)):
/// what the node's health samples and the benchmarks difference over an interval.
pub fn process_cpu_secs() -> f64 {
    // SAFETY: getrusage(2) fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_camera_metric() {
        let r = Registry::default();
        let s = r.camera(&"cam-1".into());
        s.counters.frames_received.add(5);
        s.counters.frames_stale.inc();
        s.set_state(CameraState::Streaming, "frames arriving");
        s.count_restart(RestartReason::Stall);
        r.inference_seconds.observe(0.03);
        let text = r.render_prometheus();
        assert!(text.contains("varta_frames_received_total{camera=\"cam-1\"} 5"), "{text}");
        assert!(text.contains("varta_camera_up{camera=\"cam-1\"} 1"), "{text}");
        assert!(text.contains("varta_pipeline_restarts_total{camera=\"cam-1\",reason=\"stall\"} 1"), "{text}");
        assert!(text.contains("varta_pipeline_restarts_total{camera=\"cam-1\",reason=\"eos\"} 0"), "{text}");
        assert!(text.contains("varta_inference_seconds_bucket{le=\"0.05\"} 1"), "{text}");
        // Declared once: each name has one HELP and TYPE, with its doc as help; a
        // metric with labels of its own keeps them.
        assert_eq!(text.matches("# TYPE varta_frames_dropped_total counter").count(), 1, "{text}");
        assert!(text.contains("# HELP varta_frames_received_total Compressed frames"), "{text}");
        assert!(text.contains("varta_frames_dropped_total{camera=\"cam-1\",stage=\"stale\"} 1"), "{text}");
        assert!(text.contains("varta_frames_dropped_total{camera=\"cam-1\",stage=\"analysis_queue\"} 0"), "{text}");
        assert!(text.contains("# TYPE varta_api_connections_open gauge\nvarta_api_connections_open 0"), "{text}");
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split(' ').nth(2).unwrap();
            assert_eq!(text.matches(&format!("# TYPE {name} ")).count(), 1, "{name} typed twice");
            assert!(text.contains(&format!("# HELP {name} ")), "{name} has no help");
        }
        assert!(text.contains("varta_inference_seconds_bucket{le=\"0.025\"} 0"), "{text}");
        assert!(Arc::ptr_eq(&s, &r.camera(&"cam-1".into())));
    }
}
