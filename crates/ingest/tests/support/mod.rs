//! Helpers shared by the ingest tests: the simulator, an ingest with short timeouts,
//! a recorder of status transitions, and captured logs.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use varta_core::config::DecodePolicy;
use varta_core::event::{CameraState, StatusChange, StoreMsg};
use varta_core::frame::FrameHub;
use varta_core::journal::Journal;
use varta_core::metrics::Registry;
use varta_ingest::config::{HealthConfig, IngestConfig, RtspTransport};
use varta_ingest::{CameraSpec, Ingest, IngestSettings};
use varta_sim::{Scene, SimConfig, SimServer};

/// A test media file made by `scripts/setup`.
pub fn media(name: &str) -> PathBuf {
    let dir = std::env::var_os("VARTA_MEDIA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/media"));
    let p = dir.join(name);
    assert!(p.exists(), "{} is missing: run ./scripts/setup", p.display());
    p
}

/// A simulator on a free loopback port.
pub fn sim(cameras: usize, scene: Scene) -> SimServer {
    SimServer::start(&SimConfig {
        scene,
        ..SimConfig::new("127.0.0.1:0".parse().unwrap(), cameras, media("vtest.mp4"))
    })
    .unwrap()
}

/// Short timeouts so that faults play out in seconds.
pub fn settings(transport: RtspTransport) -> IngestSettings {
    IngestSettings {
        clips: None,
        ingest: IngestConfig {
            backoff_initial_secs: 0.5,
            backoff_max_secs: 4.0,
            backoff_reset_secs: 5.0,
            backoff_jitter: 0.2,
            rtsp_transport: transport,
            latency_ms: 100,
            stall_timeout_secs: 3.0,
            ..Default::default()
        },
        health: HealthConfig {
            window_secs: 3.0,
            frozen_secs: 3.0,
            blackout_secs: 3.0,
            main_probe_secs: 2.0,
            ..Default::default()
        },
    }
}

/// A camera of the simulator.
pub fn spec(id: &str, url: String, decode: DecodePolicy) -> CameraSpec {
    CameraSpec { id: id.into(), url, main_url: None, credentials: None, analysis_fps: 5.0, expected_fps: None, decode }
}

/// An ingest whose status transitions are recorded.
pub struct Rig {
    pub ingest: Ingest,
    pub metrics: Arc<Registry>,
    pub hub: Arc<FrameHub>,
    pub changes: Arc<Mutex<Vec<StatusChange>>>,
    journal: Arc<Journal>,
}

impl Rig {
    pub fn new(settings: IngestSettings) -> Rig {
        let hub = FrameHub::new(4);
        let metrics = Arc::new(Registry::default());
        let journal = Journal::new(1000);
        let changes = Arc::new(Mutex::new(Vec::new()));
        let c = changes.clone();
        journal.drain_with(move |msgs| {
            for m in msgs {
                if let StoreMsg::Status(s) = m {
                    c.lock().unwrap().push(s);
                }
            }
        });
        let ingest = Ingest::new(settings, hub.clone(), metrics.clone(), journal.clone()).unwrap();
        Rig { ingest, metrics, hub, changes, journal }
    }

    /// Waits until every transition appended so far is recorded: the journal hands
    /// them to the recorder on a thread of its own, so a `Stopped` appended by
    /// `stop_all` may not be recorded yet when it returns (seen in CI).
    fn settle(&self) {
        let through = self.journal.appended();
        wait_for("the recorder to see every transition", Duration::from_secs(10), || self.journal.durable() >= through);
    }

    /// States recorded for `camera`, in order, including every transition appended
    /// before the call.
    pub fn states(&self, camera: &str) -> Vec<CameraState> {
        self.settle();
        self.changes.lock().unwrap().iter().filter(|s| s.camera.as_str() == camera).map(|s| s.state).collect()
    }

    /// Transitions recorded for `camera`, including every one appended before the call.
    pub fn changes(&self, camera: &str) -> Vec<StatusChange> {
        self.settle();
        self.changes.lock().unwrap().iter().filter(|s| s.camera.as_str() == camera).cloned().collect()
    }

    /// Waits until `camera` is in `state`; returns how long that took.
    pub fn wait_state(&self, camera: &str, state: CameraState, timeout: Duration) -> Duration {
        let s = self.metrics.camera(&camera.into());
        let t0 = Instant::now();
        wait_for(&format!("{camera} {}", state.as_str()), timeout, || s.state() == state);
        let took = t0.elapsed();
        // The live state is set just before the transition is appended to the journal:
        // wait for the record too, so that `changes()` after this includes it.
        wait_for(&format!("{camera} {} recorded", state.as_str()), timeout, || {
            self.changes.lock().unwrap().iter().any(|c| c.camera.as_str() == camera && c.state == state)
        });
        took
    }
}

/// The analysed pictures of a rig's cameras over `d`: their sizes and the luma
/// standard deviation of each (a decoded street scene is above 20, a flat field 0).
pub fn pictures(rig: &Rig, d: Duration) -> (std::collections::BTreeSet<(u32, u32)>, Vec<f64>) {
    let (mut sizes, mut stddevs) = (std::collections::BTreeSet::new(), Vec::new());
    let end = Instant::now() + d;
    while Instant::now() < end {
        let Some(t) = rig.hub.take(Duration::from_millis(200)) else { continue };
        let f = t.frame;
        rig.hub.done(&f.camera);
        sizes.insert((f.width, f.height));
        if let varta_core::frame::Pixels::I420(px) = &f.pixels {
            let y = &px[..(f.width * f.height) as usize];
            let mean = y.iter().map(|&v| v as f64).sum::<f64>() / y.len() as f64;
            let var = y.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / y.len() as f64;
            stddevs.push(var.sqrt());
        }
    }
    (sizes, stddevs)
}

pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Everything logged by this test process (ours through `tracing`, GStreamer's at
/// warning level and above), for asserting that secrets never appear.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || Capture(b.clone()))
            .try_init();
        gstreamer::init().unwrap();
        gstreamer::log::set_default_threshold(gstreamer::DebugLevel::Warning);
        gstreamer::log::remove_default_log_function();
        let b = buf.clone();
        gstreamer::log::add_log_function(move |cat, level, file, func, line, obj, msg| {
            let _ = writeln!(
                b.lock().unwrap(),
                "gst {level:?} {} {file}:{line} {func} {:?}: {}",
                cat.name(),
                obj.map(|o| o.to_string()),
                msg.get().map(|m| m.to_string()).unwrap_or_default()
            );
        });
        buf
    })
}

/// Starts capturing logs (call at the start of a test).
pub fn capture_logs() {
    let _ = log_buffer();
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

/// Resident memory of this process in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
