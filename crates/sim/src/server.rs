//! The RTSP server: one shared media per camera, fed from tracks held in memory, with
//! scenes and fault injection.
//!
//! One feeder thread paces every camera in real time. At each keyframe it decides what
//! the camera shows next: the clip (activity), the idle still scene, the dark scene or
//! a frozen picture, so every switch is at a keyframe and the stream stays valid.
//! Faults that break the stream on purpose (stall, garbage) and the connection ones
//! (drop, refuse, server restart) are injected through [`SimServer::inject`] and
//! [`SimServer::restart`], or at random with [`SimConfig::random_faults`].

use crate::clip::{Clip, SimCodec};
use crate::scene::{encode_still, sprop_parameter_sets, Still, Track};
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use varta_core::{err, Error, ErrorKind};

/// What the cameras show over time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scene {
    /// The clip, always (people walking through).
    Active,
    /// The still scene with sensor noise, always.
    Idle,
    /// Idle, with the clip for `active_share` of every `period`; each camera has its
    /// own phase.
    Mixed {
        /// Length of one idle + active cycle.
        period: Duration,
        /// Share of the cycle that is active (0–1).
        active_share: f64,
    },
}

/// A fault to inject into one camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Close the camera's client connections now.
    Drop,
    /// Stop sending for this long (the connection stays open).
    Stall(Duration),
    /// Drop the connections and answer 404 to new ones for this long.
    Refuse(Duration),
    /// Send random bytes in place of video for this long.
    Garbage(Duration),
    /// Repeat one picture for this long.
    Freeze(Duration),
    /// Show a dark picture for this long.
    Dark(Duration),
    /// End the camera's RTSP sessions but keep their connections open, as a camera
    /// whose RTSP service restarts behind a proxy does: the video stops, and the next
    /// request on a session is answered `454 Session Not Found`.
    EndSessions,
    /// Show [`SimConfig::resize_clip`] (another picture size) for this long, in the
    /// same session, from the next keyframe.
    Resize(Duration),
}

/// What to serve.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Address to listen on; port 0 picks a free one (see [`SimServer::addr`]).
    pub listen: SocketAddr,
    /// Number of cameras, served at `/cam/1` … `/cam/N`.
    pub cameras: usize,
    /// The H.264 or H.265 clip.
    pub clip: PathBuf,
    /// What the cameras show.
    pub scene: Scene,
    /// Require RTSP basic authentication with this user and password.
    pub auth: Option<(String, String)>,
    /// Inject a random fault into a random camera on average this often.
    pub random_faults: Option<Duration>,
    /// Stop injecting random faults this long after the start (a soak ends calm, so
    /// that every camera can be seen to have recovered).
    pub random_faults_for: Option<Duration>,
    /// Append one JSON line per scene switch (`{"camera","at_ms","scene"}`) here.
    pub scene_log: Option<PathBuf>,
    /// Keyframe interval of the still scenes (idle, dark, frozen), as smart codecs
    /// stretch it on a quiet scene (10–60 s); `None`: the clip's own. With it, a
    /// frozen camera sends an unchanging picture at this interval (H.264 clips)
    /// instead of repeating one keyframe.
    pub gop: Option<Duration>,
    /// Announce parameter sets of another stream in the SDP (`sprop-parameter-sets`):
    /// width, height and frames per second, as a camera whose settings changed and
    /// whose stream description did not (H.264 clips). The stream itself keeps its own
    /// parameter sets in-band before every keyframe.
    pub announce: Option<(u32, u32, u32)>,
    /// With `auth`: RTSP digest authentication instead of basic.
    pub digest: bool,
    /// Where the cameras carry their parameter sets (SPS/PPS; H.264 clips).
    pub parameter_sets: ParameterSets,
    /// An audio stream (PCMU, 8 kHz test tone) announced before the video, as a
    /// camera with a microphone does.
    pub audio_first: bool,
    /// A second H.264 clip, of another picture size, that [`Fault::Resize`] shows in
    /// the same session (a resolution change mid-stream).
    pub resize_clip: Option<PathBuf>,
}

/// Where a camera carries its H.264 parameter sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ParameterSets {
    /// In the SDP and in-band before every keyframe.
    #[default]
    Both,
    /// Only in the SDP's `sprop-parameter-sets`.
    SdpOnly,
    /// Only in-band, before every keyframe; the SDP has none.
    InBandOnly,
}

