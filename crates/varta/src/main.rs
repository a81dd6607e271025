//! The `varta` command: see `varta --help`.

//!
//! Each command is a few lines here: the node is `varta_node`, the benchmarks and
//! accuracy tools `varta_bench`, the local cluster `varta_store::localpg`; only
//! `accounts` (user and audit commands) and `demo` are modules of this crate.

mod accounts;
mod demo;
mod evidence;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "varta", version, about = "Video analytics: RTSP cameras → detection → PostgreSQL → API")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node: ingest, detection, store and API. Needs DATABASE_URL.
    Serve {
        /// Node config file (see config/README.md).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the API and console alone (no cameras): a second API process, or a
    /// console host. Needs DATABASE_URL.
    Api {
        /// Config file (its [node], [api] and cameras are used).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Manage accounts (operator, contractor, admin). Needs DATABASE_URL.
    User {
        #[command(subcommand)]
        cmd: accounts::UserCmd,
    },
    /// The audit log. Needs DATABASE_URL.
    Audit {
        #[command(subcommand)]
        cmd: accounts::AuditCmd,
    },
    /// Evidence export packages: `verify FILE.zip`. Needs DATABASE_URL unless the
    /// key is given with --public-key.
    Evidence {
        #[command(subcommand)]
        cmd: evidence::EvidenceCmd,
    },
    /// Serve simulated RTSP cameras at rtsp://LISTEN/cam/1..N.
    Sim {
        /// Number of cameras.
        #[arg(long, default_value_t = 8)]
        cameras: usize,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8554")]
        listen: SocketAddr,
        /// H.264 or H.265 clip to serve (made by ./scripts/setup).
        #[arg(long, default_value = ".cache/media/vtest.mp4")]
        clip: PathBuf,
        /// What the cameras show: `active` (the clip), `idle` (a still scene with
        /// sensor noise) or `mixed` (idle, with the clip part of the time).
        #[arg(long, default_value = "active", value_parser = ["active", "idle", "mixed"])]
        scene: String,
        /// `mixed`: seconds of one idle + active cycle.
        #[arg(long, default_value_t = 50.0)]
        scene_period: f64,
        /// `mixed`: share of each cycle that is active.
        #[arg(long, default_value_t = 0.2)]
        active_share: f64,
        /// Inject a random fault (drop, stall, refuse, garbage, freeze, dark, server
        /// restart) into a random camera on average every this many seconds.
        #[arg(long)]
        random_faults: Option<f64>,
        /// Stop injecting random faults after this many seconds.
        #[arg(long)]
        random_faults_for: Option<f64>,
        /// Append every scene switch as a JSON line to this file.
        #[arg(long)]
        scene_log: Option<PathBuf>,
        /// Seconds between keyframes of the still scenes (idle, dark, frozen), as
        /// smart codecs stretch it on a quiet scene (H.264 clips).
        #[arg(long)]
        gop: Option<f64>,
        /// Announce this RTSP session timeout (seconds) and end every session that
        /// sends no keep-alive (GET_PARAMETER or OPTIONS) within it, as many cameras do.
        #[arg(long)]
        session_timeout: Option<u64>,
        /// Announce another stream's parameter sets in the SDP, `WIDTHxHEIGHT@FPS`
        /// (`1920x1080@30`), as a camera whose settings changed and whose SDP did not.
        #[arg(long, value_parser = parse_announce)]
        announce: Option<(u32, u32, u32)>,
    },
    /// Local PostgreSQL (if DATABASE_URL is unset), simulator and service, for a first look.
    Demo {
        /// Demo config; its cameras are pointed at the simulator.
        #[arg(long, default_value = "config/demo.toml")]
        config: PathBuf,
        /// Number of cameras (the config's cameras, plus generated ones beyond them).
        #[arg(long)]
        cameras: Option<usize>,
        /// H.264 clip for the simulator.
        #[arg(long, default_value = ".cache/media/vtest.mp4")]
        clip: PathBuf,
        /// Simulator address.
        #[arg(long, default_value = "127.0.0.1:8554")]
        sim_listen: SocketAddr,
        /// Stop by itself after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// Decode policy for every camera: `full`, `keyframes` or `adaptive` (default: the config's).
        #[arg(long, value_parser = varta_bench::parse_decode)]
        decode: Option<varta_core::config::DecodePolicy>,
    },
    /// Benchmark the ingest alone (no detection, no database) against cameras at
    /// URL_PREFIX1 … URL_PREFIXN; prints one JSON line. Used by bench/.
    #[command(name = "ingest-bench")]
    IngestBench(varta_bench::ingest::Args),
    /// Run a model on still images; prints each image's detections as a JSON line
    /// (boxes in the image's pixels), through the service's own preprocessing.
    Detect(varta_bench::eval::DetectArgs),
    /// Read number plates on still images (no vehicle detection needed); prints one
    /// JSON line per image: text (normalised Latin), display form, confidence, box.
    Plate(varta_bench::eval::PlateArgs),
    /// Write a simulator clip of vehicles carrying given number plates, and its ground
    /// truth (`OUT.truth.json`): serve it with `varta sim --clip OUT`.
    #[command(name = "plate-scene")]
    PlateScene(varta_bench::plates::SceneArgs),
    /// Run a clip through decoding, detection, tracker and rules (no database);
    /// prints tracks, mean track length and events per minute as JSON.
    Eval(varta_bench::eval::EvalArgs),
    /// Benchmark detection (preprocessing, or the pool against a raw ONNX Runtime
    /// loop); prints JSON lines. Used by bench/.
    #[command(name = "detect-bench")]
    DetectBench(varta_bench::detect::Args),
    /// Drives the store writer (journal, event log, PostgreSQL, replay) with synthetic
    /// events: the writer benchmark and the load of the outage and crash tests.
    #[command(name = "store-load")]
    StoreLoad(varta_bench::store_load::Args),
    /// Prints the records of a node's event log (`[store] spool_dir`) as JSON lines,
    /// without touching it (safe while the node runs): where each record is, whether
    /// PostgreSQL has it yet, and its messages.
    #[command(name = "spool-dump")]
    SpoolDump {
        /// The event log's folder.
        #[arg(long, default_value = ".varta/spool")]
        dir: std::path::PathBuf,
        /// Only the records PostgreSQL has not taken yet.
        #[arg(long)]
        pending: bool,
    },
    /// Throughput and capacity benchmarks: `run`, `capacity`, `compare` (see bench/README.md).
    Bench {
        #[command(subcommand)]
        cmd: varta_bench::BenchCmd,
    },
    /// Alert latency from commit to SSE clients of an API (prints JSON). Used by bench/.
    #[command(name = "alert-bench")]
    AlertBench(varta_bench::alert::Args),
    /// Per camera and per site share of time online, and the outages, over a period.
    Uptime {
        /// Period start (RFC 3339).
        #[arg(long)]
        from: chrono::DateTime<chrono::Utc>,
        /// Period end (RFC 3339; default now).
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// Only this site.
        #[arg(long)]
        site: Option<String>,
        /// Only this camera.
        #[arg(long)]
        camera: Option<String>,
    },
    /// Check a config file; problems are printed with key and line, exit code 2.
    CheckConfig {
        /// Config file.
        file: PathBuf,
    },
    /// Apply database migrations as the schema owner: DATABASE_OWNER_URL, else
    /// DATABASE_URL (a database run with one role).
    Migrate,
    /// Manage the project-local PostgreSQL cluster used when DATABASE_URL is unset.
    #[command(name = "local-pg")]
    LocalPg {
        #[command(subcommand)]
        action: LocalPgAction,
        /// Cluster directory.
        #[arg(long, default_value = ".varta/pg", global = true)]
        dir: PathBuf,
        /// Port (the socket lives in the cluster directory too).
        #[arg(long, default_value_t = varta_store::localpg::DEFAULT_PORT, global = true)]
        port: u16,
    },
}

#[derive(Subcommand)]
enum LocalPgAction {
    /// Create (once) and start the cluster; print the owner role's URL (migrations,
    /// `DATABASE_OWNER_URL`), or with `--runtime` the runtime role's (`DATABASE_URL`).
    Start {
        /// Print the runtime role's URL.
        #[arg(long)]
        runtime: bool,
    },
    /// Stop the cluster.
    Stop {
        /// pg_ctl shutdown mode: `fast`, or `immediate` to simulate a crash.
        #[arg(long, default_value = "fast", value_parser = ["fast", "smart", "immediate"])]
        mode: String,
    },
}

/// `DATABASE_URL`, or a clear error.
/// `WIDTHxHEIGHT@FPS` for `varta sim --announce`.
fn parse_announce(s: &str) -> Result<(u32, u32, u32), String> {
    let bad = || format!("{s:?}: expected WIDTHxHEIGHT@FPS, e.g. 1920x1080@30");
    let (size, fps) = s.split_once('@').ok_or_else(bad)?;
    let (w, h) = size.split_once('x').ok_or_else(bad)?;
    let n = |v: &str| v.parse::<u32>().ok().filter(|&n| n > 0).ok_or_else(bad);
    Ok((n(w)?, n(h)?, n(fps)?))
}

fn database_url() -> anyhow::Result<String> {
    std::env::var("DATABASE_URL")
        .map_err(|_| anyhow::anyhow!("DATABASE_URL is not set (e.g. from `varta local-pg start`)"))
}

fn init_logs() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("VARTA_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // ureq writes each request line and its headers (a webhook's `?token=`, its
    // signature) at debug level, without a scheme for the redaction to find.
    let filter = filter.add_directive("ureq=warn".parse().expect("a valid directive"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| varta_core::redact::Redacted(std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs();
    // Before any thread starts: the soft limit of 1024 open files is too few for a
    // node with 145 cameras, and the API's connection cap is sized from it.
    varta_api::tls::raise_nofile_limit();
    // Blocks of 16 MiB and more (argon2's 19 MiB per password check) are mapped and
    // unmapped each time. glibc otherwise raises its mmap threshold after the first
    // such free and keeps later ones in its arenas: ten logins left 215 MB resident
    // (tests/protection.rs). Smaller blocks (frames, tensors) are not affected.
    // SAFETY: mallopt(3) before any other thread exists.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 16 << 20);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .thread_name("tokio")
        .build()
        .expect("tokio runtime");
    let result: anyhow::Result<ExitCode> = rt.block_on(async {
        match cli.cmd {
            Cmd::Serve { config } => {
                let cfg = match load_config(&config) {
                    Ok(c) => c,
                    Err(code) => return Ok(code),
                };
                let url = database_url()?;
                let opts = varta_node::NodeOptions { config_path: Some(config), ..varta_node::NodeOptions::new(&url) };
                varta_node::run(cfg, opts, varta_node::shutdown_signal()).await?;
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Api { config } => {
                let cfg = match load_config(&config) {
                    Ok(c) => c,
                    Err(code) => return Ok(code),
                };
                let url = database_url()?;
                varta_node::run_api_only(cfg, varta_node::NodeOptions::new(&url), varta_node::shutdown_signal())
                    .await?;
                Ok(ExitCode::SUCCESS)
            }
            Cmd::User { cmd } => {
                accounts::user(cmd, &database_url()?).await?;
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Audit { cmd } => accounts::audit(cmd, &database_url()?).await,
            Cmd::Evidence { cmd } => evidence::run(cmd).await,
            Cmd::Sim {
                cameras,
                listen,
                clip,
                scene,
                scene_period,
                active_share,
                random_faults,
                random_faults_for,
                scene_log,
                gop,
                session_timeout,
                announce,
            } => {
                let scene = match scene.as_str() {
                    "idle" => varta_sim::Scene::Idle,
                    "mixed" => varta_sim::Scene::Mixed {
                        period: std::time::Duration::from_secs_f64(scene_period),
                        active_share,
                    },
                    _ => varta_sim::Scene::Active,
                };
                // Basic authentication from the environment, never the command line
                // (which `ps` shows to every user).
                let auth = std::env::var("VARTA_SIM_AUTH")
                    .ok()
                    .and_then(|v| v.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())));
                let cfg = varta_sim::SimConfig {
                    scene,
                    auth,
                    random_faults: random_faults.map(std::time::Duration::from_secs_f64),
                    random_faults_for: random_faults_for.map(std::time::Duration::from_secs_f64),
                    scene_log,
                    gop: gop.map(std::time::Duration::from_secs_f64),
                    announce,
                    ..varta_sim::SimConfig::new(listen, cameras, clip)
                };
                let sim = tokio::task::spawn_blocking(move || varta_sim::SimServer::start(&cfg)).await??;
                for n in 1..=cameras {
                    sim.set_session_timeout(n, session_timeout.map(std::time::Duration::from_secs));
                }
                println!("Simulator: rtsp://{}/cam/1 .. /cam/{cameras}", sim.addr());
                varta_node::shutdown_signal().await;
                tokio::task::spawn_blocking(move || sim.stop()).await?;
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Demo { config, cameras, clip, sim_listen, duration, decode } => {
                demo::run(demo::DemoArgs { config, cameras, clip, sim_listen, duration, decode }).await?;
                Ok(ExitCode::SUCCESS)
            }
            Cmd::IngestBench(args) => {
                tokio::task::spawn_blocking(move || varta_bench::ingest::run(args)).await??;
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Detect(args) => {
                tokio::task::spawn_blocking(move || varta_bench::eval::detect(args)).await??;
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Plate(args) => {
                tokio::task::spawn_blocking(move || varta_bench::eval::plate(args)).await??;
                Ok(ExitCode::SUCCESS)
            }
            Cmd::PlateScene(args) => {
                tokio::task::spawn_blocking(move || varta_bench::plates::scene(args)).await??;
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Eval(args) => {
                tokio::task::spawn_blocking(move || varta_bench::eval::eval(args)).await??;
                Ok(ExitCode::SUCCESS)
            }
            Cmd::DetectBench(args) => {
                tokio::task::spawn_blocking(move || varta_bench::detect::run(args)).await??;
                Ok(ExitCode::SUCCESS)
            }
            Cmd::StoreLoad(args) => {
                varta_bench::store_load::run(args).await?;
                Ok(ExitCode::SUCCESS)
            }
            Cmd::SpoolDump { dir, pending } => {
                varta_bench::store_load::dump(&dir, pending)?;
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Bench { cmd } => {
                varta_bench::main(cmd).await?;
                Ok(ExitCode::SUCCESS)
            }
            Cmd::AlertBench(args) => {
                varta_bench::alert::run(args, &database_url()?).await?;
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Uptime { from, to, site, camera } => {
                let url = database_url()?;
                let store = varta_store::Store::connect(&url).await?;
                let to = to.unwrap_or_else(chrono::Utc::now);
                let r = store.uptime(from, to, site.as_deref(), camera.as_deref()).await?;
                println!("{}", serde_json::to_string_pretty(&r)?);
                Ok(ExitCode::SUCCESS)
            }
            Cmd::CheckConfig { file } => Ok(match load_config(&file) {
                Ok(cfg) => match varta_node::check_against_model(&cfg) {
                    Ok(()) => {
                        println!("{}: ok ({} sites, {} cameras)", file.display(), cfg.sites.len(), cfg.cameras.len());
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("{}: {e}", file.display());
                        ExitCode::from(2)
                    }
                },
                Err(code) => code,
            }),
            Cmd::Migrate => {
                // The owner role applies migrations; DATABASE_URL alone serves a
                // database run with one role.
                let url = match varta_node::owner_url_from_env() {
                    Some(u) => u,
                    None => database_url()?,
                };
                let store = varta_store::Store::connect(&url).await?;
                // A current schema needs no rights: a runtime role may ask.
                let pending = store.pending_migrations().await?;
                if pending.is_empty() {
                    println!("schema is current");
                } else {
                    store.migrate().await.map_err(|e| {
                        let hint = if varta_node::owner_url_from_env().is_none() {
                            "; migrations are applied by the schema owner: set DATABASE_OWNER_URL to its URL"
                        } else {
                            ""
                        };
                        let mut cause: &dyn std::error::Error = &e;
                        while let Some(s) = cause.source() {
                            cause = s;
                        }
                        anyhow::anyhow!("{} pending migration(s) not applied: {cause}{hint}", pending.len())
                    })?;
                    println!("{} migration(s) applied", pending.len());
                }
                Ok(ExitCode::SUCCESS)
            }
            Cmd::LocalPg { action, dir, port } => {
                match action {
                    LocalPgAction::Start { runtime: false } => {
                        println!("{}", varta_store::localpg::start(&dir, port).await?)
                    }
                    LocalPgAction::Start { runtime: true } => {
                        println!(
                            "{}",
                            varta_store::localpg::runtime_url(&varta_store::localpg::start(&dir, port).await?)
                        )
                    }
                    LocalPgAction::Stop { mode } => varta_store::localpg::stop(&dir, &mode)?,
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("varta: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads a config or prints its problems; `Err` holds exit code 2.
fn load_config(path: &std::path::Path) -> Result<varta_node::config::Config, ExitCode> {
    varta_node::config::Config::load(path).map_err(|errs| {
        for e in &errs.0 {
            eprintln!("{e}");
        }
        ExitCode::from(2)
    })
}
