//! The frame sampler: which decoded pictures go to analysis at a camera's
//! `analysis_fps`. One formula for the live pipeline (a pad probe on the decoder)
//! and for files (`varta eval`, the benchmarks), so that evaluation samples exactly
//! as the service does.

use std::sync::atomic::{AtomicU64, Ordering};

/// Takes one picture per `1 / fps` seconds of presentation time.
///
/// The next slot is on a fixed grid from the last picture taken, so timestamp
/// jitter does not make the rate drift below the target; a picture more than ten
/// intervals before the slot (a new RTSP session restarts timestamps) starts a new
/// grid. `take` needs `&self` only (one streaming thread calls it; the state is an
/// atomic so that a GStreamer probe, which is `Fn`, can hold it).
#[derive(Debug)]
pub struct Sampler {
    interval_ns: u64,
    next_ns: AtomicU64,
}

impl Sampler {
    /// A sampler at `fps` pictures per second (`fps` > 0, as the config checks).
    pub fn new(fps: f64) -> Self {
        Sampler { interval_ns: (1e9 / fps) as u64, next_ns: AtomicU64::new(0) }
    }

    /// The interval between samples, nanoseconds.
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// Whether the picture at `pts_ns` (presentation time, nanoseconds) is taken.
    pub fn take(&self, pts_ns: u64) -> bool {
        let (due, step) = (self.next_ns.load(Ordering::Relaxed), self.interval_ns);
        if pts_ns >= due || due.saturating_sub(pts_ns) > 10 * step {
            let next = if pts_ns >= due && pts_ns - due < step { due + step } else { pts_ns + step };
            self.next_ns.store(next, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_rate_without_drift_and_restarts_on_a_new_session() {
        let s = Sampler::new(2.0);
        // 25 fps with ±4 ms jitter for 10 s: 20 pictures at 2 fps.
        let taken = (0..250u64).filter(|i| s.take(i * 40_000_000 + (i % 3) * 4_000_000)).count();
        assert_eq!(taken, 20);
        // Timestamps start again from 0 (a new session): taken at once.
        assert!(s.take(0));
        assert!(!s.take(100_000_000));
        assert!(s.take(500_000_000));
    }
}
