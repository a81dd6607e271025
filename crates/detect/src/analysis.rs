//! One camera's analysis after the model: detections → tracks → rules → events.
//! The service's pool and `varta eval` both use it, so what eval measures is what
//! the service does.

use crate::rules::{Emit, Engine};
use crate::tracker::{Observation, Tracker, TrackerConfig};
use crate::Detection;
use std::collections::HashSet;
use varta_core::clock::Clock;
use varta_core::config::CameraConfig;
use varta_core::event::{EndReason, EventPhase};
use varta_core::frame::Frame;
use varta_core::{err, CameraId, Error};

/// Detections below this never reach the tracker; between it and the tracker's
/// high score they may only continue tracks.
pub const FLOOR: f32 = 0.2;

/// An object of interest counts as activity (full decoding, served first) this long
/// after its track began…
pub const NEW_OBJECT: chrono::TimeDelta = chrono::TimeDelta::seconds(10);
/// …and afterwards while it moves at least this share of its box's larger side per
/// second ([`crate::tracker::Track::is_moving`]).
pub const MOVING_PER_S: f32 = 0.25;

/// What a camera wants reported, as the config says it.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraRules {
    /// The camera's classes.
    pub classes: Vec<String>,
    /// The camera's minimum score.
    pub min_score: f32,
    /// Zones.
    pub zones: Vec<varta_core::zones::ZoneConfig>,
    /// Lines.
    pub lines: Vec<varta_core::zones::LineConfig>,
    /// Rules.
    pub rules: Vec<varta_core::zones::RuleConfig>,
}

impl From<&CameraConfig> for CameraRules {
    fn from(c: &CameraConfig) -> Self {
        CameraRules {
            classes: c.classes.clone(),
            min_score: c.min_score,
            zones: c.zones.clone(),
            lines: c.lines.clone(),
            rules: c.rules.clone(),
        }
    }
}

/// A confirmed track that ended, as `varta eval` reports it.
#[derive(Clone, Debug)]
pub struct TrackSummary {
    /// Track id.
    pub id: u64,
    /// Class label.
    pub class: String,
    /// First match.
    pub first_seen: chrono::DateTime<chrono::Utc>,
    /// Last match.
    pub last_seen: chrono::DateTime<chrono::Utc>,
    /// Frames matched.
    pub hits: u32,
}

/// Tracker and rule engine of one camera.
#[derive(Debug)]
pub struct CameraAnalyser {
    rules: CameraRules,
    tracker: Tracker,
    engine: Engine,
    /// Label indices some rule wants.
    wanted: HashSet<usize>,
    /// Score from which a wanted detection confirms activity to the decode gate.
    interest: f32,
    size: (u32, u32),
    /// Capture time of the last frame analysed.
    last_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The tracker's max age: how long a silent camera keeps its tracks.
    max_age: chrono::Duration,
    /// Ended tracks, when asked for (evaluation; the service keeps none).
    track_log: Option<Vec<TrackSummary>>,
    /// The last inference, for skipping the model on an unchanged idle picture.
    memo: crate::unchanged::Memo,
    /// Which vehicle crops to read for plates, when plates are on.
    plates: Option<crate::plates::PlateSampler>,
    /// Crops chosen by the last [`CameraAnalyser::process`], for the plates thread.
    plate_jobs: Vec<crate::plates::PlateJob>,
}

impl CameraAnalyser {
    /// An analyser for `camera`; a class no label of the model has is an error
    /// naming it.
    pub fn new(
        camera: &CameraId,
        rules: CameraRules,
        labels: &[String],
        tracker: TrackerConfig,
    ) -> Result<Self, Error> {
        let engine =
            Engine::new(camera.clone(), &rules.zones, &rules.lines, &rules.rules, &rules.classes, rules.min_score);
        let mut wanted = HashSet::new();
        for c in engine.classes() {
            let i = labels
                .iter()
                .position(|l| *l == c)
                .ok_or_else(|| err!(InvalidArgument, "camera {camera}: class `{c}` is not a label of the model"))?;
            wanted.insert(i);
        }
        let interest = engine.min_score();
        Ok(CameraAnalyser {
            rules,
            tracker: Tracker::new(tracker),
            engine,
            wanted,
            interest,
            size: (0, 0),
            last_at: None,
            max_age: tracker.max_age,
            track_log: None,
            memo: Default::default(),
            plates: None,
            plate_jobs: Vec::new(),
        })
    }

