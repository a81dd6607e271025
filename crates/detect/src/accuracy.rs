//! Detection accuracy against labelled ground truth: precision and recall at a score
//! threshold, and AP@0.5 (COCO's 101-point interpolated average precision at IoU
//! 0.5), per class and overall. Used by `varta eval --labels`.
//!
//! Matching follows the COCO evaluation (pycocotools `COCOeval.evaluateImg`), one
//! image and one class at a time: detections in falling score order each take the
//! unmatched labelled box of highest IoU ≥ 0.5; a detection that matches none but
//! overlaps an *ignore* box (a person too small or too occluded to demand, a vehicle
//! whose class is ambiguous) by IoU ≥ 0.5 counts neither way. Ignore boxes are
//! never missed.

use crate::iou;
use std::collections::BTreeMap;

/// IoU at which a detection matches a labelled box (the "0.5" of AP@0.5).
pub const MATCH_IOU: f32 = 0.5;

/// One labelled box of an image.
#[derive(Clone, Debug, PartialEq)]
pub struct Truth {
    /// Class name (the model's label names, e.g. `person`, `car`).
    pub class: String,
    /// Left, top, right, bottom in the image's pixels.
    pub bbox: [f32; 4],
    /// True for a box that need not be found and whose detections are not errors.
    pub ignore: bool,
}

/// One detection of an image.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// Class name.
    pub class: String,
    /// Confidence, 0..1.
    pub score: f32,
    /// Left, top, right, bottom in the image's pixels.
    pub bbox: [f32; 4],
}

/// The figures of one class (or of all classes together, for `overall`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ClassScore {
    /// Labelled boxes that must be found (not ignore).
    pub labelled: usize,
    /// Detections at or above the threshold that match a labelled box.
    pub true_positives: usize,
    /// Detections at or above the threshold that match nothing (ignore boxes aside).
    pub false_positives: usize,
    /// true positives / (true positives + false positives); 0 when nothing was found.
    pub precision: f64,
    /// true positives / labelled; 0 when nothing is labelled.
    pub recall: f64,
    /// AP@0.5 over every score (101-point interpolation); `None` without labels.
    pub ap50: Option<f64>,
}

/// The accuracy of a detector on a labelled set.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Report {
    /// Score threshold of the precision and recall figures.
    pub min_score: f32,
    /// Images evaluated.
    pub images: usize,
    /// Per class, for every class asked for (also those without labels).
    pub classes: BTreeMap<String, ClassScore>,
    /// All classes together: counts summed, `ap50` the mean over classes that have
    /// labels (COCO's mAP@0.5 over those classes).
    pub overall: ClassScore,
}

/// Collects images' labels and detections, then scores them.
#[derive(Debug)]
pub struct Evaluator {
    classes: Vec<String>,
    min_score: f32,
    images: usize,
    /// Per class: (score, matched?) for every detection not ignored, and the count of
    /// labelled boxes.
    per_class: BTreeMap<String, (Vec<(f32, bool)>, usize)>,
}

impl Evaluator {
    /// An evaluator of `classes` (others are left out on both sides), with precision
    /// and recall taken at `min_score`.
    pub fn new(classes: &[String], min_score: f32) -> Self {
        let per_class = classes.iter().map(|c| (c.clone(), (Vec::new(), 0))).collect();
        Evaluator { classes: classes.to_vec(), min_score, images: 0, per_class }
    }

    /// Adds one image: its labelled boxes and every detection (at any score; AP needs
    /// the low ones too).
    pub fn add_image(&mut self, truth: &[Truth], found: &[Found]) {
        self.images += 1;
        for class in &self.classes {
            let gt: Vec<&Truth> = truth.iter().filter(|t| &t.class == class).collect();
            let mut dets: Vec<&Found> = found.iter().filter(|f| &f.class == class).collect();
            dets.sort_by(|a, b| b.score.total_cmp(&a.score));
            let entry = self.per_class.get_mut(class).expect("every class has an entry");
            entry.1 += gt.iter().filter(|t| !t.ignore).count();
            let mut taken = vec![false; gt.len()];
            for d in dets {
                // The best unmatched labelled box; failing that, any ignore box.
                let best = gt
                    .iter()
                    .enumerate()
                    .filter(|(i, t)| !t.ignore && !taken[*i])
                    .map(|(i, t)| (i, iou(&d.bbox, &t.bbox)))
                    .filter(|(_, v)| *v >= MATCH_IOU)
                    .max_by(|a, b| a.1.total_cmp(&b.1));
                if let Some((i, _)) = best {
                    taken[i] = true;
                    entry.0.push((d.score, true));
                } else if gt.iter().any(|t| t.ignore && iou(&d.bbox, &t.bbox) >= MATCH_IOU) {
                    continue;
                } else {
                    entry.0.push((d.score, false));
                }
            }
        }
    }

