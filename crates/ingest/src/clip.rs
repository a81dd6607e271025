//! Event clips without re-encoding (issue #22, first part): a bounded ring of one
//! camera's compressed access units, and the writer that remuxes units into an MP4.
//!
//! The ring holds every access unit the parser hands on (decoded or not: the
//! adaptive gate drops units *after* the ring has seen them, so an idle camera
//! decoded on keyframes still has whole GOPs), as reference-counted GStreamer
//! buffers, never copies. It keeps whole GOPs: the oldest GOP goes once the GOP after
//! it starts at least `keep` before the newest unit (so the units from the last
//! keyframe at or before "now − keep" are always there), or when the ring is over its
//! byte budget (then only the newest GOP is guaranteed).
//!
//! [`write_mp4`] puts units through `appsrc ! h264parse|h265parse ! mp4mux ! filesink`:
//! the parser converts byte-stream to the `avc`/`hvc1` form MP4 wants when needed,
//! the muxer writes the camera's own bitstream. The file is written as `.tmp`, its
//! SHA-256 computed from what is on disk, synced, then renamed, so a reader never
//! sees half a clip.

use crate::config::ClipsConfig;
use chrono::{DateTime, Utc};
use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use varta_core::event::{ClipRecord, EventObserver, EventPhase, EventRecord, StoreMsg};
use varta_core::journal::Journal;
use varta_core::{err, CameraId, Error, ErrorKind, EventId};

/// One compressed access unit as received.
#[derive(Clone, Debug)]
struct Unit {
    buf: gst::Buffer,
    key: bool,
    /// Wall-clock arrival, the time events are stamped in (`captured_at`).
    at: DateTime<Utc>,
}

/// A camera's recent compressed stream, whole GOPs, bounded in time and bytes.
#[derive(Debug)]
pub struct ClipRing {
    units: VecDeque<Unit>,
    bytes: usize,
    keep: Duration,
    max_bytes: usize,
    caps: Option<gst::Caps>,
}

impl ClipRing {
    /// A ring that keeps at least `keep` before its newest unit (from the keyframe at
    /// or before it), within `max_bytes` of buffers (the oldest GOP goes first; the
    /// newest GOP always stays, whatever its size).
    pub fn new(keep: Duration, max_bytes: usize) -> ClipRing {
        ClipRing { units: VecDeque::new(), bytes: 0, keep, max_bytes, caps: None }
    }

    /// The caps of the units (the parser's output: codec, stream format, codec
    /// data); a change of caps (a camera reconfigured) empties the ring.
    pub fn set_caps(&mut self, caps: gst::Caps) {
        if self.caps.as_ref() != Some(&caps) {
            self.units.clear();
            self.bytes = 0;
            self.caps = Some(caps);
        }
    }

    /// The units' caps, once known.
    pub fn caps(&self) -> Option<&gst::Caps> {
        self.caps.as_ref()
    }

    /// Adds one access unit that arrived at `at` (a reference, not a copy). Units
    /// before the first keyframe are not kept: nothing could decode them.
    pub fn push(&mut self, buf: &gst::Buffer, at: DateTime<Utc>) {
        let key = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
        if self.units.is_empty() && !key {
            return;
        }
        self.bytes += buf.size();
        self.units.push_back(Unit { buf: buf.clone(), key, at });
        self.trim(at);
    }

    /// Drops whole GOPs from the front: while the next GOP starts at or before
    /// `now − keep`, and while over the byte budget with more than one GOP.
    fn trim(&mut self, now: DateTime<Utc>) {
        let keep = chrono::Duration::from_std(self.keep).unwrap_or(chrono::Duration::days(365));
        loop {
            let Some(next_key) = self.units.iter().skip(1).position(|u| u.key).map(|i| i + 1) else { return };
            let old_enough = self.units[next_key].at <= now - keep;
            if !old_enough && self.bytes <= self.max_bytes {
                return;
            }
            for u in self.units.drain(..next_key) {
                self.bytes -= u.buf.size();
            }
        }
    }

    /// The units from the last keyframe at or before `t` (the oldest keyframe held
    /// when none is that old) to the newest, and the arrival time of the first.
    pub fn since(&self, t: DateTime<Utc>) -> Option<(DateTime<Utc>, Vec<gst::Buffer>)> {
        let start =
            self.units.iter().rposition(|u| u.key && u.at <= t).or_else(|| self.units.iter().position(|u| u.key))?;
        Some((self.units[start].at, self.units.iter().skip(start).map(|u| u.buf.clone()).collect()))
    }
}

/// What [`write_mp4`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipFile {
    /// SHA-256 of the file, lower-case hex.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Access units written.
    pub units: usize,
    /// From the first unit's timestamp to the last's, in seconds.
    pub secs: f64,
}