impl SimConfig {
    /// `cameras` cameras showing the clip at `listen`.
    pub fn new(listen: SocketAddr, cameras: usize, clip: PathBuf) -> SimConfig {
        SimConfig {
            listen,
            cameras,
            clip,
            scene: Scene::Active,
            auth: None,
            random_faults: None,
            random_faults_for: None,
            scene_log: None,
            gop: None,
            announce: None,
            digest: false,
            parameter_sets: ParameterSets::Both,
            audio_first: false,
            resize_clip: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Showing {
    Clip,
    Idle,
    Dark,
    Frozen,
    Resized,
}

/// One camera's replay state.
struct Cam {
    src: Option<glib::WeakRef<gst_app::AppSrc>>,
    showing: Showing,
    pos: usize,
    clip_pos: usize,
    frozen: Option<gst::Buffer>,
    due: Instant,
    /// The next unit must be a keyframe (after a stall, garbage or a new client).
    resync: bool,
    stall_until: Option<Instant>,
    garbage_until: Option<Instant>,
    freeze_until: Option<Instant>,
    dark_until: Option<Instant>,
    resize_until: Option<Instant>,
    refuse_until: Option<Instant>,
    phase: f64,
}

struct Shared {
    clip: Track,
    idle: Option<Track>,
    dark: Option<Track>,
    /// An unchanging picture at `SimConfig::gop` (else a frozen camera repeats one
    /// keyframe of the clip).
    frozen: Option<Track>,
    /// [`SimConfig::resize_clip`].
    resized: Option<Track>,
    step: Duration,
    scene: Scene,
    cams: Mutex<Vec<Cam>>,
    stop: AtomicBool,
    started: Instant,
    log: Option<Mutex<std::fs::File>>,
    mounts: rtsp::RTSPMountPoints,
    factories: std::sync::OnceLock<Vec<rtsp::RTSPMediaFactory>>,
    /// Per camera (index n - 1): share of RTP packets dropped after the payloader,
    /// in parts per million.
    loss_ppm: Vec<AtomicU32>,
    /// Per camera (index n - 1): the session timeout announced and enforced, in
    /// seconds; 0: the server's default (60 s announced, never enforced).
    session_timeout: Vec<AtomicU32>,
    /// Per camera (index n - 1): keep-alives received (GET_PARAMETER or OPTIONS
    /// carrying a session id).
    keepalives: Vec<AtomicU64>,
    /// Per camera (index n - 1): sessions ended for want of a keep-alive.
    expired: Vec<AtomicU64>,
    /// Client connections that set up a camera, by the client's address in memory.
    sessions: Mutex<std::collections::HashMap<usize, Session>>,
}

/// What the keep-alive check knows of one client connection.
struct Session {
    /// The camera it set up (1-based).
    camera: usize,
    /// Since PLAY or the last keep-alive; `None` before PLAY.
    alive_at: Option<Instant>,
}

struct Rtsp {
    server: rtsp::RTSPServer,
    source: Option<glib::SourceId>,
}

/// A running simulator. [`SimServer::stop`] (or drop) shuts it down.
pub struct SimServer {
    inner: Arc<Inner>,
    main_loop: glib::MainLoop,
    threads: Vec<JoinHandle<()>>,
}

/// What the control methods and the random-fault thread share.
struct Inner {
    addr: Mutex<SocketAddr>,
    ctx: glib::MainContext,
    rtsp: Mutex<Rtsp>,
    mounts: rtsp::RTSPMountPoints,
    auth: Option<rtsp::RTSPAuth>,
    cameras: usize,
    shared: Arc<Shared>,
    /// Per camera (index n - 1): drop each client session once it has lasted this.
    link_drops: Mutex<Vec<Option<Duration>>>,
}

impl SimServer {
    /// Loads the clip, encodes the still scenes, and starts serving.
    pub fn start(cfg: &SimConfig) -> Result<SimServer, Error> {
        let clip = Clip::load(&cfg.clip)?;
        tracing::info!(
            clip = %cfg.clip.display(), codec = clip.codec.as_str(), frames = clip.frames.len(),
            keyframes = clip.keyframes.len(), fps = clip.fps(), "clip loaded"
        );
        // Two intervals of the idle scene, so that consecutive keyframes show
        // different seconds of its clock (one interval looping would repeat one
        // keyframe: a frozen camera).
        let gop = cfg.gop.map(|g| ((g.as_secs_f64() / clip.frame_duration.as_secs_f64()).round() as usize).max(1));
        let (idle, dark, frozen) = if clip.codec == SimCodec::H264 {
            (
                Some(encode_still(&cfg.clip, &clip, Still::Idle, gop, 2)?),
                Some(encode_still(&cfg.clip, &clip, Still::Dark, gop, 1)?),
                gop.map(|_| encode_still(&cfg.clip, &clip, Still::Frozen, gop, 1)).transpose()?,
            )
        } else if cfg.scene != Scene::Active || cfg.gop.is_some() {
            return Err(err!(InvalidArgument, "idle scenes and a keyframe interval need an H.264 clip"));
        } else {
            (None, None, None)
        };
        let sprop = match cfg.announce {
            Some(_) if clip.codec != SimCodec::H264 => {
                return Err(err!(InvalidArgument, "announcing other parameter sets needs an H.264 clip"))
            }
            Some((w, h, fps)) => Some(sprop_parameter_sets(w, h, fps)?),
            None => None,
        };
        let log = match &cfg.scene_log {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| Error::wrap(ErrorKind::Unavailable, format!("scene log {}", p.display()), e))?,
            )),
            None => None,
        };
        let mut track = Track::from_clip(&clip);
        let mut sprop = sprop;
        if cfg.parameter_sets != ParameterSets::Both && clip.codec != SimCodec::H264 {
            return Err(err!(InvalidArgument, "placing the parameter sets needs an H.264 clip"));
        }
        if cfg.parameter_sets == ParameterSets::SdpOnly {
            let (stripped, sets) = track.without_parameter_sets();
            track = stripped;
            sprop = sprop.or(Some(sets));
        }
        if cfg.parameter_sets == ParameterSets::InBandOnly {
            sprop = Some(String::new());
        }
        let resized = match &cfg.resize_clip {
            Some(p) => {
                let other = Clip::load(p)?;
                if other.codec != clip.codec {
                    return Err(err!(InvalidArgument, "the resize clip must have the clip's codec"));
                }
                Some(Track::from_clip(&other))
            }
            None => None,
        };
        let now = Instant::now();
        let cams = (1..=cfg.cameras)
            .map(|cam| Cam {
                src: None,
                showing: Showing::Clip,
                pos: 0,
                // Each camera starts at its own keyframe, so they do not show the same picture.
                clip_pos: clip.keyframes[(cam * 7) % clip.keyframes.len()],
                frozen: None,
                due: now,
                resync: true,
                stall_until: None,
                garbage_until: None,
                freeze_until: None,
                dark_until: None,
                resize_until: None,
                refuse_until: None,
                phase: (cam as f64 * 0.382).fract(),
            })
            .collect();
        let shared = Arc::new(Shared {
            step: clip.frame_duration,
            clip: track,
            idle,
            dark,
            frozen,
            resized,
            scene: cfg.scene,
            cams: Mutex::new(cams),
            stop: AtomicBool::new(false),
            started: now,
            log,
            mounts: rtsp::RTSPMountPoints::new(),
            factories: Default::default(),
            loss_ppm: (0..cfg.cameras).map(|_| AtomicU32::new(0)).collect(),
            session_timeout: (0..cfg.cameras).map(|_| AtomicU32::new(0)).collect(),
            keepalives: (0..cfg.cameras).map(|_| AtomicU64::new(0)).collect(),
            expired: (0..cfg.cameras).map(|_| AtomicU64::new(0)).collect(),
            sessions: Default::default(),
        });
        let auth = cfg.auth.as_ref().map(|(user, pass)| {
            let auth = rtsp::RTSPAuth::new();
            let token = rtsp::RTSPToken::builder().field(rtsp::RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer").build();
            if cfg.digest {
                auth.set_supported_methods(rtsp::gst_rtsp::RTSPAuthMethod::Digest);
                auth.add_digest(user, pass, &token);
            } else {
                auth.add_basic(rtsp::RTSPAuth::make_basic(user, pass).as_str(), &token);
            }
            auth
        });
        let factories: Vec<_> = (1..=cfg.cameras)
            .map(|cam| camera_factory(cam, &clip, &shared, auth.is_some(), sprop.clone(), cfg))
            .collect();
        for (i, f) in factories.iter().enumerate() {
            shared.mounts.add_factory(&path(i + 1), f.clone());
        }
        let _ = shared.factories.set(factories);

        let ctx = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&ctx), false);
        let inner = Arc::new(Inner {
            addr: Mutex::new(cfg.listen),
            ctx: ctx.clone(),
            rtsp: Mutex::new(Rtsp { server: rtsp::RTSPServer::new(), source: None }),
            mounts: shared.mounts.clone(),
            auth,
            cameras: cfg.cameras,
            shared: shared.clone(),
            link_drops: Mutex::new(vec![None; cfg.cameras]),
        });
        let addr = inner.listen(cfg.listen)?;
        *inner.addr.lock().unwrap() = addr;

