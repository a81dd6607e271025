//! The inference pool: named OS threads, each owning a session, fed by the frame
//! hub's scheduler (see [`varta_core::frame`]).
//!
//! Never tokio workers: an inference takes tens of milliseconds of CPU. Each worker
//! takes up to the model's batch of frames of distinct cameras, runs the model once,
//! and feeds each camera's [`CameraAnalyser`]. Event records go, in order, to one
//! snapshot thread that writes their JPEG files first and then hands them to the
//! store (blocking when the store's queue is full: events are never dropped).

use crate::analysis::{CameraAnalyser, CameraRules, FLOOR};
use crate::manifest::ModelSpec;
use crate::rules::Emit;
use crate::runtime::{Detector, RuntimeOptions};
use crate::snapshot::SnapshotStore;
use crate::tracker::TrackerConfig;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use varta_core::event::StoreMsg;
use varta_core::frame::FrameHub;
use varta_core::metrics::Registry;
use varta_core::{CameraId, Error, ErrorKind};

/// Pool settings.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// How sessions are made.
    pub runtime: RuntimeOptions,
    /// Worker threads, each with its own session.
    pub workers: usize,
    /// Tracker settings for every camera.
    pub tracker: TrackerConfig,
    /// Where snapshots go.
    pub snapshots: SnapshotStore,
}

type Analysers = RwLock<HashMap<CameraId, Arc<Mutex<CameraAnalyser>>>>;

struct Shared {
    hub: Arc<FrameHub>,
    analysers: Analysers,
    tracker_cfg: TrackerConfig,
    labels: Vec<String>,
    /// To the snapshot thread; taken at stop so that it ends.
    out: Mutex<Option<SyncSender<Vec<Emit>>>>,
    metrics: Arc<Registry>,
}

/// A running pool. Dropping it does not stop it; call [`InferencePool::stop`].
pub struct InferencePool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    snapshots: JoinHandle<()>,
}

impl InferencePool {
    /// Checks the model, loads it once per worker and starts the workers.
    pub fn start(
        spec: &ModelSpec,
        cfg: &PoolConfig,
        hub: Arc<FrameHub>,
        sink: mpsc::Sender<StoreMsg>,
        metrics: Arc<Registry>,
    ) -> Result<Self, Error> {
        spec.verify()?;
        let labels = spec.read_labels()?;
        // Sessions are made here, not in the threads, so a bad model fails start().
        let mut dets = Vec::new();
        for _ in 0..cfg.workers.max(1) {
            dets.push(Detector::new(&cfg.runtime, spec, labels.clone())?);
        }
        let provider = dets[0].provider();
        let (tx, rx) = sync_channel::<Vec<Emit>>(256);
        let store = cfg.snapshots.clone();
        let snapshots = std::thread::Builder::new()
            .name("snapshots".into())
            .spawn(move || snapshot_thread(rx, store, sink))
            .map_err(|e| Error::wrap(ErrorKind::Internal, "spawning snapshot thread", e))?;
        let shared = Arc::new(Shared {
            hub,
            analysers: RwLock::new(HashMap::new()),
            tracker_cfg: cfg.tracker,
            labels,
            out: Mutex::new(Some(tx.clone())),
            metrics,
        });
        let mut workers = Vec::new();
        for (i, det) in dets.into_iter().enumerate() {
            let (sh, tx) = (shared.clone(), tx.clone());
            let h = std::thread::Builder::new()
                .name(format!("infer-{i}"))
                .spawn(move || {
                    let _span = tracing::info_span!("infer", worker = i).entered();
                    worker(det, &sh, &tx)
                })
                .map_err(|e| Error::wrap(ErrorKind::Internal, "spawning inference thread", e))?;
            workers.push(h);
        }
        tracing::info!(model = %spec.name, workers = workers.len(), ?provider, batch = spec.max_batch, "inference pool started");
        Ok(InferencePool { shared, workers, snapshots })
    }

