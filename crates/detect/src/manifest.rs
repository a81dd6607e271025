//! `models/models.toml`: what a model file expects and produces.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use varta_core::{err, Error, ErrorKind};

/// Input tensor layout.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `[batch, height, width, channels]`.
    Nhwc,
    /// `[batch, channels, height, width]`.
    Nchw,
}

/// How to read the model's output.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Decoder {
    /// One output `[B, N, 6]`: rows `x1, y1, x2, y2, score, class` in input pixels,
    /// NMS applied by the graph.
    Centernet,
    /// One output `[B, 4 + C, A]` (Ultralytics YOLOv8/YOLO11 exports): per anchor
    /// `cx, cy, w, h` in input pixels then C class scores; class-wise NMS by us.
    Yolo,
    /// Three outputs `boxes [B, N, 4]`, `scores [B, N]`, `classes [B, N]` (TF object
    /// detection API style); see `box_order`, `boxes_normalized`, `class_offset`.
    Ssd,
    /// One output `[B, A, 5 + C]` (YOLOX exported without decoding): per anchor of
    /// the grids at `strides`, level by level, row by row, `x, y` offsets in grid
    /// cells, `log w, log h` in cells, objectness, then C class scores (both after
    /// sigmoid); score = objectness × class score; class-wise NMS by us.
    Yolox,
}

/// Channel order of the input tensor.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Channels {
    /// Red, green, blue.
    #[default]
    Rgb,
    /// Blue, green, red (models trained on OpenCV-read pictures, e.g. YOLOX).
    Bgr,
}

/// How a frame is fitted to the model's input.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Resize {
    /// The whole picture stretched to the input size (aspect ratio not kept).
    #[default]
    Stretch,
    /// Scaled to fit with its aspect ratio, centred, borders filled with `pad`.
    Letterbox,
}

/// Order of the four box values of an `ssd` output.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BoxOrder {
    /// `x1, y1, x2, y2`.
    #[default]
    Xyxy,
    /// `y1, x1, y2, x2` (TensorFlow).
    Yxyx,
}

/// One `[[models]]` entry, paths resolved against the manifest's folder.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Name the node config refers to.
    pub name: String,
    /// ONNX file.
    pub file: PathBuf,
    /// Expected sha256 of `file`, hex.
    pub sha256: String,
    /// Label file, one class per line, index = class id.
    pub labels: PathBuf,
    /// Input tensor name.
    pub input: String,
    /// Output tensor names: one for `centernet` and `yolo`; boxes, scores and
    /// classes for `ssd`.
    pub outputs: Vec<String>,
    /// Input layout.
    pub layout: Layout,
    /// Input width in pixels.
    pub width: u32,
    /// Input height in pixels.
    pub height: u32,
    /// Channel order of the input.
    #[serde(default)]
    pub channels: Channels,
    /// Pixel (0..255) multiplier before mean/std.
    pub scale: f32,
    /// Per-channel mean subtracted after scaling, in the input's channel order.
    pub mean: [f32; 3],
    /// Per-channel divisor, in the input's channel order.
    pub std: [f32; 3],
    /// How frames are fitted to the input.
    #[serde(default)]
    pub resize: Resize,
    /// Pixel value (0..255, before normalisation) of letterbox borders.
    #[serde(default = "default_pad")]
    pub pad: u8,
    /// Output decoder.
    pub decoder: Decoder,
    /// IoU above which `yolo` decoding suppresses the weaker of two boxes of a class.
    #[serde(default = "default_nms_iou")]
    pub nms_iou: f32,
    /// `ssd`: order of the box values.
    #[serde(default)]
    pub box_order: BoxOrder,
    /// `ssd`: boxes are 0..1 fractions of the input rather than input pixels.
    #[serde(default)]
    pub boxes_normalized: bool,
    /// `ssd`: subtracted from the class values to index the labels (1 where 0 is
    /// the background class).
    #[serde(default)]
    pub class_offset: i32,
    /// `yolox`: the strides of the output grids, in output order.
    #[serde(default = "default_strides")]
    pub strides: Vec<u32>,
    /// Largest batch the graph accepts (frames of several cameras are analysed in
    /// one run up to this).
    pub max_batch: usize,
}

