//! The RTSP server: one shared media per camera, fed from the in-memory clip.

use crate::clip::Clip;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use varta_core::{Error, ErrorKind};

/// What to serve.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Address to listen on; port 0 picks a free one (see [`SimServer::addr`]).
    pub listen: SocketAddr,
    /// Number of cameras, served at `/cam/1` … `/cam/N`.
    pub cameras: usize,
    /// The H.264 clip.
    pub clip: PathBuf,
}

/// One connected camera's replay position.
struct Feed {
    camera: usize,
    src: glib::WeakRef<gst_app::AppSrc>,
    next: usize,
    due: Instant,
}

struct Shared {
    clip: Clip,
    feeds: Mutex<Vec<Feed>>,
    stop: AtomicBool,
}

/// A running simulator. [`SimServer::stop`] (or drop) shuts it down.
pub struct SimServer {
    addr: SocketAddr,
    server: rtsp::RTSPServer,
    main_loop: glib::MainLoop,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl SimServer {
    /// Loads the clip and starts serving.
    pub fn start(cfg: &SimConfig) -> Result<SimServer, Error> {
        let clip = Clip::load(&cfg.clip)?;
        tracing::info!(
            clip = %cfg.clip.display(), frames = clip.frames.len(), keyframes = clip.keyframes.len(),
            fps = clip.fps(), "clip loaded"
        );
        let shared = Arc::new(Shared { clip, feeds: Mutex::new(Vec::new()), stop: AtomicBool::new(false) });

        let server = rtsp::RTSPServer::new();
        server.set_address(&cfg.listen.ip().to_string());
        server.set_service(&cfg.listen.port().to_string());
        let mounts = server.mount_points().expect("a new server has mount points");
        for cam in 1..=cfg.cameras {
            mounts.add_factory(&format!("/cam/{cam}"), camera_factory(cam, &shared));
        }

        let ctx = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&ctx), false);
        let source = ctx
            .with_thread_default(|| server.attach(Some(&ctx)))
            .map_err(|e| Error::wrap(ErrorKind::Internal, "RTSP server context", e))?
            .map_err(|e| {
                Error::wrap(ErrorKind::Unavailable, format!("RTSP server cannot listen on {}", cfg.listen), e)
            })?;
        let port = server.bound_port();
        if port <= 0 {
            return Err(varta_core::err!(Unavailable, "RTSP server did not bind {}", cfg.listen));
        }
        let addr = SocketAddr::new(cfg.listen.ip(), port as u16);

        let ml = main_loop.clone();
        let rtsp_thread = std::thread::Builder::new()
            .name("sim-rtsp".into())
            .spawn(move || {
                ctx.with_thread_default(|| ml.run()).expect("context is free");
                // The source lives in our context, not the global one `remove()` uses.
                if let Some(s) = ctx.find_source_by_id(&source) {
                    s.destroy();
                }
            })
            .map_err(|e| Error::wrap(ErrorKind::Internal, "spawning sim thread", e))?;
        let sh = shared.clone();
        let feeder = std::thread::Builder::new()
            .name("sim-feeder".into())
            .spawn(move || feed_loop(&sh))
            .map_err(|e| Error::wrap(ErrorKind::Internal, "spawning sim feeder", e))?;
        tracing::info!(%addr, cameras = cfg.cameras, "simulator listening");
        Ok(SimServer { addr, server, main_loop, shared, threads: vec![rtsp_thread, feeder] })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// URL of camera `n` (1-based).
    pub fn url(&self, n: usize) -> String {
        format!("rtsp://{}/cam/{n}", self.addr)
    }

    /// Stops serving and disconnects every client.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.shared.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        self.server.client_filter(Some(&mut |_, _| rtsp::RTSPFilterResult::Remove));
        self.main_loop.quit();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for f in self.shared.feeds.lock().unwrap().drain(..) {
            if let Some(src) = f.src.upgrade() {
                let _ = src.end_of_stream();
            }
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn camera_factory(cam: usize, shared: &Arc<Shared>) -> rtsp::RTSPMediaFactory {
    let factory = rtsp::RTSPMediaFactory::new();
    // appsrc is live and stamps buffers with the running time as they are pushed, so
    // timestamps increase monotonically across clip loops. No parser or encoder runs.
    factory.set_launch(
        "( appsrc name=src is-live=true format=time do-timestamp=true min-latency=0 \
           ! rtph264pay name=pay0 pt=96 config-interval=-1 aggregate-mode=zero-latency )",
    );
    // One pipeline per camera however many clients watch it, like a real camera.
    factory.set_shared(true);
    let weak = Arc::downgrade(shared);
    factory.connect_media_configure(move |_, media| {
        let Some(shared) = weak.upgrade() else { return };
        let bin = media.element().downcast::<gst::Bin>().expect("media element is a bin");
        let Some(src) = bin.by_name_recurse_up("src").and_then(|e| e.downcast::<gst_app::AppSrc>().ok()) else {
            return;
        };
        src.set_caps(Some(&shared.clip.caps));
        src.set_max_bytes(4 << 20);
        // A client that cannot keep up loses new frames, as behind a congested
        // camera; the default would queue without bound.
        src.set_property_from_str("leaky-type", "upstream");
        // Start each camera at its own keyframe, so the cameras are not in lock-step.
        let keys = &shared.clip.keyframes;
        let start = keys[(cam * 7) % keys.len()];
        let mut feeds = shared.feeds.lock().unwrap();
        feeds.retain(|f| f.camera != cam);
        feeds.push(Feed { camera: cam, src: src.downgrade(), next: start, due: Instant::now() });
        tracing::debug!(camera = cam, start, "camera media configured");
    });
    factory
}

/// Pushes each connected camera's next access unit when it is due.
fn feed_loop(sh: &Shared) {
    let n = sh.clip.frames.len();
    let step = sh.clip.frame_duration;
    while !sh.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let mut next_due = now + Duration::from_millis(20);
        {
            let mut feeds = sh.feeds.lock().unwrap();
            feeds.retain_mut(|f| {
                let Some(src) = f.src.upgrade() else { return false };
                // Fell behind by more than a second (machine overloaded): skip ahead
                // rather than burst, as a real camera would.
                if now.saturating_duration_since(f.due) > Duration::from_secs(1) {
                    f.due = now;
                }
                while f.due <= now {
                    let mut buf = sh.clip.frames[f.next].copy(); // shares the memory
                    {
                        let b = buf.get_mut().expect("a fresh copy is writable");
                        b.set_pts(gst::ClockTime::NONE);
                        b.set_dts(gst::ClockTime::NONE);
                    }
                    if src.push_buffer(buf).is_err() {
                        return false; // media unprepared: no client any more
                    }
                    f.next = (f.next + 1) % n;
                    f.due += step;
                }
                next_due = next_due.min(f.due);
                true
            });
        }
        std::thread::sleep(next_due.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)));
    }
}
