//! `varta detect-bench`: the detection benchmarks of bench/ (one JSON line each).
//!
//! - `preprocess`: scaling + colour conversion + layout of one frame (768x576 and
//!   1080p I420, from the vtest clip) against the model's own inference time.
//! - `pool`: frames per second through the inference pool (scheduler,
//!   preprocessing, inference, decoding, tracker, rules) against a raw ONNX Runtime
//!   loop (`Session::run` on a ready tensor) with the same model and thread count,
//!   alternated in one run so both see the same machine load.
//! - `cost`: CPU time per analysed frame (preprocessing, inference, decoding: the
//!   whole `Detector::detect` call, one ONNX Runtime thread) of `--model` against
//!   `--baseline`, alternated in rounds in one run.
//! - `batch`: CPU time per frame and frames per second of `--model` at batch 1, 2, 4
//!   and 8 (frames of different moments of the clip, as several cameras would give),
//!   alternated in rounds.

use anyhow::{Context, Result};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use varta_core::frame::{Frame, FrameHub, Pixels, SchedulerConfig};
use varta_core::metrics::Registry;
use varta_core::CameraId;
use varta_detect::analysis::CameraRules;
use varta_detect::manifest::ModelSpec;
use varta_detect::pool::{InferencePool, PoolConfig};
use varta_detect::runtime::{Detector, RuntimeOptions};

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// `preprocess`, `pool`, `cost` or `batch`.
    #[arg(value_parser = ["preprocess", "pool", "cost", "batch"])]
    mode: String,
    /// Model manifest.
    #[arg(long, default_value = "models/models.toml")]
    models: PathBuf,
    /// Model name (default: the service's, `[detect] model`).
    #[arg(long, default_value_t = varta_detect::config::DetectConfig::default().model)]
    model: String,
    /// Clip the frames come from.
    #[arg(long, default_value = ".cache/media/vtest.mp4")]
    clip: PathBuf,
    /// `pool`: worker threads (and raw-loop threads).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// `pool`: simulated cameras feeding the pool.
    #[arg(long, default_value_t = 8)]
    cameras: usize,
    /// Seconds per measured window (`pool`: each of raw and pool, twice; `cost` and
    /// `batch`: the whole run, shared between rounds).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// `cost`: the model compared against.
    #[arg(long, default_value = "centernet_mbv3_coco_512")]
    baseline: String,
}

pub fn run(a: Args) -> Result<()> {
    let spec = varta_detect::manifest::load(&a.models, &a.model)?;
    spec.verify()?;
    let mut frames = Vec::new();
    varta_ingest::file::decode_file(&a.clip, &CameraId::from("bench"), 2.0, chrono::Utc::now(), |f| frames.push(f))?;
    anyhow::ensure!(!frames.is_empty(), "no frames decoded from {}", a.clip.display());
    match a.mode.as_str() {
        "preprocess" => preprocess(&spec, &frames, a.seconds),
        "cost" => {
            let base = varta_detect::manifest::load(&a.models, &a.baseline)?;
            base.verify()?;
            cost(&spec, &base, &frames, a.seconds)
        }
        "batch" => batch(&spec, &frames, a.seconds),
        _ => pool(&spec, &frames, &a),
    }
}

/// Runs `det` on `frames` in batches of `batch` for about `budget`; returns (CPU
/// milliseconds per frame, frames per wall second, frames).
fn measure(det: &mut Detector, frames: &[Frame], batch: usize, budget: Duration) -> Result<(f64, f64, usize)> {
    let (c0, t0) = (crate::sys::cpu_secs(), Instant::now());
    let mut n = 0usize;
    while t0.elapsed() < budget {
        let set: Vec<&Frame> = (0..batch).map(|k| &frames[(n + k * 7) % frames.len()]).collect();
        det.detect(&set, 0.2)?;
        n += batch;
    }
    let (cpu, wall) = (crate::sys::cpu_secs() - c0, t0.elapsed().as_secs_f64());
    Ok((cpu * 1000.0 / n as f64, n as f64 / wall, n))
}