        let ml = main_loop.clone();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| Error::wrap(ErrorKind::Internal, format!("spawning {name}"), e))
        };
        let mut threads =
            vec![spawn("sim-rtsp", Box::new(move || ctx.with_thread_default(|| ml.run()).expect("context is free")))?];
        let sh = shared.clone();
        threads.push(spawn("sim-feeder", Box::new(move || feed_loop(&sh)))?);
        let i = inner.clone();
        threads.push(spawn("sim-link", Box::new(move || i.link_loop()))?);
        if let Some(mean) = cfg.random_faults {
            let i = inner.clone();
            let until = cfg.random_faults_for.map(|d| Instant::now() + d);
            threads.push(spawn("sim-faults", Box::new(move || i.random_faults(mean, until)))?);
        }
        tracing::info!(%addr, cameras = cfg.cameras, scene = ?cfg.scene, "simulator listening");
        Ok(SimServer { inner, main_loop, threads })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        *self.inner.addr.lock().unwrap()
    }

    /// URL of camera `n` (1-based).
    pub fn url(&self, n: usize) -> String {
        format!("rtsp://{}{}", self.addr(), path(n))
    }

    /// Injects `fault` into camera `n` (1-based).
    pub fn inject(&self, n: usize, fault: Fault) {
        self.inner.inject(n, fault)
    }

    /// Makes camera `n`'s link drop every session `every` after its SETUP, as a
    /// flapping radio link or a camera that closes sessions does; `None` heals it.
    pub fn set_link_drops(&self, n: usize, every: Option<Duration>) {
        assert!((1..=self.inner.cameras).contains(&n), "no camera {n}");
        tracing::info!(camera = n, every_ms = every.map(|d| d.as_millis() as u64), "link drops");
        self.inner.link_drops.lock().unwrap()[n - 1] = every;
    }

    /// Drops `percent` % of camera `n`'s RTP packets (at random, after the payloader,
    /// so the client sees gaps in the sequence numbers), as a lossy network would;
    /// 0 stops it.
    pub fn set_packet_loss(&self, n: usize, percent: f64) {
        assert!((1..=self.inner.cameras).contains(&n), "no camera {n}");
        tracing::info!(camera = n, percent, "packet loss");
        let ppm = (percent.clamp(0.0, 100.0) * 10_000.0).round() as u32;
        self.inner.shared.loss_ppm[n - 1].store(ppm, Ordering::Relaxed);
    }

    /// Makes camera `n` announce `Session: …;timeout=T` in its SETUP replies and end
    /// (close the connection of) any session that sends no keep-alive, GET_PARAMETER
    /// or OPTIONS carrying its session id, for `T` after PLAY or the last keep-alive,
    /// as many cameras and NVRs do; `None`: the default (60 s announced, never
    /// enforced). Applies to sessions set up from now on; `T` in whole seconds (RTSP's
    /// unit), at least 1.
    pub fn set_session_timeout(&self, n: usize, timeout: Option<Duration>) {
        assert!((1..=self.inner.cameras).contains(&n), "no camera {n}");
        let secs = timeout.map_or(0, |t| (t.as_secs() as u32).max(1));
        tracing::info!(camera = n, timeout_secs = secs, "session timeout");
        self.inner.shared.session_timeout[n - 1].store(secs, Ordering::Relaxed);
    }

    /// Keep-alives camera `n` has received so far (GET_PARAMETER or OPTIONS carrying
    /// a session id).
    pub fn keepalives(&self, n: usize) -> u64 {
        self.inner.shared.keepalives[n - 1].load(Ordering::Relaxed)
    }

    /// Sessions camera `n` has ended so far because no keep-alive came within its
    /// session timeout ([`SimServer::set_session_timeout`]).
    pub fn sessions_expired(&self, n: usize) -> u64 {
        self.inner.shared.expired[n - 1].load(Ordering::Relaxed)
    }

    /// Restarts the whole server: every connection closed, nothing listening for
    /// `down`, then listening again on the same address.
    pub fn restart(&self, down: Duration) -> Result<(), Error> {
        self.inner.restart(down)
    }

    /// Stops serving and disconnects every client.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let sh = &self.inner.shared;
        if sh.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner.unlisten();
        self.main_loop.quit();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for c in sh.cams.lock().unwrap().iter_mut() {
            if let Some(src) = c.src.take().and_then(|s| s.upgrade()) {
                let _ = src.end_of_stream();
            }
        }
    }
}

