//! The decode gate: which compressed access units reach the decoder.
//!
//! - `full`: all of them.
//! - `keyframes`: keyframes only; delta units are dropped undecoded.
//! - `adaptive`: keyframes only while the scene is idle, all while it is active.
//!
//! Activity is read from the compressed stream at no decoding cost: an encoder spends
//! bytes on what changed, so the size of delta units rises when something moves. The
//! gate keeps two averages of delta-unit size: a fast one (the last few frames) and a
//! baseline that falls quickly and rises slowly, so it settles on the camera's idle
//! level (sensor noise, trees) without being dragged up by a long period of activity.
//! The activity score is fast ÷ baseline; at `threshold` or more the gate switches to
//! full decoding, and back to keyframes after `quiet` without activity. The detector
//! confirms activity too: while it finds objects of interest in the camera's frames,
//! the camera stays on (or goes to) full decoding. That covers what bytes alone miss:
//! a scene that is always busy (its baseline is its busy level) and a person standing
//! still.
//!
//! While idle, only one keyframe every `idle_keyframe` is decoded (enough for the
//! detector's periodic look and the picture health checks): the keyframe that arrives
//! closest to that interval, judged with the GOP the pipeline measures (keyframes 2 s apart and an
//! 8 s interval decode every fourth, never every fifth because one came a few
//! milliseconds early); the units since the last
//! keyframe, decoded or not, are held (reference counted, not copied). On a switch to
//! full they are replayed into the decoder first, so full decoding starts at the frame
//! where activity was noticed, not at the next keyframe, which may be seconds away.

use gstreamer as gst;
use std::time::{Duration, Instant};
use varta_core::config::DecodePolicy;
use varta_core::metrics::CameraStats;

/// Held delta units beyond this (a very long GOP) are given up; a switch to full then
/// waits for the next keyframe.
const MAX_HELD: usize = 600;
/// Baseline floor in bytes, so that near-empty skip frames do not make every small
/// change look like a hundredfold rise.
const MIN_BASELINE: f64 = 256.0;
/// Weight of a new delta unit in the fast average.
const FAST: f64 = 0.5;
/// Weight of a smaller delta unit in the baseline (it falls quickly)…
const BASE_DOWN: f64 = 0.05;
/// …and of a larger one (it rises slowly).
const BASE_UP: f64 = 0.002;

/// What the gate decided for one access unit.
pub enum GateAction {
    /// Let it through to the decoder.
    Pass,
    /// Drop it undecoded.
    Drop,
    /// Push these held units into the decoder first, then let this one through.
    ReplayThenPass(Vec<gst::Buffer>),
}

/// The decode gate of one camera.
pub struct Gate {
    policy: DecodePolicy,
    threshold: f64,
    quiet: Duration,
    idle_keyframe: Duration,
    last_decoded_key: Option<Instant>,
    /// The stream's GOP as the pipeline measures it (`StreamInfo::gop`), zero while
    /// unknown.
    gop: Duration,
    full: bool,
    fast: f64,
    baseline: f64,
    seen_delta: bool,
    last_active: Option<Instant>,
    held: Vec<gst::Buffer>,
    /// False once held units were given up (or before the first keyframe): the
    /// decoder cannot be brought up to date until the next keyframe.
    held_complete: bool,
    /// In full mode, but waiting for a keyframe before delta units can be decoded.
    awaiting_keyframe: bool,
}

impl Gate {
    /// A gate for `policy`; the others are used by `adaptive` only: the activity
    /// `threshold`, the `quiet` time before going back to keyframes, and how often a
    /// keyframe is decoded while idle.
    pub fn new(policy: DecodePolicy, threshold: f64, quiet: Duration, idle_keyframe: Duration) -> Gate {
        Gate {
            policy,
            threshold,
            quiet,
            idle_keyframe,
            last_decoded_key: None,
            gop: Duration::ZERO,
            full: policy == DecodePolicy::Full,
            fast: 0.0,
            baseline: 0.0,
            seen_delta: false,
            last_active: None,
            held: Vec::new(),
            held_complete: false,
            awaiting_keyframe: false,
        }
    }

    #[cfg(test)]
    fn is_full(&self) -> bool {
        self.full
    }

    /// Decides for one access unit and records mode and score in `stats`.
    /// `now_ms` is the unit's arrival in Unix milliseconds (the caller has it already).
    /// `gop`: the stream's keyframe interval as measured so far (`StreamInfo::gop`).
    pub fn on_buffer(
        &mut self,
        buf: &gst::BufferRef,
        gop: Option<Duration>,
        now_ms: i64,
        stats: &CameraStats,
    ) -> GateAction {
        self.gop = gop.unwrap_or_default();
        let key = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let now = Instant::now();
        let detected = stats.last_detection_ms();
        let since = now_ms - detected;
        if detected > 0 && since >= 0 && (since as u128) < self.quiet.as_millis() {
            // Not on keyframes: the decision to switch is taken on delta units.
            self.last_active = Some(now);
        }
        let action = self.decide(key, buf.size(), now, || buf.to_owned());
        stats.set_decode_full(self.full);
        stats.set_activity(self.score() as f32, !self.is_quiet(now));
        action
    }

