//! The hand-off of decoded frames from ingest to detection, and the inference
//! scheduler that decides which camera's frame is analysed next.
//!
//! Every camera has a small queue of its own; when it is full the oldest frame is
//! dropped and counted (analysis wants the newest picture, not a backlog). Frames
//! compete for a bounded inference budget (the workers): [`FrameHub::take_batch`]
//! serves, in this order,
//! 1. cameras that have not been analysed for `max_idle_check` (no camera starves),
//! 2. cameras whose scene is active (the decode gate's activity, or objects of
//!    interest seen recently),
//! 3. the others,
//!
//! each group longest-waiting camera first. A frame older than `max_age` when its
//! turn comes is dropped as stale and counted: a late analysis would make a late
//! alert and a wrong track. A camera is handed to one worker at a time, so its
//! tracker sees frames in order.

use crate::metrics::CameraStats;
use crate::CameraId;
use chrono::{DateTime, Utc};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The pixels of a frame.
#[derive(Clone)]
pub enum Pixels {
    /// Planar YUV 4:2:0 (BT.601, limited range), rows without padding: the Y plane
    /// (`width × height`), then U and V (`⌈width/2⌉ × ⌈height/2⌉` each). What the
    /// decoders produce; the service's frames are always this.
    I420(Arc<[u8]>),
    /// Packed RGB, `width × height × 3`, rows without padding (still images).
    Rgb(Arc<[u8]>),
}

/// One decoded frame at the camera's own resolution. Scaling to the model's input
/// happens in detection (one pass: scale, colour conversion, layout), so the
/// snapshot of an event is made from the full picture.
#[derive(Clone)]
pub struct Frame {
    /// Camera it came from.
    pub camera: CameraId,
    /// Presentation timestamp in the pipeline, in nanoseconds.
    pub pts_ns: u64,
    /// Wall-clock time the frame reached the appsink.
    pub captured_at: DateTime<Utc>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The picture; clones share it.
    pub pixels: Pixels,
}

impl Frame {
    /// Bytes an I420 picture of `width × height` takes.
    pub fn i420_len(width: u32, height: u32) -> usize {
        let (w, h) = (width as usize, height as usize);
        w * h + 2 * w.div_ceil(2) * h.div_ceil(2)
    }

    /// A frame from packed RGB (`varta detect` on still images, tests).
    pub fn from_rgb(camera: CameraId, captured_at: DateTime<Utc>, width: u32, height: u32, rgb: Vec<u8>) -> Frame {
        assert_eq!(rgb.len(), (width * height * 3) as usize, "RGB buffer size");
        Frame { camera, pts_ns: 0, captured_at, width, height, pixels: Pixels::Rgb(rgb.into()) }
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("camera", &self.camera)
            .field("pts_ns", &self.pts_ns)
            .field("size", &(self.width, self.height))
            .finish_non_exhaustive()
    }
}

/// How the hub schedules frames.
#[derive(Clone, Copy, Debug)]
pub struct SchedulerConfig {
    /// Frames kept per camera (at least 1); the oldest is dropped when full.
    pub capacity: usize,
    /// Longest a camera with frames waiting may go without an analysed frame
    /// before it is served ahead of active cameras.
    pub max_idle_check: Duration,
    /// Frames older than this when their turn comes are dropped as stale.
    pub max_age: Duration,
    /// A camera counts as active this long after its last detection of interest.
    pub detection_hold: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            capacity: 2,
            max_idle_check: Duration::from_secs(10),
            max_age: Duration::from_millis(1500),
            detection_hold: Duration::from_secs(5),
        }
    }
}

struct Slot {
    camera: CameraId,
    stats: Arc<CameraStats>,
    queue: VecDeque<(Frame, Instant)>,
    /// A worker holds a frame of this camera; others skip it until it is returned.
    busy: bool,
    /// When a frame of this camera was last handed out (or the camera added).
    last_taken: Instant,
}

struct HubState {
    slots: Vec<Slot>,
    closed: bool,
}

/// Bounded per-camera frame queues with a prioritised, ordered take for workers.
pub struct FrameHub {
    cfg: SchedulerConfig,
    state: Mutex<HubState>,
    ready: Condvar,
}

/// A frame taken by a worker. Give it back with [`FrameHub::done`] when the camera's
/// frame has been fully processed, so the camera's next frame can be taken.
pub struct Taken {
    /// The frame to analyse.
    pub frame: Frame,
    /// The camera's counters.
    pub stats: Arc<CameraStats>,
    /// How long the frame waited in the queue.
    pub waited: Duration,
    /// Whether the scheduler counted the camera as active when it took the frame
    /// (scene activity, or an object of interest within `detection_hold`).
    pub active: bool,
}

impl FrameHub {
    /// A hub keeping at most `capacity` frames per camera, with the default
    /// scheduling limits otherwise.
    pub fn new(capacity: usize) -> Arc<Self> {
        Self::with_config(SchedulerConfig { capacity, ..Default::default() })
    }

