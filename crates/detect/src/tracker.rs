//! A per-camera IoU tracker: one walking person is one track, one track one event.
//!
//! Each track predicts where its box is now from its velocity (analysis runs at a
//! few frames per second, so a walking person moves a large part of their width
//! between analysed frames). Detections of a frame are matched greedily to the
//! predictions, same class only: by IoU first, then, for pairs with too little
//! overlap, by centre distance relative to the box size. A track becomes an event once matched in
//! `min_hits` frames (a single spurious detection makes none) and ends after
//! `max_age` without a match. Times are the frames' capture times, not the wall
//! clock, so the tracker is deterministic under test.

use crate::iou;
use chrono::{DateTime, Utc};
use varta_core::event::{BBox, EventRecord};
use varta_core::ids::new_event_id;
use varta_core::{CameraId, EventId};

/// Tracker settings.
#[derive(Clone, Copy, Debug)]
pub struct TrackerConfig {
    /// Minimum IoU with a track's last box to continue it.
    pub iou: f32,
    /// Matched frames before the track is reported.
    pub min_hits: u32,
    /// Time without a match after which the track ends.
    pub max_age: chrono::Duration,
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

#[derive(Debug)]
struct Track {
    id: u64,
    class: String,
    last_bbox: BBox,
    /// Box velocity (each coordinate) in pixels per second, smoothed.
    velocity: [f32; 4],
    best_score: f32,
    best_bbox: BBox,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    hits: u32,
    event: Option<EventId>,
}

impl Track {
    /// Where the box should be at `at`, given its velocity.
    fn predict(&self, at: DateTime<Utc>) -> BBox {
        let dt = (at - self.last_seen).num_milliseconds() as f32 / 1000.0;
        let dt = dt.clamp(0.0, 2.0); // do not extrapolate far through a long gap
        std::array::from_fn(|i| self.last_bbox[i] + self.velocity[i] * dt)
    }

    fn record(&self, camera: &CameraId, ended: Option<DateTime<Utc>>) -> EventRecord {
        EventRecord {
            id: self.event.expect("only reported tracks make records"),
            camera: camera.clone(),
            track_id: self.id,
            class: self.class.clone(),
            score: self.best_score,
            bbox: self.best_bbox,
            started_at: self.first_seen,
            last_seen_at: self.last_seen,
            ended_at: ended,
            frames: self.hits,
        }
    }
}

/// The tracks of one camera.
#[derive(Debug)]
pub struct Tracker {
    camera: CameraId,
    cfg: TrackerConfig,
    next_id: u64,
    tracks: Vec<Track>,
}

impl Tracker {
    /// An empty tracker for `camera`.
    pub fn new(camera: CameraId, cfg: TrackerConfig) -> Self {
        Tracker { camera, cfg, next_id: 1, tracks: Vec::new() }
    }

    /// Number of live tracks.
    pub fn live(&self) -> usize {
        self.tracks.len()
    }