impl Inner {
    /// Starts a server object listening on `listen`, replacing any previous one.
    fn listen(&self, listen: SocketAddr) -> Result<SocketAddr, Error> {
        let server = rtsp::RTSPServer::new();
        server.set_address(&listen.ip().to_string());
        server.set_service(&listen.port().to_string());
        server.set_mount_points(Some(&self.mounts));
        if let Some(a) = &self.auth {
            server.set_auth(Some(a));
        }
        let weak = Arc::downgrade(&self.shared);
        server.connect_client_connected(move |_, client| watch_keepalives(&weak, client));
        let source = server
            .attach(Some(&self.ctx))
            .map_err(|e| Error::wrap(ErrorKind::Unavailable, format!("RTSP server cannot listen on {listen}"), e))?;
        let port = server.bound_port();
        if port <= 0 {
            return Err(err!(Unavailable, "RTSP server did not bind {listen}"));
        }
        *self.rtsp.lock().unwrap() = Rtsp { server, source: Some(source) };
        Ok(SocketAddr::new(listen.ip(), port as u16))
    }

    /// Closes the listening socket and every client connection.
    fn unlisten(&self) {
        let mut r = self.rtsp.lock().unwrap();
        if let Some(id) = r.source.take() {
            if let Some(s) = self.ctx.find_source_by_id(&id) {
                s.destroy();
            }
        }
        r.server.client_filter(Some(&mut |_, _| rtsp::RTSPFilterResult::Remove));
    }

    fn inject(&self, n: usize, fault: Fault) {
        assert!((1..=self.cameras).contains(&n), "no camera {n}");
        tracing::info!(camera = n, ?fault, "injecting fault");
        let now = Instant::now();
        {
            let mut cams = self.shared.cams.lock().unwrap();
            let c = &mut cams[n - 1];
            match fault {
                Fault::Drop | Fault::EndSessions => {}
                Fault::Stall(d) => c.stall_until = Some(now + d),
                Fault::Refuse(d) => c.refuse_until = Some(now + d),
                Fault::Garbage(d) => c.garbage_until = Some(now + d),
                Fault::Freeze(d) => c.freeze_until = Some(now + d),
                Fault::Dark(d) => c.dark_until = Some(now + d),
                Fault::Resize(d) => c.resize_until = Some(now + d),
            }
        }
        if let Fault::Refuse(_) = fault {
            self.mounts.remove_factory(&path(n));
        }
        if matches!(fault, Fault::Drop | Fault::Refuse(_)) {
            self.drop_clients(n);
        }
        if fault == Fault::EndSessions {
            self.end_sessions(n);
        }
    }

