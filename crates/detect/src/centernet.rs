//! Decoding of the CenterNet detector's output.

use crate::Detection;

/// Decodes `[1, N, 6]` rows of `x1, y1, x2, y2, score, class` (boxes in input
/// pixels, NMS done by the graph), keeping rows scoring at least `min_score`.
/// Rows are sorted by score, so decoding stops at the first one below it.
pub fn decode(rows: &[f32], num_classes: usize, min_score: f32) -> Vec<Detection> {
    let mut out = Vec::new();
    for r in rows.chunks_exact(6) {
        let score = r[4];
        if !score.is_finite() || score < min_score {
            break;
        }
        let class = r[5];
        if class < 0.0 || class as usize >= num_classes {
            continue;
        }
        out.push(Detection { class: class as usize, score, bbox: [r[0], r[1], r[2], r[3]] });
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn stops_at_threshold_and_skips_bad_classes() {
        let rows = [
            10., 20., 30., 40., 0.9, 0., //
            1., 2., 3., 4., 0.8, 99., // class out of range
            5., 6., 7., 8., 0.5, 2., //
            0., 0., 1., 1., 0.2, 0., // below threshold: decoding ends
            0., 0., 1., 1., 0.9, 0.,
        ];
        let d = super::decode(&rows, 80, 0.3);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].bbox, [10., 20., 30., 40.]);
        assert_eq!(d[1].class, 2);
    }
}