    /// Feeds one analysed frame taken at `at`; returns events that started or ended.
    pub fn update(&mut self, at: DateTime<Utc>, obs: &[Observation]) -> Vec<EventRecord> {
        let mut out = Vec::new();
        // All candidate pairs above the IoU floor, best first.
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, t) in self.tracks.iter().enumerate() {
            let pred = t.predict(at);
            for (oi, o) in obs.iter().enumerate() {
                if o.class == t.class {
                    if let Some(v) = similarity(&pred, &o.bbox, self.cfg.iou) {
                        pairs.push((v, ti, oi));
                    }
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_used = vec![false; self.tracks.len()];
        let mut obs_used = vec![false; obs.len()];
        for (_, ti, oi) in pairs {
            if track_used[ti] || obs_used[oi] {
                continue;
            }
            track_used[ti] = true;
            obs_used[oi] = true;
            let (t, o) = (&mut self.tracks[ti], &obs[oi]);
            let dt = (at - t.last_seen).num_milliseconds() as f32 / 1000.0;
            if dt > 0.0 {
                // Exponential smoothing: detector boxes jitter from frame to frame.
                let alpha = if t.hits == 1 { 1.0 } else { 0.5 };
                for i in 0..4 {
                    let v = (o.bbox[i] - t.last_bbox[i]) / dt;
                    t.velocity[i] = alpha * v + (1.0 - alpha) * t.velocity[i];
                }
            }
            t.last_bbox = o.bbox;
            t.last_seen = at;
            t.hits += 1;
            if o.score > t.best_score {
                t.best_score = o.score;
                t.best_bbox = o.bbox;
            }
            if t.event.is_none() && t.hits >= self.cfg.min_hits {
                t.event = Some(new_event_id());
                out.push(t.record(&self.camera, None));
            }
        }
        for (oi, o) in obs.iter().enumerate() {
            if obs_used[oi] {
                continue;
            }
            let mut t = Track {
                id: self.next_id,
                class: o.class.clone(),
                last_bbox: o.bbox,
                velocity: [0.0; 4],
                best_score: o.score,
                best_bbox: o.bbox,
                first_seen: at,
                last_seen: at,
                hits: 1,
                event: None,
            };
            self.next_id += 1;
            if self.cfg.min_hits <= 1 {
                t.event = Some(new_event_id());
                out.push(t.record(&self.camera, None));
            }
            self.tracks.push(t);
        }
        let max_age = self.cfg.max_age;
        let camera = &self.camera;
        self.tracks.retain(|t| {
            if at - t.last_seen <= max_age {
                return true;
            }
            if t.event.is_some() {
                out.push(t.record(camera, Some(t.last_seen)));
            }
            false
        });
        out
    }

    /// Ends every live track (camera removed, shutdown); returns their end records.
    pub fn finish(&mut self) -> Vec<EventRecord> {
        let camera = &self.camera;
        self.tracks.drain(..).filter(|t| t.event.is_some()).map(|t| t.record(camera, Some(t.last_seen))).collect()
    }
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

    fn cfg() -> TrackerConfig {
        TrackerConfig { iou: 0.3, min_hits: 2, max_age: Duration::seconds(2) }
    }

    fn person(x: f32, score: f32) -> Observation {
        Observation { class: "person".into(), score, bbox: [x, 100., x + 40., 200.] }
    }

    #[test]
    fn one_walking_person_is_one_event() {
        let t0 = Utc::now();
        let mut tr = Tracker::new("cam".into(), cfg());
        let mut events = Vec::new();
        // Walks 8 px per frame for 20 frames at 2 fps.
        for i in 0..20 {
            let at = t0 + Duration::milliseconds(500 * i);
            events.extend(tr.update(at, &[person(8.0 * i as f32, 0.5 + 0.01 * i as f32)]));
        }
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].ended_at.is_none());
        assert_eq!(events[0].started_at, t0);
        // Gone for longer than max_age: the same event ends, with its best score.
        let ended = tr.update(t0 + Duration::seconds(13), &[]);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].id, events[0].id);
        assert_eq!(ended[0].frames, 20);
        assert!((ended[0].score - 0.69).abs() < 1e-5);
        assert_eq!(ended[0].ended_at, Some(t0 + Duration::milliseconds(9500)));
        assert_eq!(tr.live(), 0);
    }

    #[test]
    fn a_fast_walker_seen_at_low_fps_stays_one_track() {
        // 30 px per analysed frame with a 40 px wide box: IoU with the last box is
        // 0.14, but the prediction follows.
        let t0 = Utc::now();
        let mut tr = Tracker::new("cam".into(), cfg());
        let mut ids = std::collections::HashSet::new();
        for i in 0..12 {
            let at = t0 + Duration::milliseconds(500 * i);
            for e in tr.update(at, &[person(30.0 * i as f32, 0.6)]) {
                ids.insert(e.id);
            }
        }
        ids.extend(tr.finish().into_iter().map(|e| e.id));
        assert_eq!(ids.len(), 1);
    }

    #[test]
    fn two_people_crossing_keep_their_tracks() {
        let t0 = Utc::now();
        let mut tr = Tracker::new("cam".into(), cfg());
        let mut by_track = std::collections::HashMap::new();
        for i in 0..10 {
            let at = t0 + Duration::milliseconds(500 * i);
            let x = 20.0 * i as f32;
            // One walks right at y=100, the other left at y=260: never overlapping.
            let a = Observation { class: "person".into(), score: 0.6, bbox: [x, 100., x + 40., 200.] };
            let b = Observation { class: "person".into(), score: 0.7, bbox: [400. - x, 260., 440. - x, 360.] };
            for e in tr.update(at, &[a, b]) {
                by_track.insert(e.track_id, e.id);
            }
        }
        assert_eq!(by_track.len(), 2);
    }

    #[test]
    fn a_single_flash_makes_no_event_and_classes_do_not_mix() {
        let t0 = Utc::now();
        let mut tr = Tracker::new("cam".into(), cfg());
        assert!(tr.update(t0, &[person(0., 0.9)]).is_empty());
        let car = Observation { class: "car".into(), score: 0.9, bbox: [0., 100., 40., 200.] };
        // Same box, other class: a new track, not a continuation.
        assert!(tr.update(t0 + Duration::milliseconds(500), &[car]).is_empty());
        assert_eq!(tr.live(), 2);
        assert!(tr.update(t0 + Duration::seconds(10), &[]).is_empty());
    }

    #[test]
    fn two_people_two_events_and_finish_ends_them() {
        let t0 = Utc::now();
        let mut tr = Tracker::new("cam".into(), cfg());
        let mut n = 0;
        for i in 0..4 {
            let at = t0 + Duration::milliseconds(500 * i);
            n += tr.update(at, &[person(10.0 + i as f32, 0.6), person(300.0 - i as f32, 0.7)]).len();
        }
        assert_eq!(n, 2);
        let fin = tr.finish();
        assert_eq!(fin.len(), 2);
        assert!(fin.iter().all(|e| e.ended_at.is_some()));
    }
}