/// The parser for caps from a parser (`video/x-h264`, `video/x-h265`).
fn parser_for(caps: &gst::Caps) -> Result<&'static str, Error> {
    match caps.structure(0).map(|s| s.name().as_str()) {
        Some("video/x-h264") => Ok("h264parse"),
        Some("video/x-h265") => Ok("h265parse"),
        other => Err(err!(InvalidArgument, "clips are H.264 or H.265, not {other:?}")),
    }
}

/// Writes `units` (access units with `caps`, the first a keyframe) as an MP4 at
/// `path`, without decoding: timestamps are moved to start at zero, the parser puts
/// the bitstream in MP4's form, `mp4mux` writes it. Atomic (a `.tmp` renamed), the
/// SHA-256 computed from the file written.
///
/// Errors: `InvalidArgument` for no units, a first unit that is not a keyframe or a
/// codec other than H.264/H.265; `Unavailable` when GStreamer or the disk fails.
pub fn write_mp4(caps: &gst::Caps, units: &[gst::Buffer], path: &Path) -> Result<ClipFile, Error> {
    gst::init().map_err(|e| Error::wrap(ErrorKind::Internal, "GStreamer init", e))?;
    let first = units.first().ok_or_else(|| err!(InvalidArgument, "a clip needs at least one unit"))?;
    if first.flags().contains(gst::BufferFlags::DELTA_UNIT) {
        return Err(err!(InvalidArgument, "a clip must start on a keyframe"));
    }
    let parse = parser_for(caps)?;
    let tmp = path.with_extension("mp4.tmp");
    let ctx = |what: &str| format!("writing clip {}: {what}", path.display());
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time is-live=false ! {parse} ! mp4mux faststart=true ! filesink name=sink sync=false"
    ))
    .map_err(|e| Error::wrap(ErrorKind::Unavailable, ctx("pipeline (mp4mux is in gstreamer1.0-plugins-good)"), e))?
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let src = pipeline.by_name("src").expect("named").downcast::<gst_app::AppSrc>().expect("appsrc");
    src.set_caps(Some(caps));
    pipeline.by_name("sink").expect("named").set_property("location", tmp.to_string_lossy().as_ref());
    pipeline.set_state(gst::State::Playing).map_err(|e| Error::wrap(ErrorKind::Unavailable, ctx("start"), e))?;
    // Timestamps from zero: the first unit's decode time (or presentation time).
    let base = first.dts().or(first.pts()).unwrap_or(gst::ClockTime::ZERO);
    let (mut lo, mut hi) = (None::<gst::ClockTime>, None::<gst::ClockTime>);
    let mut pushed = Ok(());
    for u in units {
        let mut b = u.copy();
        {
            let b = b.make_mut();
            b.set_pts(u.pts().map(|t| t.saturating_sub(base)));
            b.set_dts(u.dts().map(|t| t.saturating_sub(base)));
            if let Some(p) = b.pts() {
                lo = Some(lo.map_or(p, |l| l.min(p)));
                hi = Some(hi.map_or(p, |h| h.max(p)));
            }
        }
        if let Err(e) = src.push_buffer(b) {
            pushed = Err(err!(Unavailable, "{}", ctx(&format!("pushing a unit: {e:?}"))));
            break;
        }
    }
    let _ = src.end_of_stream();
    let bus = pipeline.bus().expect("pipelines have a bus");
    let done =
        bus.timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Eos, gst::MessageType::Error]);
    let _ = pipeline.set_state(gst::State::Null);
    pushed?;
    match done.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        Some(gst::MessageView::Error(e)) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(err!(Unavailable, "{}", ctx(&e.error().to_string())));
        }
        _ => {
            let _ = std::fs::remove_file(&tmp);
            return Err(err!(Unavailable, "{}", ctx("the muxer did not finish within 60 s")));
        }
    }
    let io = |e: std::io::Error| Error::wrap(ErrorKind::Unavailable, ctx("disk"), e);
    let mut f = std::fs::File::open(&tmp).map_err(io)?;
    let (mut hash, mut buf, mut bytes) = (Sha256::new(), vec![0u8; 1 << 16], 0u64);
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        bytes += n as u64;
    }
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    let secs = match (lo, hi) {
        (Some(l), Some(h)) => (h - l).nseconds() as f64 / 1e9,
        _ => 0.0,
    };
    Ok(ClipFile {
        sha256: hash.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        bytes,
        units: units.len(),
        secs,
    })
}

