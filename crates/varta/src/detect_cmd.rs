//! `varta detect` (a model on still images) and `varta eval` (the whole analysis on
//! a clip): the administrator's tools to try a model and to measure the tracker and
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
    /// Model name in the manifest.
    #[arg(long, default_value = "centernet_mbv3_coco_512")]
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
        let img = image::open(path).with_context(|| format!("reading {}", path.display()))?.to_rgb8();
        let (w, h) = img.dimensions();
        let frame = Frame::from_rgb(CameraId::from("detect"), chrono::Utc::now(), w, h, img.into_raw());
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
}

/// Runs the clip through decoding, the model, the tracker and the rules; prints the
/// summary as one JSON object.
pub fn eval(args: EvalArgs) -> Result<()> {
    let cfg = match &args.config {
        Some(p) => varta_core::config::Config::load(p).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => varta_core::config::Config::parse("defaults", "").map_err(|e| anyhow::anyhow!("{e}"))?,
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