/// `cost`: CPU per analysed frame, new model against the baseline, in alternating
/// rounds so that both see the same machine.
fn cost(spec: &ModelSpec, base: &ModelSpec, frames: &[Frame], seconds: u64) -> Result<()> {
    let mut new = Detector::new(&RuntimeOptions::cpu(1), spec, spec.read_labels()?)?;
    let mut old = Detector::new(&RuntimeOptions::cpu(1), base, base.read_labels()?)?;
    // Warm both (first runs allocate and pick kernels).
    measure(&mut new, frames, 1, Duration::from_millis(500))?;
    measure(&mut old, frames, 1, Duration::from_millis(500))?;
    let rounds = 4;
    let budget = Duration::from_secs(seconds.max(8)) / (2 * rounds);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        b.push(measure(&mut old, frames, 1, budget)?.0);
        a.push(measure(&mut new, frames, 1, budget)?.0);
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2.0
    };
    let r = |v: f64| (v * 100.0).round() / 100.0;
    let (ma, mb) = (median(&a), median(&b));
    let line = json!({
        "bench": "cost", "input": format!("{}x{}", frames[0].width, frames[0].height),
        "model": spec.name, "baseline": base.name,
        "model_cpu_ms_per_frame": a.iter().map(|v| r(*v)).collect::<Vec<_>>(),
        "baseline_cpu_ms_per_frame": b.iter().map(|v| r(*v)).collect::<Vec<_>>(),
        "model_median_ms": r(ma), "baseline_median_ms": r(mb),
        "times_cheaper": r(mb / ma),
    });
    println!("{line}");
    Ok(())
}

/// `batch`: what batching frames of several cameras into one inference gains on this
/// machine (one ONNX Runtime thread, as the pool's workers run).
fn batch(spec: &ModelSpec, frames: &[Frame], seconds: u64) -> Result<()> {
    anyhow::ensure!(spec.max_batch > 1, "{} takes batch 1 only (max_batch in the manifest)", spec.name);
    let mut det = Detector::new(&RuntimeOptions::cpu(1), spec, spec.read_labels()?)?;
    let sizes: Vec<usize> = [1usize, 2, 4, 8].into_iter().filter(|b| *b <= spec.max_batch).collect();
    for b in &sizes {
        measure(&mut det, frames, *b, Duration::from_millis(300))?;
    }
    let rounds = 3;
    let budget = Duration::from_secs(seconds.max(8)) / (rounds * sizes.len() as u32);
    let mut cpu = vec![Vec::new(); sizes.len()];
    let mut fps = vec![Vec::new(); sizes.len()];
    for _ in 0..rounds {
        for (i, b) in sizes.iter().enumerate() {
            let (c, f, _) = measure(&mut det, frames, *b, budget)?;
            cpu[i].push(c);
            fps[i].push(f);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let r = |v: f64| (v * 100.0).round() / 100.0;
    let per: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({"batch": b, "cpu_ms_per_frame": r(mean(&cpu[i])), "frames_per_s": r(mean(&fps[i])),
                   "gain_vs_batch_1": r(mean(&cpu[0]) / mean(&cpu[i]))})
        })
        .collect();
    let line = json!({
        "bench": "batch", "model": spec.name, "input": format!("{}x{}", frames[0].width, frames[0].height),
        "threads": 1, "sizes": per,
    });
    println!("{line}");
    Ok(())
}