    /// The camera's last inference ([`crate::unchanged`]).
    pub fn memo(&mut self) -> &mut crate::unchanged::Memo {
        &mut self.memo
    }

    /// Keeps a summary of every confirmed track that ends.
    pub fn with_track_log(mut self) -> Self {
        self.track_log = Some(Vec::new());
        self
    }

    /// Confirmed tracks that ended so far (with [`CameraAnalyser::with_track_log`]).
    pub fn track_log(&self) -> &[TrackSummary] {
        self.track_log.as_deref().unwrap_or_default()
    }

    fn log(&mut self, ended: &[crate::tracker::Track]) {
        if let Some(log) = &mut self.track_log {
            log.extend(ended.iter().map(|t| TrackSummary {
                id: t.id,
                class: t.class.clone(),
                first_seen: t.first_seen,
                last_seen: t.last_seen,
                hits: t.hits,
            }));
        }
    }

    /// Reads plates on this camera's vehicle events ([`crate::plates`]).
    pub fn with_plates(mut self, cfg: crate::plates::PlatesConfig) -> Self {
        self.plates = Some(crate::plates::PlateSampler::new(cfg));
        self
    }

    /// The vehicle crops chosen since the last call.
    pub fn take_plate_jobs(&mut self) -> Vec<crate::plates::PlateJob> {
        std::mem::take(&mut self.plate_jobs)
    }

    /// The rules it was made from.
    pub fn rules(&self) -> &CameraRules {
        &self.rules
    }

    /// Feeds one analysed frame and its detections (boxes in the frame's pixels);
    /// returns the event records, and whether an object of interest was seen.
    pub fn process(&mut self, frame: &Frame, dets: &[Detection], labels: &[String]) -> (Vec<Emit>, bool) {
        let obs: Vec<Observation> = dets
            .iter()
            .filter(|d| d.score >= FLOOR && self.wanted.contains(&d.class))
            .map(|d| Observation { class: labels[d.class].clone(), score: d.score, bbox: d.bbox })
            .collect();
        let interesting = obs.iter().any(|o| o.score >= self.interest);
        let at = frame.captured_at;
        // A frame older than the last one (clock step) would confuse velocities.
        if self.last_at.is_some_and(|l| at <= l) {
            return (Vec::new(), interesting);
        }
        self.last_at = Some(at);
        self.size = (frame.width, frame.height);
        let ended = self.tracker.update(at, &obs, Some(frame));
        self.log(&ended);
        // Activity is a new or moving object of interest, not any: a car parked in
        // view for hours must not hold the camera on full decoding and at the head of
        // the scheduler. Its track lives on at the idle-check rate (tracks end only on
        // a frame that misses them), so its event stays one event.
        let interesting = interesting
            && self.tracker.tracks().iter().any(|t| {
                t.last_seen == at
                    && t.score >= self.interest
                    && (at - t.first_seen < NEW_OBJECT || t.is_moving(MOVING_PER_S))
            });
        let emits = self.engine.step(at, self.tracker.tracks(), &ended, self.size);
        if let Some(s) = &mut self.plates {
            self.plate_jobs.extend(s.observe(&emits, self.tracker.tracks(), frame, at));
        }
        (emits, interesting)
    }

