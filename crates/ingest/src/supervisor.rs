//! One thread per camera owning its pipeline: start, watch, restart, stop.
//!
//! The thread waits on the pipeline's bus with a short timeout so that it also
//! notices a stall (no decoded frame for `stall_timeout`) and a stop request.
//! Any failure sets the pipeline to `Null`, records the reason and retries after
//! `restart_delay` plus up to 20% jitter (so 145 cameras behind one dead link do
//! not reconnect in lock-step). The full backoff policy is issue #4's.

use crate::pipeline::{self, PipelineParams};
use chrono::Utc;
use gstreamer as gst;
use gstreamer::prelude::*;
use rand::Rng;
use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use varta_core::config::{Credentials, DecodePolicy, RtspTransport};
use varta_core::event::{CameraState, StatusChange, StoreMsg};
use varta_core::frame::FrameHub;
use varta_core::metrics::CameraStats;
use varta_core::redact::{redact_text, redact_url};
use varta_core::{CameraId, Shutdown};

/// A camera as the ingest sees it.
#[derive(Clone, Debug)]
pub struct CameraSpec {
    /// Camera id.
    pub id: CameraId,
    /// Stream URL without credentials.
    pub url: String,
    /// Resolved credentials, if the camera needs them.
    pub credentials: Option<Credentials>,
    /// Frames per second handed to analysis.
    pub analysis_fps: f64,
    /// Which frames are decoded.
    pub decode: DecodePolicy,
}

/// Settings shared by every camera of the node.
#[derive(Clone, Debug)]
pub struct IngestSettings {
    /// Wait before rebuilding a failed pipeline.
    pub restart_delay: Duration,
    /// No decoded frame for this long (once streaming, or since start) = stalled.
    pub stall_timeout: Duration,
    /// RTSP transport.
    pub transport: RtspTransport,
    /// Jitter-buffer latency in ms.
    pub latency_ms: u32,
    /// Size of frames handed to analysis (the model's input size).
    pub target: (u32, u32),
}

/// A running camera thread.
pub struct Handle {
    cancel: Shutdown,
    thread: JoinHandle<()>,
}

impl Handle {
    /// Asks the thread to stop without waiting.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Stops the camera and waits until its pipeline is back to `Null`.
    pub fn stop(self) {
        self.cancel.cancel();
        let _ = self.thread.join();
    }
}

/// Starts the supervisor thread of one camera.
pub fn spawn(
    spec: CameraSpec,
    settings: IngestSettings,
    hub: Arc<FrameHub>,
    stats: Arc<CameraStats>,
    status: mpsc::Sender<StoreMsg>,
) -> Handle {
    let cancel = Shutdown::new();
    let c = cancel.clone();
    let thread = std::thread::Builder::new()
        .name(format!("camera-{}", spec.id))
        .spawn(move || {
            let _span = tracing::info_span!("camera", id = %spec.id).entered();
            Supervisor { spec, settings, hub, stats, status, cancel: c, announced: Cell::new(None) }.run()
        })
        .expect("spawning a camera thread");
    Handle { cancel, thread }
}

struct Supervisor {
    spec: CameraSpec,
    settings: IngestSettings,
    hub: Arc<FrameHub>,
    stats: Arc<CameraStats>,
    status: mpsc::Sender<StoreMsg>,
    cancel: Shutdown,
    /// The last state recorded, so each transition is recorded once.
    announced: Cell<Option<CameraState>>,
}

/// Why a pipeline run ended.
enum Ended {
    Stopped,
    Failed(String),
}

impl Supervisor {
    fn run(self) {
        tracing::info!(url = %redact_url(&self.spec.url), "camera starting");
        loop {
            self.transition(CameraState::Starting, "connecting");
            let reason = match self.run_once() {
                Ended::Stopped => break,
                Ended::Failed(r) => r,
            };
            self.stats.restarts.inc();
            self.stats.set_last_error(Some(reason.clone()));
            self.transition(CameraState::BackingOff, &reason);
            let jitter = rand::rng().random_range(0.0..0.2);
            let wait = self.settings.restart_delay.mul_f64(1.0 + jitter);
            tracing::warn!(reason = %reason, retry_in_ms = wait.as_millis() as u64, "camera pipeline failed");
            if self.sleep(wait) {
                break;
            }
        }
        self.transition(CameraState::Stopped, "stopped");
        tracing::info!("camera stopped");
    }

    /// Builds and plays the pipeline until it fails or a stop is asked for.
    fn run_once(&self) -> Ended {
        let params = PipelineParams {
            camera: &self.spec.id,
            url: &self.spec.url,
            credentials: self.spec.credentials.as_ref(),
            transport: self.settings.transport,
            latency_ms: self.settings.latency_ms,
            analysis_fps: self.spec.analysis_fps,
            decode: self.spec.decode,
            target: self.settings.target,
        };
        let built = match pipeline::build(&params, self.hub.clone(), self.stats.clone()) {
            Ok(b) => b,
            Err(e) => return Ended::Failed(redact_text(&e.to_string())),
        };
        self.stats.set_decoder(built.decoder);
        let pipe = built.pipeline;
        let result = self.watch(&pipe);
        // Always back to Null: releases sockets, threads and decoder memory.
        let _ = pipe.set_state(gst::State::Null);
        result
    }

    fn watch(&self, pipe: &gst::Pipeline) -> Ended {
        if let Err(e) = pipe.set_state(gst::State::Playing) {
            return Ended::Failed(format!("cannot start pipeline: {e}"));
        }
        let bus = pipe.bus().expect("pipelines have a bus");
        let started = Instant::now();
        let start_ms = Utc::now().timestamp_millis();
        let mut streaming = false;
        loop {
            if self.cancel.is_cancelled() {
                return Ended::Stopped;
            }
            let msg = bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(250),
                &[gst::MessageType::Error, gst::MessageType::Eos],
            );
            if let Some(msg) = msg {
                match msg.view() {
                    gst::MessageView::Eos(_) => return Ended::Failed("end of stream".into()),
                    gst::MessageView::Error(e) => {
                        let from = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                        return Ended::Failed(redact_text(&format!("{from}: {}", e.error())));
                    }
                    _ => {}
                }
            }
            let last = self.stats.last_frame_ms.load(Ordering::Relaxed);
            let fresh = last >= start_ms;
            if fresh && !streaming {
                streaming = true;
                self.stats.set_last_error(None);
                self.transition(CameraState::Streaming, "frames arriving");
            }
            let idle = if fresh {
                Duration::from_millis((Utc::now().timestamp_millis() - last).max(0) as u64)
            } else {
                started.elapsed()
            };
            if idle > self.settings.stall_timeout {
                return Ended::Failed(format!("stalled: no frame for {:.1} s", idle.as_secs_f64()));
            }
        }
    }

    /// Sleeps up to `d`; true if a stop was asked for meanwhile.
    fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.cancel.is_cancelled() {
                return true;
            }
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(100)));
        }
        self.cancel.is_cancelled()
    }

    fn transition(&self, state: CameraState, reason: &str) {
        self.stats.set_state(state);
        // Each failure is news even when the previous one was too.
        if self.announced.get() == Some(state) && state != CameraState::BackingOff {
            return;
        }
        self.announced.set(Some(state));
        tracing::debug!(to = state.as_str(), reason, "camera state");
        let msg = StatusChange { camera: self.spec.id.clone(), at: Utc::now(), state, reason: reason.to_owned() };
        // Blocking: transitions feed uptime and must not be lost; the writer drains fast.
        let _ = self.status.blocking_send(StoreMsg::Status(msg));
    }
}