/// How long a clip is: `pre_roll` before the event's first frame (from the keyframe
/// at or before that moment), the event, `post_roll` after its last frame, at most
/// `max` in all (from `[clips]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipSpan {
    /// Seconds kept before the event's first frame (default 5).
    pub pre_roll: Duration,
    /// Seconds written after the event's last frame (default 10).
    pub post_roll: Duration,
    /// The longest clip written (default 120 s): a track that lasts longer is cut.
    pub max: Duration,
}

/// How much more than the pre-roll a camera's ring keeps: the detector decides an
/// event a moment after its first frame (the tracker's confirmation, the queue), and
/// the pre-roll counts from that first frame.
const DETECTION_DELAY: Duration = Duration::from_secs(10);

/// One event's clip being collected.
#[derive(Debug)]
struct Session {
    event: EventId,
    started_at: DateTime<Utc>,
    /// Arrival of its first unit (a keyframe).
    first_at: DateTime<Utc>,
    units: Vec<gst::Buffer>,
    /// When to stop collecting: the event's end plus the post-roll, once ended.
    close_at: Option<DateTime<Utc>>,
}

/// A clip ready to be written.
#[derive(Debug)]
pub struct Finished {
    event: EventId,
    started_at: DateTime<Utc>,
    caps: gst::Caps,
    units: Vec<gst::Buffer>,
}

/// One camera's ring and the clips being collected from it.
#[derive(Debug)]
pub struct CameraClips {
    ring: ClipRing,
    sessions: Vec<Session>,
}

impl CameraClips {
    /// The stream's caps changed (a new negotiation): the ring starts again.
    pub fn set_caps(&mut self, caps: gst::Caps) {
        self.ring.set_caps(caps);
    }

    /// One access unit arrived at `at`: into the ring and every open clip; returns
    /// the clips it completes (their post-roll passed, or their length reached).
    pub fn on_unit(&mut self, buf: &gst::Buffer, at: DateTime<Utc>, span: ClipSpan) -> Vec<Finished> {
        self.ring.push(buf, at);
        for s in &mut self.sessions {
            s.units.push(buf.clone());
        }
        self.due(at, span)
    }

    /// Takes out the clips due at `now` (nothing to do, and nothing allocated, on the
    /// per-unit path of a camera with no clip open).
    fn due(&mut self, now: DateTime<Utc>, span: ClipSpan) -> Vec<Finished> {
        if self.sessions.is_empty() {
            return Vec::new();
        }
        let max = chrono::Duration::from_std(span.max).unwrap_or(chrono::Duration::hours(1));
        let Some(caps) = self.ring.caps().cloned() else { return Vec::new() };
        let (done, open): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sessions)
            .into_iter()
            .partition(|s| s.close_at.is_some_and(|c| now >= c) || now - s.first_at >= max);
        self.sessions = open;
        done.into_iter()
            .map(|s| Finished { event: s.event, started_at: s.started_at, caps: caps.clone(), units: s.units })
            .collect()
    }
}

