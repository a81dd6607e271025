//! Output decoders: from a model's output tensors to [`Detection`]s in input pixels.
//!
//! Each takes one image of the batch as an ndarray view shaped as the model's
//! output (the batch axis removed); `labels` is the number of classes. A view whose
//! shape does not fit the decoder gives no detections (the manifest check at load,
//! `runtime::check_shapes`, refuses such models first).

use crate::{iou, Detection};
use ndarray::{s, Array1, ArrayView1, ArrayView2, Zip};

/// `centernet`: rows `[N, 6]` of `x1, y1, x2, y2, score, class` (boxes in input
/// pixels, NMS done by the graph), keeping rows scoring at least `min_score`. Rows
/// are sorted by score, so decoding stops at the first one below it.
pub fn centernet(rows: ArrayView2<f32>, labels: usize, min_score: f32) -> Vec<Detection> {
    let mut out = Vec::new();
    if rows.ncols() != 6 {
        return out;
    }
    for r in rows.rows() {
        let score = r[4];
        if !score.is_finite() || score < min_score {
            break;
        }
        let class = r[5];
        if class < 0.0 || class as usize >= labels {
            continue;
        }
        out.push(Detection { class: class as usize, score, bbox: [r[0], r[1], r[2], r[3]] });
    }
    out
}

/// Most candidates kept for NMS: a model with a very low threshold would otherwise
/// make NMS quadratic in thousands of anchors.
const MAX_CANDIDATES: usize = 1000;

/// `yolo`: one image's `[4 + C, A]` values, per anchor `cx, cy, w, h` then C class
/// scores (an `[A, 4 + C]` output is passed transposed, `.t()`). Takes each
/// anchor's best class, keeps those scoring at least `min_score`, then suppresses
/// overlapping boxes of the same class (IoU above `nms_iou`).
pub fn yolo(data: ArrayView2<f32>, labels: usize, min_score: f32, nms_iou: f32) -> Vec<Detection> {
    if data.nrows() != 4 + labels {
        return Vec::new();
    }
    // Best class per anchor, a class row at a time: each row is contiguous in the
    // usual `[4 + C, A]` layout, so this runs along memory.
    let anchors = data.ncols();
    let (mut best, mut class) = (Array1::from_elem(anchors, f32::NEG_INFINITY), Array1::<u32>::zeros(anchors));
    for (c, row) in data.slice(s![4.., ..]).rows().into_iter().enumerate() {
        Zip::from(&mut best).and(&mut class).and(&row).for_each(|b, k, &v| {
            if v > *b {
                *b = v;
                *k = c as u32;
            }
        });
    }
    let mut cand = Vec::new();
    for (a, (&score, &class)) in best.iter().zip(&class).enumerate() {
        // NaN scores fail this too.
        if score.is_nan() || score < min_score {
            continue;
        }
        let (cx, cy, w, h) = (data[[0, a]], data[[1, a]], data[[2, a]], data[[3, a]]);
        cand.push(Detection {
            class: class as usize,
            score,
            bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
        });
    }
    nms(cand, nms_iou)
}

/// `yolox`: one image's `[A, 5 + C]` raw head outputs for an input of `width ×
/// height` and grids at `strides` (anchors level by level, each row by row):
/// `cx = (x + gx) · s`, `cy = (y + gy) · s`, `w = e^lw · s`, `h = e^lh · s`, score =
/// objectness × best class score. Keeps those scoring at least `min_score`, then
/// class-wise NMS at `nms_iou`. Boxes in input pixels. Rows beyond the last anchor
/// are ignored; missing rows (a wrong manifest) end decoding early.
pub fn yolox(
    data: ArrayView2<f32>,
    labels: usize,
    width: u32,
    height: u32,
    strides: &[u32],
    min_score: f32,
    nms_iou: f32,
) -> Vec<Detection> {
    let mut cand = Vec::new();
    if data.ncols() != 5 + labels {
        return cand;
    }
    let mut rows = data.rows().into_iter();
    for &s in strides {
        let (gw, gh) = ((width / s) as usize, (height / s) as usize);
        for gy in 0..gh {
            for gx in 0..gw {
                let Some(r) = rows.next() else { return nms(cand, nms_iou) };
                let obj = r[4];
                // Cheap exit: no class can reach the threshold (NaN fails too).
                if obj.is_nan() || obj < min_score {
                    continue;
                }
                let (mut best, mut class) = (f32::NEG_INFINITY, 0);
                for (c, &v) in r.slice(s![5..]).iter().enumerate() {
                    if v > best {
                        best = v;
                        class = c;
                    }
                }
                let score = obj * best;
                if score.is_nan() || score < min_score {
                    continue;
                }
                let s = s as f32;
                let (cx, cy) = ((r[0] + gx as f32) * s, (r[1] + gy as f32) * s);
                let (w, h) = (r[2].exp() * s, r[3].exp() * s);
                cand.push(Detection { class, score, bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0] });
            }
        }
    }
    nms(cand, nms_iou)
}

