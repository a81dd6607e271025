//! Ingest: for every camera, a supervised GStreamer pipeline
//! `rtspsrc → depay → parse → decoder → [sampler] → scale → convert → appsink`
//! that hands RGB frames at the camera's analysis fps to the [`FrameHub`].
//!
//! [`pipeline`] builds one pipeline; [`supervisor`] owns it on a named thread,
//! restarts it after errors, end of stream or a stall, and records every state
//! change. [`Ingest`] holds the supervisors of this node.
//!
//! [`FrameHub`]: varta_core::frame::FrameHub

pub mod pipeline;
pub mod supervisor;

pub use supervisor::{CameraSpec, IngestSettings};

use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use varta_core::event::StoreMsg;
use varta_core::frame::FrameHub;
use varta_core::metrics::Registry;
use varta_core::{CameraId, Error, ErrorKind};

/// The cameras this node pulls.
pub struct Ingest {
    settings: IngestSettings,
    hub: Arc<FrameHub>,
    metrics: Arc<Registry>,
    status: mpsc::Sender<StoreMsg>,
    cameras: HashMap<CameraId, supervisor::Handle>,
}

impl Ingest {
    /// Initialises GStreamer; no camera runs yet.
    pub fn new(
        settings: IngestSettings,
        hub: Arc<FrameHub>,
        metrics: Arc<Registry>,
        status: mpsc::Sender<StoreMsg>,
    ) -> Result<Self, Error> {
        gstreamer::init().map_err(|e| Error::wrap(ErrorKind::Internal, "GStreamer init", e))?;
        Ok(Ingest { settings, hub, metrics, status, cameras: HashMap::new() })
    }

    /// Starts pulling `spec` (replacing a camera of the same id).
    pub fn start(&mut self, spec: CameraSpec) {
        self.stop(&spec.id);
        let stats = self.metrics.camera(&spec.id);
        self.hub.add_camera(&spec.id, stats.clone());
        let id = spec.id.clone();
        let h = supervisor::spawn(spec, self.settings.clone(), self.hub.clone(), stats, self.status.clone());
        self.cameras.insert(id, h);
    }

    /// Stops a camera and waits until its pipeline is released.
    pub fn stop(&mut self, id: &CameraId) {
        if let Some(h) = self.cameras.remove(id) {
            h.stop();
            self.hub.remove_camera(id);
        }
    }

    /// Stops every camera (in parallel: each may take a moment to reach `Null`).
    pub fn stop_all(&mut self) {
        let handles: Vec<_> = self.cameras.drain().collect();
        for (_, h) in &handles {
            h.cancel();
        }
        for (id, h) in handles {
            h.stop();
            self.hub.remove_camera(&id);
        }
    }
}
