//! The hand-off of decoded frames from ingest to detection.
//!
//! Every camera has a small queue of its own; when it is full the oldest frame is
//! dropped and counted (analysis wants the newest picture, not a backlog). Inference
//! workers take frames round-robin across cameras, so a busy camera cannot starve
//! the others, and a camera is handed to one worker at a time, so its tracker sees
//! frames in order.

use crate::metrics::CameraStats;
use crate::CameraId;
use chrono::{DateTime, Utc};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// One decoded, scaled RGB frame.
#[derive(Clone)]
pub struct Frame {
    /// Camera it came from.
    pub camera: CameraId,
    /// Presentation timestamp in the pipeline, in nanoseconds.
    pub pts_ns: u64,
    /// Wall-clock time the frame reached the appsink.
    pub captured_at: DateTime<Utc>,
    /// Width of `rgb` in pixels.
    pub width: u32,
    /// Height of `rgb` in pixels.
    pub height: u32,
    /// Width of the camera's picture before scaling; boxes are reported in these pixels.
    pub source_width: u32,
    /// Height of the camera's picture before scaling.
    pub source_height: u32,
    /// Packed RGB, `width * height * 3` bytes, rows without padding.
    pub rgb: Vec<u8>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("camera", &self.camera)
            .field("pts_ns", &self.pts_ns)
            .field("size", &(self.width, self.height))
            .field("source", &(self.source_width, self.source_height))
            .finish_non_exhaustive()
    }
}

struct Slot {
    camera: CameraId,
    stats: Arc<CameraStats>,
    queue: VecDeque<Frame>,
    /// A worker holds a frame of this camera; others skip it until it is returned.
    busy: bool,
}

struct HubState {
    slots: Vec<Slot>,
    cursor: usize,
    closed: bool,
}

/// Bounded per-camera frame queues with a fair, ordered take for workers.
pub struct FrameHub {
    capacity: usize,
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
}

impl FrameHub {
    /// A hub keeping at most `capacity` frames per camera (at least 1).
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(FrameHub {
            capacity: capacity.max(1),
            state: Mutex::new(HubState { slots: Vec::new(), cursor: 0, closed: false }),
            ready: Condvar::new(),
        })
    }

    /// Registers a camera (idempotent).
    pub fn add_camera(&self, camera: &CameraId, stats: Arc<CameraStats>) {
        let mut st = self.state.lock().unwrap();
        if !st.slots.iter().any(|s| &s.camera == camera) {
            st.slots.push(Slot { camera: camera.clone(), stats, queue: VecDeque::new(), busy: false });
        }
    }

    /// Removes a camera and discards its queued frames.
    pub fn remove_camera(&self, camera: &CameraId) {
        let mut st = self.state.lock().unwrap();
        st.slots.retain(|s| &s.camera != camera);
        st.cursor = 0;
    }

    /// Queues a frame; drops (and counts) the camera's oldest one if the queue is full.
    /// Frames of unknown cameras are discarded.
    pub fn push(&self, frame: Frame) {
        let mut st = self.state.lock().unwrap();
        let Some(slot) = st.slots.iter_mut().find(|s| s.camera == frame.camera) else {
            return;
        };
        if slot.queue.len() >= self.capacity {
            slot.queue.pop_front();
            slot.stats.frames_dropped.inc();
        }
        slot.queue.push_back(frame);
        drop(st);
        self.ready.notify_one();
    }

    /// Takes the next frame, round-robin over cameras that are not busy. Waits up to
    /// `timeout`; `None` on timeout or once the hub is closed.
    pub fn take(&self, timeout: Duration) -> Option<Taken> {
        let deadline = std::time::Instant::now() + timeout;
        let mut st = self.state.lock().unwrap();
        loop {
            if st.closed {
                return None;
            }
            let n = st.slots.len();
            for i in 0..n {
                let idx = (st.cursor + i) % n;
                let slot = &mut st.slots[idx];
                if !slot.busy {
                    if let Some(frame) = slot.queue.pop_front() {
                        slot.busy = true;
                        let stats = slot.stats.clone();
                        st.cursor = (idx + 1) % n;
                        return Some(Taken { frame, stats });
                    }
                }
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return None;
            }
            st = self.ready.wait_timeout(st, deadline - now).unwrap().0;
        }
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

    /// Wakes every waiting worker and makes [`FrameHub::take`] return `None` from now on.
    pub fn close(&self) {
        self.state.lock().unwrap().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(cam: &str, pts: u64) -> Frame {
        Frame {
            camera: CameraId::from(cam),
            pts_ns: pts,
            captured_at: Utc::now(),
            width: 1,
            height: 1,
            source_width: 1,
            source_height: 1,
            rgb: vec![0; 3],
        }
    }

    #[test]
    fn drops_oldest_and_counts() {
        let hub = FrameHub::new(2);
        let stats = Arc::new(CameraStats::default());
        hub.add_camera(&"a".into(), stats.clone());
        for pts in 0..5 {
            hub.push(frame("a", pts));
        }
        assert_eq!(stats.frames_dropped.get(), 3);
        let t = hub.take(Duration::ZERO).unwrap();
        assert_eq!(t.frame.pts_ns, 3);
    }

    #[test]
    fn round_robin_and_one_worker_per_camera() {
        let hub = FrameHub::new(4);
        for c in ["a", "b"] {
            hub.add_camera(&c.into(), Arc::new(CameraStats::default()));
        }
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
    fn close_wakes_waiters() {
        let hub = FrameHub::new(1);
        let h = hub.clone();
        let t = std::thread::spawn(move || h.take(Duration::from_secs(30)).is_none());
        std::thread::sleep(Duration::from_millis(50));
        hub.close();
        assert!(t.join().unwrap());
    }
}
