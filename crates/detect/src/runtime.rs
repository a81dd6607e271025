//! One model on ONNX Runtime.
//!
//! `ort` is built with `load-dynamic`: `libonnxruntime.so` is opened at run time
//! (the setup takes it from the PyPI wheel), never downloaded. ONNX Runtime allows
//! one environment per process, so it is made once and shared by every session.

use crate::manifest::{Decoder, Layout, ModelSpec};
use crate::{centernet, Detection};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use varta_core::{err, Error, ErrorKind};

static ENV: OnceLock<ort::environment::Environment> = OnceLock::new();
static ENV_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The ONNX Runtime library to load: `$ORT_DYLIB_PATH`, else the copy the setup
/// script puts in `.cache/onnxruntime/lib/` of the current directory.
pub fn library_path() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    PathBuf::from(".cache/onnxruntime/lib/libonnxruntime.so.1.32.0")
}

/// Loads ONNX Runtime from `lib` and makes the process's environment (once; later
/// calls return the first one, whatever `lib` they name).
pub fn environment(lib: &Path) -> Result<&'static ort::environment::Environment, Error> {
    if let Some(e) = ENV.get() {
        return Ok(e);
    }
    let _g = ENV_INIT.lock().unwrap();
    if let Some(e) = ENV.get() {
        return Ok(e);
    }
    let builder = ort::init_from(lib).map_err(|e| {
        Error::wrap(
            ErrorKind::Unavailable,
            format!("loading ONNX Runtime from {} (run ./scripts/setup)", lib.display()),
            e,
        )
    })?;
    let env = builder
        .with_name("varta")
        .build()
        .map_err(|e| Error::wrap(ErrorKind::Internal, "ONNX Runtime environment", e))?;
    Ok(ENV.get_or_init(|| env))
}

/// A loaded model ready to run on frames of its input size.
pub struct Detector {
    session: Session,
    spec: ModelSpec,
    labels: Vec<String>,
    /// Reused input buffer, so a frame costs no allocation.
    input: Vec<f32>,
}

impl Detector {
    /// Loads `spec` into a new session using `intra_threads` threads per run.
    pub fn new(lib: &Path, spec: &ModelSpec, labels: Vec<String>, intra_threads: usize) -> Result<Self, Error> {
        let env = environment(lib)?;
        let ort_err =
            |what: &str, e: ort::Error| Error::wrap(ErrorKind::Internal, format!("model {}: {what}", spec.name), e);
        let session = Session::builder(env)
            .map_err(|e| ort_err("session builder", e))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| ort_err("optimisation level", e.into()))?
            .with_intra_threads(intra_threads)
            .map_err(|e| ort_err("intra threads", e.into()))?
            // Spinning threads burn a core while idle: deadly with 145 cameras on 2 cores.
            .with_intra_op_spinning(false)
            .map_err(|e| ort_err("spinning", e.into()))?
            .commit_from_file(&spec.file)
            .map_err(|e| ort_err(&format!("loading {}", spec.file.display()), e))?;
        let n = (spec.width * spec.height * 3) as usize;
        Ok(Detector { session, spec: spec.clone(), labels, input: vec![0.0; n] })
    }

    /// The model's class labels.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Runs the model on a packed RGB image of exactly the model's input size and
    /// returns detections scoring at least `min_score`, boxes in input pixels.
    pub fn detect(&mut self, rgb: &[u8], width: u32, height: u32, min_score: f32) -> Result<Vec<Detection>, Error> {
        let s = &self.spec;
        if (width, height) != (s.width, s.height) || rgb.len() != (width * height * 3) as usize {
            return Err(err!(
                InvalidArgument,
                "model {} wants {}x{} RGB, got {width}x{height} ({} bytes)",
                s.name,
                s.width,
                s.height,
                rgb.len()
            ));
        }
        fill_input(&mut self.input, rgb, s);
        let shape = match s.layout {
            Layout::Nhwc => [1, s.height as i64, s.width as i64, 3],
            Layout::Nchw => [1, 3, s.height as i64, s.width as i64],
        };
        let tensor = TensorRef::from_array_view((shape, self.input.as_slice()))
            .map_err(|e| Error::wrap(ErrorKind::Internal, "input tensor", e))?;
        let outputs = self
            .session
            .run(ort::inputs![s.input.as_str() => tensor])
            .map_err(|e| Error::wrap(ErrorKind::Internal, format!("model {}: inference", s.name), e))?;
        let out =
            outputs.get(&s.output).ok_or_else(|| err!(Internal, "model {} has no output `{}`", s.name, s.output))?;
        let (_, rows) = out
            .try_extract_tensor::<f32>()
            .map_err(|e| Error::wrap(ErrorKind::Internal, "reading output tensor", e))?;
        Ok(match s.decoder {
            Decoder::Centernet => centernet::decode(rows, self.labels.len(), min_score),
        })
    }
}