    /// Ends everything open, for `reason`: [`EndReason::NodeStopped`] when this node
    /// stops analysing the camera (shutdown, camera handed over, removed or its rules
    /// changed), [`EndReason::CameraLost`] when the camera stopped sending pictures.
    /// Every event ends when its object was last seen (`ended_at = last_seen_at`).
    pub fn finish(&mut self, reason: EndReason) -> Vec<Emit> {
        let ended = self.tracker.finish();
        self.log(&ended);
        let at = self.last_at.unwrap_or_else(chrono::Utc::now);
        let mut out = self.engine.step(at, &[], &ended, self.size);
        for e in &mut out {
            if e.record.phase == EventPhase::Ended {
                e.record.ended_at = Some(e.record.last_seen_at);
                e.record.end_reason = Some(reason);
            }
        }
        out
    }

    /// The recovery rule for a camera that went silent: when the camera is not
    /// streaming (`camera_up` false) and no frame of it has been analysed for the
    /// tracker's max age by `clock`, its open events end as
    /// [`EndReason::CameraLost`] at their last sighting. A camera that is back
    /// within the max age keeps its tracks (a reconnect is not a new person), and a
    /// streaming camera's tracks are left to the tracker, which ends them at its next
    /// frame. Returns the `ended` records (none when nothing was open).
    pub fn expire(&mut self, clock: &dyn Clock, camera_up: bool) -> Vec<Emit> {
        let silent = self.last_at.is_some_and(|l| clock.now() - l >= self.max_age);
        if camera_up || !silent || !self.has_open() {
            return Vec::new();
        }
        self.finish(EndReason::CameraLost)
    }

    /// True while a track or an event is open.
    pub fn has_open(&self) -> bool {
        !self.tracker.tracks().is_empty() || self.engine.has_open()
    }
}

#[cfg(test)]
mod tests {
    //! The recovery rules of one camera, with an injected clock.
    use super::*;
    use chrono::{Duration, TimeZone, Utc};
    use varta_core::clock::ManualClock;

    fn analyser() -> CameraAnalyser {
        let rules =
            CameraRules { classes: vec!["person".into()], min_score: 0.4, zones: vec![], lines: vec![], rules: vec![] };
        CameraAnalyser::new(&"cam".into(), rules, &["person".to_string()], TrackerConfig::default()).unwrap()
    }

    /// Feeds frames 500 ms apart from `t0` with one walking person; returns the
    /// records made and the capture time of the last frame.
    fn walk(a: &mut CameraAnalyser, t0: chrono::DateTime<Utc>, frames: i64) -> (Vec<Emit>, chrono::DateTime<Utc>) {
        let labels = ["person".to_string()];
        let mut out = Vec::new();
        let mut at = t0;
        for i in 0..frames {
            at = t0 + Duration::milliseconds(500 * i);
            let frame = Frame::from_rgb("cam".into(), at, 2, 2, vec![0; 12]);
            let det = Detection { class: 0, score: 0.8, bbox: [10.0 * i as f32, 100., 10.0 * i as f32 + 40., 200.] };
            out.extend(a.process(&frame, &[det], &labels).0);
        }
        (out, at)
    }

