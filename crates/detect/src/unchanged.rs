//! Skipping the model on an idle camera whose picture has not changed since its last
//! inference: the detections would be the same, so they are reused.
//!
//! A picture is summarised as the mean luma of each cell of a 32x24 grid (24x24
//! pixels at 768x576). Sensor noise averages out over a cell (a fraction of a level);
//! a person entering one moves its mean by tens of levels. A picture is *unchanged*
//! when no cell's mean moved by [`MAX_CELL_DIFF`] or more since the last inference,
//! leaving out *volatile* cells: those that changed between consecutive pictures at
//! least twice in the last 64 (a burned-in clock, a flag, a screen, trees in the
//! wind). Only idle cameras are eligible (the pool decides), and the model runs at
//! least every [`MAX_REUSE`] whatever the picture, so a slow drift (dusk) is seen.

use crate::Detection;
use std::time::{Duration, Instant};
use varta_core::frame::{Frame, Pixels};

/// Grid of the picture summary, columns x rows.
pub const GRID: (usize, usize) = (32, 24);
/// A cell's mean luma (0..255) must move this much for the picture to count as
/// changed.
pub const MAX_CELL_DIFF: u8 = 6;
/// The model runs at least this often on an idle camera.
pub const MAX_REUSE: Duration = Duration::from_secs(60);
/// A cell that changed this many times in its last 64 pictures is left out.
pub const VOLATILE_CHANGES: u32 = 2;

/// One camera's picture history and last inference.
#[derive(Debug, Default)]
pub struct Memo {
    /// The summary of the last picture checked, and its size.
    current: Option<(Vec<u8>, (u32, u32))>,
    /// Per cell, one bit per recent picture: 1 where it changed from the one before.
    history: Vec<u64>,
    /// The last inference.
    last: Option<Inference>,
}

/// What the last inference saw (summary and picture size), found, and when.
#[derive(Debug)]
struct Inference {
    cells: Vec<u8>,
    size: (u32, u32),
    dets: Vec<Detection>,
    at: Instant,
}

/// Mean luma per grid cell, row by row; `None` for pixels without a luma plane.
pub fn summary(frame: &Frame) -> Option<Vec<u8>> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let Pixels::I420(data) = &frame.pixels else { return None };
    let (gw, gh) = GRID;
    if w < gw || h < gh || data.len() < w * h {
        return None;
    }
    let mut sums = vec![0u32; gw * gh];
    let mut counts = vec![0u32; gw * gh];
    // Every second row and column is plenty for a mean over hundreds of pixels.
    for y in (0..h).step_by(2) {
        let row = &data[y * w..y * w + w];
        let cy = y * gh / h;
        for x in (0..w).step_by(2) {
            let c = cy * gw + x * gw / w;
            sums[c] += row[x] as u32;
            counts[c] += 1;
        }
    }
    Some(sums.iter().zip(&counts).map(|(s, n)| (s / (*n).max(1)) as u8).collect())
}

impl Memo {
    /// Looks at `frame` (every analysed frame of the camera should pass here, so the
    /// volatile cells are known) and, when `idle`, returns the detections of the last
    /// inference if the picture is unchanged and that inference is younger than
    /// [`MAX_REUSE`] at `now`.
    pub fn check(&mut self, frame: &Frame, now: Instant, idle: bool) -> Option<Vec<Detection>> {
        let size = (frame.width, frame.height);
        let Some(new) = summary(frame) else {
            self.current = None;
            return None;
        };
        match &self.current {
            Some((prev, s)) if *s == size => {
                for (h, (a, b)) in self.history.iter_mut().zip(prev.iter().zip(&new)) {
                    *h = (*h << 1) | (a.abs_diff(*b) >= MAX_CELL_DIFF) as u64;
                }
            }
            _ => self.history = vec![0; new.len()],
        }
        self.current = Some((new, size));
        let last = self.last.as_ref()?;
        if !idle || last.size != size || now.saturating_duration_since(last.at) >= MAX_REUSE {
            return None;
        }
        let new = &self.current.as_ref()?.0;
        let same = last
            .cells
            .iter()
            .zip(new)
            .zip(&self.history)
            .all(|((a, b), h)| a.abs_diff(*b) < MAX_CELL_DIFF || h.count_ones() >= VOLATILE_CHANGES);
        same.then(|| last.dets.clone())
    }