    /// A hub scheduling by `cfg`.
    pub fn with_config(cfg: SchedulerConfig) -> Arc<Self> {
        Arc::new(FrameHub {
            cfg: SchedulerConfig { capacity: cfg.capacity.max(1), ..cfg },
            state: Mutex::new(HubState { slots: Vec::new(), closed: false }),
            ready: Condvar::new(),
        })
    }

    /// Registers a camera (idempotent).
    pub fn add_camera(&self, camera: &CameraId, stats: Arc<CameraStats>) {
        let mut st = self.state.lock().unwrap();
        if !st.slots.iter().any(|s| &s.camera == camera) {
            let slot =
                Slot { camera: camera.clone(), stats, queue: VecDeque::new(), busy: false, last_taken: Instant::now() };
            st.slots.push(slot);
        }
    }

    /// Removes a camera and discards its queued frames.
    pub fn remove_camera(&self, camera: &CameraId) {
        self.state.lock().unwrap().slots.retain(|s| &s.camera != camera);
    }

    /// Queues a frame; drops (and counts) the camera's oldest one if the queue is full.
    /// Frames of unknown cameras are discarded.
    pub fn push(&self, frame: Frame) {
        let mut st = self.state.lock().unwrap();
        let Some(slot) = st.slots.iter_mut().find(|s| s.camera == frame.camera) else {
            return;
        };
        slot.stats.counters.frames_offered.inc();
        if slot.queue.len() >= self.cfg.capacity {
            slot.queue.pop_front();
            slot.stats.counters.frames_dropped.inc();
        }
        slot.queue.push_back((frame, Instant::now()));
        drop(st);
        self.ready.notify_one();
    }

    /// Takes the next frame (see [`FrameHub::take_batch`]).
    pub fn take(&self, timeout: Duration) -> Option<Taken> {
        self.take_batch(1, timeout).pop()
    }

    /// Takes up to `max` frames of distinct cameras, in priority order (module docs).
    /// Waits up to `timeout` for the first; never waits for more than are ready.
    /// Empty on timeout or once the hub is closed.
    pub fn take_batch(&self, max: usize, timeout: Duration) -> Vec<Taken> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock().unwrap();
        loop {
            if st.closed {
                return Vec::new();
            }
            let now = Instant::now();
            let out = self.pick(&mut st, max.max(1), now);
            if !out.is_empty() {
                return out;
            }
            if now >= deadline {
                return out;
            }
            st = self.ready.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    fn pick(&self, st: &mut HubState, max: usize, now: Instant) -> Vec<Taken> {
        let now_ms = Utc::now().timestamp_millis();
        let hold_ms = self.cfg.detection_hold.as_millis() as i64;
        // Stale frames go first, whatever the camera's turn.
        for s in st.slots.iter_mut().filter(|s| !s.busy) {
            while s.queue.front().is_some_and(|(_, at)| now.duration_since(*at) > self.cfg.max_age) {
                s.queue.pop_front();
                s.stats.counters.frames_stale.inc();
            }
        }
        let mut ready: Vec<(u8, Instant, usize, bool)> = st
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.busy && !s.queue.is_empty())
            .map(|(i, s)| {
                let detected = s.stats.last_detection_ms();
                let active = s.stats.scene_active() || (detected > 0 && now_ms - detected < hold_ms);
                let overdue = now.duration_since(s.last_taken) >= self.cfg.max_idle_check;
                let group = if overdue {
                    0
                } else if active {
                    1
                } else {
                    2
                };
                (group, s.last_taken, i, active)
            })
            .collect();
        ready.sort_unstable();
        ready
            .into_iter()
            .take(max)
            .map(|(_, _, i, active)| {
                let s = &mut st.slots[i];
                let (frame, queued) = s.queue.pop_front().expect("non-empty");
                s.busy = true;
                s.last_taken = now;
                Taken { frame, stats: s.stats.clone(), waited: now.duration_since(queued), active }
            })
            .collect()
    }

    /// Marks `camera` free again after a worker processed its frame.
    pub fn done(&self, camera: &CameraId) {
        let mut st = self.state.lock().unwrap();
        if let Some(slot) = st.slots.iter_mut().find(|s| &s.camera == camera) {
            slot.busy = false;
            if !slot.queue.is_empty() {
                drop(st);
                self.ready.notify_one();
            }
        }
    }