    #[test]
    fn a_silent_camera_that_is_down_ends_its_events_as_camera_lost_at_the_last_sighting() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        let mut a = analyser();
        let (started, last) = walk(&mut a, t0, 6);
        assert_eq!(started.iter().filter(|e| e.record.phase == EventPhase::Started).count(), 1);
        let clock = ManualClock::new(last);
        let max_age = TrackerConfig::default().max_age;
        // Streaming, however long: the tracker ends tracks at the next frame.
        clock.advance(max_age * 10);
        assert!(a.expire(&clock, true).is_empty());
        // Down, but not yet silent for the max age: a reconnect keeps the tracks.
        clock.set(last + max_age - Duration::milliseconds(1));
        assert!(a.expire(&clock, false).is_empty());
        assert!(a.has_open());
        // Down and silent for the max age: the event ends, when it was last seen.
        clock.set(last + max_age);
        let ended = a.expire(&clock, false);
        assert_eq!(ended.len(), 1, "{ended:?}");
        let r = &ended[0].record;
        assert_eq!(r.phase, EventPhase::Ended);
        assert_eq!(r.end_reason, Some(EndReason::CameraLost));
        assert_eq!(r.ended_at, Some(r.last_seen_at));
        assert_eq!(r.last_seen_at, last);
        assert_eq!(r.id, started[0].record.id);
        assert!(!a.has_open());
        // Nothing left: nothing more ends.
        clock.advance(max_age);
        assert!(a.expire(&clock, false).is_empty());
    }

    #[test]
    fn a_camera_that_comes_back_within_the_max_age_keeps_its_event() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        let mut a = analyser();
        let (_, last) = walk(&mut a, t0, 6);
        let clock = ManualClock::new(last + Duration::seconds(1));
        assert!(a.expire(&clock, false).is_empty());
        // Frames again, the person still there: the same event goes on, no new one.
        let labels = ["person".to_string()];
        let mut more = Vec::new();
        for i in 6..10 {
            let at = t0 + Duration::milliseconds(500 * i + 1000);
            let frame = Frame::from_rgb("cam".into(), at, 2, 2, vec![0; 12]);
            let det = Detection { class: 0, score: 0.8, bbox: [10.0 * i as f32, 100., 10.0 * i as f32 + 40., 200.] };
            more.extend(a.process(&frame, &[det], &labels).0);
        }
        assert!(more.iter().all(|e| e.record.phase != EventPhase::Started), "{more:?}");
        assert!(a.has_open());
    }

    #[test]
    fn a_parked_object_stops_counting_as_activity_but_keeps_its_event() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        let mut a = analyser();
        let labels = ["person".to_string()];
        let seen = |a: &mut CameraAnalyser, secs: i64, x: f32| {
            let at = t0 + Duration::milliseconds(secs * 1000);
            let frame = Frame::from_rgb("cam".into(), at, 2, 2, vec![0; 12]);
            // A few pixels of detector jitter, as on a still object.
            let j = (secs % 2) as f32 * 2.0;
            let det = Detection { class: 0, score: 0.8, bbox: [x + j, 100. + j, x + 40., 200.] };
            a.process(&frame, &[det], &labels)
        };
        // New: activity, and it stays so for its first seconds even standing still.
        for s in 0..10 {
            assert!(seen(&mut a, s, 10.0).1, "new object at {s} s");
        }
        // Still after that: no longer activity, and frames 8 s apart (keyframes of an
        // idle camera) keep the same track and event, no new one.
        let mut records = Vec::new();
        for s in [10, 18, 26, 34] {
            let (e, active) = seen(&mut a, s, 10.0);
            assert!(!active, "parked object at {s} s");
            records.extend(e);
        }
        assert!(records.iter().all(|e| e.record.phase != EventPhase::Started), "a second event");
        assert!(records.iter().all(|e| e.record.phase != EventPhase::Ended), "the event ended");
        // It moves off: 40 px (its width) per second is activity again.
        let mut moving = false;
        for (k, s) in (35..38).enumerate() {
            moving = seen(&mut a, s, 10.0 + 40.0 * (k + 1) as f32).1;
        }
        assert!(moving);
    }

    #[test]
    fn stopping_analysis_ends_events_as_node_stopped_at_the_last_sighting() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        let mut a = analyser();
        let (_, last) = walk(&mut a, t0, 4);
        let ended = a.finish(EndReason::NodeStopped);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].record.end_reason, Some(EndReason::NodeStopped));
        assert_eq!(ended[0].record.ended_at, Some(last));
    }

    #[test]
    fn an_event_the_tracker_ends_ends_as_ended() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        let mut a = analyser();
        let (_, last) = walk(&mut a, t0, 4);
        // An empty frame after the max age: the track ends normally.
        let at = last + TrackerConfig::default().max_age + Duration::seconds(1);
        let frame = Frame::from_rgb("cam".into(), at, 2, 2, vec![0; 12]);
        let (out, _) = a.process(&frame, &[], &["person".to_string()]);
        let ended: Vec<_> = out.iter().filter(|e| e.record.phase == EventPhase::Ended).collect();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].record.end_reason, Some(EndReason::Ended));
        assert_eq!(ended[0].record.ended_at, Some(last));
    }
}
