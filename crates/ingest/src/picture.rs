//! Picture checks on the frames handed to analysis: frozen and dark pictures.
//!
//! A camera can stream perfectly while showing nothing useful: an encoder stuck on one
//! picture, a lens covered or sprayed, a dead IR illuminator at night. These checks run
//! on frames already decoded and scaled for the model, on a sparse grid of pixels, so
//! they cost next to nothing.

use std::time::{Duration, Instant};

/// Every `STEP`-th pixel in each direction is measured.
const STEP: usize = 4;

/// Luma statistics of the analysed frames and how long they have looked wrong.
#[derive(Debug)]
pub struct PictureWatch {
    /// Size of the decoded picture before scaling.
    pub source_size: (u32, u32),
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
}

impl PictureWatch {
    /// A watch with the thresholds of `[health]`.
    pub fn new(frozen_max_diff: f64, dark_max_luma: f64, dark_max_stddev: f64) -> Self {
        PictureWatch {
            source_size: (0, 0),
            frozen_max_diff,
            dark_max_luma,
            dark_max_stddev,
            thumb: Vec::new(),
            mean_luma: None,
            stddev: None,
            unchanged_since: None,
            dark_since: None,
        }
    }

    /// Measures one packed RGB frame; returns its mean absolute luma difference from
    /// the previous one.
    pub fn observe(&mut self, rgb: &[u8], w: usize, h: usize) -> Option<f64> {
        self.observe_at(rgb, w, h, Instant::now())
    }

    fn observe_at(&mut self, rgb: &[u8], w: usize, h: usize, now: Instant) -> Option<f64> {
        let mut thumb = Vec::with_capacity((w / STEP + 1) * (h / STEP + 1));
        for y in (0..h).step_by(STEP) {
            for x in (0..w).step_by(STEP) {
                let i = (y * w + x) * 3;
                let Some(p) = rgb.get(i..i + 3) else { continue };
                // BT.601 luma, integer weights summing to 256.
                thumb.push(((77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32) >> 8) as u8);
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
        diff
    }

    /// How long the picture has not changed.
    pub fn unchanged_for(&self) -> Duration {
        self.unchanged_since.map(|t| t.elapsed()).unwrap_or_default()
    }

    /// How long the picture has been dark or featureless.
    pub fn dark_for(&self) -> Duration {
        self.dark_since.map(|t| t.elapsed()).unwrap_or_default()
    }

    /// Forgets the history (a new session starts).
    pub fn reset(&mut self) {
        self.thumb.clear();
        self.unchanged_since = None;
        self.dark_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_and_dark_pictures_are_timed() {
        let mut w = PictureWatch::new(0.3, 20.0, 4.0);
        let t0 = Instant::now();
        let scene: Vec<u8> = (0..64 * 48 * 3).map(|i| (i * 7 % 251) as u8).collect();
        w.observe_at(&scene, 64, 48, t0);
        w.observe_at(&scene, 64, 48, t0 + Duration::from_secs(5));
        assert!(w.unchanged_since == Some(t0), "identical frames count as unchanged");
        assert!(w.dark_since.is_none());
        let mut noisy = scene.clone();
        noisy.iter_mut().step_by(5).for_each(|v| *v = v.wrapping_add(9));
        w.observe_at(&noisy, 64, 48, t0 + Duration::from_secs(6));
        assert_eq!(w.unchanged_since, Some(t0 + Duration::from_secs(6)), "a changed frame resets");
        let black = vec![16u8; 64 * 48 * 3];
        w.observe_at(&black, 64, 48, t0 + Duration::from_secs(7));
        assert_eq!(w.dark_since, Some(t0 + Duration::from_secs(7)));
        assert!(w.mean_luma.unwrap() < 20.0);
        let grey = vec![128u8; 64 * 48 * 3];
        w.observe_at(&grey, 64, 48, t0 + Duration::from_secs(8));
        assert!(w.dark_since.is_some(), "a featureless grey picture (covered lens) counts too");
        w.observe_at(&scene, 64, 48, t0 + Duration::from_secs(9));
        assert!(w.dark_since.is_none());
    }
}