    /// Removes the sessions playing camera `n` from the server's session pool; their
    /// clients stay connected.
    fn end_sessions(&self, n: usize) {
        let p = path(n);
        let r = self.rtsp.lock().unwrap();
        let Some(pool) = r.server.session_pool() else { return };
        let mut ended = Vec::new();
        r.server.client_filter(Some(&mut |_, client| {
            client.session_filter(Some(&mut |_, sess| {
                if sess.media(&p).0.is_some() {
                    ended.push(sess.clone());
                }
                rtsp::RTSPFilterResult::Keep
            }));
            rtsp::RTSPFilterResult::Keep
        }));
        for sess in ended {
            let _ = pool.remove(&sess);
        }
    }

    /// Closes the connections of every client playing camera `n`.
    fn drop_clients(&self, n: usize) {
        let p = path(n);
        let r = self.rtsp.lock().unwrap();
        r.server.client_filter(Some(&mut |_, client| {
            let mut hit = false;
            client.session_filter(Some(&mut |_, sess| {
                hit |= sess.media(&p).0.is_some();
                rtsp::RTSPFilterResult::Keep
            }));
            if hit {
                rtsp::RTSPFilterResult::Remove
            } else {
                rtsp::RTSPFilterResult::Keep
            }
        }));
    }

    /// Drops client sessions of cameras with link drops once they are old enough (a
    /// session's age counts from when this loop first sees it, within 50 ms), and
    /// those whose session timeout passed without a keep-alive.
    fn link_loop(&self) {
        let mut first_seen: std::collections::HashMap<usize, Instant> = Default::default();
        while !self.shared.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            self.expire_sessions();
            let drops = self.link_drops.lock().unwrap().clone();
            if drops.iter().all(Option::is_none) {
                first_seen.clear();
                continue;
            }
            let now = Instant::now();
            let mut alive = std::collections::HashSet::new();
            let r = self.rtsp.lock().unwrap();
            r.server.client_filter(Some(&mut |_, client| {
                let key = client.as_ptr() as usize;
                let mut every = None;
                client.session_filter(Some(&mut |_, sess| {
                    for (i, d) in drops.iter().enumerate() {
                        if d.is_some() && sess.media(&path(i + 1)).0.is_some() {
                            every = every.or(*d);
                        }
                    }
                    rtsp::RTSPFilterResult::Keep
                }));
                let Some(every) = every else { return rtsp::RTSPFilterResult::Keep };
                if now.duration_since(*first_seen.entry(key).or_insert(now)) >= every {
                    tracing::info!("link drop: closing a session");
                    // Forgotten now: a later client may get the same address.
                    first_seen.remove(&key);
                    rtsp::RTSPFilterResult::Remove
                } else {
                    alive.insert(key);
                    rtsp::RTSPFilterResult::Keep
                }
            }));
            first_seen.retain(|k, _| alive.contains(k));
        }
    }

    /// Closes the connections whose session went without a keep-alive for longer than
    /// its camera's session timeout.
    fn expire_sessions(&self) {
        let sh = &self.shared;
        let now = Instant::now();
        let expired: Vec<(usize, usize)> = sh
            .sessions
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(&key, s)| {
                let secs = sh.session_timeout[s.camera - 1].load(Ordering::Relaxed);
                let late = secs > 0 && s.alive_at.is_some_and(|t| now.duration_since(t).as_secs_f64() > secs as f64);
                late.then_some((key, s.camera))
            })
            .collect();
        if expired.is_empty() {
            return;
        }
        let r = self.rtsp.lock().unwrap();
        r.server.client_filter(Some(&mut |_, client| {
            let key = client.as_ptr() as usize;
            match expired.iter().find(|(k, _)| *k == key) {
                Some(&(_, camera)) => {
                    tracing::info!(camera, "session timed out without a keep-alive: closing it");
                    sh.expired[camera - 1].fetch_add(1, Ordering::Relaxed);
                    sh.sessions.lock().unwrap().remove(&key);
                    rtsp::RTSPFilterResult::Remove
                }
                None => rtsp::RTSPFilterResult::Keep,
            }
        }));
    }

    fn restart(&self, down: Duration) -> Result<(), Error> {
        tracing::info!(down_ms = down.as_millis() as u64, "restarting the server");
        self.unlisten();
        std::thread::sleep(down);
        let addr = *self.addr.lock().unwrap();
        // The old socket may take a moment to be released by the main loop.
        let mut last = None;
        for _ in 0..50 {
            match self.listen(addr) {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last.expect("tried"))
    }

    /// Injects random faults until the server stops; on average one every `mean`.
    fn random_faults(&self, mean: Duration, until: Option<Instant>) {
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut rng = Rng(seed.as_nanos() as u64 | 1);
        let stopped = || self.shared.stop.load(Ordering::Relaxed) || until.is_some_and(|u| Instant::now() >= u);
        while !stopped() {
            // Exponential wait: faults arrive as a Poisson process.
            let wait = mean.mul_f64(-(1.0 - rng.unit()).ln()).min(mean * 5);
            let end = Instant::now() + wait;
            while Instant::now() < end {
                if stopped() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let cam = 1 + (rng.next() as usize % self.cameras);
            let r = rng.next();
            let secs = |lo: u64, hi: u64| Duration::from_secs(lo + (r >> 8) % (hi - lo + 1));
            match r % 20 {
                0 => {
                    if let Err(e) = self.restart(secs(1, 3)) {
                        tracing::error!(error = %e, "server restart failed");
                    }
                }
                1..=5 => self.inject(cam, Fault::Drop),
                6..=9 => self.inject(cam, Fault::Stall(secs(5, 20))),
                10..=12 => self.inject(cam, Fault::Refuse(secs(3, 15))),
                13..=15 => self.inject(cam, Fault::Garbage(secs(1, 4))),
                16..=17 => self.inject(cam, Fault::Freeze(secs(5, 20))),
                _ => self.inject(cam, Fault::Dark(secs(5, 20))),
            }
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn path(n: usize) -> String {
    format!("/cam/{n}")
}

/// The camera (1-based) a request URL names: `rtsp://host:port/cam/N[/stream=0]`.
fn camera_of(url: &str) -> Option<usize> {
    let after = url.split_once("/cam/")?.1;
    after.split('/').next()?.parse().ok()
}

/// Follows one client connection for the session-timeout behaviour: which camera it
/// sets up, the timeout its session announces, when it plays and sends keep-alives.
/// Runs on the server's main loop, one signal at a time.
fn watch_keepalives(weak: &std::sync::Weak<Shared>, client: &rtsp::RTSPClient) {
    use rtsp::gst_rtsp::RTSPStatusCode;
    let key = client.as_ptr() as usize;
    let w = weak.clone();
    client.connect_pre_setup_request(move |_, ctx| {
        let camera = ctx.uri().and_then(|u| camera_of(&u.request_uri()));
        if let (Some(sh), Some(camera)) = (w.upgrade(), camera) {
            if (1..=sh.session_timeout.len()).contains(&camera) {
                sh.sessions.lock().unwrap().entry(key).or_insert(Session { camera, alive_at: None });
            }
        }
        RTSPStatusCode::Ok
    });
    let w = weak.clone();
    client.connect_new_session(move |_, session| {
        let Some(sh) = w.upgrade() else { return };
        let Some(camera) = sh.sessions.lock().unwrap().get(&key).map(|s| s.camera) else { return };
        let secs = sh.session_timeout[camera - 1].load(Ordering::Relaxed);
        if secs > 0 {
            session.set_timeout(secs);
            session.set_timeout_always_visible(true);
        }
    });
    let w = weak.clone();
    client.connect_play_request(move |_, _| {
        if let Some(sh) = w.upgrade() {
            if let Some(s) = sh.sessions.lock().unwrap().get_mut(&key) {
                s.alive_at = Some(Instant::now());
            }
        }
    });
    let keepalive = {
        let w = weak.clone();
        move |ctx: &rtsp::RTSPContext| {
            // Only a request carrying the session's id keeps it alive (the server
            // looked the id up before this signal).
            if ctx.session().is_none() {
                return RTSPStatusCode::Ok;
            }
            if let Some(sh) = w.upgrade() {
                if let Some(s) = sh.sessions.lock().unwrap().get_mut(&key) {
                    if s.alive_at.is_some() {
                        s.alive_at = Some(Instant::now());
                        sh.keepalives[s.camera - 1].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            RTSPStatusCode::Ok
        }
    };
    let k = keepalive.clone();
    client.connect_pre_get_parameter_request(move |_, ctx| k(ctx));
    client.connect_pre_options_request(move |_, ctx| keepalive(ctx));
    let w = weak.clone();
    client.connect_closed(move |_| {
        if let Some(sh) = w.upgrade() {
            sh.sessions.lock().unwrap().remove(&key);
        }
    });
}

/// The name of the video payloader: `pay0`, or `pay1` after an audio stream.
fn video_pay(cfg: &SimConfig) -> &'static str {
    if cfg.audio_first {
        "pay1"
    } else {
        "pay0"
    }
}

fn camera_factory(
    cam: usize,
    clip: &Clip,
    shared: &Arc<Shared>,
    auth: bool,
    sprop: Option<String>,
    cfg: &SimConfig,
) -> rtsp::RTSPMediaFactory {
    let factory = rtsp::RTSPMediaFactory::new();
    // appsrc is live and stamps buffers with the running time as they are pushed, so
    // timestamps increase monotonically across loops. No parser or encoder runs.
    let pay = match clip.codec {
        SimCodec::H264 => "rtph264pay",
        SimCodec::H265 => "rtph265pay",
    };
    let vpay = video_pay(cfg);
    // The audio stream, if any, is the media's first (pay0), as a camera lists it.
    let audio = if cfg.audio_first {
        "audiotestsrc is-live=true wave=sine freq=440 volume=0.1 ! audio/x-raw,rate=8000,channels=1 \
         ! mulawenc ! rtppcmupay name=pay0 pt=0 "
    } else {
        ""
    };
    factory.set_launch(&format!(
        "( {audio}appsrc name=src is-live=true format=time do-timestamp=true min-latency=0 \
           ! {pay} name={vpay} pt=96 config-interval=-1 aggregate-mode=zero-latency )"
    ));
    // One pipeline per camera however many clients watch it, like a real camera.
    factory.set_shared(true);
    if auth {
        factory.add_role_from_structure(
            &gst::Structure::builder("viewer")
                .field(rtsp::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
                .field(rtsp::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
                .build(),
        );
    }
    let weak = Arc::downgrade(shared);
    let caps = clip.caps.clone();
    factory.connect_media_configure(move |_, media| {
        let Some(shared) = weak.upgrade() else { return };
        let bin = media.element().downcast::<gst::Bin>().expect("media element is a bin");
        let Some(src) = bin.by_name_recurse_up("src").and_then(|e| e.downcast::<gst_app::AppSrc>().ok()) else {
            return;
        };
        if let (Some(pay), Some(sprop)) = (bin.by_name_recurse_up(vpay), &sprop) {
            // The SDP is made from the payloader's caps, which take this over what the
            // stream carries. The payloader must not insert these before keyframes
            // too: the stream keeps its own (the clip has them before every keyframe).
            pay.set_property("sprop-parameter-sets", sprop);
            pay.set_property("config-interval", 0i32);
        }
        if let Some(pad) = bin.by_name_recurse_up(vpay).and_then(|p| p.static_pad("src")) {
            let w = weak.clone();
            // Seeded per camera: which packets go is random, their share is not.
            let rng = AtomicU64::new(0x9e37_79b9_7f4a_7c15 ^ cam as u64);
            pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |_, info| {
                let Some(ppm) = w.upgrade().map(|sh| sh.loss_ppm[cam - 1].load(Ordering::Relaxed)) else {
                    return gst::PadProbeReturn::Ok;
                };
                if ppm == 0 {
                    return gst::PadProbeReturn::Ok;
                }
                let lose = || {
                    let mut r = Rng(rng.load(Ordering::Relaxed));
                    let x = r.next();
                    rng.store(r.0, Ordering::Relaxed);
                    (x % 1_000_000) < ppm as u64
                };
                if info.buffer().is_some() && lose() {
                    return gst::PadProbeReturn::Drop;
                }
                if let Some(list) = info.buffer_list_mut() {
                    list.make_mut().foreach_mut(|b, _| std::ops::ControlFlow::Continue((!lose()).then_some(b)));
                }
                gst::PadProbeReturn::Ok
            });
        }
        src.set_caps(Some(&caps));
        src.set_max_bytes(4 << 20);
        // A client that cannot keep up loses new frames, as behind a congested
        // camera; the default would queue without bound.
        src.set_property_from_str("leaky-type", "upstream");
        let mut cams = shared.cams.lock().unwrap();
        let c = &mut cams[cam - 1];
        c.src = Some(src.downgrade());
        c.due = Instant::now();
        c.resync = true;
        tracing::debug!(camera = cam, "camera media configured");
    });
    factory
}

/// Pushes each connected camera's next access unit when it is due.
fn feed_loop(sh: &Shared) {
    let mut rng = Rng(0x853c_49e6_748f_ea9b);
    while !sh.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let mut next_due = now + Duration::from_millis(20);
        {
            let mut cams = sh.cams.lock().unwrap();
            for (i, c) in cams.iter_mut().enumerate() {
                feed_camera(sh, i + 1, c, now, &mut rng);
                if c.src.is_some() {
                    next_due = next_due.min(c.due);
                }
            }
        }
        std::thread::sleep(next_due.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)));
    }
}

fn feed_camera(sh: &Shared, n: usize, c: &mut Cam, now: Instant, rng: &mut Rng) {
    let expired = |t: &mut Option<Instant>| {
        if t.is_some_and(|t| now >= t) {
            *t = None;
            true
        } else {
            false
        }
    };
    if expired(&mut c.refuse_until) {
        tracing::info!(camera = n, "accepting connections again");
        // Mount points are shared with the server; re-adding serves the camera again.
        if let Some(f) = sh.factories.get().and_then(|f| f.get(n - 1)) {
            sh.mounts.add_factory(&path(n), f.clone());
        }
    }
    if expired(&mut c.stall_until) | expired(&mut c.garbage_until) {
        c.resync = true;
    }
    expired(&mut c.freeze_until);
    expired(&mut c.dark_until);
    expired(&mut c.resize_until);
    let Some(src) = c.src.as_ref().and_then(|s| s.upgrade()) else {
        c.src = None;
        return;
    };
    // Fell behind by more than a second (machine overloaded): skip ahead rather than
    // burst, as a real camera would.
    if now.saturating_duration_since(c.due) > Duration::from_secs(1) {
        c.due = now;
    }
    if c.stall_until.is_some() {
        c.due = now + sh.step;
        return;
    }
    while c.due <= now {
        let buf = if c.garbage_until.is_some() { garbage(rng) } else { next_unit(sh, n, c, now) };
        let mut buf = buf;
        {
            // Stamped with the running time as pushed (the DTS, by appsrc); a unit
            // shown later than decoded (B-frames reorder) keeps its PTS - DTS, so the
            // RTP timestamps follow presentation order as a camera's do.
            let reorder = match (buf.pts(), buf.dts()) {
                (Some(p), Some(d)) if p > d => Some(p - d),
                _ => None,
            };
            let pts = reorder.and_then(|r| src.current_running_time().map(|t| t + r));
            let b = buf.make_mut();
            b.set_pts(pts);
            b.set_dts(gst::ClockTime::NONE);
        }
        if src.push_buffer(buf).is_err() {
            c.src = None; // media unprepared: no client any more
            return;
        }
        c.due += sh.step;
    }
}

/// The next access unit of camera `n`, switching scenes only at keyframes.
fn next_unit(sh: &Shared, n: usize, c: &mut Cam, now: Instant) -> gst::Buffer {
    let want = if c.resize_until.is_some() && sh.resized.is_some() {
        Showing::Resized
    } else if c.freeze_until.is_some() {
        Showing::Frozen
    } else if c.dark_until.is_some() && sh.dark.is_some() {
        Showing::Dark
    } else {
        match sh.scene {
            Scene::Active => Showing::Clip,
            Scene::Idle if sh.idle.is_some() => Showing::Idle,
            Scene::Idle => Showing::Clip,
            Scene::Mixed { period, active_share } => {
                let t = (now.duration_since(sh.started).as_secs_f64() / period.as_secs_f64() + c.phase).fract();
                if t < active_share || sh.idle.is_none() {
                    Showing::Clip
                } else {
                    Showing::Idle
                }
            }
        }
    };
    let track = |s: Showing| match s {
        Showing::Idle => sh.idle.as_ref().expect("chosen only when encoded"),
        Showing::Dark => sh.dark.as_ref().expect("chosen only when encoded"),
        Showing::Frozen => sh.frozen.as_ref().unwrap_or(&sh.clip),
        Showing::Resized => sh.resized.as_ref().expect("chosen only when loaded"),
        Showing::Clip => &sh.clip,
    };
    // Without a frozen track, a frozen camera repeats one keyframe: no key to wait for.
    let repeats = c.showing == Showing::Frozen && sh.frozen.is_none();
    let at_key = !repeats && track(c.showing).is_key[c.pos];
    if c.resync || (at_key && want != c.showing) || (repeats && want != Showing::Frozen) {
        if c.showing == Showing::Clip {
            c.clip_pos = c.pos;
        }
        let from = c.showing;
        c.showing = want;
        c.pos = match want {
            Showing::Frozen if sh.frozen.is_some() => 0,
            Showing::Clip | Showing::Frozen => sh.clip.keyframe_from(c.clip_pos),
            _ => 0,
        };
        c.frozen = (want == Showing::Frozen && sh.frozen.is_none()).then(|| sh.clip.frames[c.pos].clone());
        if !c.resync && from != want {
            log_switch(sh, n, want);
        }
        c.resync = false;
    }
    if let Some(f) = &c.frozen {
        return f.clone();
    }
    let t = track(c.showing);
    let buf = t.frames[c.pos].clone();
    c.pos = (c.pos + 1) % t.frames.len();
    if c.showing == Showing::Clip {
        c.clip_pos = c.pos;
    }
    buf
}

fn log_switch(sh: &Shared, n: usize, to: Showing) {
    let scene = match to {
        Showing::Clip => "active",
        Showing::Idle => "idle",
        Showing::Dark => "dark",
        Showing::Frozen => "frozen",
        Showing::Resized => "resized",
    };
    tracing::debug!(camera = n, scene, "scene switch");
    if let Some(log) = &sh.log {
        let at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
        let _ = writeln!(log.lock().unwrap(), r#"{{"camera":{n},"at_ms":{at_ms},"scene":"{scene}"}}"#);
    }
}

/// A corrupt access unit: a start code, a slice NAL header, then random bytes, so that
/// it travels through payloader and depayloader and reaches the camera's decoder.
fn garbage(rng: &mut Rng) -> gst::Buffer {
    let len = 2000 + (rng.next() % 8000) as usize;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&[0, 0, 0, 1, 0x41]);
    while v.len() < len {
        let r = rng.next().to_le_bytes();
        // No accidental start codes inside.
        v.extend(r.iter().map(|&b| b | 0x10));
    }
    gst::Buffer::from_mut_slice(v)
}

/// xorshift64*: the simulator's randomness needs no cryptography nor a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