/// The clip recorder of a node: each camera's [`CameraClips`], fed by its pipeline,
/// opened and closed by the detector's events ([`EventObserver`]), and one `clips`
/// thread that writes finished clips to `<snapshot dir>/<event>.mp4` and journals a
/// [`ClipRecord`] for each (after the file exists).
#[derive(Debug)]
pub struct Clips {
    span: ClipSpan,
    ring_bytes: usize,
    cameras: Mutex<HashMap<CameraId, Arc<Mutex<CameraClips>>>>,
    tx: Mutex<Option<mpsc::Sender<Finished>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Clips {
    /// Starts the recorder and its writing thread; clips go to `dir`, their records to
    /// `journal`.
    pub fn start(cfg: &ClipsConfig, dir: PathBuf, journal: Arc<Journal>) -> Result<Arc<Clips>, Error> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::wrap(ErrorKind::Unavailable, format!("creating {}", dir.display()), e))?;
        let span = ClipSpan {
            pre_roll: Duration::from_secs_f64(cfg.pre_roll_secs),
            post_roll: Duration::from_secs_f64(cfg.post_roll_secs),
            max: Duration::from_secs_f64(cfg.max_secs),
        };
        let (tx, rx) = mpsc::channel::<Finished>();
        let clips = Arc::new(Clips {
            span,
            ring_bytes: cfg.ring_mb as usize * (1 << 20),
            cameras: Mutex::new(HashMap::new()),
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(None),
        });
        let weak = Arc::downgrade(&clips);
        let h = std::thread::Builder::new()
            .name("clips".into())
            .spawn(move || writer_thread(rx, weak, &dir, &journal))
            .map_err(|e| Error::wrap(ErrorKind::Internal, "spawning the clips thread", e))?;
        *clips.thread.lock().unwrap() = Some(h);
        Ok(clips)
    }

    /// How long clips are.
    pub fn span(&self) -> ClipSpan {
        self.span
    }

    /// Camera `id`'s ring and clips (made on first use; kept across pipeline restarts).
    pub fn camera(&self, id: &CameraId) -> Arc<Mutex<CameraClips>> {
        self.cameras
            .lock()
            .unwrap()
            .entry(id.clone())
            .or_insert_with(|| {
                Arc::new(Mutex::new(CameraClips {
                    ring: ClipRing::new(self.span.pre_roll + DETECTION_DELAY, self.ring_bytes),
                    sessions: Vec::new(),
                }))
            })
            .clone()
    }

    /// Hands finished clips to the writing thread.
    pub fn finish_all(&self, done: Vec<Finished>) {
        if done.is_empty() {
            return;
        }
        if let Some(tx) = self.tx.lock().unwrap().as_ref() {
            for f in done {
                let _ = tx.send(f);
            }
        }
    }

    /// Closes every clip now, whatever its post-roll (the node is stopping: its
    /// cameras are stopped and its events ended), writes them, and stops the thread.
    pub fn stop(&self) {
        let cams: Vec<_> = self.cameras.lock().unwrap().values().cloned().collect();
        let far = Utc::now() + chrono::Duration::days(365);
        for c in cams {
            let mut c = c.lock().unwrap();
            for s in &mut c.sessions {
                s.close_at = Some(Utc::now());
            }
            let done = c.due(far, self.span);
            drop(c);
            self.finish_all(done);
        }
        drop(self.tx.lock().unwrap().take());
        if let Some(h) = self.thread.lock().unwrap().take() {
            let _ = h.join();
        }
    }

    /// Clips whose post-roll passed on cameras that sent nothing since (a camera
    /// that went down after its event): checked by the writing thread every second.
    fn sweep(&self) {
        let cams: Vec<_> = self.cameras.lock().unwrap().values().cloned().collect();
        for c in cams {
            let done = c.lock().unwrap().due(Utc::now(), self.span);
            self.finish_all(done);
        }
    }
}

impl EventObserver for Clips {
    fn event(&self, r: &EventRecord) {
        // An update (a better snapshot) changes nothing of a clip: no lock taken.
        if r.phase == EventPhase::Updated {
            return;
        }
        let cam = self.camera(&r.camera);
        let mut c = cam.lock().unwrap();
        match r.phase {
            EventPhase::Started => {
                if c.sessions.iter().any(|s| s.event == r.id) {
                    return;
                }
                let pre = chrono::Duration::from_std(self.span.pre_roll).unwrap_or_default();
                let Some((first_at, units)) = c.ring.since(r.started_at - pre) else {
                    tracing::debug!(camera = %r.camera, event = %r.id, "no keyframe held yet: no clip for this event");
                    return;
                };
                c.sessions.push(Session { event: r.id, started_at: r.started_at, first_at, units, close_at: None });
                if r.ended_at.is_none() {
                    return;
                }
                // Started and ended in one record: close it as an end would.
                let post = chrono::Duration::from_std(self.span.post_roll).unwrap_or_default();
                if let Some(s) = c.sessions.last_mut() {
                    s.close_at = r.ended_at.map(|e| e + post);
                }
            }
            EventPhase::Updated => unreachable!("returned above"),
            EventPhase::Ended => {
                let post = chrono::Duration::from_std(self.span.post_roll).unwrap_or_default();
                if let Some(s) = c.sessions.iter_mut().find(|s| s.event == r.id) {
                    s.close_at = Some(r.ended_at.unwrap_or(r.last_seen_at) + post);
                }
            }
        }
    }
}

/// Writes finished clips, one at a time, and journals a record for each written;
/// between clips, closes those whose post-roll passed on silent cameras.
fn writer_thread(rx: mpsc::Receiver<Finished>, clips: std::sync::Weak<Clips>, dir: &Path, journal: &Journal) {
    loop {
        let f = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(f) => f,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                match clips.upgrade() {
                    Some(c) => c.sweep(),
                    None => return,
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let file = format!("{}.mp4", f.event);
        match write_mp4(&f.caps, &f.units, &dir.join(&file)) {
            Ok(w) => {
                tracing::debug!(event = %f.event, bytes = w.bytes, secs = w.secs, "clip written");
                let rec = ClipRecord {
                    event_id: f.event,
                    event_started_at: f.started_at,
                    file,
                    sha256: w.sha256,
                    bytes: w.bytes,
                    secs: w.secs,
                };
                if journal.append(vec![StoreMsg::Clip(rec)]).is_err() {
                    tracing::error!(event = %f.event, "event log closed; clip not recorded");
                }
            }
            Err(e) => tracing::warn!(event = %f.event, error = %e, "clip not written"),
        }
    }
}
