//! Detection: turns frames into events.
//!
//! [`manifest`] describes models, [`preprocess`] fits a frame to a model's input,
//! [`runtime`] runs a model on ONNX Runtime (loaded at run time from
//! `libonnxruntime.so`; CPU, CUDA or TensorRT), [`decode`] reads its output,
//! [`tracker`] follows objects across frames so that one object is one track,
//! [`rules`] turns tracks into events by zones and rules, [`snapshot`] writes an
//! event's best picture, [`analysis`] chains tracker and rules for one camera, and
//! [`pool`] runs it all on named OS threads fed by the scheduler of
//! [`varta_core::frame::FrameHub`].

pub mod accuracy;
pub mod analysis;
pub mod config;
pub mod decode;
pub mod manifest;
pub mod ocr;
pub mod plates;
pub mod pool;
pub mod preprocess;
pub mod rules;
pub mod runtime;
pub mod snapshot;
pub mod tracker;
pub mod unchanged;

/// One detection: decoders give boxes in the model's input pixels, the runtime
/// maps them to the frame's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    /// Index into the model's labels.
    pub class: usize,
    /// Confidence, 0..1.
    pub score: f32,
    /// Left, top, right, bottom.
    pub bbox: [f32; 4],
}

/// Intersection over union of two boxes (left, top, right, bottom).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn iou_basics() {
        assert_eq!(super::iou(&[0., 0., 10., 10.], &[0., 0., 10., 10.]), 1.0);
        assert_eq!(super::iou(&[0., 0., 10., 10.], &[20., 20., 30., 30.]), 0.0);
        assert!((super::iou(&[0., 0., 10., 10.], &[5., 0., 15., 10.]) - 1.0 / 3.0).abs() < 1e-6);
    }
}
