//! Zones, lines and rules of a camera (`[[cameras.zones]]`, `[[cameras.lines]]`,
//! `[[cameras.rules]]`): what turns tracked objects into events.
//!
//! Coordinates are normalised to the picture (0,0 top left, 1,1 bottom right), so
//! they survive a change of stream resolution. An object's position is the bottom
//! centre of its box (where it stands on the ground). The engine that applies them is
//! `varta_detect::rules`.

use crate::problems::{KeyPath, Problems};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// A named polygon.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Name, unique per camera; events carry it.
    pub name: String,
    /// At least three `[x, y]` points, normalised.
    pub polygon: Vec<[f32; 2]>,
}

/// A named line segment, for crossing rules.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    /// Name, unique per camera among zones and lines.
    pub name: String,
    /// Start point, normalised.
    pub from: [f32; 2],
    /// End point, normalised. "Left" and "right" are as seen walking from `from` to `to`
    /// on the picture.
    pub to: [f32; 2],
}

/// What a rule watches for.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Any object of the classes anywhere in the picture (or in `zone` if set).
    Presence,
    /// The object enters `zone` (being first seen inside counts).
    Enter,
    /// The object stays in `zone` longer than `seconds` (loitering).
    Loiter,
    /// The object crosses `line` in `direction`.
    Cross,
    /// More than `count` objects are in `zone` (or the picture) at once.
    Count,
}

/// Which way a line crossing counts.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Either way.
    #[default]
    Any,
    /// From the line's left side to its right side.
    LeftToRight,
    /// From the line's right side to its left side.
    RightToLeft,
}

/// One rule.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Name, unique per camera; events carry it.
    pub name: String,
    /// What it watches for.
    pub kind: RuleKind,
    /// Zone name (`enter`, `loiter` need one; `presence`, `count` may have one).
    #[serde(default)]
    pub zone: Option<String>,
    /// Line name (`cross`).
    #[serde(default)]
    pub line: Option<String>,
    /// Crossing direction (`cross`).
    #[serde(default)]
    pub direction: Direction,
    /// Seconds in the zone before it fires (`loiter`).
    #[serde(default)]
    pub seconds: Option<f64>,
    /// Fires when more than this many objects are in the zone (`count`).
    #[serde(default)]
    pub count: Option<u32>,
    /// Classes it applies to; default: the camera's `classes`.
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// Minimum detection score; default: the camera's `min_score`.
    #[serde(default)]
    pub min_score: Option<f32>,
    /// Local time-of-day windows `"HH:MM-HH:MM"` when it applies (a window may
    /// wrap past midnight); empty = always.
    #[serde(default)]
    pub schedule: Vec<String>,
    /// Whether its events are alerts for operators (live stream, MQTT, webhooks).
    /// Default true for a configured rule; the implicit `presence` rule of a camera
    /// without rules never alerts.
    #[serde(default = "yes")]
    pub alert: bool,
}

fn yes() -> bool {
    true
}

impl RuleConfig {
    /// A rule of `kind` with every optional key left out.
    pub fn new(name: &str, kind: RuleKind) -> Self {
        RuleConfig {
            name: name.into(),
            kind,
            zone: None,
            line: None,
            direction: Direction::Any,
            seconds: None,
            count: None,
            classes: None,
            min_score: None,
            schedule: Vec::new(),
            alert: true,
        }
    }
}

/// A time-of-day window in minutes since local midnight, `start..end`; wraps when
/// `end <= start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First minute inside.
    pub start: u16,
    /// First minute after.
    pub end: u16,
}

