//! A per-camera IoU tracker: one walking person is one track, one track one event.
//!
//! Detections of a frame are matched greedily (highest IoU first, same class only)
//! to the camera's live tracks. A track becomes an event once matched in
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
    best_score: f32,
    best_bbox: BBox,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    hits: u32,
    event: Option<EventId>,
}

impl Track {
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
            for (oi, o) in obs.iter().enumerate() {
                if o.class == t.class {
                    let v = iou(&t.last_bbox, &o.bbox);
                    if v >= self.cfg.iou {
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
