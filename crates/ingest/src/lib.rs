//! Ingest: for every camera, a supervised GStreamer pipeline
//! `rtspsrc → depay → parse → [gate] decoder [sampler] → scale → convert → appsink`
//! that hands RGB frames at the camera's analysis fps to the [`FrameHub`].
//!
//! [`pipeline`] builds one pipeline; [`gate`] decides which compressed units are
//! decoded (the decode policy); [`picture`] watches for frozen and dark pictures;
//! [`mainprobe`] checks a camera's main stream; [`supervisor`] owns a pipeline on a
//! named thread, restarts it with backoff, and records every state change. [`Ingest`]
//! holds the supervisors of this node and applies run-time camera changes.
//!
//! [`FrameHub`]: varta_core::frame::FrameHub

pub mod clip;
pub mod config;
pub mod file;
pub mod gate;
pub mod keepalive;
pub mod mainprobe;
pub mod picture;
pub mod pipeline;
pub mod sampler;
pub mod supervisor;

pub use supervisor::{Backoff, CameraSpec, IngestSettings};

use std::collections::HashMap;
use std::sync::Arc;
use varta_core::frame::FrameHub;
use varta_core::journal::Journal;
use varta_core::metrics::Registry;
use varta_core::{CameraId, Error, ErrorKind};

/// What [`Ingest::apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Cameras started that were not running.
    pub added: Vec<CameraId>,
    /// Cameras stopped because they are gone (or disabled).
    pub removed: Vec<CameraId>,
    /// Cameras restarted because their settings changed.
    pub changed: Vec<CameraId>,
    /// Cameras left running untouched.
    pub unchanged: Vec<CameraId>,
}

struct Running {
    spec: CameraSpec,
    handle: supervisor::Handle,
}

/// The cameras this node pulls.
pub struct Ingest {
    settings: IngestSettings,
    hub: Arc<FrameHub>,
    metrics: Arc<Registry>,
    status: Arc<Journal>,
    cameras: HashMap<CameraId, Running>,
}

impl Ingest {
    /// Initialises GStreamer; no camera runs yet.
    pub fn new(
        settings: IngestSettings,
        hub: Arc<FrameHub>,
        metrics: Arc<Registry>,
        status: Arc<Journal>,
    ) -> Result<Self, Error> {
        gstreamer::init().map_err(|e| Error::wrap(ErrorKind::Internal, "GStreamer init", e))?;
        Ok(Ingest { settings, hub, metrics, status, cameras: HashMap::new() })
    }

    /// Starts pulling `spec` (replacing a camera of the same id).
    pub fn start(&mut self, spec: CameraSpec) {
        self.stop(&spec.id);
        self.spawn(spec);
    }

    fn spawn(&mut self, spec: CameraSpec) {
        let stats = self.metrics.camera(&spec.id);
        self.hub.add_camera(&spec.id, stats.clone());
        let id = spec.id.clone();
        let handle =
            supervisor::spawn(spec.clone(), self.settings.clone(), self.hub.clone(), stats, self.status.clone());
        self.cameras.insert(id, Running { spec, handle });
    }

    /// Stops a camera and waits until its pipeline is released. Its counters stay
    /// (a camera that is only restarting keeps its history).
    pub fn stop(&mut self, id: &CameraId) {
        if let Some(r) = self.cameras.remove(id) {
            r.handle.stop();
            self.hub.remove_camera(id);
        }
    }

    /// Makes the running cameras exactly `wanted`: starts the new ones, stops those
    /// not wanted any more (releasing their pipelines, threads and counters), restarts
    /// those whose spec changed, and leaves the others alone. Stops run in parallel.
    pub fn apply(&mut self, wanted: Vec<CameraSpec>) -> Applied {
        let mut out = Applied::default();
        let wanted_ids: std::collections::HashSet<_> = wanted.iter().map(|s| s.id.clone()).collect();
        let mut stopping = Vec::new();
        for id in self.cameras.keys().filter(|id| !wanted_ids.contains(*id)).cloned().collect::<Vec<_>>() {
            let r = self.cameras.remove(&id).expect("listed");
            r.handle.cancel();
            stopping.push((id.clone(), r, true));
            out.removed.push(id);
        }
        let mut to_start = Vec::new();
        for spec in wanted {
            match self.cameras.get(&spec.id) {
                Some(r) if r.spec == spec => out.unchanged.push(spec.id.clone()),
                Some(_) => {
                    let r = self.cameras.remove(&spec.id).expect("present");
                    r.handle.cancel();
                    stopping.push((spec.id.clone(), r, false));
                    out.changed.push(spec.id.clone());
                    to_start.push(spec);
                }
                None => {
                    out.added.push(spec.id.clone());
                    to_start.push(spec);
                }
            }
        }
        for (id, r, gone) in stopping {
            r.handle.stop();
            self.hub.remove_camera(&id);
            if gone {
                self.metrics.remove_camera(&id);
            }
        }
        for spec in to_start {
            self.spawn(spec);
        }
        for v in [&mut out.added, &mut out.removed, &mut out.changed, &mut out.unchanged] {
            v.sort();
        }
        out
    }

    /// Ids of the running cameras.
    pub fn running(&self) -> Vec<CameraId> {
        let mut v: Vec<_> = self.cameras.keys().cloned().collect();
        v.sort();
        v
    }

    /// Stops every camera (in parallel: each may take a moment to reach `Null`).
    pub fn stop_all(&mut self) {
        let running: Vec<_> = self.cameras.drain().collect();
        for (_, r) in &running {
            r.handle.cancel();
        }
        for (id, r) in running {
            r.handle.stop();
            self.hub.remove_camera(&id);
        }
    }
}
