//! A per-camera multi-object tracker in the manner of ByteTrack: one walking person
//! is one track, even when the detector misses them for a few frames.
//!
//! Per analysed frame:
//! 1. every track predicts its box from its velocity (analysis runs at a few frames
//!    per second, so a walking person moves a large part of their width between
//!    analysed frames);
//! 2. **high pass**: detections scoring at least `high_score` are matched to all
//!    tracks (lost ones included), same class only, greedily by IoU with the
//!    prediction, then, for pairs with too little overlap, by centre distance
//!    relative to the box size;
//! 3. **low pass**: the remaining detections (down to the analysis floor) may only
//!    continue tracks that were seen in the previous frame, by IoU alone: a person
//!    half hidden behind a post keeps their track, a low-score flicker never starts
//!    one;
//! 4. unmatched high detections start tentative tracks; a tentative track becomes
//!    confirmed after `min_hits` matches and is dropped if it misses one before;
//! 5. a confirmed track that misses is *lost* but remembered for `max_age`, so it
//!    can be picked up again; after that it ends.
//!
//! Every track keeps its best snapshot: the frame and box of its highest-scoring
//! detection. Times are the frames' capture times, not the wall clock, so the
//! tracker is deterministic under test.

use crate::iou;
use chrono::{DateTime, Utc};
use varta_core::event::BBox;
use varta_core::frame::Frame;

/// Tracker settings.
#[derive(Clone, Copy, Debug)]
pub struct TrackerConfig {
    /// Minimum IoU with a track's predicted box to continue it.
    pub iou: f32,
    /// Matched frames before the track is confirmed.
    pub min_hits: u32,
    /// How long a lost track is remembered before it ends.
    pub max_age: chrono::Duration,
    /// Detections at least this good start tracks and are matched first.
    pub high_score: f32,
}

/// A detection ready for tracking: label resolved, box in source pixels.
#[derive(Clone, Debug)]
pub struct Observation {
    /// Class label.
    pub class: String,
    /// Score.
    pub score: f32,
    /// Box in source pixels.
    pub bbox: BBox,
}

/// One tracked object.
#[derive(Clone, Debug)]
pub struct Track {
    /// Id, unique per camera and process run.
    pub id: u64,
    /// Class label.
    pub class: String,
    /// Last matched box.
    pub bbox: BBox,
    /// Score of the last match.
    pub score: f32,
    /// Box velocity (each coordinate) in pixels per second, smoothed.
    velocity: [f32; 4],
    /// Best score seen.
    pub best_score: f32,
    /// Box of the best detection.
    pub best_bbox: BBox,
    /// Frame of the best detection (shared, not copied).
    pub best_frame: Option<Frame>,
    /// When the best detection was seen.
    pub best_at: DateTime<Utc>,
    /// First match.
    pub first_seen: DateTime<Utc>,
    /// Last match.
    pub last_seen: DateTime<Utc>,
    /// Number of matches.
    pub hits: u32,
    /// Matched in `min_hits` frames.
    pub confirmed: bool,
}

impl Track {
    /// Whether the object moves: its box centre's smoothed speed is at least
    /// `min_per_s` of the box's larger side per second. A walking person covers
    /// 0.5–1 of their height per second; a parked car's box jitters by a few pixels
    /// (under 0.1).
    pub fn is_moving(&self, min_per_s: f32) -> bool {
        let (vx, vy) = ((self.velocity[0] + self.velocity[2]) / 2.0, (self.velocity[1] + self.velocity[3]) / 2.0);
        let size = (self.bbox[2] - self.bbox[0]).max(self.bbox[3] - self.bbox[1]).max(1.0);
        (vx * vx + vy * vy).sqrt() / size >= min_per_s
    }

    /// Where the box should be at `at`, given its velocity.
    fn predict(&self, at: DateTime<Utc>) -> BBox {
        let dt = (at - self.last_seen).num_milliseconds() as f32 / 1000.0;
        let dt = dt.clamp(0.0, 2.0); // do not extrapolate far through a long gap
        std::array::from_fn(|i| self.bbox[i] + self.velocity[i] * dt)
    }

