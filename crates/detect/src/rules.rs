//! The rule engine: turns a camera's tracks into events, by its zones, lines and
//! rules (config in [`varta_core::zones`]).
//!
//! An object's position is the bottom centre of its box, normalised to the picture.
//! Each rule fires at most once per track (`count` rules once per episode of the
//! count being above the limit): `started` when it fires, `updated` when the
//! track's best snapshot has improved (at most every [`UPDATE_EVERY_SECS`]), `ended`
//! when the object leaves the zone, is lost, or the count falls back. Only
//! confirmed tracks whose current detection reaches the rule's minimum score count.

use crate::tracker::Track;
use chrono::{DateTime, Timelike, Utc};
use std::collections::{HashMap, HashSet};
use varta_core::event::{BBox, EndReason, EventPhase, EventRecord};
use varta_core::frame::Frame;
use varta_core::ids::new_event_id;
use varta_core::zones::{Direction, LineConfig, RuleConfig, RuleKind, Window, ZoneConfig};
use varta_core::{CameraId, EventId};

/// Least time between two `updated` records of one event.
pub const UPDATE_EVERY_SECS: i64 = 2;
/// Least score gain for an `updated` record.
const UPDATE_MIN_GAIN: f32 = 0.05;

/// What a rule needs, resolved from the config.
#[derive(Clone, Debug)]
struct Rule {
    name: String,
    kind: RuleKind,
    /// Zone or line name that events carry.
    label: Option<String>,
    zone: Option<usize>,
    line: Option<usize>,
    direction: Direction,
    seconds: f64,
    count: u32,
    classes: HashSet<String>,
    min_score: f32,
    schedule: Vec<Window>,
    alert: bool,
}

/// Where the rule is for one track.
#[derive(Clone, Debug, Default)]
struct TrackRule {
    /// The event, once fired.
    event: Option<Fired>,
    /// Fired and ended: never again for this track.
    done: bool,
    inside_since: Option<DateTime<Utc>>,
    /// `cross`: the last position off the line (a step may land exactly on it).
    off_line: Option<[f32; 2]>,
}

#[derive(Clone, Debug)]
struct Fired {
    id: EventId,
    started_at: DateTime<Utc>,
    /// Best score whose snapshot was last written.
    snap_score: f32,
    snap_at: DateTime<Utc>,
}

/// A `count` rule's current episode.
#[derive(Clone, Debug)]
struct CountEpisode {
    fired: Fired,
    track: Track,
    peak: u32,
}

/// A snapshot to write for an event: the frame, the boxes to draw, and the box to crop.
#[derive(Clone, Debug)]
pub struct SnapshotJob {
    /// The picture.
    pub frame: Frame,
    /// Boxes drawn on the full picture (source pixels).
    pub boxes: Vec<BBox>,
    /// Box cut out for the crop.
    pub crop: BBox,
}

/// One event record, with the snapshot to write first if any.
#[derive(Clone, Debug)]
pub struct Emit {
    /// The record for the store.
    pub record: EventRecord,
    /// The snapshot, for `started` and `updated` records that have one.
    pub snapshot: Option<SnapshotJob>,
}

/// The rules of one camera and their state.
#[derive(Debug)]
pub struct Engine {
    camera: CameraId,
    rules: Vec<Rule>,
    zones: Vec<Vec<[f32; 2]>>,
    lines: Vec<LineConfig>,
    /// Per track id, per rule.
    tracks: HashMap<u64, Vec<TrackRule>>,
    counts: Vec<Option<CountEpisode>>,
    /// Minutes east of UTC used for schedules; `None` = the machine's local time.
    utc_offset_minutes: Option<i32>,
}