/// Nearest-neighbour upscale of an I420 frame (for a 1080p input of real content).
fn upscale(f: &Frame, w: u32, h: u32) -> Frame {
    let Pixels::I420(src) = &f.pixels else { unreachable!("decoded frames are I420") };
    let (sw, sh) = (f.width as usize, f.height as usize);
    let (csw, csh) = (sw.div_ceil(2), sh.div_ceil(2));
    let (cw, ch) = ((w as usize).div_ceil(2), (h as usize).div_ceil(2));
    // (offset in the source, source plane size, output plane size) for Y, U and V.
    let planes = [
        (0, (sw, sh), (w as usize, h as usize)),
        (sw * sh, (csw, csh), (cw, ch)),
        (sw * sh + csw * csh, (csw, csh), (cw, ch)),
    ];
    let mut out = Vec::with_capacity(Frame::i420_len(w, h));
    for (off, (pw, ph), (ow, oh)) in planes {
        for y in 0..oh {
            let row = off + (y * ph / oh) * pw;
            out.extend((0..ow).map(|x| src[row + x * pw / ow]));
        }
    }
    Frame { width: w, height: h, pixels: Pixels::I420(out.into()), ..f.clone() }
}

fn preprocess(spec: &ModelSpec, frames: &[Frame], seconds: u64) -> Result<()> {
    let mut det = Detector::new(&RuntimeOptions::cpu(1), spec, spec.read_labels()?)?;
    let mut input = varta_detect::preprocess::input_tensor(spec, 1);
    let sizes = [(frames[0].width, frames[0].height), (1920, 1080)];
    let budget = Duration::from_secs(seconds.max(2)) / 4;
    for (w, h) in sizes {
        let set: Vec<Frame> =
            frames.iter().take(20).map(|f| if f.width == w { f.clone() } else { upscale(f, w, h) }).collect();
        // Preprocessing alone.
        let (mut n, t0) = (0usize, Instant::now());
        while t0.elapsed() < budget {
            let image = varta_detect::preprocess::image_mut(&mut input, 0, spec.layout);
            varta_detect::preprocess::fill(image, &set[n % set.len()], spec);
            n += 1;
        }
        let pre_ms = t0.elapsed().as_secs_f64() * 1000.0 / n as f64;
        // The whole detect call (preprocessing + inference + decoding).
        let (mut m, t0) = (0usize, Instant::now());
        while t0.elapsed() < budget {
            det.detect_one(&set[m % set.len()], 0.2)?;
            m += 1;
        }
        let total_ms = t0.elapsed().as_secs_f64() * 1000.0 / m as f64;
        let infer_ms = (total_ms - pre_ms).max(1e-6);
        let line = json!({
            "bench": "preprocess", "input": format!("{w}x{h}"), "model": spec.name,
            "preprocess_ms": (pre_ms * 1000.0).round() / 1000.0,
            "inference_ms": (infer_ms * 100.0).round() / 100.0,
            "share_of_inference": (pre_ms / infer_ms * 1000.0).round() / 1000.0,
            "preprocess_runs": n, "detect_runs": m,
        });
        println!("{line}");
    }
    Ok(())
}