    /// Whether the track was matched in the frame taken at `at`.
    pub fn seen_at(&self, at: DateTime<Utc>) -> bool {
        self.last_seen == at
    }
}

/// The tracks of one camera.
#[derive(Debug)]
pub struct Tracker {
    cfg: TrackerConfig,
    next_id: u64,
    tracks: Vec<Track>,
    /// Capture time of the previous frame.
    last_frame: Option<DateTime<Utc>>,
}

impl Tracker {
    /// An empty tracker.
    pub fn new(cfg: TrackerConfig) -> Self {
        Tracker { cfg, next_id: 1, tracks: Vec::new(), last_frame: None }
    }

    /// Live tracks (tentative, confirmed and lost).
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Feeds one analysed frame taken at `at` (`frame` is kept as the best snapshot
    /// of tracks it improves); returns the confirmed tracks that ended.
    pub fn update(&mut self, at: DateTime<Utc>, obs: &[Observation], frame: Option<&Frame>) -> Vec<Track> {
        let prev = self.last_frame.replace(at);
        let mut track_used = vec![false; self.tracks.len()];
        let mut obs_used = vec![false; obs.len()];
        let high = |o: &Observation| o.score >= self.cfg.high_score;
        // High pass: all tracks, IoU or centre distance.
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, t) in self.tracks.iter().enumerate() {
            let pred = t.predict(at);
            for (oi, o) in obs.iter().enumerate().filter(|(_, o)| high(o) && o.class == t.class) {
                if let Some(v) = similarity(&pred, &o.bbox, self.cfg.iou) {
                    pairs.push((v, ti, oi));
                }
            }
        }
        let mut matches = assign(pairs, &mut track_used, &mut obs_used);
        // Low pass: only tracks seen in the previous frame, IoU only.
        let mut pairs = Vec::new();
        for (ti, t) in self.tracks.iter().enumerate() {
            if track_used[ti] || prev.is_none_or(|p| t.last_seen != p) {
                continue;
            }
            let pred = t.predict(at);
            for (oi, o) in obs.iter().enumerate().filter(|(_, o)| !high(o) && o.class == t.class) {
                let v = iou(&pred, &o.bbox);
                if v >= self.cfg.iou {
                    pairs.push((v, ti, oi));
                }
            }
        }
        matches.extend(assign(pairs, &mut track_used, &mut obs_used));
        for (ti, oi) in matches {
            let (t, o) = (&mut self.tracks[ti], &obs[oi]);
            let dt = (at - t.last_seen).num_milliseconds() as f32 / 1000.0;
            if dt > 0.0 {
                // Exponential smoothing: detector boxes jitter from frame to frame.
                let alpha = if t.hits == 1 { 1.0 } else { 0.5 };
                for i in 0..4 {
                    let v = (o.bbox[i] - t.bbox[i]) / dt;
                    t.velocity[i] = alpha * v + (1.0 - alpha) * t.velocity[i];
                }
            }
            t.bbox = o.bbox;
            t.score = o.score;
            t.last_seen = at;
            t.hits += 1;
            if t.hits >= self.cfg.min_hits {
                t.confirmed = true;
            }
            if o.score > t.best_score {
                t.best_score = o.score;
                t.best_bbox = o.bbox;
                t.best_frame = frame.cloned();
                t.best_at = at;
            }
        }
        for (oi, o) in obs.iter().enumerate() {
            if obs_used[oi] || !high(o) {
                continue;
            }
            self.tracks.push(Track {
                id: self.next_id,
                class: o.class.clone(),
                bbox: o.bbox,
                score: o.score,
                velocity: [0.0; 4],
                best_score: o.score,
                best_bbox: o.bbox,
                best_frame: frame.cloned(),
                best_at: at,
                first_seen: at,
                last_seen: at,
                hits: 1,
                confirmed: self.cfg.min_hits <= 1,
            });
            self.next_id += 1;
        }
        let max_age = self.cfg.max_age;
        let mut ended = Vec::new();
        self.tracks.retain(|t| {
            if t.last_seen == at {
                return true;
            }
            // A tentative track that misses a frame was a flicker.
            if !t.confirmed {
                return false;
            }
            if at - t.last_seen <= max_age {
                return true;
            }
            ended.push(t.clone());
            false
        });
        ended
    }

