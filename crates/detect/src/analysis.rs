//! One camera's analysis after the model: detections → tracks → rules → events.
//! The service's pool and `varta eval` both use it, so what eval measures is what
//! the service does.

use crate::rules::{Emit, Engine};
use crate::tracker::{Observation, Tracker, TrackerConfig};
use crate::Detection;
use std::collections::HashSet;
use varta_core::config::CameraConfig;
use varta_core::frame::Frame;
use varta_core::{err, CameraId, Error};

/// Detections below this never reach the tracker; between it and the tracker's
/// high score they may only continue tracks.
pub const FLOOR: f32 = 0.2;

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
    last_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Ended tracks, when asked for (evaluation; the service keeps none).
    track_log: Option<Vec<TrackSummary>>,
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
            track_log: None,
        })
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
        (self.engine.step(at, self.tracker.tracks(), &ended, self.size), interesting)
    }

    /// Ends everything open (camera removed or changed, shutdown).
    pub fn finish(&mut self) -> Vec<Emit> {
        let ended = self.tracker.finish();
        self.log(&ended);
        let at = self.last_at.unwrap_or_else(chrono::Utc::now);
        self.engine.step(at, &[], &ended, self.size)
    }
}