impl Engine {
    /// An engine for `camera`. With no rules, one `presence` rule over the whole
    /// picture for `classes` at `min_score`; rules without classes or minimum score
    /// take these.
    pub fn new(
        camera: CameraId,
        zones: &[ZoneConfig],
        lines: &[LineConfig],
        rules: &[RuleConfig],
        classes: &[String],
        min_score: f32,
    ) -> Engine {
        let presence;
        let rules = if rules.is_empty() {
            presence = [RuleConfig { alert: false, ..RuleConfig::new("presence", RuleKind::Presence) }];
            &presence[..]
        } else {
            rules
        };
        let rules: Vec<Rule> = rules
            .iter()
            .map(|r| Rule {
                name: r.name.clone(),
                kind: r.kind,
                label: r.zone.clone().or_else(|| r.line.clone()),
                zone: r.zone.as_ref().and_then(|z| zones.iter().position(|x| &x.name == z)),
                line: r.line.as_ref().and_then(|l| lines.iter().position(|x| &x.name == l)),
                direction: r.direction,
                seconds: r.seconds.unwrap_or(0.0),
                count: r.count.unwrap_or(0),
                classes: r.classes.as_deref().unwrap_or(classes).iter().cloned().collect(),
                min_score: r.min_score.unwrap_or(min_score),
                schedule: r.schedule.iter().filter_map(|w| Window::parse(w).ok()).collect(),
                alert: r.alert,
            })
            .collect();
        Engine {
            camera,
            counts: vec![None; rules.len()],
            rules,
            zones: zones.iter().map(|z| z.polygon.clone()).collect(),
            lines: lines.to_vec(),
            tracks: HashMap::new(),
            utc_offset_minutes: None,
        }
    }

    /// Evaluates schedules at a fixed offset from UTC instead of local time (tests).
    pub fn with_utc_offset(mut self, minutes: i32) -> Engine {
        self.utc_offset_minutes = Some(minutes);
        self
    }

    /// True while some rule has an event open (a track's, or a count episode).
    pub fn has_open(&self) -> bool {
        self.counts.iter().any(Option::is_some) || self.tracks.values().flatten().any(|st| st.event.is_some())
    }

    /// Every class some rule wants.
    pub fn classes(&self) -> HashSet<String> {
        self.rules.iter().flat_map(|r| r.classes.iter().cloned()).collect()
    }

    /// The lowest minimum score of any rule.
    pub fn min_score(&self) -> f32 {
        self.rules.iter().map(|r| r.min_score).fold(1.0, f32::min)
    }

