//! `varta detect` (a model on still images), `varta plate` (the plate reader on still
//! images) and `varta eval` (the whole analysis on a clip): the administrator's tools to try a model and to measure the tracker and
//! rules, through exactly the service's code (preprocessing, decoding, tracker,
//! rules, snapshots); only the source of the frames differs.

use anyhow::{bail, Context, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;
use varta_core::frame::Frame;
use varta_core::CameraId;
use varta_detect::analysis::{CameraAnalyser, CameraRules, FLOOR};
use varta_detect::manifest::ModelSpec;
use varta_detect::rules::Emit;
use varta_detect::runtime::{Detector, RuntimeOptions};
use varta_detect::snapshot::SnapshotStore;
use varta_detect::tracker::TrackerConfig;

/// Which model, from which manifest.
#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// Model manifest.
    #[arg(long, default_value = "models/models.toml")]
    models: PathBuf,
    /// Model name in the manifest (default: the service's, `[detect] model`).
    #[arg(long, default_value_t = varta_detect::config::DetectConfig::default().model)]
    model: String,
}

impl ModelArgs {
    /// Loads and checks the model (hash, shapes) on the CPU.
    fn load(&self) -> Result<(ModelSpec, Detector)> {
        let spec = varta_detect::manifest::load(&self.models, &self.model)?;
        spec.verify()?;
        let labels = spec.read_labels()?;
        let det = Detector::new(&RuntimeOptions::cpu(1), &spec, labels)?;
        Ok((spec, det))
    }
}

/// `varta detect`.
#[derive(clap::Args, Debug)]
pub struct DetectArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Lowest score printed.
    #[arg(long, default_value_t = 0.3)]
    min_score: f32,
    /// Images (JPEG or PNG).
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

/// Prints one JSON line per image: its size and detections (class, score, box in
/// the image's own pixels: left, top, right, bottom).
pub fn detect(args: DetectArgs) -> Result<()> {
    let (spec, mut det) = args.model.load()?;
    for path in &args.images {
        let frame = still(path, &CameraId::from("detect"))?;
        let (w, h) = (frame.width, frame.height);
        let t0 = Instant::now();
        let found = det.detect_one(&frame, args.min_score)?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        let dets: Vec<_> = found
            .iter()
            .map(|d| {
                let b = d.bbox.map(|v| (v as f64 * 10.0).round() / 10.0);
                let score = (d.score as f64 * 1000.0).round() / 1000.0;
                json!({"class": det.labels()[d.class], "score": score, "box": b})
            })
            .collect();
        let line = json!({
            "image": path.display().to_string(), "width": w, "height": h, "model": spec.name,
            "milliseconds": (ms * 10.0).round() / 10.0, "detections": dets,
        });
        println!("{line}");
    }
    Ok(())
}