    /// The figures so far.
    pub fn report(&self) -> Report {
        let mut classes = BTreeMap::new();
        let mut overall = ClassScore::default();
        let mut aps = Vec::new();
        for (class, (dets, labelled)) in &self.per_class {
            let s = score(dets, *labelled, self.min_score);
            overall.labelled += s.labelled;
            overall.true_positives += s.true_positives;
            overall.false_positives += s.false_positives;
            aps.extend(s.ap50);
            classes.insert(class.clone(), s);
        }
        overall.precision = ratio(overall.true_positives, overall.true_positives + overall.false_positives);
        overall.recall = ratio(overall.true_positives, overall.labelled);
        overall.ap50 = (!aps.is_empty()).then(|| aps.iter().sum::<f64>() / aps.len() as f64);
        Report { min_score: self.min_score, images: self.images, classes, overall }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Precision and recall at `min_score`, and the 101-point AP, of one class.
fn score(dets: &[(f32, bool)], labelled: usize, min_score: f32) -> ClassScore {
    let mut d = dets.to_vec();
    d.sort_by(|a, b| b.0.total_cmp(&a.0));
    let tp = d.iter().filter(|(s, m)| *s >= min_score && *m).count();
    let fp = d.iter().filter(|(s, m)| *s >= min_score && !*m).count();
    let ap50 = (labelled > 0).then(|| {
        // Precision at each rank, made monotone from the right, sampled at recall
        // 0, 0.01, …, 1 (pycocotools' `accumulate`).
        let (mut ctp, mut cfp) = (0usize, 0usize);
        let mut pr: Vec<(f64, f64)> = Vec::with_capacity(d.len());
        for (_, m) in &d {
            if *m {
                ctp += 1
            } else {
                cfp += 1
            }
            pr.push((ctp as f64 / labelled as f64, ctp as f64 / (ctp + cfp) as f64));
        }
        for i in (0..pr.len().saturating_sub(1)).rev() {
            pr[i].1 = pr[i].1.max(pr[i + 1].1);
        }
        let mut sum = 0.0;
        for k in 0..=100 {
            let r = k as f64 / 100.0;
            // The first rank whose recall reaches r.
            if let Some(&(_, p)) = pr.iter().find(|(rec, _)| *rec >= r - 1e-12) {
                sum += p;
            }
        }
        sum / 101.0
    });
    ClassScore {
        labelled,
        true_positives: tp,
        false_positives: fp,
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, labelled),
        ap50,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(class: &str, b: [f32; 4], ignore: bool) -> Truth {
        Truth { class: class.into(), bbox: b, ignore }
    }
    fn f(class: &str, score: f32, b: [f32; 4]) -> Found {
        Found { class: class.into(), score, bbox: b }
    }
    fn classes() -> Vec<String> {
        vec!["person".into(), "car".into()]
    }

    #[test]
    fn perfect_detections_score_one() {
        let mut e = Evaluator::new(&classes(), 0.4);
        e.add_image(
            &[t("person", [0., 0., 10., 20.], false), t("car", [50., 50., 90., 80.], false)],
            &[f("person", 0.9, [0., 0., 10., 20.]), f("car", 0.8, [51., 50., 90., 80.])],
        );
        let r = e.report();
        assert_eq!(r.overall.recall, 1.0);
        assert_eq!(r.overall.precision, 1.0);
        assert!((r.classes["person"].ap50.unwrap() - 1.0).abs() < 1e-9);
        assert!((r.overall.ap50.unwrap() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn misses_false_alarms_and_duplicates_count() {
        let mut e = Evaluator::new(&classes(), 0.4);
        e.add_image(
            &[t("person", [0., 0., 10., 20.], false), t("person", [100., 0., 110., 20.], false)],
            &[
                f("person", 0.9, [0., 0., 10., 20.]),
                // A duplicate of the first: a false positive.
                f("person", 0.8, [0., 1., 10., 21.]),
                // Below the threshold: counts for AP only.
                f("person", 0.3, [100., 0., 110., 20.]),
                // Wrong class at a labelled box: a false positive of `car`.
                f("car", 0.7, [0., 0., 10., 20.]),
            ],
        );
        let r = e.report();
        let p = &r.classes["person"];
        assert_eq!((p.labelled, p.true_positives, p.false_positives), (2, 1, 1));
        assert_eq!(p.recall, 0.5);
        // Ranks: TP (r .5, p 1), FP (r .5, p .5), TP (r 1, p .67) → 51 × 1 + 50 × 2/3.
        let want = (51.0 + 50.0 * 2.0 / 3.0) / 101.0;
        assert!((p.ap50.unwrap() - want).abs() < 1e-9, "{:?}", p.ap50);
        let c = &r.classes["car"];
        assert_eq!((c.labelled, c.false_positives, c.ap50), (0, 1, None));
        // The overall AP is the mean over classes with labels: person alone.
        assert_eq!(r.overall.ap50, p.ap50);
    }

    #[test]
    fn ignore_boxes_neither_reward_nor_punish() {
        let mut e = Evaluator::new(&classes(), 0.4);
        e.add_image(
            &[t("person", [0., 0., 10., 20.], true), t("person", [50., 0., 60., 20.], false)],
            &[f("person", 0.9, [0., 0., 10., 20.]), f("person", 0.8, [50., 0., 60., 20.])],
        );
        let r = e.report();
        let p = &r.classes["person"];
        assert_eq!((p.labelled, p.true_positives, p.false_positives), (1, 1, 0));
        // Missing an ignore box costs nothing.
        let mut e = Evaluator::new(&classes(), 0.4);
        e.add_image(&[t("person", [0., 0., 10., 20.], true)], &[]);
        assert_eq!(e.report().classes["person"].ap50, None);
    }

    #[test]
    fn a_detection_that_matches_nothing_well_enough_is_false() {
        let mut e = Evaluator::new(&classes(), 0.4);
        // IoU 1/3: below 0.5.
        e.add_image(&[t("car", [0., 0., 20., 10.], false)], &[f("car", 0.9, [10., 0., 30., 10.])]);
        let c = &e.report().classes["car"];
        assert_eq!((c.true_positives, c.false_positives, c.ap50), (0, 1, Some(0.0)));
    }
}