    /// Ends every live track (camera removed, shutdown); returns the confirmed ones.
    pub fn finish(&mut self) -> Vec<Track> {
        self.tracks.drain(..).filter(|t| t.confirmed).collect()
    }
}

/// Greedy assignment, best pair first; returns (track, observation) pairs.
fn assign(mut pairs: Vec<(f32, usize, usize)>, tu: &mut [bool], ou: &mut [bool]) -> Vec<(usize, usize)> {
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out = Vec::new();
    for (_, ti, oi) in pairs {
        if !tu[ti] && !ou[oi] {
            tu[ti] = true;
            ou[oi] = true;
            out.push((ti, oi));
        }
    }
    out
}

/// How well detection box `b` continues a track predicted at `pred`: its IoU when
/// at least `min_iou`; otherwise, when the centres are within 0.8 box sizes and the
/// sizes within a factor of 2, a value below `min_iou` falling with the distance
/// (so overlap always wins); else no match.
fn similarity(pred: &BBox, b: &BBox, min_iou: f32) -> Option<f32> {
    let v = iou(pred, b);
    if v >= min_iou {
        return Some(v);
    }
    let size = |r: &BBox| ((r[2] - r[0]).max(1.0) * (r[3] - r[1]).max(1.0)).sqrt();
    let (sp, sb) = (size(pred), size(b));
    if sp / sb > 2.0 || sb / sp > 2.0 {
        return None;
    }
    let c = |r: &BBox| ((r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0);
    let ((px, py), (bx, by)) = (c(pred), c(b));
    let d = ((px - bx).powi(2) + (py - by).powi(2)).sqrt() / sp.max(sb);
    (d < 0.8).then(|| min_iou * (1.0 - d / 0.8) * 0.99)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use std::collections::{HashMap, HashSet};

    fn person(x: f32, y: f32, score: f32) -> Observation {
        Observation { class: "person".into(), score, bbox: [x, y, x + 40., y + 100.] }
    }

    /// Ids of the confirmed tracks matched at `at`, by x position order.
    fn seen(tr: &Tracker, at: DateTime<Utc>) -> Vec<(u64, f32)> {
        tr.tracks().iter().filter(|t| t.confirmed && t.seen_at(at)).map(|t| (t.id, t.bbox[0])).collect()
    }

    #[test]
    fn one_walking_person_is_one_track_with_the_best_snapshot() {
        let t0 = Utc::now();
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut ids = HashSet::new();
        for i in 0..20 {
            let at = t0 + Duration::milliseconds(500 * i);
            let score = if i == 7 { 0.93 } else { 0.6 + 0.01 * i as f32 };
            let frame = Frame::from_rgb("cam".into(), at, 1, 1, vec![i as u8; 3]);
            tr.update(at, &[person(8.0 * i as f32, 100., score)], Some(&frame));
            ids.extend(seen(&tr, at).into_iter().map(|(id, _)| id));
        }
        assert_eq!(ids.len(), 1);
        let t = &tr.tracks()[0];
        assert_eq!((t.hits, t.best_score, t.best_bbox[0]), (20, 0.93, 56.0));
        assert_eq!(t.best_at, t0 + Duration::milliseconds(3500));
        let Some(varta_core::frame::Frame { pixels: varta_core::frame::Pixels::Rgb(px), .. }) = &t.best_frame else {
            panic!("no snapshot")
        };
        assert_eq!(px[0], 7, "the snapshot is the frame of the best detection");
        // Gone for longer than max_age: the track ends.
        let ended = tr.update(t0 + Duration::seconds(13), &[], None);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].last_seen, t0 + Duration::milliseconds(9500));
        assert!(tr.tracks().is_empty());
    }

    #[test]
    fn a_detection_missed_for_three_frames_keeps_the_track() {
        let t0 = Utc::now();
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut ids = HashSet::new();
        for i in 0..16 {
            let at = t0 + Duration::milliseconds(500 * i);
            // Walking 20 px per frame; the detector misses frames 6, 7 and 8.
            let obs = if (6..=8).contains(&i) { vec![] } else { vec![person(20.0 * i as f32, 100., 0.7)] };
            let ended = tr.update(at, &obs, None);
            assert!(ended.is_empty(), "frame {i}: track ended");
            ids.extend(seen(&tr, at).into_iter().map(|(id, _)| id));
        }
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert_eq!(tr.tracks().len(), 1);
        assert_eq!(tr.tracks()[0].hits, 13);
    }

    #[test]
    fn low_scores_continue_a_track_but_never_start_one() {
        let t0 = Utc::now();
        let mut tr = Tracker::new(TrackerConfig::default());
        for i in 0..4 {
            let at = t0 + Duration::milliseconds(500 * i);
            tr.update(at, &[person(10.0 * i as f32, 100., 0.8)], None);
        }
        // Partly hidden: the score drops to 0.3, still the same track.
        for i in 4..8 {
            let at = t0 + Duration::milliseconds(500 * i);
            tr.update(at, &[person(10.0 * i as f32, 100., 0.3), person(400., 100., 0.3)], None);
            assert_eq!(seen(&tr, at).len(), 1);
        }
        assert_eq!(tr.tracks().len(), 1, "a low-score detection started a track");
        assert_eq!(tr.tracks()[0].hits, 8);
    }

    #[test]
    fn a_fast_walker_seen_at_low_fps_stays_one_track() {
        // 30 px per analysed frame with a 40 px wide box: IoU with the last box is
        // 0.14, but the prediction follows.
        let t0 = Utc::now();
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut ids = HashSet::new();
        for i in 0..12 {
            let at = t0 + Duration::milliseconds(500 * i);
            tr.update(at, &[person(30.0 * i as f32, 100., 0.6)], None);
            ids.extend(seen(&tr, at).into_iter().map(|(id, _)| id));
        }
        assert_eq!(ids.len(), 1);
    }

    #[test]
    fn two_crossing_people_keep_their_ids() {
        // A walks right, B walks left on the same path a little lower; their boxes
        // overlap for several frames in the middle, and the detector misses B once
        // while they overlap.
        let t0 = Utc::now();
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut side: HashMap<u64, f32> = HashMap::new();
        for i in 0..20 {
            let at = t0 + Duration::milliseconds(500 * i);
            let xa = 20.0 * i as f32;
            let xb = 380.0 - 20.0 * i as f32;
            let mut obs = vec![person(xa, 100., 0.8)];
            if i != 9 {
                obs.push(person(xb, 110., 0.7));
            }
            tr.update(at, &obs, None);
            for t in tr.tracks().iter().filter(|t| t.confirmed && t.seen_at(at)) {
                // The track's direction of travel must never change: no id swap.
                let dir = if (t.bbox[0] - xa).abs() < 1.0 { 1.0 } else { -1.0 };
                let prev = side.insert(t.id, dir);
                assert!(prev.is_none_or(|p| p == dir), "track {} swapped at frame {i}", t.id);
            }
        }
        assert_eq!(side.len(), 2, "{side:?}");
    }

    #[test]
    fn a_single_flash_makes_no_track_and_classes_do_not_mix() {
        let t0 = Utc::now();
        let mut tr = Tracker::new(TrackerConfig::default());
        tr.update(t0, &[person(0., 100., 0.9)], None);
        let car = Observation { class: "car".into(), score: 0.9, bbox: [0., 100., 40., 200.] };
        // Same box, other class: a new track, not a continuation; the person's
        // tentative track is dropped.
        tr.update(t0 + Duration::milliseconds(500), &[car], None);
        assert_eq!(tr.tracks().len(), 1);
        assert_eq!(tr.tracks()[0].class, "car");
        assert!(!tr.tracks()[0].confirmed);
        assert!(tr.update(t0 + Duration::seconds(10), &[], None).is_empty());
    }
}
