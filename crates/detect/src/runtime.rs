//! One model on ONNX Runtime.
//!
//! `ort` is built with `load-dynamic`: `libonnxruntime.so` is opened at run time
//! (the setup takes it from the PyPI wheel), never downloaded. ONNX Runtime allows
//! one environment per process, so it is made once and shared by every session.

use crate::manifest::{BoxOrder, Decoder, Layout, ModelSpec};
use crate::preprocess::{self, Geometry};
use crate::{decode, Detection};
use ndarray::{s, Array4, ArrayView2, Axis, CowArray, Ix1, Ix2, IxDyn};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use varta_core::frame::{Frame, Pixels};
use varta_core::{err, Error, ErrorKind};

static ENV: OnceLock<ort::environment::Environment> = OnceLock::new();
static ENV_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Where inference runs.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// ONNX Runtime's CPU provider.
    #[default]
    Cpu,
    /// NVIDIA CUDA.
    Cuda,
    /// NVIDIA TensorRT (CUDA for what TensorRT cannot run).
    Tensorrt,
}

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

/// How sessions are made: library, threads and execution provider.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// ONNX Runtime library.
    pub library: PathBuf,
    /// Threads inside one inference (CPU provider).
    pub intra_threads: usize,
    /// Wanted execution provider.
    pub provider: Provider,
    /// GPU index.
    pub device_id: u32,
    /// TensorRT FP16 engines.
    pub fp16: bool,
    /// TensorRT engine cache root.
    pub engine_cache_dir: PathBuf,
}

impl RuntimeOptions {
    /// CPU inference with `intra_threads` threads, the library from [`library_path`].
    pub fn cpu(intra_threads: usize) -> Self {
        RuntimeOptions {
            library: library_path(),
            intra_threads,
            provider: Provider::Cpu,
            device_id: 0,
            fp16: false,
            engine_cache_dir: PathBuf::from(".varta/trt-cache"),
        }
    }
}

/// A loaded model ready to run on frames of any size.
pub struct Detector {
    session: Session,
    spec: ModelSpec,
    labels: Vec<String>,
    provider: Provider,
    /// Reused input tensor for a whole batch (`[max_batch, …]` in the model's
    /// layout), so a frame costs no allocation.
    input: Array4<f32>,
    /// Where each picture of the last batch lies in the input.
    geometry: Vec<Geometry>,
    /// `yolo`: output laid out `[A, 4 + C]` rather than `[4 + C, A]`.
    yolo_transposed: bool,
}