/// `varta plate`.
#[derive(clap::Args, Debug)]
pub struct PlateArgs {
    /// Directory of the OCR models (made by ./scripts/setup).
    #[arg(long, default_value_os_t = varta_detect::ocr::default_dir())]
    models: PathBuf,
    /// Images (JPEG or PNG): vehicle crops or whole pictures.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

/// Prints one JSON line per image: the plates read on it, each with its normalised
/// Latin text, the text shown to operators (Cyrillic for Ukrainian formats), the
/// reader's confidence (0–1) and its box in the image's pixels (x1 y1 x2 y2). Text
/// that cannot be a plate (`varta_core::plate::plate_text`) is left out; a Ukrainian
/// plate read with a digit in a letter's place (or the reverse) is given its twin.
pub fn plate(args: PlateArgs) -> Result<()> {
    use varta_core::plate;
    let mut reader = varta_detect::ocr::TextReader::load(&RuntimeOptions::cpu(1), &args.models)?;
    for path in &args.images {
        let img = image::open(path).with_context(|| format!("reading {}", path.display()))?.to_rgb8();
        let t0 = Instant::now();
        let plates = reader.plates(&img)?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        let plates: Vec<_> = plates
            .iter()
            .map(|p| {
                let confidence = (p.confidence as f64 * 1000.0).round() / 1000.0;
                json!({"text": p.text, "display": plate::display(&p.text), "confidence": confidence,
                       "format": plate::format_of(&p.text).as_str(), "box": p.rect})
            })
            .collect();
        let line =
            json!({"image": path.display().to_string(), "milliseconds": (ms * 10.0).round() / 10.0, "plates": plates});
        println!("{line}");
    }
    Ok(())
}

/// A still image (JPEG or PNG) as a frame of `camera`.
fn still(path: &std::path::Path, camera: &CameraId) -> Result<Frame> {
    let img = image::open(path).with_context(|| format!("reading {} (run ./scripts/setup)", path.display()))?.to_rgb8();
    let (w, h) = img.dimensions();
    Ok(Frame::from_rgb(camera.clone(), chrono::Utc::now(), w, h, img.into_raw()))
}

/// `varta eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Clip to run (any format GStreamer decodes).
    #[arg(long, default_value = ".cache/media/vtest.mp4")]
    clip: PathBuf,
    /// Analysed frames per second of the clip's timeline.
    #[arg(long, default_value_t = 2.0)]
    fps: f64,
    /// Take tracker settings and the camera's classes, zones and rules from this
    /// config (with `--camera`); default: the config defaults, no rules.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Camera of `--config` whose rules apply (default: its first camera).
    #[arg(long)]
    camera: Option<String>,
    /// Write event snapshots here.
    #[arg(long)]
    snapshots: Option<PathBuf>,
    /// Print every event record as a JSON line before the summary.
    #[arg(long)]
    events: bool,
    /// Measure accuracy instead: ground truth in COCO format (see
    /// tests/fixtures/labels/README.md); prints precision, recall and AP@0.5 per
    /// class and overall as one JSON object. `--clip`, `--fps`, `--config` and the
    /// rules do not apply.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// With `--labels`: where the images' and videos' files are.
    #[arg(long, default_value = ".cache/media")]
    media: PathBuf,
    /// With `--labels`: score at which precision and recall are taken (the cameras'
    /// default `min_score`).
    #[arg(long, default_value_t = 0.4)]
    min_score: f32,
    /// With `--labels`: fail (exit status 1) when overall recall or precision is
    /// below these, or AP@0.5 of person or car below `--min-ap50`.
    #[arg(long, default_value_t = 0.0)]
    min_recall: f64,
    #[arg(long, default_value_t = 0.0)]
    min_precision: f64,
    #[arg(long, default_value_t = 0.0)]
    min_ap50: f64,
}