    /// Records an inference at `now` of the frame last passed to [`Memo::check`].
    pub fn remember(&mut self, dets: &[Detection], now: Instant) {
        self.last = self.current.as_ref().map(|(cells, size)| Inference {
            cells: cells.clone(),
            size: *size,
            dets: dets.to_vec(),
            at: now,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: u32, h: u32, luma: impl Fn(usize, usize) -> u8) -> Frame {
        let (w2, h2) = (w.div_ceil(2) as usize, h.div_ceil(2) as usize);
        let mut data = Vec::new();
        for y in 0..h as usize {
            for x in 0..w as usize {
                data.push(luma(x, y));
            }
        }
        data.extend(std::iter::repeat_n(128, 2 * w2 * h2));
        Frame {
            camera: "c".into(),
            pts_ns: 0,
            captured_at: chrono::Utc::now(),
            width: w,
            height: h,
            pixels: Pixels::I420(data.into()),
        }
    }

    /// A street-like picture with per-pixel noise of ±`noise` levels.
    fn street(noise: u8, seed: usize) -> Frame {
        frame(768, 576, move |x, y| {
            let base = ((x / 40 + y / 30) % 5) as u8 * 30 + 40;
            let n = ((x * 7919 + y * 104729 + seed * 31) % (2 * noise as usize + 1)) as u8;
            base + n - noise
        })
    }

    #[test]
    fn noise_is_unchanged_a_person_is_a_change() {
        let dets = vec![Detection { class: 2, score: 0.8, bbox: [1., 2., 3., 4.] }];
        let t0 = Instant::now();
        let mut m = Memo::default();
        assert!(m.check(&street(8, 0), t0, true).is_none(), "nothing to reuse yet");
        m.remember(&dets, t0);
        // Sensor noise of ±8 levels: the same picture; but only an idle camera reuses.
        assert_eq!(m.check(&street(8, 1), t0 + Duration::from_secs(5), true), Some(dets.clone()));
        assert_eq!(m.check(&street(8, 1), t0 + Duration::from_secs(5), false), None);
        // A dark 30x80 figure in the middle: changed.
        let mut with_person = street(8, 2);
        if let Pixels::I420(d) = &mut with_person.pixels {
            let mut v = d.to_vec();
            for y in 250..330 {
                for x in 370..400 {
                    v[y * 768 + x] = 10;
                }
            }
            with_person.pixels = Pixels::I420(v.into());
        }
        assert!(m.check(&with_person, t0 + Duration::from_secs(5), true).is_none());
        // However still the picture, the model runs again after MAX_REUSE.
        assert!(m.check(&street(8, 3), t0 + MAX_REUSE, true).is_none());
        // Another size (the camera's stream changed): no reuse.
        assert!(m.check(&frame(640, 360, |_, _| 100), t0, true).is_none());
    }

    #[test]
    fn a_burned_in_clock_stops_counting_once_it_keeps_changing() {
        let dets = vec![Detection { class: 0, score: 0.9, bbox: [0., 0., 9., 9.] }];
        let t0 = Instant::now();
        // A bright cell in the top-left corner that toggles every picture.
        let clock = |tick: usize| {
            let mut f = street(4, tick);
            if let Pixels::I420(d) = &f.pixels {
                let mut v = d.to_vec();
                for y in 0..24 {
                    for x in 0..24 {
                        v[y * 768 + x] = if tick.is_multiple_of(2) { 16 } else { 235 };
                    }
                }
                f.pixels = Pixels::I420(v.into());
            }
            f
        };
        let mut m = Memo::default();
        m.check(&clock(0), t0, true);
        m.remember(&dets, t0);
        // The first flip is a change…
        assert!(m.check(&clock(1), t0, true).is_none());
        m.remember(&dets, t0);
        // …from the second on, the cell is volatile and left out.
        assert_eq!(m.check(&clock(2), t0, true), Some(dets.clone()));
        assert_eq!(m.check(&clock(3), t0, true), Some(dets));
    }
}