    /// Applies the rules to the tracks after the frame taken at `at` (`live`: the
    /// tracker's tracks, `ended`: those that just ended; `size`: the picture's).
    pub fn step(&mut self, at: DateTime<Utc>, live: &[Track], ended: &[Track], size: (u32, u32)) -> Vec<Emit> {
        let mut out = Vec::new();
        let n = self.rules.len();
        let minute = self.minute_of_day(at);
        let point = |t: &Track| {
            let (w, h) = (size.0.max(1) as f32, size.1.max(1) as f32);
            [(t.bbox[0] + t.bbox[2]) / 2.0 / w, t.bbox[3] / h]
        };
        let mut in_zone_counts: Vec<Vec<&Track>> = vec![Vec::new(); n];
        for t in live.iter().filter(|t| t.confirmed && t.seen_at(at)) {
            let p = point(t);
            // A track new to the engine has been where it is since it was first seen.
            let since = if self.tracks.contains_key(&t.id) { at } else { t.first_seen };
            let states = self.tracks.entry(t.id).or_insert_with(|| vec![TrackRule::default(); n]);
            for (ri, r) in self.rules.iter().enumerate() {
                if !r.classes.contains(&t.class) {
                    continue;
                }
                let scheduled = r.schedule.is_empty() || r.schedule.iter().any(|w| w.contains(minute));
                let scored = t.score >= r.min_score;
                let inside = r.zone.is_none_or(|z| point_in_polygon(p, &self.zones[z]));
                if r.kind == RuleKind::Count {
                    if inside && scored {
                        in_zone_counts[ri].push(t);
                    }
                    continue;
                }
                let st = &mut states[ri];
                if !inside {
                    st.inside_since = None;
                } else if st.inside_since.is_none() {
                    st.inside_since = Some(since);
                }
                if let Some(f) = &mut st.event {
                    let left = matches!(r.kind, RuleKind::Presence | RuleKind::Enter | RuleKind::Loiter) && !inside;
                    if left {
                        out.push(record(&self.camera, r, r.label.clone(), f, t, EventPhase::Ended, None, at));
                        st.event = None;
                        st.done = true;
                    } else if let Some(job) = improved(f, t, at) {
                        out.push(record(&self.camera, r, r.label.clone(), f, t, EventPhase::Updated, Some(job), at));
                    }
                    continue;
                }
                if st.done || !scheduled || !scored {
                    continue;
                }
                let fire = match r.kind {
                    RuleKind::Presence | RuleKind::Enter => inside,
                    RuleKind::Loiter => {
                        st.inside_since.is_some_and(|s| (at - s).num_milliseconds() as f64 >= r.seconds * 1000.0)
                    }
                    RuleKind::Cross => {
                        let l = &self.lines[r.line.expect("validated")];
                        if side(l, p) == 0.0 {
                            false
                        } else {
                            let from = st.off_line.replace(p);
                            let dir = from.and_then(|q| crossing(q, p, l));
                            dir.is_some_and(|d| r.direction == Direction::Any || r.direction == d)
                        }
                    }
                    RuleKind::Count => false,
                };
                if fire {
                    // Presence starts when the object appeared; the others when they fired.
                    let started_at = if r.kind == RuleKind::Presence && r.zone.is_none() { t.first_seen } else { at };
                    let f = Fired { id: new_event_id(), started_at, snap_score: t.best_score, snap_at: at };
                    let job = snapshot_of(t);
                    out.push(record(&self.camera, r, r.label.clone(), &f, t, EventPhase::Started, job, at));
                    st.event = Some(f);
                }
            }
        }
        // Count rules: one episode while more than `count` objects are inside.
        #[allow(clippy::needless_range_loop)] // indexes rules, counts and in_zone_counts together
        for ri in 0..n {
            let r = &self.rules[ri];
            if r.kind != RuleKind::Count {
                continue;
            }
            let inside = &in_zone_counts[ri];
            let over = inside.len() as u32 > r.count;
            let scheduled = r.schedule.is_empty() || r.schedule.iter().any(|w| w.contains(minute));
            match (&mut self.counts[ri], over) {
                (None, true) if scheduled => {
                    // The newest object tipped the count over.
                    let t = inside.iter().max_by_key(|t| (t.first_seen, t.id)).expect("over the count");
                    let f = Fired { id: new_event_id(), started_at: at, snap_score: t.best_score, snap_at: at };
                    let job = t.best_frame.clone().map(|frame| SnapshotJob {
                        frame,
                        boxes: inside.iter().map(|t| t.bbox).collect(),
                        crop: union(inside.iter().map(|t| t.bbox)),
                    });
                    // The count's snapshot shows every object inside, on the frame of
                    // the newest one's best detection (this one, when it is its best).
                    let job = job.filter(|_| t.best_at == at);
                    out.push(record(&self.camera, r, r.label.clone(), &f, t, EventPhase::Started, job, at));
                    self.counts[ri] = Some(CountEpisode { fired: f, track: (*t).clone(), peak: inside.len() as u32 });
                }
                (Some(ep), true) => {
                    ep.peak = ep.peak.max(inside.len() as u32);
                }
                (Some(_), false) => {
                    let ep = self.counts[ri].take().expect("matched Some");
                    let mut e =
                        record(&self.camera, r, r.label.clone(), &ep.fired, &ep.track, EventPhase::Ended, None, at);
                    e.record.frames = ep.peak;
                    out.push(e);
                }
                _ => {}
            }
        }
        for t in ended {
            if let Some(states) = self.tracks.remove(&t.id) {
                for (ri, st) in states.into_iter().enumerate() {
                    if let Some(f) = st.event {
                        let r = &self.rules[ri];
                        let mut e = record(&self.camera, r, r.label.clone(), &f, t, EventPhase::Ended, None, at);
                        e.record.ended_at = Some(t.last_seen);
                        out.push(e);
                    }
                }
            }
        }
        // Forget tracks the tracker dropped without ending (tentative ones).
        if self.tracks.len() > live.len() {
            let ids: HashSet<u64> = live.iter().map(|t| t.id).collect();
            self.tracks.retain(|id, _| ids.contains(id));
        }
        out
    }

