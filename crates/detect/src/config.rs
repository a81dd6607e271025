//! `[detect]`: detection's section of the node config (model, workers, scheduler,
//! tracker, snapshots), its defaults, validation, and the settings it builds.

use crate::runtime::Provider;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use varta_core::config::{KeyPath, Problems, Range};
use varta_core::frame::SchedulerConfig;

/// `[detect]`: model, inference workers and tracker.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Model manifest file; relative paths are taken from the current directory.
    pub models: PathBuf,
    /// Model name in the manifest.
    pub model: String,
    /// Where inference runs: `cpu`, `cuda` or `tensorrt`. A GPU provider that
    /// cannot load falls back to the CPU with a warning.
    pub provider: Provider,
    /// GPU to use (`cuda`, `tensorrt`).
    pub device_id: u32,
    /// TensorRT: build FP16 engines (faster, a little less precise).
    pub fp16: bool,
    /// TensorRT engine cache, so a restart does not rebuild engines (minutes).
    pub engine_cache_dir: PathBuf,
    /// Inference worker threads, each with its own session; 0 = one per CPU core.
    pub workers: usize,
    /// Threads ONNX Runtime may use inside one inference.
    pub intra_threads: usize,
    /// Frames kept per camera awaiting analysis (oldest dropped when full).
    pub queue_per_camera: usize,
    /// Every camera gets an analysed frame at least this often (seconds), however
    /// busy the others are.
    pub max_idle_check_secs: f64,
    /// Frames that waited longer than this (milliseconds) are dropped, not analysed.
    pub max_frame_age_ms: u64,
    /// Minimum IoU between a detection and a track's predicted box to continue it.
    pub track_iou: f32,
    /// Frames a track must be matched in before it becomes an event.
    pub track_min_hits: u32,
    /// Seconds a lost track is remembered (and can be picked up again) before it ends.
    pub track_max_age_secs: f64,
    /// Detections scoring at least this start tracks and are matched first
    /// (ByteTrack's high pass); lower ones (down to 0.2) only continue tracks.
    pub track_high_score: f32,
    /// Directory of event snapshots (`<event id>.jpg` and `<event id>.crop.jpg`).
    pub snapshot_dir: PathBuf,
    /// JPEG quality of snapshots, 1..100.
    pub snapshot_quality: u8,
    /// `[detect.plates]`: number plates on vehicle tracks.
    pub plates: crate::plates::PlatesConfig,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            models: PathBuf::from("models/models.toml"),
            model: "yolox_nano_352x256".into(),
            provider: Provider::Cpu,
            device_id: 0,
            fp16: true,
            engine_cache_dir: PathBuf::from(".varta/trt-cache"),
            workers: 0,
            intra_threads: 1,
            queue_per_camera: 2,
            max_idle_check_secs: 10.0,
            max_frame_age_ms: 1500,
            track_iou: 0.3,
            track_min_hits: 2,
            track_max_age_secs: 3.0,
            track_high_score: 0.5,
            snapshot_dir: PathBuf::from(".varta/snapshots"),
            snapshot_quality: 85,
            plates: crate::plates::PlatesConfig::default(),
        }
    }
}

impl DetectConfig {
    /// Checks the values the types alone cannot, under `at` (`detect`).
    pub fn validate(&self, at: &KeyPath, p: &mut Problems<'_>) {
        let d = self;
        p.check_ranges(
            at,
            &[
                Range::closed("intra_threads", d.intra_threads as f64, 1.0, f64::INFINITY),
                Range::closed("queue_per_camera", d.queue_per_camera as f64, 1.0, f64::INFINITY),
                Range::closed("track_iou", d.track_iou as f64, 0.0, 1.0),
                Range::above("track_max_age_secs", d.track_max_age_secs, 0.0, f64::INFINITY),
                Range::closed("track_high_score", d.track_high_score as f64, 0.2, 1.0),
                Range::closed("max_idle_check_secs", d.max_idle_check_secs, 0.1, 3600.0),
                Range::closed("max_frame_age_ms", d.max_frame_age_ms as f64, 50.0, 60000.0),
                Range::closed("snapshot_quality", d.snapshot_quality as f64, 1.0, 100.0),
            ],
        );
        let pl = &d.plates;
        p.check_ranges(
            &at.key("plates"),
            &[
                Range::closed("min_confidence", pl.min_confidence as f64, 0.0, 1.0),
                Range::closed("decide_after_reads", pl.decide_after_reads as f64, 1.0, 20.0),
                Range::closed("max_reads_per_track", pl.max_reads_per_track as f64, 1.0, 50.0),
                Range::closed("read_every_ms", pl.read_every_ms as f64, 0.0, 60000.0),
                Range::closed("detector_side", pl.detector_side as f64, 32.0, 1280.0),
                Range::closed("queue", pl.queue as f64, 1.0, 10000.0),
            ],
        );
    }

    /// The frame scheduler's settings: queue per camera, idle check, frame age.
    pub fn scheduler(&self) -> SchedulerConfig {
        SchedulerConfig {
            capacity: self.queue_per_camera,
            max_idle_check: Duration::from_secs_f64(self.max_idle_check_secs),
            max_age: Duration::from_millis(self.max_frame_age_ms),
            ..Default::default()
        }
    }

    /// Inference workers: `workers`, or one per CPU core when 0.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        }
    }

    /// ONNX Runtime's settings (the library from `ORT_DYLIB_PATH` or the bundled one).
    pub fn runtime(&self) -> crate::runtime::RuntimeOptions {
        crate::runtime::RuntimeOptions {
            library: crate::runtime::library_path(),
            intra_threads: self.intra_threads,
            provider: self.provider,
            device_id: self.device_id,
            fp16: self.fp16,
            engine_cache_dir: self.engine_cache_dir.clone(),
        }
    }

    /// The inference pool's settings: runtime, workers, tracker, snapshot store.
    ///
    /// # Errors
    /// `Unavailable` when the snapshot folder cannot be made.
    pub fn pool(
        &self,
        clock: std::sync::Arc<dyn varta_core::clock::Clock>,
    ) -> Result<crate::pool::PoolConfig, varta_core::Error> {
        Ok(crate::pool::PoolConfig {
            runtime: self.runtime(),
            workers: self.worker_count(),
            tracker: crate::tracker::TrackerConfig::from(self),
            snapshots: crate::snapshot::SnapshotStore::new(&self.snapshot_dir, self.snapshot_quality)?,
            plates: self.plates.clone(),
            clock,
            observer: None,
        })
    }
}

impl From<&DetectConfig> for crate::tracker::TrackerConfig {
    fn from(d: &DetectConfig) -> Self {
        crate::tracker::TrackerConfig {
            iou: d.track_iou,
            min_hits: d.track_min_hits,
            max_age: chrono::Duration::milliseconds((d.track_max_age_secs * 1000.0) as i64),
            high_score: d.track_high_score,
        }
    }
}

impl Default for crate::tracker::TrackerConfig {
    /// The `[detect]` defaults.
    fn default() -> Self {
        (&DetectConfig::default()).into()
    }
}