    /// Sets (or replaces) what `camera` reports. Class names not in the model's
    /// labels are an error naming them. Unchanged rules keep the camera's tracks;
    /// changed ones end its open events first.
    pub fn set_camera(&self, camera: &CameraId, rules: CameraRules) -> Result<(), Error> {
        if let Some(a) = self.shared.analysers.read().unwrap().get(camera) {
            if a.lock().unwrap().rules() == &rules {
                return Ok(());
            }
        }
        let new = CameraAnalyser::new(camera, rules, &self.shared.labels, self.shared.tracker_cfg)?;
        let old = self.shared.analysers.write().unwrap().insert(camera.clone(), Arc::new(Mutex::new(new)));
        if let Some(old) = old {
            let ended = old.lock().unwrap().finish();
            self.send(ended);
        }
        Ok(())
    }

    /// Forgets a camera that was removed: its open events end. Call from a
    /// blocking context.
    pub fn remove_camera(&self, camera: &CameraId) {
        let a = self.shared.analysers.write().unwrap().remove(camera);
        if let Some(a) = a {
            let ended = a.lock().unwrap().finish();
            self.send(ended);
        }
    }

    fn send(&self, emits: Vec<Emit>) {
        if emits.is_empty() {
            return;
        }
        if let Some(tx) = self.shared.out.lock().unwrap().as_ref() {
            let _ = tx.send(emits);
        }
    }

    /// Stops the workers (closing the hub), ends every open event, and waits until
    /// every record has been handed to the store.
    pub fn stop(self) {
        self.shared.hub.close();
        for w in self.workers {
            let _ = w.join();
        }
        let all: Vec<_> = self.shared.analysers.write().unwrap().drain().map(|(_, a)| a).collect();
        let ended: Vec<Emit> = all.iter().flat_map(|a| a.lock().unwrap().finish()).collect();
        if let Some(tx) = self.shared.out.lock().unwrap().take() {
            let _ = tx.send(ended);
        }
        let _ = self.snapshots.join();
        tracing::info!("inference pool stopped");
    }
}

/// Writes each record's snapshot, then passes the record to the store, in order.
fn snapshot_thread(rx: Receiver<Vec<Emit>>, store: SnapshotStore, sink: mpsc::Sender<StoreMsg>) {
    for emits in rx {
        for mut e in emits {
            if let Some(job) = &e.snapshot {
                if let Err(err) = store.write(&e.record.id, job) {
                    tracing::error!(event = %e.record.id, error = %err, "snapshot not written");
                    e.record.snapshot = None;
                }
            }
            if sink.blocking_send(StoreMsg::Event(e.record)).is_err() {
                tracing::error!("store writer is gone; event not written");
            }
        }
    }
}

fn worker(mut det: Detector, sh: &Shared, out: &SyncSender<Vec<Emit>>) {
    let mut last_err: Option<Instant> = None;
    loop {
        let batch = sh.hub.take_batch(det.max_batch(), Duration::from_millis(500));
        if batch.is_empty() {
            if sh.hub.is_closed() {
                break;
            }
            continue;
        }
        let frames: Vec<_> = batch.iter().map(|t| &t.frame).collect();
        let t0 = Instant::now();
        let result = det.detect(&frames, FLOOR);
        sh.metrics.inference_seconds.observe(t0.elapsed().as_secs_f64());
        let results = match result {
            Ok(r) => r,
            Err(e) => {
                // Rate-limited: a broken model would otherwise log per frame.
                if last_err.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::error!(camera_id = %frames[0].camera, error = %e, "inference failed");
                    last_err = Some(Instant::now());
                }
                for t in &batch {
                    sh.hub.done(&t.frame.camera);
                }
                continue;
            }
        };
        let mut emits = Vec::new();
        for (taken, dets) in batch.iter().zip(results) {
            let f = &taken.frame;
            taken.stats.frames_analysed.inc();
            taken.stats.queue_wait_us.add(taken.waited.as_micros() as u64);
            let analyser = sh.analysers.read().unwrap().get(&f.camera).cloned();
            if let Some(a) = analyser {
                let (e, interesting) = a.lock().unwrap().process(f, &dets, &sh.labels);
                if interesting {
                    // Confirms activity to the decode gate and the scheduler: while
                    // objects of interest are in view, the camera stays on full
                    // decoding and is served first.
                    taken.stats.last_detection_ms.store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
                }
                emits.extend(e);
            }
            sh.hub.done(&f.camera);
        }
        if !emits.is_empty() && out.send(emits).is_err() {
            tracing::error!("snapshot thread is gone; events not written");
        }
    }
}