impl Window {
    /// Parses `"HH:MM-HH:MM"`.
    pub fn parse(s: &str) -> Result<Window, String> {
        let bad = || format!("`{s}` is not a window \"HH:MM-HH:MM\"");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let minutes = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h <= 24 && m < 60 && h * 60 + m <= 1440).then_some(h * 60 + m)
        };
        let (start, end) = (minutes(a).ok_or_else(bad)?, minutes(b).ok_or_else(bad)?);
        if start == end {
            return Err(format!("`{s}` is empty"));
        }
        Ok(Window { start, end })
    }

    /// Whether `minute` (since midnight) is inside.
    pub fn contains(&self, minute: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

/// Checks a camera's zones, lines and rules; `classes` are the camera's own.
pub fn validate(p: &mut Problems<'_>, at: &KeyPath, zones: &[ZoneConfig], lines: &[LineConfig], rules: &[RuleConfig]) {
    let in_unit = |v: &[f32; 2]| v.iter().all(|c| (0.0..=1.0).contains(c));
    let mut names = HashSet::new();
    for (i, z) in zones.iter().enumerate() {
        let k = at.key("zones").index(i);
        if !names.insert(z.name.as_str()) || z.name.is_empty() {
            p.add(&k.key("name"), format!("zone name `{}` is empty or used twice", z.name));
        }
        if z.polygon.len() < 3 {
            p.add(&k.key("polygon"), "needs at least 3 points");
        }
        if !z.polygon.iter().all(in_unit) {
            p.add(&k.key("polygon"), "coordinates are normalised: each must be between 0 and 1");
        }
    }
    let zone_names: HashSet<&str> = zones.iter().map(|z| z.name.as_str()).collect();
    for (i, l) in lines.iter().enumerate() {
        let k = at.key("lines").index(i);
        if !names.insert(l.name.as_str()) || l.name.is_empty() {
            p.add(&k.key("name"), format!("line name `{}` is empty or used by another zone or line", l.name));
        }
        if !in_unit(&l.from) || !in_unit(&l.to) {
            p.add(&k.key("from"), "coordinates are normalised: each must be between 0 and 1");
        }
        if l.from == l.to {
            p.add(&k.key("to"), "must differ from `from`");
        }
    }
    let line_names: HashSet<&str> = lines.iter().map(|l| l.name.as_str()).collect();
    let mut rule_names = HashSet::new();
    for (i, r) in rules.iter().enumerate() {
        let k = at.key("rules").index(i);
        if !rule_names.insert(r.name.as_str()) || r.name.is_empty() {
            p.add(&k.key("name"), format!("rule name `{}` is empty or used twice", r.name));
        }
        let needs_zone = matches!(r.kind, RuleKind::Enter | RuleKind::Loiter);
        match &r.zone {
            Some(z) if !zone_names.contains(z.as_str()) => {
                p.add(&k.key("zone"), format!("no zone `{z}` on this camera"));
            }
            None if needs_zone => p.add(&k.key("zone"), format!("a `{:?}` rule needs a zone", r.kind).to_lowercase()),
            _ => {}
        }
        if r.kind == RuleKind::Cross {
            match &r.line {
                Some(l) if !line_names.contains(l.as_str()) => {
                    p.add(&k.key("line"), format!("no line `{l}` on this camera"))
                }
                None => p.add(&k.key("line"), "a `cross` rule needs a line"),
                _ => {}
            }
        } else if r.line.is_some() {
            p.add(&k.key("line"), "only `cross` rules take a line");
        }
        match (r.kind, r.seconds) {
            (RuleKind::Loiter, None) => p.add(&k.key("seconds"), "a `loiter` rule needs `seconds`"),
            (RuleKind::Loiter, Some(s)) if !(s > 0.0 && s <= 86400.0) => {
                p.add(&k.key("seconds"), "must be greater than 0 and at most 86400")
            }
            (RuleKind::Loiter, _) | (_, None) => {}
            (_, Some(_)) => p.add(&k.key("seconds"), "only `loiter` rules take `seconds`"),
        }
        match (r.kind, r.count) {
            (RuleKind::Count, None) => p.add(&k.key("count"), "a `count` rule needs `count`"),
            (RuleKind::Count, _) | (_, None) => {}
            (_, Some(_)) => p.add(&k.key("count"), "only `count` rules take `count`"),
        }
        if r.min_score.is_some_and(|s| !(0.0..=1.0).contains(&s)) {
            p.add(&k.key("min_score"), "must be between 0 and 1");
        }
        if r.classes.as_ref().is_some_and(Vec::is_empty) {
            p.add(&k.key("classes"), "must name at least one class (or be left out)");
        }
        for (j, w) in r.schedule.iter().enumerate() {
            if let Err(msg) = Window::parse(w) {
                p.add(&k.key("schedule").index(j), msg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        let w = Window::parse("08:00-18:30").unwrap();
        assert!(w.contains(8 * 60) && w.contains(18 * 60 + 29) && !w.contains(18 * 60 + 30));
        let night = Window::parse("22:00-06:00").unwrap();
        assert!(night.contains(23 * 60) && night.contains(0) && night.contains(5 * 60 + 59));
        assert!(!night.contains(12 * 60));
        assert!(Window::parse("25:00-01:00").is_err());
        assert!(Window::parse("08:00").is_err());
        assert!(Window::parse("08:00-08:00").is_err());
        assert_eq!(Window::parse("00:00-24:00").unwrap(), Window { start: 0, end: 1440 });
    }
}