    fn minute_of_day(&self, at: DateTime<Utc>) -> u16 {
        let t = match self.utc_offset_minutes {
            Some(m) => (at + chrono::Duration::minutes(m as i64)).time(),
            None => at.with_timezone(&chrono::Local).time(),
        };
        (t.hour() * 60 + t.minute()) as u16
    }
}

/// The snapshot file of an event, relative to the snapshot directory.
pub fn snapshot_name(id: &EventId) -> String {
    format!("{id}.jpg")
}

/// A snapshot job of the track's best frame, if it has one.
fn snapshot_of(t: &Track) -> Option<SnapshotJob> {
    t.best_frame.clone().map(|frame| SnapshotJob { frame, boxes: vec![t.best_bbox], crop: t.best_bbox })
}

/// A snapshot job when the track's best snapshot improved enough since the last one.
fn improved(f: &mut Fired, t: &Track, at: DateTime<Utc>) -> Option<SnapshotJob> {
    if t.best_score < f.snap_score + UPDATE_MIN_GAIN || (at - f.snap_at).num_seconds() < UPDATE_EVERY_SECS {
        return None;
    }
    let job = snapshot_of(t)?;
    f.snap_score = t.best_score;
    f.snap_at = at;
    Some(job)
}

#[allow(clippy::too_many_arguments)]
fn record(
    camera: &CameraId,
    r: &Rule,
    zone: Option<String>,
    f: &Fired,
    t: &Track,
    phase: EventPhase,
    snapshot: Option<SnapshotJob>,
    at: DateTime<Utc>,
) -> Emit {
    let ended_at = (phase == EventPhase::Ended).then_some(at);
    let record = EventRecord {
        id: f.id,
        camera: camera.clone(),
        track_id: t.id,
        class: t.class.clone(),
        score: t.best_score,
        bbox: t.best_bbox,
        started_at: f.started_at,
        last_seen_at: t.last_seen,
        ended_at,
        end_reason: ended_at.map(|_| EndReason::Ended),
        frames: t.hits,
        rule: r.name.clone(),
        alert: r.alert,
        zone,
        snapshot: snapshot.as_ref().map(|_| snapshot_name(&f.id)),
        phase,
        run_id: None,
    };
    Emit { record, snapshot }
}

fn union(boxes: impl Iterator<Item = BBox>) -> BBox {
    boxes.fold([f32::MAX, f32::MAX, f32::MIN, f32::MIN], |a, b| {
        [a[0].min(b[0]), a[1].min(b[1]), a[2].max(b[2]), a[3].max(b[3])]
    })
}