/// `ssd`: one image's `boxes [N, 4]`, `scores [N]`, `classes [N]`; boxes in `order`
/// (and 0..1 fractions of `size` when `normalized`); `class_offset` is subtracted
/// from each class value. The graph has done NMS.
#[allow(clippy::too_many_arguments)]
pub fn ssd(
    boxes: ArrayView2<f32>,
    scores: ArrayView1<f32>,
    classes: ArrayView1<f32>,
    labels: usize,
    yxyx: bool,
    normalized: Option<(f32, f32)>,
    class_offset: i32,
    min_score: f32,
) -> Vec<Detection> {
    let mut out = Vec::new();
    if boxes.ncols() != 4 {
        return out;
    }
    for (i, (b, &score)) in boxes.rows().into_iter().zip(&scores).enumerate() {
        if score.is_nan() || score < min_score {
            continue;
        }
        let Some(&c) = classes.get(i) else { break };
        let class = c.round() as i64 - class_offset as i64;
        if class < 0 || class as usize >= labels {
            continue;
        }
        let mut r = if yxyx { [b[1], b[0], b[3], b[2]] } else { [b[0], b[1], b[2], b[3]] };
        if let Some((w, h)) = normalized {
            r = [r[0] * w, r[1] * h, r[2] * w, r[3] * h];
        }
        out.push(Detection { class: class as usize, score, bbox: r });
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

/// Class-wise non-maximum suppression: best first, a box is dropped when it
/// overlaps a kept box of its class by more than `max_iou`.
pub fn nms(mut dets: Vec<Detection>, max_iou: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    dets.truncate(MAX_CANDIDATES);
    let mut kept: Vec<Detection> = Vec::new();
    for d in dets {
        if kept.iter().all(|k| k.class != d.class || iou(&k.bbox, &d.bbox) <= max_iou) {
            kept.push(d);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yolox_decodes_grid_cells_and_suppresses_duplicates() {
        // A 64x32 input with strides 16 and 32: 4x2 + 2x1 = 10 anchors, 2 classes.
        let labels = 2;
        let mut data = vec![0.0f32; 10 * (5 + labels)];
        let mut set = |a: usize, v: [f32; 7]| data[a * 7..a * 7 + 7].copy_from_slice(&v);
        // Stride 16, cell (1, 1): centre (1.5, 1.5) cells = (24, 24), 16x32 px, class 1.
        set(5, [0.5, 0.5, 0.0, 2f32.ln(), 0.9, 0.1, 0.8]);
        // Stride 32, cell (0, 0): almost the same box, weaker: suppressed.
        set(8, [0.75, 0.75, (0.5f32).ln(), 0.0, 0.8, 0.0, 0.8]);
        // Stride 32, cell (1, 0): class 0, below the threshold once multiplied.
        set(9, [0.5, 0.5, 0.0, 0.0, 0.5, 0.5, 0.1]);
        let view = |n: usize| ArrayView2::from_shape((n, 5 + labels), &data[..n * (5 + labels)]).unwrap();
        let d = yolox(view(10), labels, 64, 32, &[16, 32], 0.3, 0.45);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].class, 1);
        assert!((d[0].score - 0.72).abs() < 1e-6);
        assert_eq!(d[0].bbox, [16.0, 8.0, 32.0, 40.0]);
        // A short output (a wrong manifest) does not panic.
        assert!(yolox(view(2), labels, 64, 32, &[16, 32], 0.3, 0.45).is_empty());
        // So does a row of the wrong width.
        let wide = ArrayView2::from_shape((5, 14), &data[..70]).unwrap();
        assert!(yolox(wide, labels, 64, 32, &[16, 32], 0.3, 0.45).is_empty());
    }

    #[test]
    fn centernet_stops_at_threshold_and_skips_bad_classes() {
        let rows = [
            10., 20., 30., 40., 0.9, 0., //
            1., 2., 3., 4., 0.8, 99., // class out of range
            5., 6., 7., 8., 0.5, 2., //
            0., 0., 1., 1., 0.2, 0., // below threshold: decoding ends
            0., 0., 1., 1., 0.9, 0.,
        ];
        let d = centernet(ArrayView2::from_shape((5, 6), &rows).unwrap(), 80, 0.3);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].bbox, [10., 20., 30., 40.]);
        assert_eq!(d[1].class, 2);
    }

    /// A `[4 + C, A]` tensor from per-anchor `(cx, cy, w, h, scores)`.
    fn yolo_tensor(anchors: &[([f32; 4], [f32; 3])]) -> Vec<f32> {
        let a = anchors.len();
        let mut t = vec![0.0; 7 * a];
        for (i, (b, s)) in anchors.iter().enumerate() {
            for k in 0..4 {
                t[k * a + i] = b[k];
            }
            for c in 0..3 {
                t[(4 + c) * a + i] = s[c];
            }
        }
        t
    }

    #[test]
    fn yolo_nms_removes_the_duplicate_and_keeps_the_separate_object() {
        let t = yolo_tensor(&[
            ([100., 100., 40., 80.], [0.9, 0.1, 0.0]),  // person
            ([102., 101., 40., 80.], [0.8, 0.0, 0.0]),  // the same person again: suppressed
            ([300., 120., 40., 80.], [0.7, 0.0, 0.0]),  // another person
            ([101., 100., 40., 80.], [0.0, 0.0, 0.75]), // same place, other class: kept
            ([500., 500., 10., 10.], [0.1, 0.2, 0.1]),  // below the threshold
        ]);
        let t = ndarray::Array2::from_shape_vec((7, 5), t).unwrap();
        let d = yolo(t.view(), 3, 0.25, 0.45);
        assert_eq!(d.len(), 3, "{d:?}");
        assert_eq!((d[0].class, d[0].score, d[0].bbox), (0, 0.9, [80., 60., 120., 140.]));
        assert_eq!((d[1].class, d[1].score), (2, 0.75));
        assert_eq!((d[2].class, d[2].score, d[2].bbox), (0, 0.7, [280., 80., 320., 160.]));
        // The same anchors laid out [A, 4 + C] in memory decode the same, transposed.
        let tt = t.t().as_standard_layout().into_owned();
        assert_eq!(tt.shape(), [5, 7]);
        assert_eq!(yolo(tt.t(), 3, 0.25, 0.45), d);
        // A tensor whose rows are not 4 + C gives nothing.
        assert!(yolo(tt.view(), 3, 0.25, 0.45).is_empty());
    }

    #[test]
    fn ssd_reorders_scales_and_offsets() {
        // TF style: y1, x1, y2, x2 as fractions; class 1 = first label.
        let boxes = [0.1, 0.2, 0.5, 0.4, 0.0, 0.0, 0.1, 0.1, 0.5, 0.5, 0.9, 0.9];
        let scores = [0.8, 0.1, 0.6];
        let classes = [1.0, 1.0, 3.0];
        let boxes = ArrayView2::from_shape((3, 4), &boxes).unwrap();
        let d = ssd(boxes, (&scores).into(), (&classes).into(), 80, true, Some((300., 300.)), 1, 0.3);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].class, 0);
        let want = [60., 30., 120., 150.];
        assert!(d[0].bbox.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-3), "{:?}", d[0].bbox);
        assert_eq!(d[1].class, 2);
        // Class 0 with offset 1 is the background: dropped.
        let one = boxes.slice(s![..1, ..]);
        assert!(ssd(one, (&[0.9]).into(), (&[0.0]).into(), 80, true, None, 1, 0.3).is_empty());
    }
}
