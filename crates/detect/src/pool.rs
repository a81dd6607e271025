//! The inference pool: named OS threads, each owning a session, fed by the frame
//! hub's scheduler (see [`varta_core::frame`]).
//!
//! Never tokio workers: an inference takes tens of milliseconds of CPU. Each worker
//! takes up to the model's batch of frames of distinct cameras, runs the model once,
//! and feeds each camera's [`CameraAnalyser`]. The event records it makes go straight
//! into the node's [`Journal`] (durable within one flush interval); records with a
//! snapshot are *held* there while one snapshot thread encodes their JPEGs, waits
//! until the records are on disk, writes the files and releases them. So a JPEG on
//! disk always has its record (even after SIGKILL), and a row that names a snapshot
//! never reaches PostgreSQL before its file. A full journal blocks the workers:
//! events are never dropped.
//!
//! Once a second a worker also applies the recovery rule for silent cameras
//! ([`CameraAnalyser::expire`]): a camera that stopped streaming ends its open events
//! as `camera_lost`.

use crate::analysis::{CameraAnalyser, CameraRules, FLOOR};
use crate::manifest::ModelSpec;
use crate::plates::{PlateJob, PlateVoter};
use crate::rules::Emit;
use crate::runtime::{Detector, RuntimeOptions};
use crate::snapshot::SnapshotStore;
use crate::tracker::TrackerConfig;
use crate::Detection;
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use varta_core::clock::Clock;
use varta_core::event::{EndReason, EventPhase};
use varta_core::event::{SnapshotRecord, StoreMsg};
use varta_core::frame::FrameHub;
use varta_core::journal::{Durability, Hold, Journal};
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
    /// Number plates on vehicle tracks (`enabled = false`: none).
    pub plates: crate::plates::PlatesConfig,
    /// The time the recovery rule for silent cameras reads.
    pub clock: Arc<dyn Clock>,
    /// Told of every event record before it is journalled (the clip recorder).
    pub observer: Option<Arc<dyn varta_core::event::EventObserver>>,
}

type Analysers = RwLock<HashMap<CameraId, Arc<Mutex<CameraAnalyser>>>>;

struct Shared {
    hub: Arc<FrameHub>,
    analysers: Analysers,
    tracker_cfg: TrackerConfig,
    labels: Vec<String>,
    /// Where every record goes.
    journal: Arc<Journal>,
    /// To the snapshot thread; taken at stop so that it ends.
    out: Mutex<Option<Sender<SnapshotBatch>>>,
    metrics: Arc<Registry>,
    clock: Arc<dyn Clock>,
    /// Unix milliseconds of the last silent-camera check.
    last_sweep_ms: std::sync::atomic::AtomicI64,
    /// Plates settings, when plates are on.
    plates_cfg: Option<crate::plates::PlatesConfig>,
    /// To the plates thread; taken at stop so that it ends.
    plates: Mutex<Option<Sender<PlateJob>>>,
    /// Told of every event record (the clip recorder).
    observer: Option<Arc<dyn varta_core::event::EventObserver>>,
}

/// Snapshots of records held in the journal until their files exist.
struct SnapshotBatch {
    /// Each event's id, start and picture.
    jobs: Vec<(varta_core::EventId, chrono::DateTime<chrono::Utc>, crate::rules::SnapshotJob)>,
    hold: Hold,
}

/// A running pool. Dropping it does not stop it; call [`InferencePool::stop`].
pub struct InferencePool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    snapshots: JoinHandle<()>,
    plates: Option<JoinHandle<()>>,
}