    /// Current activity score (1.0 = the idle baseline).
    pub fn score(&self) -> f64 {
        if self.seen_delta {
            self.fast / self.baseline.max(MIN_BASELINE)
        } else {
            0.0
        }
    }

    /// The decision, separated from GStreamer buffers for testing: `own` makes an
    /// owned reference to the unit when it must be held.
    fn decide(&mut self, key: bool, size: usize, now: Instant, own: impl FnOnce() -> gst::Buffer) -> GateAction {
        match self.policy {
            DecodePolicy::Full | DecodePolicy::Keyframes => {
                // Activity is still measured: the inference scheduler serves active
                // cameras first whatever their decode policy.
                if !key {
                    self.observe(size as f64);
                    if self.score() >= self.threshold {
                        self.last_active = Some(now);
                    }
                }
                let pass = key || self.policy == DecodePolicy::Full;
                return if pass { GateAction::Pass } else { GateAction::Drop };
            }
            DecodePolicy::Adaptive => {}
        }
        if key {
            self.held.clear();
            self.held_complete = true;
            self.awaiting_keyframe = false;
            if self.full && self.is_quiet(now) {
                self.full = false;
            }
            // Due when the next keyframe would be further from the interval than this
            // one is.
            let due = self.last_decoded_key.is_none_or(|t| now.duration_since(t) + self.gop / 2 >= self.idle_keyframe);
            if self.full || due {
                self.last_decoded_key = Some(now);
                return GateAction::Pass;
            }
            // Idle and a keyframe was decoded recently: hold this one too, so that a
            // switch to full can start from it.
            self.held.push(own());
            return GateAction::Drop;
        }
        self.observe(size as f64);
        if self.score() >= self.threshold {
            self.last_active = Some(now);
        }
        if self.full {
            if self.is_quiet(now) {
                // Back to keyframes; the decoder keeps the frames it has.
                self.full = false;
                self.held_complete = false;
                return GateAction::Drop;
            }
            return if self.awaiting_keyframe { GateAction::Drop } else { GateAction::Pass };
        }
        if self.last_active == Some(now) {
            self.full = true;
            self.last_decoded_key = Some(now);
            if self.held_complete {
                return GateAction::ReplayThenPass(std::mem::take(&mut self.held));
            }
            self.awaiting_keyframe = true;
            return GateAction::Drop;
        }
        if self.held_complete {
            if self.held.len() < MAX_HELD {
                self.held.push(own());
            } else {
                self.held.clear();
                self.held_complete = false;
            }
        }
        GateAction::Drop
    }

    fn is_quiet(&self, now: Instant) -> bool {
        self.last_active.is_none_or(|t| now.duration_since(t) >= self.quiet)
    }

    fn observe(&mut self, size: f64) {
        if !self.seen_delta {
            self.seen_delta = true;
            self.fast = size;
            self.baseline = size;
            return;
        }
        self.fast += FAST * (size - self.fast);
        let w = if size < self.baseline { BASE_DOWN } else { BASE_UP };
        self.baseline += w * (size - self.baseline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit() -> gst::Buffer {
        gst::init().unwrap();
        gst::Buffer::new()
    }

    /// Feeds a GOP of `n` units (one keyframe, then deltas of `size` bytes) at 10 fps.
    fn gop(g: &mut Gate, t: &mut Instant, n: usize, size: usize) -> Vec<&'static str> {
        let mut out = Vec::new();
        for i in 0..n {
            *t += Duration::from_millis(100);
            let a = g.decide(i == 0, if i == 0 { 20_000 } else { size }, *t, unit);
            out.push(match a {
                GateAction::Pass => "pass",
                GateAction::Drop => "drop",
                GateAction::ReplayThenPass(held) => {
                    assert_eq!(held.len(), i - 1, "every delta since the keyframe is replayed");
                    "replay"
                }
            });
        }
        out
    }

    #[test]
    fn fixed_policies() {
        let mut t = Instant::now();
        let mut g = Gate::new(DecodePolicy::Full, 2.5, Duration::from_secs(10), Duration::ZERO);
        assert!(gop(&mut g, &mut t, 5, 300).iter().all(|a| *a == "pass"));
        let mut g = Gate::new(DecodePolicy::Keyframes, 2.5, Duration::from_secs(10), Duration::ZERO);
        assert_eq!(gop(&mut g, &mut t, 3, 30_000), ["pass", "drop", "drop"]);
    }

    #[test]
    fn adaptive_switches_within_a_few_frames_and_back_after_quiet() {
        let mut t = Instant::now();
        let mut g = Gate::new(DecodePolicy::Adaptive, 2.5, Duration::from_secs(5), Duration::ZERO);
        for _ in 0..5 {
            let a = gop(&mut g, &mut t, 20, 400);
            assert_eq!(a[0], "pass");
            assert!(a[1..].iter().all(|a| *a == "drop"), "{a:?}");
        }
        assert!(!g.is_full());
        // Activity starts mid-GOP: deltas ten times the idle size.
        let mut a = gop(&mut g, &mut t, 10, 400);
        a.extend(gop_continue(&mut g, &mut t, 10, 4000));
        let first = a.iter().position(|a| *a == "replay").expect("switches to full");
        assert!(first <= 12, "noticed within 2 frames of onset (frame 10): {a:?}");
        assert!(a[first + 1..].iter().all(|a| *a == "pass"), "{a:?}");
        assert!(g.is_full());
        // Quiet again: still full for `quiet`, then keyframes only.
        let a: Vec<_> = (0..6).flat_map(|_| gop(&mut g, &mut t, 20, 400)).collect();
        assert!(a[..40].iter().all(|a| *a == "pass"), "{a:?}");
        assert!(a.iter().enumerate().skip(60).all(|(i, a)| (i % 20 == 0) == (*a == "pass")), "{a:?}");
        assert!(!g.is_full());
    }

    /// Deltas only (continuing a GOP).
    fn gop_continue(g: &mut Gate, t: &mut Instant, n: usize, size: usize) -> Vec<&'static str> {
        (0..n)
            .map(|_| {
                *t += Duration::from_millis(100);
                match g.decide(false, size, *t, unit) {
                    GateAction::Pass => "pass",
                    GateAction::Drop => "drop",
                    GateAction::ReplayThenPass(_) => "replay",
                }
            })
            .collect()
    }