fn default_strides() -> Vec<u32> {
    vec![8, 16, 32]
}

fn default_pad() -> u8 {
    114
}
fn default_nms_iou() -> f32 {
    0.45
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    models: Vec<ModelSpec>,
}

/// Reads the manifest at `path` and returns the model called `name`, with its
/// paths made absolute-or-relative-to-cwd from the manifest's folder.
pub fn load(path: &Path, name: &str) -> Result<ModelSpec, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::wrap(ErrorKind::NotFound, format!("model manifest {}", path.display()), e))?;
    let m: Manifest = toml::from_str(&text)
        .map_err(|e| Error::wrap(ErrorKind::InvalidArgument, format!("model manifest {}", path.display()), e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut spec = m
        .models
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| err!(NotFound, "model `{name}` is not in {}", path.display()))?;
    spec.file = dir.join(&spec.file);
    spec.labels = dir.join(&spec.labels);
    spec.check()?;
    Ok(spec)
}

impl ModelSpec {
    /// Checks values that the types alone cannot.
    pub fn check(&self) -> Result<(), Error> {
        let want = match self.decoder {
            Decoder::Centernet | Decoder::Yolo | Decoder::Yolox => 1,
            Decoder::Ssd => 3,
        };
        let bad = |what: String| Err(err!(InvalidArgument, "model `{}` in the manifest: {what}", self.name));
        if self.outputs.len() != want {
            return bad(format!(
                "decoder {:?} needs {want} output name(s), `outputs` has {}",
                self.decoder,
                self.outputs.len()
            ));
        }
        if self.width == 0 || self.height == 0 || self.max_batch == 0 {
            return bad("width, height and max_batch must be at least 1".into());
        }
        if self.std.contains(&0.0) {
            return bad("std must not be 0".into());
        }
        if self.decoder == Decoder::Yolox
            && (self.strides.is_empty()
                || self
                    .strides
                    .iter()
                    .any(|&s| s == 0 || !self.width.is_multiple_of(s) || !self.height.is_multiple_of(s)))
        {
            return bad(format!(
                "yolox strides {:?} must be non-zero and divide the input {}x{}",
                self.strides, self.width, self.height
            ));
        }
        Ok(())
    }

    /// Reads the label file.
    pub fn read_labels(&self) -> Result<Vec<String>, Error> {
        let text = std::fs::read_to_string(&self.labels)
            .map_err(|e| Error::wrap(ErrorKind::NotFound, format!("labels {}", self.labels.display()), e))?;
        Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
    }

    /// Checks the model file against the manifest's sha256.
    pub fn verify(&self) -> Result<(), Error> {
        let bytes = std::fs::read(&self.file)
            .map_err(|e| Error::wrap(ErrorKind::NotFound, format!("model file {}", self.file.display()), e))?;
        let got: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        if !got.eq_ignore_ascii_case(&self.sha256) {
            return Err(err!(
                InvalidArgument,
                "model file {} has sha256 {got}, manifest says {}",
                self.file.display(),
                self.sha256
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn manifest() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/models.toml")
    }

    #[test]
    fn shipped_manifest_matches_shipped_files() {
        let spec = super::load(&manifest(), "centernet_mbv3_coco_512").unwrap();
        spec.verify().unwrap();
        let labels = spec.read_labels().unwrap();
        assert_eq!(labels.len(), 80);
        assert_eq!(labels[0], "person");
        assert_eq!((spec.width, spec.height), (512, 512));
    }

    #[test]
    fn unknown_model_is_not_found() {
        let e = super::load(&manifest(), "nope").unwrap_err();
        assert_eq!(e.kind(), varta_core::ErrorKind::NotFound);
    }
}