impl InferencePool {
    /// Checks the model, loads it once per worker and starts the workers.
    pub fn start(
        spec: &ModelSpec,
        cfg: &PoolConfig,
        hub: Arc<FrameHub>,
        journal: Arc<Journal>,
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
        let (tx, rx) = crossbeam_channel::bounded::<SnapshotBatch>(256);
        let (store, snap_journal) = (cfg.snapshots.clone(), journal.clone());
        let snapshots = std::thread::Builder::new()
            .name("snapshots".into())
            .spawn(move || snapshot_thread(rx, store, &snap_journal))
            .map_err(|e| Error::wrap(ErrorKind::Internal, "spawning snapshot thread", e))?;
        // The OCR models are loaded here too, so that missing ones fail start().
        let (plates_tx, plates) = if cfg.plates.enabled {
            let reader =
                crate::ocr::TextReader::load(&cfg.runtime, &cfg.plates.models)?.with_det_side(cfg.plates.detector_side);
            let (tx, rx) = crossbeam_channel::bounded::<PlateJob>(cfg.plates.queue.max(1));
            let voter = PlateVoter::new(cfg.plates.min_confidence as f64, cfg.plates.decide_after_reads);
            let (store, journal, metrics) = (cfg.snapshots.clone(), journal.clone(), metrics.clone());
            let h = std::thread::Builder::new()
                .name("plates".into())
                .spawn(move || plates_thread(rx, reader, voter, store, &journal, &metrics))
                .map_err(|e| Error::wrap(ErrorKind::Internal, "spawning plates thread", e))?;
            (Some(tx), Some(h))
        } else {
            (None, None)
        };
        let shared = Arc::new(Shared {
            hub,
            analysers: RwLock::new(HashMap::new()),
            tracker_cfg: cfg.tracker,
            labels,
            journal,
            out: Mutex::new(Some(tx)),
            metrics,
            clock: cfg.clock.clone(),
            last_sweep_ms: Default::default(),
            plates_cfg: cfg.plates.enabled.then(|| cfg.plates.clone()),
            plates: Mutex::new(plates_tx),
            observer: cfg.observer.clone(),
        });
        let mut workers = Vec::new();
        for (i, det) in dets.into_iter().enumerate() {
            let sh = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("infer-{i}"))
                .spawn(move || {
                    let _span = tracing::info_span!("infer", worker = i).entered();
                    worker(det, &sh)
                })
                .map_err(|e| Error::wrap(ErrorKind::Internal, "spawning inference thread", e))?;
            workers.push(h);
        }
        tracing::info!(model = %spec.name, workers = workers.len(), ?provider, batch = spec.max_batch, "inference pool started");
        Ok(InferencePool { shared, workers, snapshots, plates })
    }

    /// Sets (or replaces) what `camera` reports. Class names not in the model's
    /// labels are an error naming them. Unchanged rules keep the camera's tracks;
    /// changed ones end its open events first (`node_stopped`).
    pub fn set_camera(&self, camera: &CameraId, rules: CameraRules) -> Result<(), Error> {
        if let Some(a) = self.shared.analysers.read().unwrap().get(camera) {
            if a.lock().unwrap().rules() == &rules {
                return Ok(());
            }
        }
        let mut new = CameraAnalyser::new(camera, rules, &self.shared.labels, self.shared.tracker_cfg)?;
        if let Some(p) = &self.shared.plates_cfg {
            new = new.with_plates(p.clone());
        }
        let old = self.shared.analysers.write().unwrap().insert(camera.clone(), Arc::new(Mutex::new(new)));
        if let Some(old) = old {
            let ended = old.lock().unwrap().finish(EndReason::NodeStopped);
            self.shared.emit(ended);
        }
        Ok(())
    }

    /// Forgets a camera this node no longer analyses (removed, disabled or handed to
    /// another node): its open events end as `node_stopped`. Call from a blocking
    /// context.
    pub fn remove_camera(&self, camera: &CameraId) {
        let a = self.shared.analysers.write().unwrap().remove(camera);
        if let Some(a) = a {
            let ended = a.lock().unwrap().finish(EndReason::NodeStopped);
            self.shared.emit(ended);
        }
    }

    /// Stops the workers (closing the hub), ends every open event (`node_stopped`),
    /// and waits until every snapshot is written and its record released to the
    /// store. The journal itself stays open (the caller closes it).
    pub fn stop(self) {
        self.shared.hub.close();
        for w in self.workers {
            let _ = w.join();
        }
        let all: Vec<_> = self.shared.analysers.write().unwrap().drain().map(|(_, a)| a).collect();
        let ended: Vec<Emit> = all.iter().flat_map(|a| a.lock().unwrap().finish(EndReason::NodeStopped)).collect();
        self.shared.emit(ended);
        drop(self.shared.out.lock().unwrap().take());
        let _ = self.snapshots.join();
        drop(self.shared.plates.lock().unwrap().take());
        if let Some(h) = self.plates {
            let _ = h.join();
        }
        tracing::info!("inference pool stopped");
    }
}

impl Shared {
    /// Appends the records to the journal, in order; those with a snapshot are held
    /// until the snapshot thread has written their files. Blocks while the journal is
    /// full.
    fn emit(&self, emits: Vec<Emit>) {
        if emits.is_empty() {
            return;
        }
        // The plates thread decides a vehicle's plate when its event ends, if not before.
        if let Some(cfg) = &self.plates_cfg {
            let ended: Vec<_> = emits
                .iter()
                .filter(|e| e.record.phase == EventPhase::Ended && cfg.classes.contains(&e.record.class))
                .map(|e| e.record.id)
                .collect();
            if let Some(tx) = self.plates.lock().unwrap().as_ref() {
                for event in ended {
                    let _ = tx.send(PlateJob::End { event });
                }
            }
        }
        let mut jobs = Vec::new();
        let mut records: Vec<StoreMsg> = Vec::with_capacity(emits.len());
        for e in emits {
            if let Some(o) = &self.observer {
                o.event(&e.record);
            }
            if let Some(job) = e.snapshot {
                jobs.push((e.record.id, e.record.started_at, job));
            }
            records.push(StoreMsg::Event(e.record));
        }
        if jobs.is_empty() {
            if self.journal.append(records).is_err() {
                tracing::error!("event journal closed; events not recorded");
            }
            return;
        }
        let hold = match self.journal.append_held(records) {
            Ok(h) => h,
            Err(_) => {
                tracing::error!("event journal closed; events not recorded");
                return;
            }
        };
        match self.out.lock().unwrap().as_ref() {
            // Blocks while the snapshot thread is behind: detection backs up.
            Some(tx) => {
                if tx.send(SnapshotBatch { jobs, hold }).is_err() {
                    tracing::error!("snapshot thread is gone; snapshots not written");
                }
            }
            None => tracing::error!("inference pool stopping; snapshots not written"),
        }
    }

