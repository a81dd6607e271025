//! The benchmark harness. `varta bench`: what one node holds, where the time goes, and how it compares with
//! the raw decoder and the raw model on the same machine, in the same run.
//!
//! - `run`: the simulator (a child process, so its CPU is not counted) or given RTSP
//!   URLs → a whole node in this process (ingest, detection, store, API) for a
//!   warm-up and a measured window; then the floors: the same streams through plain
//!   `gst-launch-1.0` decoders (one process each), and a raw ONNX Runtime loop on the
//!   same model. Prints a table (a progress bar while it runs), writes `--json`, and
//!   stores the run in `bench_runs` (the admin console lists them).
//! - `capacity`: repeated short runs, doubling then bisecting the number of cameras,
//!   for the largest that meets the targets; names the stage that failed first.
//! - `compare`: a run's JSON against a baseline file (`bench/baselines/`).
//!
//! CPU is split by thread: the `infer-*` threads are detection (preprocessing,
//! inference, tracker, rules); every other thread of the process is ingest, store and
//! API. The decoder floor is compared with the latter.

//!
//! Besides `varta bench`, the focused benchmarks of the first wave live here:
//! [`ingest`] (`varta ingest-bench`), [`detect`] (`varta detect-bench`), [`store_load`]
//! (`varta store-load`), [`alert`] (`varta alert-bench`) and [`eval`] (`varta eval`,
//! accuracy on labelled data).

pub mod alert;
pub mod detect;
pub mod eval;
pub mod ingest;
pub mod plates;
pub mod report;
mod run;
pub mod store_load;
mod sys;

use anyhow::{Context, Result};
use report::{BenchReport, CapacityReport, CapacityStep, Limit, Targets};
pub use run::run;
use std::path::{Path, PathBuf};
use varta_core::config::DecodePolicy;

/// `varta bench …`.
#[derive(clap::Subcommand)]
pub enum BenchCmd {
    /// One measured run: per-stage figures, latency, CPU, memory, and the floors.
    Run(RunArgs),
    /// The largest number of cameras that meets the targets, and the limiting stage.
    Capacity(CapacityArgs),
    /// A run's JSON against a baseline (regressions marked).
    Compare(CompareArgs),
    /// The plate reader on the golden set: exact reads by character height, voting,
    /// negatives, time per crop.
    Plates(plates::Args),
}

/// `varta bench run`.
#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {
    /// Simulated cameras (ignored with --urls).
    #[arg(long, default_value_t = 8)]
    pub cameras: usize,
    /// RTSP URLs to use instead of the simulator (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub urls: Vec<String>,
    /// Clip the simulator serves (its resolution and fps are the streams').
    #[arg(long, default_value = ".cache/media/vtest.mp4")]
    pub clip: PathBuf,
    /// Share of the time each simulated camera shows an idle scene (0 = always active).
    #[arg(long, default_value_t = 0.8)]
    pub idle_share: f64,
    /// Seconds of one idle + active cycle of the simulator.
    #[arg(long, default_value_t = 50.0)]
    pub scene_period: f64,
    /// Decode policy of every camera.
    #[arg(long, default_value = "adaptive", value_parser = parse_decode)]
    pub decode: DecodePolicy,
    /// Frames per second analysed per camera.
    #[arg(long, default_value_t = 2.0)]
    pub analysis_fps: f64,
    /// Config whose [detect], [ingest] and first camera (with its rules) are the template.
    #[arg(long, default_value = "config/demo.toml")]
    pub config: PathBuf,
    /// Inference workers (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Seconds before measuring.
    #[arg(long, default_value_t = 15.0)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Seconds of each floor measurement.
    #[arg(long, default_value_t = 15.0)]
    pub floor_secs: f64,
    /// Skip the floors.
    #[arg(long)]
    pub no_floors: bool,
    /// Share of the simulated cameras that show vehicles carrying number plates
    /// (`varta plate-scene`, same idle/active schedule), with plate reading on and
    /// `car` added to their classes; 0 = plates off.
    #[arg(long, default_value_t = 0.0)]
    pub plate_share: f64,
    /// With `--plate-share`: the same cameras and scenes, plate reading off (the
    /// baseline its cost is measured against).
    #[arg(long)]
    pub no_plate_reading: bool,
    /// Streams the decoder floor decodes (the first ones): per camera-minute it is the
    /// same figure, and more plain decoders than cores would starve each other.
    #[arg(long, default_value_t = 16)]
    pub floor_streams: usize,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Frames per second of the streams (for expected rates; the vtest clip is 10).
    #[arg(long, default_value_t = 10.0)]
    pub stream_fps: f64,
}