/// Inferences per second of `threads` raw sessions looping on a ready tensor.
pub(crate) fn raw_loop(spec: &ModelSpec, frame: &Frame, threads: usize, secs: u64) -> Result<f64> {
    let env = varta_detect::runtime::environment(&varta_detect::runtime::library_path())?;
    let mut input = varta_detect::preprocess::input_tensor(spec, 1);
    varta_detect::preprocess::fill(varta_detect::preprocess::image_mut(&mut input, 0, spec.layout), frame, spec);
    let input = Arc::new(input);
    // The same session options as the pool's workers, so only the pool's own work differs.
    let opts = RuntimeOptions::cpu(1);
    let sessions = (0..threads)
        .map(|_| varta_detect::runtime::build_session(env, &opts, spec, varta_detect::runtime::Provider::Cpu))
        .collect::<Result<Vec<_>, _>>()?;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let t0 = Instant::now();
    let handles: Vec<_> = sessions
        .into_iter()
        .map(|mut s| {
            let (input, name) = (input.clone(), spec.input.clone());
            std::thread::spawn(move || -> Result<u64> {
                let mut n = 0;
                while Instant::now() < deadline {
                    let t = ort::value::TensorRef::from_array_view(input.view())?;
                    let out = s.run(ort::inputs![name.as_str() => t])?;
                    drop(out);
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.join().map_err(|_| anyhow::anyhow!("raw loop thread panicked"))??;
    }
    Ok(total as f64 / t0.elapsed().as_secs_f64())
}

/// Frames per second analysed by a pool of `workers` fed by `cameras` busy cameras.
fn pool_rate(spec: &ModelSpec, frames: &[Frame], a: &Args) -> Result<f64> {
    // No frame may go stale or be skipped for lack of supply: this measures the
    // pool's own overhead, not the scheduler's limits.
    let hub = FrameHub::with_config(SchedulerConfig {
        capacity: 2,
        max_age: Duration::from_secs(3600),
        ..Default::default()
    });
    let metrics = Arc::new(Registry::default());
    let journal = varta_core::journal::Journal::new(4096);
    let drain = journal.drain_with(|_| {});
    let snapdir = std::env::temp_dir().join(format!("varta-bench-snap-{}", std::process::id()));
    let cfg = PoolConfig {
        runtime: RuntimeOptions::cpu(1),
        workers: a.workers,
        tracker: Default::default(),
        snapshots: varta_detect::snapshot::SnapshotStore::new(&snapdir, 85)?,
        plates: Default::default(),
        clock: varta_core::clock::system(),
        observer: None,
    };
    let pool = InferencePool::start(spec, &cfg, hub.clone(), journal.clone(), metrics.clone())?;
    let cams: Vec<CameraId> = (0..a.cameras).map(|i| CameraId::from(format!("b{i}").as_str())).collect();
    let rules =
        CameraRules { classes: vec!["person".into()], min_score: 0.4, zones: vec![], lines: vec![], rules: vec![] };
    for c in &cams {
        hub.add_camera(c, metrics.camera(c));
        pool.set_camera(c, rules.clone())?;
    }
    // The feeder keeps every queue full with the clip's frames, in order per camera.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = {
        let (hub, cams, frames, stop) = (hub.clone(), cams.clone(), frames.to_vec(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0usize;
            let t0 = chrono::Utc::now();
            while !stop.load(Ordering::Relaxed) {
                for c in &cams {
                    let f = &frames[i % frames.len()];
                    let at = t0 + chrono::Duration::milliseconds(500 * i as i64);
                    hub.push(Frame { camera: c.clone(), captured_at: at, ..f.clone() });
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let analysed = || cams.iter().map(|c| metrics.camera(c).counters.frames_analysed.get()).sum::<u64>();
    std::thread::sleep(Duration::from_secs(3));
    let (n0, t0) = (analysed(), Instant::now());
    std::thread::sleep(Duration::from_secs(a.seconds));
    let rate = (analysed() - n0) as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    feeder.join().ok();
    pool.stop();
    journal.close();
    drain.join().ok();
    let _ = std::fs::remove_dir_all(snapdir);
    Ok(rate)
}

fn pool(spec: &ModelSpec, frames: &[Frame], a: &Args) -> Result<()> {
    let (mut raw, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        raw.push(raw_loop(spec, &frames[0], a.workers, a.seconds).context("raw ONNX Runtime loop")?);
        ours.push(pool_rate(spec, frames, a).context("inference pool")?);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let r = |v: f64| (v * 100.0).round() / 100.0;
    let line = json!({
        "bench": "pool", "model": spec.name, "threads": a.workers, "cameras": a.cameras, "window_s": a.seconds,
        "raw_fps": raw.iter().map(|v| r(*v)).collect::<Vec<_>>(),
        "pool_fps": ours.iter().map(|v| r(*v)).collect::<Vec<_>>(),
        "ratio": r(mean(&ours) / mean(&raw)),
    });
    println!("{line}");
    Ok(())
}
