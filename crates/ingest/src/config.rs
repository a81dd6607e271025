//! `[ingest]` and `[health]`: the ingest's sections of the node config, their
//! defaults and validation (keys documented in `config/README.md`).

use serde::Deserialize;
use varta_core::config::{KeyPath, Problems, Range};

/// RTSP lower transport.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// Interleaved in the RTSP TCP connection: works through NAT and firewalls.
    Tcp,
    /// RTP over UDP: lower overhead, loses packets on bad links.
    Udp,
    /// Let the client try UDP, then TCP.
    Auto,
}

/// `[ingest]`: how streams are pulled and decoded.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// First wait, in seconds, before rebuilding a pipeline that failed.
    pub backoff_initial_secs: f64,
    /// Longest wait between attempts; each failure in a row doubles the wait up to this.
    pub backoff_max_secs: f64,
    /// A session that ends having streamed less than this many seconds counts as a
    /// link drop (3 within 5 minutes: the `link_drops` health problem). Any session
    /// that delivered video resets the wait to the initial one.
    pub backoff_reset_secs: f64,
    /// Random extra wait, as a fraction of the wait (0.2 = up to 20% more), so that
    /// cameras behind one dead link do not reconnect in lock-step.
    pub backoff_jitter: f64,
    /// RTSP transport.
    pub rtsp_transport: RtspTransport,
    /// rtspsrc jitter-buffer latency in milliseconds.
    pub latency_ms: u32,
    /// Seconds between RTSP keep-alives (`GET_PARAMETER` on the session), on every
    /// transport; keep it below the shortest session timeout the cameras announce
    /// (`Session: …;timeout=N`, often 30 or 60 s). 0 = leave it to rtspsrc, which sends
    /// none over TCP in GStreamer 1.22 (see `varta_ingest::keepalive`).
    pub rtsp_keepalive_secs: f64,
    /// Seconds without a buffer from the camera after which the pipeline is restarted.
    pub stall_timeout_secs: f64,
    /// Seconds from starting a pipeline to its first buffer after which the attempt is
    /// abandoned (reason `connect`) and retried with backoff: a camera or link that
    /// accepts the connection and then says nothing must not hold a camera for a whole
    /// stall timeout, or for rtspsrc's own 20 s TCP timeout.
    pub connect_timeout_secs: f64,
    /// `adaptive` decode: activity score (recent delta-frame bytes over the camera's
    /// idle baseline) at which full decoding starts.
    pub activity_threshold: f64,
    /// `adaptive` decode: seconds without activity before going back to keyframes.
    pub activity_quiet_secs: f64,
    /// `adaptive` decode: while idle, decode one keyframe at most this often (0 = all;
    /// default 8 s: within the scheduler's 10 s idle check).
    pub idle_keyframe_secs: f64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            backoff_initial_secs: 1.0,
            backoff_max_secs: 60.0,
            backoff_reset_secs: 30.0,
            backoff_jitter: 0.2,
            rtsp_transport: RtspTransport::Tcp,
            latency_ms: 200,
            rtsp_keepalive_secs: 15.0,
            stall_timeout_secs: 10.0,
            connect_timeout_secs: 10.0,
            activity_threshold: 2.5,
            activity_quiet_secs: 5.0,
            idle_keyframe_secs: 8.0,
        }
    }
}

/// `[health]`: signals that a camera streams but needs a technician.
/// `[clips]`: a video clip with every event (issue #22), remuxed from the camera's
/// own stream without re-encoding (the `clip` module).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClipsConfig {
    /// Record clips.
    pub enabled: bool,
    /// Seconds before the event's first frame, from the keyframe at or before it.
    pub pre_roll_secs: f64,
    /// Seconds after the event's last frame.
    pub post_roll_secs: f64,
    /// The longest clip, in seconds: a longer event's clip is cut there.
    pub max_secs: f64,
    /// Memory for each camera's ring of compressed units, in MiB (the oldest GOP goes
    /// first when it is full).
    pub ring_mb: u32,
}

impl Default for ClipsConfig {
    fn default() -> Self {
        ClipsConfig { enabled: true, pre_roll_secs: 5.0, post_roll_secs: 10.0, max_secs: 120.0, ring_mb: 32 }
    }
}