/// `varta bench capacity`.
#[derive(clap::Args, Clone, Debug)]
pub struct CapacityArgs {
    /// The run's settings (cameras is the first try).
    #[command(flatten)]
    pub run: RunArgs,
    /// Most cameras tried.
    #[arg(long, default_value_t = 512)]
    pub max_cameras: usize,
    /// Target: analysed fps per active camera (default 90% of --analysis-fps).
    #[arg(long)]
    pub target_fps: Option<f64>,
    /// Target: p95 from capture to event commit, ms.
    #[arg(long, default_value_t = 3000.0)]
    pub target_latency_p95_ms: f64,
}

/// `varta bench compare`.
#[derive(clap::Args, Clone, Debug)]
pub struct CompareArgs {
    /// A report written by `varta bench run --json`.
    pub run: PathBuf,
    /// Baseline report (default: bench/baselines/HOSTNAME.json).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Changes worse than this many percent are marked as regressions.
    #[arg(long, default_value_t = 10.0)]
    pub tolerance_pct: f64,
}

/// Parses a decode policy as the config spells it.
pub fn parse_decode(s: &str) -> Result<DecodePolicy, String> {
    match s {
        "full" => Ok(DecodePolicy::Full),
        "keyframes" => Ok(DecodePolicy::Keyframes),
        "adaptive" => Ok(DecodePolicy::Adaptive),
        _ => Err("expected `full`, `keyframes` or `adaptive`".into()),
    }
}

/// The database: DATABASE_URL, or the demo's local cluster (`.varta/pg`, whose owner
/// URL is returned; it applies the migrations).
async fn database() -> Result<(String, Option<String>)> {
    match std::env::var("DATABASE_URL") {
        Ok(u) => Ok((u, varta_node::owner_url_from_env())),
        Err(_) => {
            let owner = varta_store::localpg::start(Path::new(".varta/pg"), varta_store::localpg::DEFAULT_PORT).await?;
            Ok((owner.clone(), Some(owner)))
        }
    }
}

/// Runs a `varta bench` command.
pub async fn main(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Run(a) => {
            let (url, owner) = database().await?;
            let r = run(&a, &url, owner.as_deref()).await?;
            println!("varta bench run\n{}", r.table());
            if let Some(p) = &a.json {
                std::fs::write(p, serde_json::to_string_pretty(&r)?)?;
            }
            Ok(())
        }
        BenchCmd::Capacity(c) => capacity(c).await,
        BenchCmd::Compare(c) => compare(&c),
        BenchCmd::Plates(a) => plates::run(&a),
    }
}

/// Repeated runs without floors: doubling from `--cameras` until a target fails, then
/// bisecting to within 10%. Prints the answer, writes `--json`, stores it in `bench_runs`.
async fn capacity(c: CapacityArgs) -> Result<()> {
    let (url, owner) = database().await?;
    let targets = Targets {
        analysed_fps_per_active_camera: c.target_fps.unwrap_or(0.9 * c.run.analysis_fps),
        capture_to_commit_p95_ms: c.target_latency_p95_ms,
        stale_drops_active: 0,
        received_fps_per_camera: 0.9 * c.run.stream_fps,
    };
    let mut steps = Vec::new();
    let (mut good, mut bad): (Option<usize>, Option<(usize, String)>) = (None, None);
    let mut n = c.run.cameras.max(1);
    loop {
        let a = RunArgs { cameras: n, no_floors: true, json: None, ..c.run.clone() };
        eprintln!("capacity: trying {n} cameras");
        let report = run(&a, &url, owner.as_deref()).await?;
        let limit = report.limiting_stage(&targets);
        eprintln!("capacity: {n} cameras: {}", limit.as_deref().unwrap_or("all targets met"));
        match &limit {
            None => good = Some(n),
            Some(why) => bad = Some((n, why.clone())),
        }
        steps.push(CapacityStep { cameras: n, limit, report });
        n = match (good, &bad) {
            (Some(g), None) if g * 2 <= c.max_cameras => g * 2,
            (Some(g), None) => {
                if g >= c.max_cameras {
                    break;
                }
                c.max_cameras
            }
            (g, Some((b, _))) => {
                let lo = g.unwrap_or(0);
                if *b - lo <= (lo / 10).max(1) {
                    break;
                }
                (lo + b) / 2
            }
            (None, None) => unreachable!("a step either passed or failed"),
        };
        if n == 0 {
            break;
        }
    }
    let answer = CapacityReport {
        bench: "capacity".into(),
        cameras: good.unwrap_or(0),
        limited_by: bad.map(|(at_cameras, stage)| Limit { at_cameras, stage }),
        targets,
        steps,
    };
    println!("varta bench capacity: this node sustains {} cameras", answer.cameras);
    if let Some(l) = &answer.limited_by {
        println!("  limiting stage (first failure, at {} cameras): {}", l.at_cameras, l.stage);
    }
    if let Some(p) = &c.run.json {
        std::fs::write(p, serde_json::to_string_pretty(&answer)?)?;
    }
    let store = varta_store::Store::connect(&url).await?;
    let results = serde_json::json!({"cameras": answer.cameras, "limited_by": answer.limited_by});
    let now = chrono::Utc::now();
    store
        .insert_bench_run(
            "capacity",
            now,
            &sys::hostname(),
            &serde_json::to_value(&answer.targets)?,
            &results,
            env!("CARGO_PKG_VERSION"),
        )
        .await?;
    Ok(())
}

