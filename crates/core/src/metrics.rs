//! Counters and the Prometheus text exposition.
//!
//! Per-camera counters live in [`CameraStats`], shared by the ingest (writes), the
//! detector (writes) and the API (reads), so the numbers in `GET /api/v1/cameras`
//! and in `/metrics` are the same atomics. Names come from this one list.

use crate::event::CameraState;
use crate::CameraId;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Metric names, in one place (see ARCHITECTURE.md).
pub mod names {
    /// Compressed frames (access units) received from the camera.
    pub const FRAMES_RECEIVED: &str = "varta_frames_received_total";
    /// Frames out of the decoder.
    pub const FRAMES_DECODED: &str = "varta_frames_decoded_total";
    /// Frames dropped before analysis, by stage.
    pub const FRAMES_DROPPED: &str = "varta_frames_dropped_total";
    /// Frames run through the detector.
    pub const FRAMES_ANALYSED: &str = "varta_frames_analysed_total";
    /// Inference time histogram.
    pub const INFERENCE_SECONDS: &str = "varta_inference_seconds";
    /// Event rows written (inserts and updates).
    pub const EVENTS_WRITTEN: &str = "varta_events_written_total";
    /// 1 while a camera is streaming.
    pub const CAMERA_UP: &str = "varta_camera_up";
    /// Pipeline restarts, by reason.
    pub const PIPELINE_RESTARTS: &str = "varta_pipeline_restarts_total";
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
    /// Frames run through the detector.
    pub frames_analysed: Counter,
    /// Pipeline (re)starts after a failure.
    pub restarts: Counter,
    /// Unix milliseconds of the last decoded frame, 0 if none yet.
    pub last_frame_ms: AtomicI64,
    state: AtomicU8,
    last_error: Mutex<Option<String>>,
    decoder: Mutex<Option<String>>,
}

impl Default for CameraStats {
    fn default() -> Self {
        CameraStats {
            frames_received: Counter::default(),
            frames_decoded: Counter::default(),
            frames_sampled: Counter::default(),
            frames_dropped: Counter::default(),
            frames_analysed: Counter::default(),
            restarts: Counter::default(),
            last_frame_ms: AtomicI64::new(0),
            state: AtomicU8::new(CameraState::Starting.as_u8()),
            last_error: Mutex::new(None),
            decoder: Mutex::new(None),
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
        CameraState::from_u8(self.state.swap(s.as_u8(), Ordering::Relaxed))
    }
    /// Last error, credentials already removed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap().clone()
    }
    /// Records the last error (must already be redacted).
    pub fn set_last_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap() = e;
    }
    /// GStreamer decoder element in use.
    pub fn decoder(&self) -> Option<String> {
        self.decoder.lock().unwrap().clone()
    }
    /// Records the decoder element in use.
    pub fn set_decoder(&self, d: &str) {
        *self.decoder.lock().unwrap() = Some(d.to_owned());
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
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            cameras: RwLock::new(Vec::new()),
            inference_seconds: Histogram::new(&[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            events_written: Counter::default(),
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

    /// A snapshot of every camera's stats, in registration order.
    pub fn cameras(&self) -> Vec<(CameraId, Arc<CameraStats>)> {
        self.cameras.read().unwrap().clone()
    }

    /// Renders everything in the Prometheus text format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        let cams = self.cameras();
        let mut out = String::with_capacity(256 + cams.len() * 512);
        type Getter = fn(&CameraStats) -> u64;
        let per_camera: [(&str, &str, Getter); 4] = [
            (names::FRAMES_RECEIVED, "counter", |s| s.frames_received.get()),
            (names::FRAMES_DECODED, "counter", |s| s.frames_decoded.get()),
            (names::FRAMES_ANALYSED, "counter", |s| s.frames_analysed.get()),
            (names::CAMERA_UP, "gauge", |s| (s.state() == CameraState::Streaming) as u64),
        ];
        for (name, kind, get) in per_camera {
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (id, s) in &cams {
                let _ = writeln!(out, "{name}{{camera=\"{id}\"}} {}", get(s));
            }
        }
        let _ = writeln!(out, "# TYPE {} counter", names::FRAMES_DROPPED);
        for (id, s) in &cams {
            let _ = writeln!(
                out,
                "{}{{camera=\"{id}\",stage=\"analysis_queue\"}} {}",
                names::FRAMES_DROPPED,
                s.frames_dropped.get()
            );
        }
        let _ = writeln!(out, "# TYPE {} counter", names::PIPELINE_RESTARTS);
        for (id, s) in &cams {
            let _ =
                writeln!(out, "{}{{camera=\"{id}\",reason=\"error\"}} {}", names::PIPELINE_RESTARTS, s.restarts.get());
        }
        let h = &self.inference_seconds;
        let name = names::INFERENCE_SECONDS;
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (b, n) in h.bounds.iter().zip(&h.buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", n.load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count());
        let _ = writeln!(out, "{name}_sum {}", h.sum());
        let _ = writeln!(out, "{name}_count {}", h.count());
        let _ = writeln!(out, "# TYPE {} counter", names::EVENTS_WRITTEN);
        let _ = writeln!(out, "{} {}", names::EVENTS_WRITTEN, self.events_written.get());
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
        r.inference_seconds.observe(0.03);
        let text = r.render_prometheus();
        assert!(text.contains("varta_frames_received_total{camera=\"cam-1\"} 5"), "{text}");
        assert!(text.contains("varta_camera_up{camera=\"cam-1\"} 1"), "{text}");
        assert!(text.contains("varta_inference_seconds_bucket{le=\"0.05\"} 1"), "{text}");
        assert!(text.contains("varta_inference_seconds_bucket{le=\"0.025\"} 0"), "{text}");
        assert!(Arc::ptr_eq(&s, &r.camera(&"cam-1".into())));
    }
}