    /// True once [`FrameHub::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.state.lock().unwrap().closed
    }

    /// Wakes every waiting worker and makes the takes return nothing from now on.
    pub fn close(&self) {
        self.state.lock().unwrap().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(cam: &str, pts: u64) -> Frame {
        let mut f = Frame::from_rgb(CameraId::from(cam), Utc::now(), 1, 1, vec![0; 3]);
        f.pts_ns = pts;
        f
    }

    fn hub_with(cams: &[&str], cfg: SchedulerConfig) -> (Arc<FrameHub>, Vec<Arc<CameraStats>>) {
        let hub = FrameHub::with_config(cfg);
        let stats: Vec<_> = cams.iter().map(|_| Arc::new(CameraStats::default())).collect();
        for (c, s) in cams.iter().zip(&stats) {
            hub.add_camera(&(*c).into(), s.clone());
        }
        (hub, stats)
    }

    #[test]
    fn drops_oldest_and_counts() {
        let (hub, stats) = hub_with(&["a"], SchedulerConfig { capacity: 2, ..Default::default() });
        for pts in 0..5 {
            hub.push(frame("a", pts));
        }
        assert_eq!(stats[0].counters.frames_dropped.get(), 3);
        assert_eq!(stats[0].counters.frames_offered.get(), 5);
        let t = hub.take(Duration::ZERO).unwrap();
        assert_eq!(t.frame.pts_ns, 3);
    }

    #[test]
    fn longest_waiting_first_and_one_worker_per_camera() {
        let (hub, _) = hub_with(&["a", "b"], SchedulerConfig { capacity: 4, ..Default::default() });
        hub.push(frame("a", 1));
        hub.push(frame("a", 2));
        hub.push(frame("b", 1));
        let first = hub.take(Duration::ZERO).unwrap();
        assert_eq!(first.frame.camera.as_str(), "a");
        // "a" is busy until done(): the next take must serve "b".
        let second = hub.take(Duration::ZERO).unwrap();
        assert_eq!(second.frame.camera.as_str(), "b");
        assert!(hub.take(Duration::ZERO).is_none());
        hub.done(&"a".into());
        assert_eq!(hub.take(Duration::ZERO).unwrap().frame.pts_ns, 2);
    }

    #[test]
    fn active_cameras_first_but_idle_ones_do_not_starve() {
        let every = Duration::from_millis(500);
        let cfg = SchedulerConfig { capacity: 1, max_idle_check: every, ..Default::default() };
        let start = Instant::now();
        let (hub, stats) = hub_with(&["idle", "busy"], cfg);
        stats[1].set_activity(9.0, true);
        // The idle camera was added first (waited longest) but the busy one goes first.
        let mut served = Vec::new();
        while start.elapsed() < Duration::from_millis(1600) {
            hub.push(frame("idle", 0));
            hub.push(frame("busy", 0));
            let t = hub.take(Duration::ZERO).unwrap();
            served.push(t.frame.camera.as_str().to_owned());
            hub.done(&t.frame.camera);
            std::thread::sleep(Duration::from_millis(20));
        }
        // Bounds from the time that really passed, not the planned 1.6 s: a loaded
        // machine may stretch any sleep.
        let elapsed = start.elapsed();
        let idle = served.iter().filter(|c| *c == "idle").count();
        assert_eq!(served[0], "busy");
        // Served only when overdue: at most once per 500 ms since it was added, and
        // at least once in 1.6 s.
        let most = (elapsed.as_millis() / every.as_millis()) as usize;
        assert!((1..=most).contains(&idle), "idle served {idle} times of {} in {elapsed:?}", served.len());
        assert!(served.len() - idle > idle, "{served:?}");
    }

    #[test]
    fn detections_count_as_activity_and_batches_take_distinct_cameras() {
        let (hub, stats) = hub_with(&["a", "b", "c"], SchedulerConfig { capacity: 2, ..Default::default() });
        stats[2].activity_feedback().objects_seen(Utc::now());
        for c in ["a", "b", "c"] {
            hub.push(frame(c, 1));
            hub.push(frame(c, 2));
        }
        let batch = hub.take_batch(8, Duration::ZERO);
        let cams: Vec<_> = batch.iter().map(|t| t.frame.camera.as_str()).collect();
        assert_eq!(cams, ["c", "a", "b"]);
    }

    #[test]
    fn stale_frames_are_dropped_and_counted() {
        // Ages far apart (1 s limit, frames 1.5 s old, the fresh one taken at once) so
        // that only a pause of over 1 s between push and take could make it stale.
        let cfg = SchedulerConfig { capacity: 3, max_age: Duration::from_millis(1000), ..Default::default() };
        let (hub, stats) = hub_with(&["a"], cfg);
        hub.push(frame("a", 1));
        hub.push(frame("a", 2));
        std::thread::sleep(Duration::from_millis(1500));
        let pushed = Instant::now();
        hub.push(frame("a", 3));
        let t = hub.take(Duration::ZERO).unwrap();
        assert_eq!(t.frame.pts_ns, 3);
        assert_eq!(stats[0].counters.frames_stale.get(), 2);
        assert!(t.waited <= pushed.elapsed());
    }

    #[test]
    fn close_wakes_waiters() {
        let hub = FrameHub::new(1);
        let h = hub.clone();
        let t = std::thread::spawn(move || h.take(Duration::from_secs(30)).is_none());
        std::thread::sleep(Duration::from_millis(50));
        hub.close();
        assert!(t.join().unwrap());
    }
}
