//! Picture checks on the frames handed to analysis: frozen and dark pictures.
//!
//! A camera can stream perfectly while showing nothing useful: an encoder stuck on one
//! picture, a lens covered or sprayed, a dead IR illuminator at night. These checks run
//! on the luma plane of the frames handed to analysis, on a sparse grid of about
//! 128 × 128 pixels whatever the resolution, so they cost next to nothing.

use std::time::{Duration, Instant};

/// Grid points measured in each direction.
const GRID: usize = 128;

/// Luma statistics of the analysed frames and how long they have looked wrong.
#[derive(Debug)]
pub struct PictureWatch {
    frozen_max_diff: f64,
    dark_max_luma: f64,
    dark_max_stddev: f64,
    thumb: Vec<u8>,
    /// Mean luma of the last frame.
    pub mean_luma: Option<f64>,
    /// Luma standard deviation of the last frame.
    pub stddev: Option<f64>,
    unchanged_since: Option<Instant>,
    dark_since: Option<Instant>,
    /// When the last picture was observed.
    last_seen: Option<Instant>,
}

impl PictureWatch {
    /// A watch with the thresholds of `[health]`.
    pub fn new(frozen_max_diff: f64, dark_max_luma: f64, dark_max_stddev: f64) -> Self {
        PictureWatch {
            frozen_max_diff,
            dark_max_luma,
            dark_max_stddev,
            thumb: Vec::new(),
            mean_luma: None,
            stddev: None,
            unchanged_since: None,
            dark_since: None,
            last_seen: None,
        }
    }

    /// Measures one frame's luma plane (`w × h`, limited range as decoders give it);
    /// returns its mean absolute difference (full-range luma) from the previous one.
    pub fn observe(&mut self, luma: &[u8], w: usize, h: usize) -> Option<f64> {
        self.observe_at(luma, w, h, Instant::now())
    }

    fn observe_at(&mut self, luma: &[u8], w: usize, h: usize, now: Instant) -> Option<f64> {
        let (sx, sy) = ((w / GRID).max(1), (h / GRID).max(1));
        let mut thumb = Vec::with_capacity((w / sx + 1) * (h / sy + 1));
        for y in (0..h).step_by(sy) {
            for x in (0..w).step_by(sx) {
                let Some(&v) = luma.get(y * w + x) else { continue };
                // Limited (16..235) to full range, so thresholds read as 0..255.
                thumb.push(((v.saturating_sub(16) as u32 * 255 / 219).min(255)) as u8);
            }
        }
        if thumb.is_empty() {
            return None;
        }
        let n = thumb.len() as f64;
        let mean = thumb.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = thumb.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let std = var.sqrt();
        let diff = (thumb.len() == self.thumb.len())
            .then(|| thumb.iter().zip(&self.thumb).map(|(a, b)| a.abs_diff(*b) as u64).sum::<u64>() as f64 / n);
        let same = diff.is_some_and(|d| d <= self.frozen_max_diff);
        if !same {
            self.unchanged_since = Some(now);
        }
        let dark = mean <= self.dark_max_luma || std <= self.dark_max_stddev;
        match (dark, self.dark_since) {
            (true, None) => self.dark_since = Some(now),
            (false, _) => self.dark_since = None,
            _ => {}
        }
        self.mean_luma = Some(mean);
        self.stddev = Some(std);
        self.thumb = thumb;
        self.last_seen = Some(now);
        diff
    }

    /// How long the picture has not changed, as far as pictures show it: from the
    /// first of the identical pictures to the last one seen, not to now. Under
    /// keyframe-only decoding of a long GOP (a picture every 12 s) the wait for the
    /// next picture is not a frozen camera; two identical pictures 12 s apart are.
    pub fn unchanged_for(&self) -> Duration {
        Self::span(self.unchanged_since, self.last_seen)
    }

    /// How long the picture has been dark or featureless, as far as pictures show it.
    pub fn dark_for(&self) -> Duration {
        Self::span(self.dark_since, self.last_seen)
    }

    fn span(since: Option<Instant>, last: Option<Instant>) -> Duration {
        match (since, last) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        }
    }

    /// Forgets the history (a new session starts).
    pub fn reset(&mut self) {
        self.thumb.clear();
        self.unchanged_since = None;
        self.dark_since = None;
        self.last_seen = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_and_dark_pictures_are_timed() {
        let mut w = PictureWatch::new(0.3, 20.0, 4.0);
        let t0 = Instant::now();
        let scene: Vec<u8> = (0..64 * 48).map(|i| (i * 7 % 219 + 16) as u8).collect();
        w.observe_at(&scene, 64, 48, t0);
        w.observe_at(&scene, 64, 48, t0 + Duration::from_secs(5));
        assert!(w.unchanged_since == Some(t0), "identical frames count as unchanged");
        assert!(w.dark_since.is_none());
        let mut noisy = scene.clone();
        noisy.iter_mut().step_by(5).for_each(|v| *v = v.wrapping_add(9));
        w.observe_at(&noisy, 64, 48, t0 + Duration::from_secs(6));
        assert_eq!(w.unchanged_since, Some(t0 + Duration::from_secs(6)), "a changed frame resets");
        let black = vec![16u8; 64 * 48];
        w.observe_at(&black, 64, 48, t0 + Duration::from_secs(7));
        assert_eq!(w.dark_since, Some(t0 + Duration::from_secs(7)));
        assert!(w.mean_luma.unwrap() < 20.0);
        let grey = vec![128u8; 64 * 48];
        w.observe_at(&grey, 64, 48, t0 + Duration::from_secs(8));
        assert!(w.dark_since.is_some(), "a featureless grey picture (covered lens) counts too");
        w.observe_at(&scene, 64, 48, t0 + Duration::from_secs(9));
        assert!(w.dark_since.is_none());
    }

    #[test]
    fn durations_come_from_pictures_not_from_waiting_for_the_next() {
        // Keyframes of a 12 s GOP, each a different picture (an on-screen clock):
        // never frozen, however long the wait between them.
        let mut w = PictureWatch::new(0.3, 20.0, 4.0);
        let t0 = Instant::now();
        let a: Vec<u8> = (0..64 * 48).map(|i| (i * 7 % 219 + 16) as u8).collect();
        let mut b = a.clone();
        b.iter_mut().step_by(3).for_each(|v| *v = v.wrapping_add(20));
        w.observe_at(&a, 64, 48, t0);
        assert_eq!(w.unchanged_for(), Duration::ZERO);
        w.observe_at(&b, 64, 48, t0 + Duration::from_secs(12));
        assert_eq!(w.unchanged_for(), Duration::ZERO, "a changed picture after 12 s");
        // The same picture at the next keyframe: frozen for the 12 s between them.
        w.observe_at(&b, 64, 48, t0 + Duration::from_secs(24));
        assert_eq!(w.unchanged_for(), Duration::from_secs(12));
        let black = vec![16u8; 64 * 48];
        w.observe_at(&black, 64, 48, t0 + Duration::from_secs(36));
        assert_eq!(w.dark_for(), Duration::ZERO, "one dark picture is no duration yet");
        w.observe_at(&black, 64, 48, t0 + Duration::from_secs(48));
        assert_eq!(w.dark_for(), Duration::from_secs(12));
    }
}