impl ClipsConfig {
    /// Checks the ranges under `at` (`[clips]`).
    pub fn validate(&self, at: &KeyPath, p: &mut Problems<'_>) {
        p.check_ranges(
            at,
            &[
                Range::closed("pre_roll_secs", self.pre_roll_secs, 0.0, 60.0),
                Range::closed("post_roll_secs", self.post_roll_secs, 0.0, 300.0),
                Range::closed("max_secs", self.max_secs, 1.0, 3600.0),
                Range::closed("ring_mb", self.ring_mb as f64, 1.0, 1024.0),
            ],
        );
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Measured fps below this share of the expected fps is `low_fps`.
    pub min_fps_ratio: f64,
    /// Seconds over which fps and bitrate are measured.
    pub window_secs: f64,
    /// Seconds of identical pictures before a camera is `frozen`.
    pub frozen_secs: f64,
    /// Mean absolute difference (0–255) between analysed frames below which they count
    /// as identical (a live scene has sensor noise well above this).
    pub frozen_max_diff: f64,
    /// Seconds of a dark or featureless picture before a camera is `blackout`.
    pub blackout_secs: f64,
    /// Mean luma (0–255) at or below which a picture is dark.
    pub blackout_max_luma: f64,
    /// Luma standard deviation at or below which a picture is featureless (covered lens,
    /// blank screen).
    pub blackout_max_stddev: f64,
    /// Decode errors within one window that make a camera `decode_errors`.
    pub max_decode_errors: u64,
    /// RTP packet loss, in percent of the packets sent over one window, above which a
    /// camera has `packet_loss` (smeared or broken pictures).
    pub max_packet_loss_pct: f64,
    /// Seconds between health probes of a camera's `main_url`.
    pub main_probe_interval_secs: f64,
    /// Seconds each probe of the main stream listens.
    pub main_probe_secs: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            min_fps_ratio: 0.5,
            window_secs: 10.0,
            frozen_secs: 10.0,
            frozen_max_diff: 0.05,
            blackout_secs: 10.0,
            blackout_max_luma: 20.0,
            blackout_max_stddev: 4.0,
            max_decode_errors: 10,
            max_packet_loss_pct: 1.0,
            main_probe_interval_secs: 300.0,
            main_probe_secs: 5.0,
        }
    }
}

impl IngestConfig {
    /// Checks the values the types alone cannot, under `at` (`ingest`).
    pub fn validate(&self, at: &KeyPath, p: &mut Problems<'_>) {
        let i = self;
        p.check_ranges(
            at,
            &[
                Range::closed("backoff_initial_secs", i.backoff_initial_secs, 0.0, 3600.0),
                Range::closed("backoff_max_secs", i.backoff_max_secs, 0.0, 86400.0),
                Range::closed("backoff_reset_secs", i.backoff_reset_secs, 0.0, 86400.0),
                Range::closed("backoff_jitter", i.backoff_jitter, 0.0, 1.0),
                Range::closed("rtsp_keepalive_secs", i.rtsp_keepalive_secs, 0.0, 3600.0),
                Range::closed("stall_timeout_secs", i.stall_timeout_secs, 1.0, 3600.0),
                Range::closed("connect_timeout_secs", i.connect_timeout_secs, 1.0, 3600.0),
                Range::closed("activity_threshold", i.activity_threshold, 1.0, 1000.0),
                Range::closed("activity_quiet_secs", i.activity_quiet_secs, 0.0, 3600.0),
                Range::closed("idle_keyframe_secs", i.idle_keyframe_secs, 0.0, 3600.0),
            ],
        );
        if i.backoff_max_secs < i.backoff_initial_secs {
            p.add(&at.key("backoff_max_secs"), "must not be less than backoff_initial_secs");
        }
    }
}

impl HealthConfig {
    /// Checks the values the types alone cannot, under `at` (`health`).
    pub fn validate(&self, at: &KeyPath, p: &mut Problems<'_>) {
        let h = self;
        p.check_ranges(
            at,
            &[
                Range::closed("min_fps_ratio", h.min_fps_ratio, 0.0, 1.0),
                Range::closed("window_secs", h.window_secs, 1.0, 3600.0),
                Range::closed("frozen_secs", h.frozen_secs, 1.0, 86400.0),
                Range::closed("frozen_max_diff", h.frozen_max_diff, 0.0, 255.0),
                Range::closed("blackout_secs", h.blackout_secs, 1.0, 86400.0),
                Range::closed("blackout_max_luma", h.blackout_max_luma, 0.0, 255.0),
                Range::closed("blackout_max_stddev", h.blackout_max_stddev, 0.0, 255.0),
                Range::closed("max_packet_loss_pct", h.max_packet_loss_pct, 0.0, 100.0),
                Range::closed("main_probe_interval_secs", h.main_probe_interval_secs, 10.0, 86400.0),
                Range::closed("main_probe_secs", h.main_probe_secs, 1.0, 60.0),
            ],
        );
    }
}