    /// Hands vehicle crops to the plates thread; when it is behind they are dropped
    /// (counted), never waited for: detection does not slow down for plates.
    fn send_crops(&self, crops: Vec<PlateJob>) {
        let guard = self.plates.lock().unwrap();
        let Some(tx) = guard.as_ref() else { return };
        for c in crops {
            if tx.try_send(c).is_err() {
                self.metrics.totals.plate_crops_dropped.inc();
            }
        }
    }

    /// At most once a second: ends the open events of cameras that stopped
    /// streaming and have been silent for the tracker's max age.
    fn sweep(&self) {
        let now_ms = self.clock.now().timestamp_millis();
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now_ms - last < 1000
            || self.last_sweep_ms.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        let analysers: Vec<_> = self.analysers.read().unwrap().iter().map(|(c, a)| (c.clone(), a.clone())).collect();
        for (camera, a) in analysers {
            let up = self.metrics.camera(&camera).state().is_up();
            // A camera a worker holds right now is not silent.
            let Ok(mut a) = a.try_lock() else { continue };
            let ended = a.expire(self.clock.as_ref(), up);
            drop(a);
            if !ended.is_empty() {
                tracing::info!(%camera, events = ended.len(), "camera not streaming: its open events end (camera_lost)");
                self.emit(ended);
            }
        }
    }
}

/// Encodes each batch's JPEGs while its records are being synced, waits until they
/// are on disk, writes the files and releases the records to the store, in order;
/// then journals the SHA-256 of each picture written (a `Snapshot` record, after
/// the release: appending under a hold could wait on the hold itself when the
/// journal is full).
fn snapshot_thread(rx: Receiver<SnapshotBatch>, store: SnapshotStore, journal: &Journal) {
    use sha2::{Digest, Sha256};
    for SnapshotBatch { jobs, hold } in rx.iter() {
        let encoded: Vec<_> = jobs.iter().map(|(id, started, job)| (id, started, store.encode(job))).collect();
        let mut hashes = Vec::new();
        let mut waited = 0;
        let durable = loop {
            match hold.wait_durable(Duration::from_secs(10)) {
                Durability::Durable => break true,
                Durability::Never => break false,
                Durability::NotYet => {
                    waited += 10;
                    tracing::warn!(seconds = waited, "snapshots wait for their events to reach the disk");
                }
            }
        };
        if !durable {
            // The records are not on disk (stopped with a failing disk), so their
            // JPEGs must not be either: a JPEG always has its row.
            tracing::error!(events = jobs.len(), "events never reached the disk; their snapshots are not written");
        } else {
            for (id, started, e) in encoded {
                match e.and_then(|e| store.write_encoded(id, &e).map(|()| e)) {
                    Ok(e) => hashes.push(StoreMsg::Snapshot(SnapshotRecord {
                        event_id: *id,
                        event_started_at: *started,
                        snapshot_sha256: format!("{:x}", Sha256::digest(&e.full)),
                        crop_sha256: format!("{:x}", Sha256::digest(&e.crop)),
                    })),
                    // The record names the file; the store drops the name of a
                    // snapshot that does not exist when it writes the row.
                    Err(err) => tracing::error!(event = %id, error = %err, "snapshot not written"),
                }
            }
        }
        hold.release();
        if !hashes.is_empty() && journal.append(hashes).is_err() {
            tracing::error!("event journal closed; snapshot hashes not recorded");
        }
    }
}