/// Converts packed RGB bytes into the model's input values and layout.
fn fill_input(dst: &mut [f32], rgb: &[u8], s: &ModelSpec) {
    let identity = s.scale == 1.0 && s.mean == [0.0; 3] && s.std == [1.0; 3];
    match s.layout {
        Layout::Nhwc if identity => {
            for (d, &p) in dst.iter_mut().zip(rgb) {
                *d = p as f32;
            }
        }
        Layout::Nhwc => {
            for (px, d) in rgb.chunks_exact(3).zip(dst.chunks_exact_mut(3)) {
                for c in 0..3 {
                    d[c] = (px[c] as f32 * s.scale - s.mean[c]) / s.std[c];
                }
            }
        }
        Layout::Nchw => {
            let plane = (s.width * s.height) as usize;
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    dst[c * plane + i] = (px[c] as f32 * s.scale - s.mean[c]) / s.std[c];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The model on Debian's darknet sample images, against the detections listed
    //! in models/PROVENANCE.md. Needs `./scripts/setup` (ONNX Runtime and images).
    use super::*;
    use crate::iou;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn media(name: &str) -> PathBuf {
        let dir = std::env::var_os("VARTA_MEDIA_DIR").map(PathBuf::from).unwrap_or_else(|| root().join(".cache/media"));
        let p = dir.join("images").join(name);
        assert!(p.exists(), "{} is missing: run ./scripts/setup", p.display());
        p
    }

    fn lib() -> PathBuf {
        std::env::var_os("ORT_DYLIB_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join(".cache/onnxruntime/lib/libonnxruntime.so.1.32.0"))
    }

    /// Runs the model on `image` resized (bilinear, whole image) to 512x512 and
    /// returns (label, score, box in original pixels).
    fn run(det: &mut Detector, image: &str) -> Vec<(String, f32, [f32; 4])> {
        let img = image::open(media(image)).unwrap().to_rgb8();
        let (w, h) = img.dimensions();
        let small = image::imageops::resize(&img, 512, 512, image::imageops::FilterType::Triangle);
        let (sx, sy) = (w as f32 / 512.0, h as f32 / 512.0);
        det.detect(small.as_raw(), 512, 512, 0.3)
            .unwrap()
            .into_iter()
            .map(|d| {
                let b = [d.bbox[0] * sx, d.bbox[1] * sy, d.bbox[2] * sx, d.bbox[3] * sy];
                (det.labels()[d.class].clone(), d.score, b)
            })
            .collect()
    }

    fn assert_found(found: &[(String, f32, [f32; 4])], class: &str, want: [f32; 4]) {
        let best = found.iter().filter(|(c, _, _)| c == class).map(|(_, _, b)| iou(b, &want)).fold(0.0, f32::max);
        assert!(best >= 0.5, "no {class} near {want:?} (best IoU {best:.2}) in {found:?}");
    }

    #[test]
    fn finds_the_documented_objects() {
        let spec = crate::manifest::load(&root().join("models/models.toml"), "centernet_mbv3_coco_512").unwrap();
        let labels = spec.read_labels().unwrap();
        let mut det = Detector::new(&lib(), &spec, labels, 1).unwrap();

        let dog = run(&mut det, "dog.jpg");
        assert_found(&dog, "car", [472., 81., 683., 165.]);
        assert_found(&dog, "bicycle", [111., 127., 564., 445.]);
        assert_found(&dog, "dog", [124., 207., 313., 543.]);

        let person = run(&mut det, "person.jpg");
        assert_found(&person, "person", [187., 111., 276., 375.]);
        assert_found(&person, "dog", [67., 264., 201., 348.]);

        let horses = run(&mut det, "horses.jpg");
        assert_found(&horses, "horse", [433., 209., 602., 346.]);
        assert_found(&horses, "horse", [-2., 188., 315., 413.]);
        assert_found(&horses, "horse", [241., 193., 436., 370.]);
        assert!(!horses.iter().any(|(c, _, _)| c == "person"), "{horses:?}");
    }

    #[test]
    fn wrong_input_size_is_an_error_not_a_crash() {
        let spec = crate::manifest::load(&root().join("models/models.toml"), "centernet_mbv3_coco_512").unwrap();
        let mut det = Detector::new(&lib(), &spec, spec.read_labels().unwrap(), 1).unwrap();
        let e = det.detect(&[0; 30], 5, 2, 0.3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }
}
