//! The inference pool: named OS threads, each owning a session, fed by the frame hub.
//!
//! Never tokio workers: an inference takes tens of milliseconds of CPU. Each worker
//! takes the next frame round-robin across cameras, runs the model, filters by the
//! camera's classes and minimum score, feeds the camera's tracker and sends the
//! resulting events to the store (blocking when the store's queue is full: events
//! are never dropped).

use crate::manifest::ModelSpec;
use crate::runtime::Detector;
use crate::tracker::{Observation, Tracker, TrackerConfig};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use varta_core::event::StoreMsg;
use varta_core::frame::FrameHub;
use varta_core::metrics::Registry;
use varta_core::{CameraId, Error};

/// What a camera wants reported.
#[derive(Clone, Debug)]
pub struct CameraRules {
    /// Class indices that make events.
    pub classes: HashSet<usize>,
    /// Minimum score.
    pub min_score: f32,
}

/// Pool settings.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// ONNX Runtime library.
    pub library: PathBuf,
    /// Worker threads.
    pub workers: usize,
    /// Threads inside one inference.
    pub intra_threads: usize,
    /// Tracker settings for every camera.
    pub tracker: TrackerConfig,
}

struct Shared {
    hub: Arc<FrameHub>,
    rules: RwLock<HashMap<CameraId, CameraRules>>,
    trackers: Mutex<HashMap<CameraId, Tracker>>,
    tracker_cfg: TrackerConfig,
    labels: Vec<String>,
    sink: mpsc::Sender<StoreMsg>,
    metrics: Arc<Registry>,
}

/// A running pool. Dropping it does not stop it; call [`InferencePool::stop`].
pub struct InferencePool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl InferencePool {
    /// Loads the model once per worker and starts the workers.
    pub fn start(
        spec: &ModelSpec,
        cfg: &PoolConfig,
        hub: Arc<FrameHub>,
        sink: mpsc::Sender<StoreMsg>,
        metrics: Arc<Registry>,
    ) -> Result<Self, Error> {
        spec.verify()?;
        let labels = spec.read_labels()?;
        let shared = Arc::new(Shared {
            hub,
            rules: RwLock::new(HashMap::new()),
            trackers: Mutex::new(HashMap::new()),
            tracker_cfg: cfg.tracker,
            labels: labels.clone(),
            sink,
            metrics,
        });
        let mut workers = Vec::new();
        for i in 0..cfg.workers.max(1) {
            // Sessions are made here, not in the thread, so a bad model fails start().
            let det = Detector::new(&cfg.library, spec, labels.clone(), cfg.intra_threads)?;
            let sh = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("infer-{i}"))
                .spawn(move || {
                    let _span = tracing::info_span!("infer", worker = i).entered();
                    worker(det, &sh)
                })
                .map_err(|e| Error::wrap(varta_core::ErrorKind::Internal, "spawning inference thread", e))?;
            workers.push(h);
        }
        tracing::info!(model = %spec.name, workers = workers.len(), "inference pool started");
        Ok(InferencePool { shared, workers })
    }

    /// Sets (or replaces) what `camera` reports. Class names not in the model's
    /// labels are an error naming them.
    pub fn set_camera(&self, camera: &CameraId, classes: &[String], min_score: f32) -> Result<(), Error> {
        let mut idx = HashSet::new();
        for c in classes {
            let i = self.shared.labels.iter().position(|l| l == c).ok_or_else(|| {
                varta_core::err!(InvalidArgument, "camera {camera}: class `{c}` is not a label of the model")
            })?;
            idx.insert(i);
        }
        self.shared.rules.write().unwrap().insert(camera.clone(), CameraRules { classes: idx, min_score });
        Ok(())
    }

    /// Forgets a camera that was removed: its rules go, and its open tracks end (the
    /// events are sent as ended). Call from a blocking context.
    pub fn remove_camera(&self, camera: &CameraId) {
        self.shared.rules.write().unwrap().remove(camera);
        let tracker = self.shared.trackers.lock().unwrap().remove(camera);
        if let Some(mut t) = tracker {
            send_all(&self.shared, t.finish());
        }
    }

    /// Stops the workers (closing the hub) and ends every open track.
    pub fn stop(self) {
        self.shared.hub.close();
        for w in self.workers {
            let _ = w.join();
        }
        let ended: Vec<_> = self.shared.trackers.lock().unwrap().values_mut().flat_map(Tracker::finish).collect();
        send_all(&self.shared, ended);
        tracing::info!("inference pool stopped");
    }
}

fn send_all(sh: &Shared, events: Vec<varta_core::event::EventRecord>) {
    for e in events {
        if sh.sink.blocking_send(StoreMsg::Event(e)).is_err() {
            tracing::error!("store writer is gone; event not written");
        }
    }
}

fn worker(mut det: Detector, sh: &Shared) {
    // Analysis floor: a camera's own min_score filters above this.
    const FLOOR: f32 = 0.2;
    let mut last_err: Option<Instant> = None;
    loop {
        let Some(taken) = sh.hub.take(Duration::from_millis(500)) else {
            if sh.hub.is_closed() {
                break;
            }
            continue;
        };
        let f = &taken.frame;
        let t0 = Instant::now();
        let result = det.detect(&f.rgb, f.width, f.height, FLOOR);
        sh.metrics.inference_seconds.observe(t0.elapsed().as_secs_f64());
        let dets = match result {
            Ok(d) => d,
            Err(e) => {
                // Rate-limited: a broken model would otherwise log per frame.
                if last_err.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::error!(camera_id = %f.camera, error = %e, "inference failed");
                    last_err = Some(Instant::now());
                }
                sh.hub.done(&f.camera);
                continue;
            }
        };
        taken.stats.frames_analysed.inc();
        let (sx, sy) = (f.source_width as f32 / f.width as f32, f.source_height as f32 / f.height as f32);
        let obs: Option<Vec<Observation>> = sh.rules.read().unwrap().get(&f.camera).map(|r| {
            dets.iter()
                .filter(|d| d.score >= r.min_score && r.classes.contains(&d.class))
                .map(|d| Observation {
                    class: sh.labels[d.class].clone(),
                    score: d.score,
                    bbox: [d.bbox[0] * sx, d.bbox[1] * sy, d.bbox[2] * sx, d.bbox[3] * sy],
                })
                .collect()
        });
        let events = match obs {
            None => Vec::new(), // camera unknown to detection: no rules set
            Some(obs) => {
                if !obs.is_empty() {
                    // Confirms activity to the decode gate: while objects of interest
                    // are in view, the camera stays on full decoding.
                    taken.stats.last_detection_ms.store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
                }
                let mut trackers = sh.trackers.lock().unwrap();
                let tr =
                    trackers.entry(f.camera.clone()).or_insert_with(|| Tracker::new(f.camera.clone(), sh.tracker_cfg));
                tr.update(f.captured_at, &obs)
            }
        };
        sh.hub.done(&f.camera);
        send_all(sh, events);
    }
}