impl Detector {
    /// Loads `spec` into a new session. A GPU provider that cannot be used falls back
    /// to the next (TensorRT → CUDA → CPU) with a warning; a model that does not
    /// match its manifest is an error naming the model.
    pub fn new(opts: &RuntimeOptions, spec: &ModelSpec, labels: Vec<String>) -> Result<Self, Error> {
        let env = environment(&opts.library)?;
        let wanted: &[Provider] = match opts.provider {
            Provider::Cpu => &[Provider::Cpu],
            Provider::Cuda => &[Provider::Cuda, Provider::Cpu],
            Provider::Tensorrt => &[Provider::Tensorrt, Provider::Cuda, Provider::Cpu],
        };
        let mut last = None;
        for &p in wanted {
            match build_session(env, opts, spec, p) {
                Ok(session) => {
                    if p != opts.provider {
                        tracing::warn!(model = %spec.name, wanted = ?opts.provider, using = ?p, "GPU provider unavailable; falling back");
                    }
                    let yolo_transposed = check_shapes(&session, spec, labels.len())?;
                    return Ok(Detector {
                        session,
                        spec: spec.clone(),
                        labels,
                        provider: p,
                        input: preprocess::input_tensor(spec, spec.max_batch),
                        geometry: Vec::with_capacity(spec.max_batch),
                        yolo_transposed,
                    });
                }
                Err(e) => {
                    if p != Provider::Cpu {
                        tracing::warn!(model = %spec.name, provider = ?p, error = %e, "execution provider failed");
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least the CPU was tried"))
    }

    /// The model's class labels.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The model's manifest entry.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The execution provider in use (after any fallback).
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Most frames one [`Detector::detect`] call takes.
    pub fn max_batch(&self) -> usize {
        self.spec.max_batch
    }

    /// Runs the model on one frame; detections scoring at least `min_score`, boxes in
    /// the frame's pixels.
    pub fn detect_one(&mut self, frame: &Frame, min_score: f32) -> Result<Vec<Detection>, Error> {
        Ok(self.detect(&[frame], min_score)?.pop().unwrap_or_default())
    }

    /// Runs the model on up to [`Detector::max_batch`] frames at once (any sizes);
    /// per frame, detections scoring at least `min_score`, boxes in its pixels.
    pub fn detect(&mut self, frames: &[&Frame], min_score: f32) -> Result<Vec<Vec<Detection>>, Error> {
        let s = &self.spec;
        let n = frames.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        if n > s.max_batch {
            return Err(err!(
                InvalidArgument,
                "model {} takes at most {} frames per run, got {n}",
                s.name,
                s.max_batch
            ));
        }
        self.geometry.clear();
        for (i, f) in frames.iter().enumerate() {
            let want = match &f.pixels {
                Pixels::I420(d) => (d.len(), Frame::i420_len(f.width, f.height)),
                Pixels::Rgb(d) => (d.len(), (f.width * f.height * 3) as usize),
            };
            if want.0 != want.1 || f.width == 0 || f.height == 0 {
                return Err(err!(
                    InvalidArgument,
                    "frame of camera {} is {}x{} but has {} bytes (want {})",
                    f.camera,
                    f.width,
                    f.height,
                    want.0,
                    want.1
                ));
            }
            let image = preprocess::image_mut(&mut self.input, i, s.layout);
            self.geometry.push(preprocess::fill(image, f, s));
        }
        let tensor = TensorRef::from_array_view(self.input.slice(s![..n, .., .., ..]))
            .map_err(|e| Error::wrap(ErrorKind::Internal, "input tensor", e))?;
        let outputs = self
            .session
            .run(ort::inputs![s.input.as_str() => tensor])
            .map_err(|e| Error::wrap(ErrorKind::Internal, format!("model {}: inference", s.name), e))?;
        // Float outputs are read in place; only integer ones (SSD classes) are converted.
        let get = |name: &str| -> Result<CowArray<'_, f32, IxDyn>, Error> {
            let v = outputs.get(name).ok_or_else(|| err!(Internal, "model {} has no output `{name}`", s.name))?;
            if let Ok(a) = v.try_extract_array::<f32>() {
                return Ok(a.into());
            }
            let a = v
                .try_extract_array::<i64>()
                .map_err(|e| Error::wrap(ErrorKind::Internal, format!("model {}: output `{name}`", s.name), e))?;
            Ok(a.mapv(|x| x as f32).into())
        };
        // Image `i` of a batched output, with the rank the decoder reads.
        fn image<'a, D: ndarray::Dimension>(
            model: &str,
            name: &str,
            out: &'a CowArray<'_, f32, IxDyn>,
            i: usize,
        ) -> Result<ndarray::ArrayView<'a, f32, D>, Error> {
            let shape = out.shape().to_vec();
            let v = (out.ndim() > 0 && i < shape[0]).then(|| out.index_axis(Axis(0), i));
            v.and_then(|v| v.into_dimensionality::<D>().ok()).ok_or_else(|| {
                err!(
                    Internal,
                    "model {model}: output `{name}` has shape {shape:?}, not a batch of {}-D images",
                    D::NDIM.unwrap_or(0)
                )
            })
        }
        let labels = self.labels.len();
        let mut out = Vec::with_capacity(n);
        match s.decoder {
            Decoder::Centernet | Decoder::Yolo | Decoder::Yolox => {
                let data = get(&s.outputs[0])?;
                for i in 0..n {
                    let img: ArrayView2<f32> = image(&s.name, &s.outputs[0], &data, i)?;
                    out.push(match s.decoder {
                        Decoder::Centernet => decode::centernet(img, labels, min_score),
                        Decoder::Yolox => {
                            decode::yolox(img, labels, s.width, s.height, &s.strides, min_score, s.nms_iou)
                        }
                        _ if self.yolo_transposed => decode::yolo(img.t(), labels, min_score, s.nms_iou),
                        _ => decode::yolo(img, labels, min_score, s.nms_iou),
                    });
                }
            }
            Decoder::Ssd => {
                let (b, sc, c) = (get(&s.outputs[0])?, get(&s.outputs[1])?, get(&s.outputs[2])?);
                let norm = s.boxes_normalized.then_some((s.width as f32, s.height as f32));
                for i in 0..n {
                    out.push(decode::ssd(
                        image::<Ix2>(&s.name, &s.outputs[0], &b, i)?,
                        image::<Ix1>(&s.name, &s.outputs[1], &sc, i)?,
                        image::<Ix1>(&s.name, &s.outputs[2], &c, i)?,
                        labels,
                        s.box_order == BoxOrder::Yxyx,
                        norm,
                        s.class_offset,
                        min_score,
                    ));
                }
            }
        }
        for (dets, g) in out.iter_mut().zip(&self.geometry) {
            for d in dets.iter_mut() {
                d.bbox = g.to_source(d.bbox);
            }
        }
        Ok(out)
    }
}

/// Makes a session on provider `p` with the service's session options
/// (registration failure is an error, not a silent fallback inside ONNX Runtime:
/// [`Detector::new`] decides and logs). Benchmarks use it for their raw loop.
pub fn build_session(
    env: &ort::environment::Environment,
    opts: &RuntimeOptions,
    spec: &ModelSpec,
    p: Provider,
) -> Result<Session, Error> {
    let ort_err =
        |what: &str, e: ort::Error| Error::wrap(ErrorKind::Internal, format!("model {}: {what}", spec.name), e);
    let mut b = session_builder(env, opts, &spec.name)?;
    let device = opts.device_id as i32;
    let ep = match p {
        Provider::Cpu => None,
        Provider::Cuda => Some(ort::ep::CUDA::default().with_device_id(device).build().error_on_failure()),
        Provider::Tensorrt => {
            let dir = engine_cache_dir(opts, spec);
            std::fs::create_dir_all(&dir).map_err(|e| {
                Error::wrap(ErrorKind::Unavailable, format!("TensorRT engine cache {}", dir.display()), e)
            })?;
            Some(
                ort::ep::TensorRT::default()
                    .with_device_id(device)
                    .with_fp16(opts.fp16)
                    .with_engine_cache(true)
                    .with_engine_cache_path(dir.display())
                    .with_timing_cache(true)
                    .with_timing_cache_path(dir.display())
                    .build()
                    .error_on_failure(),
            )
        }
    };
    if let Some(ep) = ep {
        b = b.with_execution_providers([ep]).map_err(|e| {
            Error::wrap(
                ErrorKind::Unavailable,
                format!("model {}: provider {p:?}", spec.name),
                ort::Error::<()>::from(e),
            )
        })?;
    }
    b.commit_from_file(&spec.file).map_err(|e| ort_err(&format!("loading {}", spec.file.display()), e))
}

/// A session builder with the service's CPU options: `opts.intra_threads` threads
/// that do not spin, full graph optimisation. `name` is for errors.
pub fn session_builder(
    env: &ort::environment::Environment,
    opts: &RuntimeOptions,
    name: &str,
) -> Result<ort::session::builder::SessionBuilder, Error> {
    let ort_err = |what: &str, e: ort::Error| Error::wrap(ErrorKind::Internal, format!("model {name}: {what}"), e);
    Session::builder(env)
        .map_err(|e| ort_err("session builder", e))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| ort_err("optimisation level", e.into()))?
        .with_intra_threads(opts.intra_threads)
        .map_err(|e| ort_err("intra threads", e.into()))?
        // Spinning threads burn a core while idle: deadly with 145 cameras on 2 cores.
        .with_intra_op_spinning(false)
        .map_err(|e| ort_err("spinning", e.into()))
}