/// Reads a report written by `varta bench run --json`.
pub fn read_report(p: &Path) -> Result<BenchReport> {
    serde_json::from_str(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        .with_context(|| format!("{} is not a bench run report", p.display()))
}

fn compare(c: &CompareArgs) -> Result<()> {
    let base_path =
        c.baseline.clone().unwrap_or_else(|| PathBuf::from(format!("bench/baselines/{}.json", sys::hostname())));
    let (run, base) = (read_report(&c.run)?, read_report(&base_path)?);
    if run.params.cameras != base.params.cameras || run.params.decode != base.params.decode {
        println!(
            "note: different settings (cameras {} vs {}, decode {} vs {}): figures are not like for like",
            run.params.cameras, base.params.cameras, run.params.decode, base.params.decode
        );
    }
    println!("{:<46} {:>12} {:>12} {:>9}", "figure", "baseline", "this run", "change");
    let mut worse = 0;
    for ((name, r, higher_better), (_, b, _)) in run.compared().into_iter().zip(base.compared()) {
        let (Some(b), Some(r)) = (b, r) else {
            let show = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or("—".into());
            println!("{name:<46} {:>12} {:>12}", show(b), show(r));
            continue;
        };
        let pct = if b != 0.0 { (r - b) / b.abs() * 100.0 } else { 0.0 };
        let bad = if higher_better { pct < -c.tolerance_pct } else { pct > c.tolerance_pct };
        worse += bad as usize;
        println!("{name:<46} {b:>12.2} {r:>12.2} {pct:>+8.1}%{}", if bad { "  REGRESSION" } else { "" });
    }
    if worse > 0 {
        anyhow::bail!("{worse} figure(s) worse than the baseline by more than {}%", c.tolerance_pct);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::report::*;

    #[test]
    fn percentiles_and_limits() {
        let p = Pcts::of((1..=100).map(f64::from).collect());
        assert_eq!((p.n, p.p50_ms, p.p99_ms), (100, Some(51.0), Some(99.0)));
        assert_eq!(Pcts::of(vec![]).p50_ms, None);
        let ok: BenchReport = serde_json::from_str(include_str!("../../../bench/baselines/vm.json")).unwrap();
        let t = Targets {
            analysed_fps_per_active_camera: 1.8,
            capture_to_commit_p95_ms: 3000.0,
            stale_drops_active: 0,
            received_fps_per_camera: 9.0,
        };
        assert_eq!(ok.limiting_stage(&t), None);
        let mut slow = ok.clone();
        slow.active.stale_drops = 3;
        assert!(slow.limiting_stage(&t).unwrap().starts_with("detection"));
        let mut starved = ok.clone();
        starved.per_camera.received_fps = 6.0;
        assert!(starved.limiting_stage(&t).unwrap().starts_with("ingest"));
        let mut late = ok;
        late.latency.capture_to_commit.p95_ms = Some(4000.0);
        assert!(late.limiting_stage(&t).unwrap().starts_with("events"));
    }
}