/// Reads the crops, votes per event, and records each event's plate once: the record
/// is held in the journal until the plate's JPEG is written (a crop file always has
/// its row, as with snapshots).
fn plates_thread(
    rx: Receiver<PlateJob>,
    mut reader: crate::ocr::TextReader,
    mut voter: PlateVoter,
    store: SnapshotStore,
    journal: &Arc<Journal>,
    metrics: &Registry,
) {
    for job in rx.iter() {
        let decided = match job {
            // The plate is known: later crops of the track cost nothing.
            PlateJob::Crop { event, .. } if voter.is_decided(&event) => None,
            PlateJob::Crop { event, started_at, track_id, frame, bbox } => {
                let t0 = Instant::now();
                let (img, (ox, oy)) = crate::plates::vehicle_crop(&frame, bbox);
                let best = match reader.plates(&img) {
                    Ok(p) => p.into_iter().next(),
                    Err(e) => {
                        tracing::warn!(camera_id = %frame.camera, error = %e, "plate reading failed");
                        None
                    }
                };
                metrics.totals.plate_crops_read.inc();
                metrics.totals.plate_read_micros.add(t0.elapsed().as_micros() as u64);
                let read = best.map(|p| {
                    let [x1, y1, x2, y2] = p.rect;
                    crate::plates::CropRead {
                        read: varta_core::plate::Read { text: p.text, confidence: p.confidence as f64 },
                        bbox: [(x1 + ox) as f32, (y1 + oy) as f32, (x2 + ox) as f32, (y2 + oy) as f32],
                        at: frame.captured_at,
                        picture: crate::plates::plate_picture(&img, p.rect),
                    }
                });
                voter.add(&frame.camera, event, started_at, track_id, read)
            }
            PlateJob::End { event } => voter.end(event),
        };
        let Some(d) = decided else { continue };
        metrics.totals.plate_reads.inc();
        tracing::info!(camera_id = %d.record.camera, plate = %d.record.plate, confidence = d.record.confidence,
                       reads = d.record.reads, "plate read");
        let name = d.record.crop.clone().unwrap_or_default();
        let Ok(hold) = journal.append_held(vec![StoreMsg::Plate(d.record)]) else {
            tracing::error!("event journal closed; plate read not recorded");
            continue;
        };
        if hold.wait_durable(Duration::from_secs(30)) == Durability::Durable {
            if let Err(e) = store.write_picture(&name, &d.picture) {
                // The store drops the name of a crop that does not exist.
                tracing::error!(error = %e, "plate crop not written");
            }
        }
        hold.release();
    }
}

fn worker(mut det: Detector, sh: &Shared) {
    let mut last_err: Option<Instant> = None;
    loop {
        sh.sweep();
        let batch = sh.hub.take_batch(det.max_batch(), Duration::from_millis(500));
        if batch.is_empty() {
            if sh.hub.is_closed() {
                break;
            }
            continue;
        }
        // An idle camera whose picture has not changed since its last inference
        // reuses that inference's detections (crate::unchanged).
        // Idle is the scheduler's own judgement (`Taken::active`).
        let now = Instant::now();
        let analysers: Vec<_> = {
            let map = sh.analysers.read().unwrap();
            batch.iter().map(|t| map.get(&t.frame.camera).cloned()).collect()
        };
        let reused: Vec<Option<Vec<Detection>>> = batch
            .iter()
            .zip(&analysers)
            .map(|(t, a)| a.as_ref().and_then(|a| a.lock().unwrap().memo().check(&t.frame, now, !t.active)))
            .collect();
        let frames: Vec<_> = batch.iter().zip(&reused).filter(|(_, r)| r.is_none()).map(|(t, _)| &t.frame).collect();
        let result = if frames.is_empty() {
            Ok(Vec::new())
        } else {
            let t0 = Instant::now();
            let r = det.detect(&frames, FLOOR);
            sh.metrics.inference_seconds.observe(t0.elapsed().as_secs_f64());
            r
        };
        let mut fresh = match result {
            Ok(r) => r.into_iter(),
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
        for ((taken, reuse), analyser) in batch.iter().zip(reused).zip(analysers) {
            let f = &taken.frame;
            let ran = reuse.is_none();
            let dets = match reuse {
                Some(d) => {
                    taken.stats.counters.frames_unchanged.inc();
                    d
                }
                None => fresh.next().unwrap_or_default(),
            };
            taken.stats.counters.frames_analysed.inc();
            taken.stats.counters.queue_wait_us.add(taken.waited.as_micros() as u64);
            if let Some(a) = analyser {
                let mut a = a.lock().unwrap();
                if ran {
                    a.memo().remember(&dets, now);
                }
                let (e, interesting) = a.process(f, &dets, &sh.labels);
                let crops = a.take_plate_jobs();
                if !crops.is_empty() {
                    sh.send_crops(crops);
                }
                if interesting {
                    // Confirms activity to the decode gate and the scheduler: while
                    // new or moving objects of interest are in view, the camera stays
                    // on full decoding and is served first.
                    taken.stats.activity_feedback().objects_seen(chrono::Utc::now());
                }
                emits.extend(e);
            }
            sh.hub.done(&f.camera);
        }
        sh.emit(emits);
    }
}