/// Runs the clip through decoding, the model, the tracker and the rules; prints the
/// summary as one JSON object.
pub fn eval(args: EvalArgs) -> Result<()> {
    if let Some(labels) = &args.labels {
        return eval_labels(&args, labels);
    }
    let cfg = match &args.config {
        Some(p) => varta_node::config::Config::load(p).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => varta_node::config::Config::parse("defaults", "").map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let rules = match (&args.config, &args.camera) {
        (Some(_), Some(id)) => {
            CameraRules::from(cfg.cameras.iter().find(|c| &c.id == id).with_context(|| format!("no camera `{id}`"))?)
        }
        (Some(_), None) if !cfg.cameras.is_empty() => CameraRules::from(&cfg.cameras[0]),
        _ => {
            let c: varta_core::config::CameraConfig =
                toml::from_str("id = \"eval\"\nsite = \"eval\"\nurl = \"rtsp://x\"")?;
            CameraRules::from(&c)
        }
    };
    if !(args.fps > 0.0 && args.fps <= 60.0) {
        bail!("--fps must be greater than 0 and at most 60");
    }
    let d = &cfg.detect;
    let tracker = TrackerConfig::from(d);
    let (_spec, mut det) = args.model.load()?;
    let labels = det.labels().to_vec();
    let camera = CameraId::from("eval");
    let mut analyser = CameraAnalyser::new(&camera, rules, &labels, tracker)?.with_track_log();
    let store = args.snapshots.as_deref().map(|p| SnapshotStore::new(p, d.snapshot_quality)).transpose()?;
    let mut emits: Vec<Emit> = Vec::new();
    let (mut infer_s, mut err) = (0.0, None);
    let start = chrono::Utc::now();
    let t0 = Instant::now();
    let frames = varta_ingest::file::decode_file(&args.clip, &camera, args.fps, start, |f| {
        if err.is_some() {
            return;
        }
        let t = Instant::now();
        match det.detect_one(&f, FLOOR) {
            Ok(dets) => {
                infer_s += t.elapsed().as_secs_f64();
                emits.extend(analyser.process(&f, &dets, &labels).0);
            }
            Err(e) => err = Some(e),
        }
    })?;
    if let Some(e) = err {
        return Err(e.into());
    }
    emits.extend(analyser.finish(varta_core::event::EndReason::Ended));
    let wall = t0.elapsed().as_secs_f64();
    let mut snapshots = 0;
    for e in &emits {
        if let (Some(store), Some(job)) = (&store, &e.snapshot) {
            store.write(&e.record.id, job)?;
            snapshots += 1;
        }
        if args.events {
            println!("{}", serde_json::to_string(&e.record)?);
        }
    }
    let duration_s = frames as f64 / args.fps;
    let tracks = analyser.track_log();
    let mut by_class: BTreeMap<&str, usize> = BTreeMap::new();
    for t in tracks {
        *by_class.entry(&t.class).or_default() += 1;
    }
    let lens: Vec<f64> =
        tracks.iter().map(|t| (t.last_seen - t.first_seen).num_milliseconds() as f64 / 1000.0).collect();
    let mean = |v: &[f64]| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
    let hits: Vec<f64> = tracks.iter().map(|t| t.hits as f64).collect();
    let started = emits.iter().filter(|e| e.record.phase == varta_core::event::EventPhase::Started).count();
    let mut by_rule: BTreeMap<&str, usize> = BTreeMap::new();
    for e in emits.iter().filter(|e| e.record.phase == varta_core::event::EventPhase::Started) {
        *by_rule.entry(&e.record.rule).or_default() += 1;
    }
    let r2 = |v: f64| (v * 100.0).round() / 100.0;
    let summary = json!({
        "clip": args.clip.display().to_string(),
        "fps": args.fps,
        "frames_analysed": frames,
        "clip_seconds": r2(duration_s),
        "tracks": tracks.len(),
        "tracks_by_class": by_class,
        "mean_track_seconds": r2(mean(&lens)),
        "mean_track_frames": r2(mean(&hits)),
        "events": started,
        "events_by_rule": by_rule,
        "events_per_minute": r2(started as f64 * 60.0 / duration_s.max(1e-9)),
        "records": emits.len(),
        "snapshots_written": snapshots,
        "inference_ms_mean": r2(infer_s * 1000.0 / frames.max(1) as f64),
        "wall_seconds": r2(wall),
    });
    println!("{summary}");
    Ok(())
}

/// The parts of a COCO ground-truth file that `varta eval --labels` reads. Beyond
/// COCO: an image may name a `video` (under `--media`) and a 0-based decode-order
/// `frame` instead of a still in `file_name`; an annotation may carry `"ignore": 1`.
#[derive(serde::Deserialize)]
struct Coco {
    images: Vec<CocoImage>,
    annotations: Vec<CocoAnnotation>,
    categories: Vec<CocoCategory>,
}

#[derive(serde::Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
    width: u32,
    height: u32,
    #[serde(default)]
    video: Option<String>,
    #[serde(default)]
    frame: Option<usize>,
}

#[derive(serde::Deserialize)]
struct CocoAnnotation {
    image_id: u64,
    category_id: u64,
    /// Left, top, width, height in pixels (COCO's `bbox`).
    bbox: [f32; 4],
    #[serde(default)]
    ignore: u8,
    #[serde(default)]
    iscrowd: u8,
}

#[derive(serde::Deserialize)]
struct CocoCategory {
    id: u64,
    name: String,
}