/// Even-odd test of `p` against a polygon.
pub fn point_in_polygon(p: [f32; 2], poly: &[[f32; 2]]) -> bool {
    let mut inside = false;
    let mut j = poly.len().wrapping_sub(1);
    for i in 0..poly.len() {
        let (a, b) = (poly[i], poly[j]);
        if (a[1] > p[1]) != (b[1] > p[1]) && p[0] < (b[0] - a[0]) * (p[1] - a[1]) / (b[1] - a[1]) + a[0] {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Which side of the line `p` is on: positive = right of `from → to` on the
/// picture (y grows downwards), negative = left.
fn side(l: &LineConfig, p: [f32; 2]) -> f32 {
    let (d, v) = ([l.to[0] - l.from[0], l.to[1] - l.from[1]], [p[0] - l.from[0], p[1] - l.from[1]]);
    // With y down the picture, a positive cross product is clockwise: to the right.
    d[0] * v[1] - d[1] * v[0]
}

/// The direction in which the move `a → b` crosses the segment, if it does.
fn crossing(a: [f32; 2], b: [f32; 2], l: &LineConfig) -> Option<Direction> {
    let (sa, sb) = (side(l, a), side(l, b));
    if sa == 0.0 || sa.signum() == sb.signum() || sb == 0.0 {
        return None;
    }
    // The move crosses the infinite line; check it meets the segment itself.
    let t = sa / (sa - sb);
    let x = [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t];
    let (d, v) = ([l.to[0] - l.from[0], l.to[1] - l.from[1]], [x[0] - l.from[0], x[1] - l.from[1]]);
    let u = (d[0] * v[0] + d[1] * v[1]) / (d[0] * d[0] + d[1] * d[1]);
    if !(0.0..=1.0).contains(&u) {
        return None;
    }
    Some(if sa < 0.0 { Direction::LeftToRight } else { Direction::RightToLeft })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::{Observation, Tracker, TrackerConfig};
    use chrono::Duration;

    const W: u32 = 1000;
    const H: u32 = 1000;

    fn zone(name: &str, x0: f32, y0: f32, x1: f32, y1: f32) -> ZoneConfig {
        ZoneConfig { name: name.into(), polygon: vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1]] }
    }

    fn rule(name: &str, kind: RuleKind) -> RuleConfig {
        RuleConfig::new(name, kind)
    }

    /// Runs `paths` (per object: feet position per frame, `None` = not detected)
    /// through a tracker and `engine` at 2 fps; returns every record.
    fn run(engine: &mut Engine, paths: &[Vec<Option<(f32, f32)>>], t0: DateTime<Utc>) -> Vec<EventRecord> {
        let mut tr = Tracker::new(TrackerConfig::default());
        let frames = paths.iter().map(Vec::len).max().unwrap_or(0);
        let mut out = Vec::new();
        let frame = Frame::from_rgb("cam".into(), t0, 1, 1, vec![0; 3]);
        for i in 0..frames + 8 {
            let at = t0 + Duration::milliseconds(500 * i as i64);
            let obs: Vec<Observation> = paths
                .iter()
                .filter_map(|p| p.get(i).copied().flatten())
                .map(|(x, y)| Observation { class: "person".into(), score: 0.8, bbox: [x - 20., y - 100., x + 20., y] })
                .collect();
            let ended = tr.update(at, &obs, Some(&frame));
            out.extend(engine.step(at, tr.tracks(), &ended, (W, H)).into_iter().map(|e| e.record));
        }
        out
    }

    /// A straight walk from `a` to `b` (pixels), `step` pixels per frame.
    fn walk(a: (f32, f32), b: (f32, f32), step: f32) -> Vec<Option<(f32, f32)>> {
        let n = (((b.0 - a.0).hypot(b.1 - a.1) / step).round() as usize).max(1) + 1;
        (0..n)
            .map(|i| {
                let t = i as f32 / (n - 1) as f32;
                Some((a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t))
            })
            .collect()
    }

    fn phases(recs: &[EventRecord], rule: &str) -> Vec<EventPhase> {
        recs.iter().filter(|r| r.rule == rule).map(|r| r.phase).collect()
    }

    fn classes() -> Vec<String> {
        vec!["person".into()]
    }

    #[test]
    fn no_rules_means_one_presence_event_per_object() {
        let mut e = Engine::new("cam".into(), &[], &[], &[], &classes(), 0.4);
        let recs =
            run(&mut e, &[walk((100., 500.), (900., 500.), 20.), walk((100., 900.), (900., 900.), 20.)], Utc::now());
        let started: Vec<_> = recs.iter().filter(|r| r.phase == EventPhase::Started).collect();
        assert_eq!(started.len(), 2);
        assert!(started.iter().all(|r| r.rule == "presence" && r.zone.is_none() && r.snapshot.is_some()));
        let ended = recs.iter().filter(|r| r.phase == EventPhase::Ended).count();
        assert_eq!(ended, 2);
        // Started at the object's first frame, not at confirmation.
        let t_first = started.iter().map(|r| r.started_at).min().unwrap();
        assert!(recs.iter().all(|r| r.started_at >= t_first));
    }

    #[test]
    fn enter_fires_once_per_track_even_when_it_comes_back() {
        let z = [zone("door", 0.4, 0.0, 0.6, 1.0)];
        let r = [RuleConfig { zone: Some("door".into()), ..rule("entry", RuleKind::Enter) }];
        let mut e = Engine::new("cam".into(), &z, &[], &r, &classes(), 0.4);
        // In, out, and in again: one event that ends when it leaves the first time.
        let mut path = walk((100., 500.), (550., 500.), 20.);
        path.extend(walk((550., 500.), (100., 500.), 20.));
        path.extend(walk((100., 500.), (550., 500.), 20.));
        let recs = run(&mut e, &[path, walk((100., 200.), (300., 200.), 20.)], Utc::now());
        assert_eq!(phases(&recs, "entry"), [EventPhase::Started, EventPhase::Ended], "{recs:#?}");
        assert_eq!(recs[0].zone.as_deref(), Some("door"));
    }

    #[test]
    fn loiter_fires_after_the_time_in_the_zone() {
        let z = [zone("atm", 0.3, 0.0, 0.5, 1.0)];
        let r = [RuleConfig { zone: Some("atm".into()), seconds: Some(5.0), ..rule("loiter", RuleKind::Loiter) }];
        let mut e = Engine::new("cam".into(), &z, &[], &r, &classes(), 0.4);
        let t0 = Utc::now();
        // Stands still in the zone for 10 s (20 frames); another walks through it
        // in 2.5 s.
        let stay: Vec<_> = (0..20).map(|_| Some((400., 600.))).collect();
        let pass = walk((100., 300.), (900., 300.), 40.);
        let recs = run(&mut e, &[stay, pass], t0);
        let started: Vec<_> = recs.iter().filter(|r| r.phase == EventPhase::Started).collect();
        assert_eq!(started.len(), 1, "{recs:#?}");
        assert_eq!(started[0].started_at, t0 + Duration::seconds(5));
        assert_eq!(phases(&recs, "loiter").last(), Some(&EventPhase::Ended));
    }

    #[test]
    fn line_crossing_in_each_direction() {
        // A vertical line at x = 0.5 drawn downwards: its left side is x > 0.5 on
        // the picture (facing down the picture, left is the viewer's right).
        let l = [LineConfig { name: "gate".into(), from: [0.5, 0.0], to: [0.5, 1.0] }];
        let rules = [
            RuleConfig { line: Some("gate".into()), direction: Direction::LeftToRight, ..rule("ltr", RuleKind::Cross) },
            RuleConfig { line: Some("gate".into()), direction: Direction::RightToLeft, ..rule("rtl", RuleKind::Cross) },
            RuleConfig { line: Some("gate".into()), ..rule("any", RuleKind::Cross) },
        ];
        let mut e = Engine::new("cam".into(), &[], &l, &rules, &classes(), 0.4);
        let to_left = walk((900., 300.), (100., 300.), 20.); // from x > 0.5 to x < 0.5
        let to_right = walk((100., 700.), (900., 700.), 20.);
        let stays = walk((100., 500.), (400., 500.), 20.); // never crosses
        let recs = run(&mut e, &[to_left, to_right, stays], Utc::now());
        let started = |rule: &str| recs.iter().filter(|r| r.rule == rule && r.phase == EventPhase::Started).count();
        assert_eq!((started("ltr"), started("rtl"), started("any")), (1, 1, 2), "{recs:#?}");
        let ltr = recs.iter().find(|r| r.rule == "ltr").unwrap();
        let rtl = recs.iter().find(|r| r.rule == "rtl").unwrap();
        assert_ne!(ltr.track_id, rtl.track_id);
        assert_eq!(ltr.zone.as_deref(), Some("gate"));
        // Past the segment's end: no crossing.
        let short = [LineConfig { name: "gate".into(), from: [0.5, 0.0], to: [0.5, 0.2] }];
        let mut e = Engine::new("cam".into(), &[], &short, &rules[2..], &classes(), 0.4);
        assert!(run(&mut e, &[walk((900., 300.), (100., 300.), 20.)], Utc::now()).is_empty());
    }

    #[test]
    fn count_fires_once_while_above_the_limit() {
        let z = [zone("platform", 0.0, 0.0, 1.0, 1.0)];
        let r = [RuleConfig { zone: Some("platform".into()), count: Some(2), ..rule("crowd", RuleKind::Count) }];
        let mut e = Engine::new("cam".into(), &z, &[], &r, &classes(), 0.4);
        // Three people for 10 frames, then one leaves the picture; a fourth never overlaps.
        let a: Vec<_> = (0..20).map(|_| Some((100., 300.))).collect();
        let b: Vec<_> = (0..20).map(|_| Some((400., 300.))).collect();
        let c: Vec<_> = (0..10).map(|_| Some((700., 300.))).collect();
        let recs = run(&mut e, &[a, b, c], Utc::now());
        assert_eq!(phases(&recs, "crowd"), [EventPhase::Started, EventPhase::Ended], "{recs:#?}");
        let end = recs.iter().find(|r| r.phase == EventPhase::Ended).unwrap();
        assert_eq!(end.frames, 3, "the peak count");
    }

    #[test]
    fn min_score_classes_and_schedule_filter() {
        let t0: DateTime<Utc> = "2026-11-23T12:00:00Z".parse().unwrap();
        let rules = [
            RuleConfig { min_score: Some(0.9), ..rule("sure", RuleKind::Presence) },
            RuleConfig { classes: Some(vec!["car".into()]), ..rule("cars", RuleKind::Presence) },
            RuleConfig { schedule: vec!["22:00-06:00".into()], ..rule("night", RuleKind::Presence) },
            RuleConfig { schedule: vec!["11:30-12:30".into()], ..rule("noon", RuleKind::Presence) },
        ];
        let mut e = Engine::new("cam".into(), &[], &[], &rules, &classes(), 0.4).with_utc_offset(0);
        let recs = run(&mut e, &[walk((100., 500.), (900., 500.), 20.)], t0);
        let fired: HashSet<_> = recs.iter().map(|r| r.rule.as_str()).collect();
        assert_eq!(fired, HashSet::from(["noon"]), "{recs:#?}");
    }

    #[test]
    fn geometry() {
        let sq = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        assert!(point_in_polygon([0.5, 0.5], &sq));
        assert!(!point_in_polygon([1.5, 0.5], &sq));
        let l = LineConfig { name: "l".into(), from: [0.0, 0.5], to: [1.0, 0.5] };
        // Line drawn left to right on the picture: its right side is below it.
        assert!(side(&l, [0.5, 0.9]) > 0.0);
        assert_eq!(crossing([0.5, 0.1], [0.5, 0.9], &l), Some(Direction::LeftToRight));
        assert_eq!(crossing([0.5, 0.9], [0.5, 0.1], &l), Some(Direction::RightToLeft));
        assert_eq!(crossing([0.5, 0.1], [0.5, 0.4], &l), None);
    }
}