/// The TensorRT engine cache of one model, GPU and precision: engines built for
/// another model version, GPU model or precision are never picked up by mistake.
pub fn engine_cache_dir(opts: &RuntimeOptions, spec: &ModelSpec) -> PathBuf {
    let hash: String = spec.sha256.chars().take(16).collect();
    let precision = if opts.fp16 { "fp16" } else { "fp32" };
    opts.engine_cache_dir.join(format!("{}-{hash}-{}-{precision}", spec.name, gpu_slug(opts.device_id)))
}

/// The NVIDIA driver's name for GPU `device` (e.g. `nvidia-h100-80gb-hbm3`), read
/// from `/proc/driver/nvidia/gpus/*/information`; `gpuN` where that is missing.
fn gpu_slug(device: u32) -> String {
    let mut dirs: Vec<_> = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    dirs.sort();
    let model = dirs
        .get(device as usize)
        .and_then(|d| std::fs::read_to_string(d.join("information")).ok())
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("Model:").map(|m| m.trim().to_owned())));
    match model {
        Some(m) => m
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>()
            .split('-')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("-"),
        None => format!("gpu{device}"),
    }
}

/// Checks the session's input and outputs against the manifest; returns whether a
/// `yolo` output is laid out `[A, 4 + C]`.
fn check_shapes(session: &Session, spec: &ModelSpec, labels: usize) -> Result<bool, Error> {
    let fail = |what: String| Err(err!(InvalidArgument, "model `{}` does not match models.toml: {what}", spec.name));
    let names = |o: &[ort::value::Outlet]| o.iter().map(|o| o.name().to_owned()).collect::<Vec<_>>().join(", ");
    let Some(input) = session.inputs().iter().find(|i| i.name() == spec.input) else {
        return fail(format!("no input `{}` (the model has: {})", spec.input, names(session.inputs())));
    };
    let dims: Vec<i64> = input.dtype().tensor_shape().map(|s| s.iter().copied().collect()).unwrap_or_default();
    let want: [i64; 4] = match spec.layout {
        Layout::Nhwc => [-1, spec.height as i64, spec.width as i64, 3],
        Layout::Nchw => [-1, 3, spec.height as i64, spec.width as i64],
    };
    if dims.len() != 4 {
        return fail(format!(
            "input `{}` has shape {dims:?}, the manifest says {:?} {want:?}",
            spec.input, spec.layout
        ));
    }
    for (k, (&d, &w)) in dims.iter().zip(&want).enumerate() {
        if k == 0 {
            if d >= 0 && (d as usize) < spec.max_batch {
                return fail(format!("input batch is fixed at {d} but max_batch is {}", spec.max_batch));
            }
        } else if d >= 0 && d != w {
            return fail(format!(
                "input `{}` has shape {dims:?}, the manifest says {:?} {want:?}",
                spec.input, spec.layout
            ));
        }
    }
    let mut shapes = Vec::new();
    for o in &spec.outputs {
        let Some(out) = session.outputs().iter().find(|x| x.name() == o) else {
            return fail(format!("no output `{o}` (the model has: {})", names(session.outputs())));
        };
        shapes.push(out.dtype().tensor_shape().map(|s| s.iter().copied().collect::<Vec<i64>>()).unwrap_or_default());
    }
    let s0 = &shapes[0];
    let fixed = |d: i64, w: i64| d < 0 || d == w;
    match spec.decoder {
        Decoder::Centernet if s0.len() != 3 || !fixed(s0[2], 6) => {
            fail(format!("centernet output `{}` must be [B, N, 6], is {s0:?}", spec.outputs[0]))
        }
        Decoder::Yolo => {
            let c = (4 + labels) as i64;
            if s0.len() != 3 {
                return fail(format!("yolo output `{}` must be [B, 4 + C, A], is {s0:?}", spec.outputs[0]));
            }
            if s0[1] == c {
                Ok(false)
            } else if s0[2] == c {
                Ok(true)
            } else if s0[1] < 0 {
                Ok(false)
            } else {
                fail(format!("yolo output `{}` is {s0:?}: no dimension is 4 + {labels} labels", spec.outputs[0]))
            }
        }
        Decoder::Yolox => {
            let anchors: u32 = spec.strides.iter().map(|st| (spec.width / st) * (spec.height / st)).sum();
            if s0.len() != 3 || !fixed(s0[2], (5 + labels) as i64) || !fixed(s0[1], anchors as i64) {
                return fail(format!(
                    "yolox output `{}` must be [B, {anchors}, 5 + {labels}] for a {}x{} input, is {s0:?}",
                    spec.outputs[0], spec.width, spec.height
                ));
            }
            Ok(false)
        }
        Decoder::Ssd if shapes[0].last().is_some_and(|&d| !fixed(d, 4)) => {
            fail(format!("ssd boxes output `{}` must end in 4, is {:?}", spec.outputs[0], shapes[0]))
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    //! The model on Debian's darknet sample images, against the detections listed
    //! in models/PROVENANCE.md, and models that must be refused. Needs
    //! `./scripts/setup` (ONNX Runtime and images).
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

    fn opts() -> RuntimeOptions {
        RuntimeOptions {
            library: std::env::var_os("ORT_DYLIB_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| root().join(".cache/onnxruntime/lib/libonnxruntime.so.1.32.0")),
            ..RuntimeOptions::cpu(1)
        }
    }

    fn default_spec() -> ModelSpec {
        // The service's default model: these tests are its acceptance checks.
        let name = crate::config::DetectConfig::default().model;
        crate::manifest::load(&root().join("models/models.toml"), &name).unwrap()
    }

    /// The first wave's model: a graph with fixed shapes, for the manifest checks.
    fn centernet_spec() -> ModelSpec {
        crate::manifest::load(&root().join("models/models.toml"), "centernet_mbv3_coco_512").unwrap()
    }

    fn image_frame(name: &str) -> Frame {
        let img = image::open(media(name)).unwrap().to_rgb8();
        let (w, h) = img.dimensions();
        Frame::from_rgb("test".into(), chrono::Utc::now(), w, h, img.into_raw())
    }

    /// Runs the model on `image` through the service's preprocessing and returns
    /// (label, score, box in original pixels).
    fn run(det: &mut Detector, image: &str) -> Vec<(String, f32, [f32; 4])> {
        det.detect_one(&image_frame(image), 0.3)
            .unwrap()
            .into_iter()
            .map(|d| (det.labels()[d.class].clone(), d.score, d.bbox))
            .collect()
    }

    fn assert_found(found: &[(String, f32, [f32; 4])], class: &str, want: [f32; 4]) {
        let best = found.iter().filter(|(c, _, _)| c == class).map(|(_, _, b)| iou(b, &want)).fold(0.0, f32::max);
        assert!(best >= 0.5, "no {class} near {want:?} (best IoU {best:.2}) in {found:?}");
    }

    #[test]
    fn finds_the_documented_objects() {
        let spec = default_spec();
        let mut det = Detector::new(&opts(), &spec, spec.read_labels().unwrap()).unwrap();
        assert_eq!(det.provider(), Provider::Cpu);

        let dog = run(&mut det, "dog.jpg");
        assert_found(&dog, "car", [472., 81., 683., 165.]);
        assert_found(&dog, "bicycle", [111., 127., 564., 445.]);
        assert_found(&dog, "dog", [124., 207., 313., 543.]);

        let person = run(&mut det, "person.jpg");
        assert_found(&person, "person", [187., 111., 276., 375.]);
        assert_found(&person, "dog", [67., 264., 201., 348.]);

        // YOLOX-nano at 352x256 names these horses "cow" (CenterNet said "horse"):
        // animals are not what Varta looks for; that all three are found and no
        // person is, is.
        let horses: Vec<_> =
            run(&mut det, "horses.jpg").into_iter().map(|(c, s, b)| (c.replace("cow", "horse"), s, b)).collect();
        assert_found(&horses, "horse", [433., 209., 602., 346.]);
        assert_found(&horses, "horse", [-2., 188., 315., 413.]);
        assert_found(&horses, "horse", [241., 193., 436., 370.]);
        assert!(!horses.iter().any(|(c, _, _)| c == "person"), "{horses:?}");
    }

    #[test]
    fn camera_frames_in_i420_find_the_same_objects() {
        let spec = default_spec();
        let mut det = Detector::new(&opts(), &spec, spec.read_labels().unwrap()).unwrap();
        let f = image_frame("person.jpg");
        let Pixels::Rgb(rgb) = &f.pixels else { unreachable!() };
        let yuv = preprocess::rgb_to_i420(rgb, f.width as usize, f.height as usize);
        let f = Frame { pixels: Pixels::I420(yuv.into()), ..f };
        let found: Vec<_> = det
            .detect_one(&f, 0.3)
            .unwrap()
            .into_iter()
            .map(|d| (det.labels()[d.class].clone(), d.score, d.bbox))
            .collect();
        assert_found(&found, "person", [187., 111., 276., 375.]);
        assert_found(&found, "dog", [67., 264., 201., 348.]);
    }

    #[test]
    fn a_missing_gpu_provider_falls_back_to_the_cpu() {
        // The CPU build of ONNX Runtime has neither CUDA nor TensorRT: the detector
        // must come up on the CPU (and say so) rather than fail. Where a GPU build is
        // installed, the provider asked for must be the one used.
        let spec = default_spec();
        use ort::ep::ExecutionProvider;
        // Load the library before asking it about providers (alone, this test would
        // otherwise be the first to touch ONNX Runtime, without its path).
        environment(&opts().library).unwrap();
        let gpu_build = ort::ep::CUDA::is_available().unwrap_or(false);
        for p in [Provider::Cuda, Provider::Tensorrt] {
            let dir = std::env::temp_dir().join(format!("varta-trt-{}", std::process::id()));
            let o = RuntimeOptions { provider: p, engine_cache_dir: dir.clone(), ..opts() };
            let mut det = Detector::new(&o, &spec, spec.read_labels().unwrap()).unwrap();
            if !gpu_build {
                assert_eq!(det.provider(), Provider::Cpu);
            }
            assert!(!run(&mut det, "person.jpg").is_empty());
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    #[test]
    fn engine_cache_is_keyed_by_model_gpu_and_precision() {
        let spec = default_spec();
        let o = RuntimeOptions { fp16: true, ..opts() };
        let d16 = engine_cache_dir(&o, &spec);
        let d32 = engine_cache_dir(&RuntimeOptions { fp16: false, ..opts() }, &spec);
        assert_ne!(d16, d32);
        let name = d16.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with(&format!("{}-{}-", spec.name, &spec.sha256[..16])), "{name}");
        assert!(name.ends_with("-fp16"), "{name}");
    }

    #[test]
    fn wrong_frame_size_is_an_error_not_a_crash() {
        let spec = default_spec();
        let mut det = Detector::new(&opts(), &spec, spec.read_labels().unwrap()).unwrap();
        let mut f = Frame::from_rgb("c".into(), chrono::Utc::now(), 5, 2, vec![0; 30]);
        f.width = 6;
        let e = det.detect_one(&f, 0.3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }

    /// A manifest in a temporary folder with one entry derived from the default
    /// model by `edit`, the model file written by `file`.
    fn temp_model(tag: &str, file: &[u8], edit: (&str, &str)) -> (PathBuf, ModelSpec) {
        temp_model_hashed(tag, file, file, edit)
    }

    /// As [`temp_model`], with the manifest's sha256 that of `hashed`.
    fn temp_model_hashed(tag: &str, file: &[u8], hashed: &[u8], edit: (&str, &str)) -> (PathBuf, ModelSpec) {
        use sha2::Digest;
        let dir = std::env::temp_dir().join(format!("varta-model-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("m.onnx"), file).unwrap();
        std::fs::copy(root().join("models/coco80.labels"), dir.join("coco80.labels")).unwrap();
        let sha: String = sha2::Sha256::digest(hashed).iter().map(|b| format!("{b:02x}")).collect();
        let text = std::fs::read_to_string(root().join("models/models.toml")).unwrap();
        let text = text
            .replace("file = \"centernet_mbv3_coco_512.onnx\"", "file = \"m.onnx\"")
            .replace("26179a4c75a4a268261e43f48534bd19c68254ac9ebd6442bbd888b72f3dda94", &sha);
        let text = text.replacen(edit.0, edit.1, 1);
        std::fs::write(dir.join("models.toml"), text).unwrap();
        let spec = crate::manifest::load(&dir.join("models.toml"), "centernet_mbv3_coco_512").unwrap();
        (dir, spec)
    }

    #[test]
    fn a_corrupt_model_file_is_refused_naming_the_model() {
        // Bytes changed after the manifest was written: the hash says so.
        let spec = centernet_spec();
        let good = std::fs::read(&spec.file).unwrap();
        let mut bad = good.clone();
        bad.truncate(good.len() / 2);
        let (dir, s) = temp_model_hashed("corrupt", &bad, &good, ("", ""));
        let e = s.verify().unwrap_err().to_string();
        assert!(e.contains("m.onnx") && e.contains("sha256"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
        // And a corrupt file whose hash was (wrongly) recorded: ONNX Runtime refuses
        // it at load, and the message names the model, with no panic.
        let (dir, s) = temp_model("corrupt2", &bad, ("", ""));
        s.verify().unwrap();
        let e = Detector::new(&opts(), &s, s.read_labels().unwrap()).err().expect("must fail").to_string();
        assert!(e.contains("centernet_mbv3_coco_512") && e.contains("loading"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_model_whose_shape_differs_from_its_manifest_is_refused() {
        let good = std::fs::read(centernet_spec().file).unwrap();
        let (dir, s) = temp_model("shape", &good, ("width = 512", "width = 640"));
        s.verify().unwrap();
        let e = Detector::new(&opts(), &s, s.read_labels().unwrap()).err().expect("must fail").to_string();
        assert!(e.contains("centernet_mbv3_coco_512") && e.contains("does not match models.toml"), "{e}");
        assert!(e.contains("512") && e.contains("640"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
        // The graph's batch is fixed at 1: a manifest promising 4 is refused too.
        let (dir, s) = temp_model("batch", &good, ("max_batch = 1", "max_batch = 4"));
        let e = Detector::new(&opts(), &s, s.read_labels().unwrap()).err().expect("must fail").to_string();
        assert!(e.contains("batch is fixed at 1"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