    #[test]
    fn idle_decodes_the_keyframe_closest_to_the_interval_whatever_the_jitter() {
        // Keyframes every 2 s arriving up to 50 ms early or late, an 8 s interval:
        // every fourth is decoded (8 s apart), never the fifth (10 s apart).
        let mut g = Gate::new(DecodePolicy::Adaptive, 2.5, Duration::from_secs(5), Duration::from_secs(8));
        g.gop = Duration::from_secs(2);
        let t0 = Instant::now();
        let mut decoded = Vec::new();
        for k in 0..40u64 {
            let jitter_ms = [50, 0, 80, 30, 100][k as usize % 5]; // 50 ± 50
            let at = t0 + Duration::from_millis(k * 2000 + jitter_ms);
            if let GateAction::Pass = g.decide(true, 20_000, at, unit) {
                decoded.push(k);
            }
            g.decide(false, 400, at + Duration::from_millis(100), unit);
        }
        let gaps: Vec<u64> = decoded.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g == 4), "keyframes decoded: {decoded:?}");
    }

    #[test]
    fn idle_decodes_a_keyframe_now_and_then_and_replays_from_a_held_one() {
        let mut t = Instant::now();
        let mut g = Gate::new(DecodePolicy::Adaptive, 2.5, Duration::from_secs(5), Duration::from_secs(6));
        // GOPs of 2 s: every third keyframe is decoded.
        let keys: Vec<_> = (0..5).map(|_| gop(&mut g, &mut t, 20, 400)[0]).collect();
        assert_eq!(keys, ["pass", "drop", "drop", "pass", "drop"]);
        // Activity after a held keyframe: the replay starts with that keyframe.
        gop(&mut g, &mut t, 1, 400);
        let mut replayed = 0;
        for _ in 0..5 {
            t += Duration::from_millis(100);
            if let GateAction::ReplayThenPass(held) = g.decide(false, 8000, t, unit) {
                replayed = held.len();
            }
        }
        assert_eq!(replayed, 1, "the held keyframe comes first");
        assert!(g.is_full());
    }

    fn now_ms() -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    #[test]
    fn a_detection_keeps_a_busy_scene_on_full_decoding() {
        gst::init().unwrap();
        let stats = std::sync::Arc::new(CameraStats::default());
        let mut g = Gate::new(DecodePolicy::Adaptive, 2.5, Duration::from_secs(5), Duration::ZERO);
        let unit = |key: bool| {
            let mut b = gst::Buffer::with_size(5000).unwrap();
            if !key {
                b.get_mut().unwrap().set_flags(gst::BufferFlags::DELTA_UNIT);
            }
            b
        };
        // Always busy: every delta the same size, so the bytes never stand out.
        assert!(matches!(g.on_buffer(&unit(true), None, now_ms(), &stats), GateAction::Pass));
        for _ in 0..5 {
            assert!(matches!(g.on_buffer(&unit(false), None, now_ms(), &stats), GateAction::Drop));
        }
        stats.activity_feedback().objects_seen(chrono::Utc::now());
        assert!(
            matches!(g.on_buffer(&unit(false), None, now_ms(), &stats), GateAction::ReplayThenPass(h) if h.len() == 5)
        );
        assert!(stats.decode_full());
    }

    #[test]
    fn baseline_follows_a_noisier_idle_scene() {
        let mut t = Instant::now();
        let mut g = Gate::new(DecodePolicy::Adaptive, 2.5, Duration::from_secs(5), Duration::ZERO);
        gop(&mut g, &mut t, 20, 5000);
        // Quieter night scene: the baseline falls quickly, no switch.
        let a: Vec<_> = (0..5).flat_map(|_| gop(&mut g, &mut t, 20, 1500)).collect();
        assert!(!a.contains(&"replay"), "{a:?}");
        assert!(g.score() < 1.5, "{}", g.score());
    }
}