/// `varta eval --labels`: every labelled image through the service's preprocessing,
/// model and decoder; detections down to a low floor so that AP sees the whole
/// precision-recall curve.
fn eval_labels(args: &EvalArgs, labels: &std::path::Path) -> Result<()> {
    use varta_detect::accuracy::{Evaluator, Found, Truth};
    let text = std::fs::read_to_string(labels).with_context(|| format!("reading {}", labels.display()))?;
    let coco: Coco = serde_json::from_str(&text).with_context(|| format!("parsing {}", labels.display()))?;
    let names: BTreeMap<u64, &str> = coco.categories.iter().map(|c| (c.id, c.name.as_str())).collect();
    let mut truth: BTreeMap<u64, Vec<Truth>> = BTreeMap::new();
    for a in &coco.annotations {
        let class = names.get(&a.category_id).with_context(|| format!("category {} is not listed", a.category_id))?;
        let [x, y, w, h] = a.bbox;
        truth.entry(a.image_id).or_default().push(Truth {
            class: class.to_string(),
            bbox: [x, y, x + w, y + h],
            ignore: a.ignore != 0 || a.iscrowd != 0,
        });
    }
    let (spec, mut det) = args.model.load()?;
    let model_labels = det.labels().to_vec();
    let mut eval = Evaluator::new(&varta_core::config::default_classes(), args.min_score);
    let camera = CameraId::from("eval");
    let (mut infer_s, mut inferences) = (0.0, 0usize);
    let mut run = |frame: &Frame, img: &CocoImage, eval: &mut Evaluator| -> Result<()> {
        if (frame.width, frame.height) != (img.width, img.height) {
            bail!(
                "{}: the labels are for {}x{}, the file decodes to {}x{}",
                img.file_name,
                img.width,
                img.height,
                frame.width,
                frame.height
            );
        }
        let t = Instant::now();
        let dets = det.detect_one(frame, EVAL_FLOOR)?;
        infer_s += t.elapsed().as_secs_f64();
        inferences += 1;
        let found: Vec<Found> =
            dets.iter().map(|d| Found { class: model_labels[d.class].clone(), score: d.score, bbox: d.bbox }).collect();
        eval.add_image(truth.get(&img.id).map(Vec::as_slice).unwrap_or(&[]), &found);
        Ok(())
    };
    // Stills one by one; video frames grouped by video, decoded once per video.
    let mut by_video: BTreeMap<&str, BTreeMap<usize, &CocoImage>> = BTreeMap::new();
    for img in &coco.images {
        match (&img.video, img.frame) {
            (Some(v), Some(f)) => {
                by_video.entry(v.as_str()).or_default().insert(f, img);
            }
            (Some(_), None) | (None, Some(_)) => bail!("{}: `video` and `frame` go together", img.file_name),
            (None, None) => {
                run(&still(&args.media.join(&img.file_name), &camera)?, img, &mut eval)?;
            }
        }
    }
    for (video, frames) in &by_video {
        let path = args.media.join(video);
        let wanted: std::collections::BTreeSet<usize> = frames.keys().copied().collect();
        let mut err = None;
        let given = varta_ingest::file::decode_frames(&path, &camera, &wanted, chrono::Utc::now(), |i, f| {
            if err.is_none() {
                err = run(&f, frames[&i], &mut eval).err();
            }
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        if given != wanted.len() {
            bail!("{}: {} of the {} labelled frames decoded", path.display(), given, wanted.len());
        }
    }
    let report = eval.report();
    let r3 = |v: f64| (v * 1000.0).round() / 1000.0;
    let per_class: serde_json::Map<String, serde_json::Value> = report
        .classes
        .iter()
        .map(|(c, s)| {
            (
                c.clone(),
                json!({
                    "labelled": s.labelled, "true_positives": s.true_positives, "false_positives": s.false_positives,
                    "precision": r3(s.precision), "recall": r3(s.recall), "ap50": s.ap50.map(r3),
                }),
            )
        })
        .collect();
    let o = &report.overall;
    let out = json!({
        "labels": labels.display().to_string(),
        "model": spec.name,
        "images": report.images,
        "min_score": args.min_score,
        "classes": per_class,
        "overall": {
            "labelled": o.labelled, "true_positives": o.true_positives, "false_positives": o.false_positives,
            "precision": r3(o.precision), "recall": r3(o.recall), "ap50": o.ap50.map(r3),
        },
        "inference_ms_mean": (infer_s * 1000.0 / inferences.max(1) as f64 * 10.0).round() / 10.0,
    });
    println!("{out}");
    let mut short = Vec::new();
    if o.recall < args.min_recall {
        short.push(format!("recall {:.3} < {}", o.recall, args.min_recall));
    }
    if o.precision < args.min_precision {
        short.push(format!("precision {:.3} < {}", o.precision, args.min_precision));
    }
    for c in ["person", "car"] {
        let ap = report.classes[c].ap50.unwrap_or(0.0);
        if ap < args.min_ap50 {
            short.push(format!("{c} AP@0.5 {ap:.3} < {}", args.min_ap50));
        }
    }
    if !short.is_empty() {
        bail!("{} below its floor on {}: {}", spec.name, labels.display(), short.join(", "));
    }
    Ok(())
}

/// Lowest score kept for AP: low enough that the precision-recall curve reaches the
/// model's full recall (COCO evaluations keep the top 100 per image at any score).
const EVAL_FLOOR: f32 = 0.05;
