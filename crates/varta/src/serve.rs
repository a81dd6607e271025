//! `varta serve`: one node running every stage, wired together.
//!
//! Start order: database (migrate, sync config) → store writer → inference pool →
//! cameras → API. Stop order is the reverse of the data flow so nothing in flight
//! is lost: API, cameras (pipelines to Null), inference (open tracks are ended and
//! sent), then the writer drains its channel and exits.
//!
//! Camera changes apply at run time: SIGHUP or `POST /api/v1/config/reload` re-read
//! the config file; [`Ingest::apply`] starts, stops and restarts only the cameras
//! that differ. Node-wide sections are reported as needing a restart.

use anyhow::{Context, Result};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use varta_api::{AppState, CameraInfo, ReloadReport, ReloadRequest};
use varta_core::config::{resolve_credentials, Config, KeyPath, Problems};
use varta_core::frame::{FrameHub, SchedulerConfig};
use varta_core::metrics::Registry;
use varta_core::redact::redact_url;
use varta_core::CameraId;
use varta_detect::pool::{InferencePool, PoolConfig};
use varta_detect::runtime::RuntimeOptions;
use varta_detect::snapshot::SnapshotStore;
use varta_detect::tracker::TrackerConfig;
use varta_ingest::{CameraSpec, Ingest, IngestSettings};
use varta_store::writer::WriterConfig;
use varta_store::Store;

/// Capacity of the channel into the store writer (events and status changes).
const STORE_QUEUE: usize = 10_000;

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}

/// Checks what needs the model: every camera's classes must be labels of it.
pub fn check_against_model(cfg: &Config) -> Result<(), String> {
    let spec = varta_detect::manifest::load(&cfg.detect.models, &cfg.detect.model).map_err(|e| e.to_string())?;
    let labels = spec.read_labels().map_err(|e| e.to_string())?;
    let mut p = Problems::new("config", "");
    for (i, c) in cfg.cameras.iter().enumerate() {
        for (j, class) in c.classes.iter().enumerate() {
            if !labels.contains(class) {
                p.add(
                    &KeyPath::default().key("cameras").index(i).key("classes").index(j),
                    format!("`{class}` is not a class of model {}", spec.name),
                );
            }
        }
        for (k, r) in c.rules.iter().enumerate() {
            for (j, class) in r.classes.iter().flatten().enumerate() {
                if !labels.contains(class) {
                    p.add(
                        &KeyPath::default().key("cameras").index(i).key("rules").index(k).key("classes").index(j),
                        format!("`{class}` is not a class of model {}", spec.name),
                    );
                }
            }
        }
    }
    p.finish().map_err(|e| e.to_string())
}

/// The ingest's view of the configured, enabled cameras (credentials resolved).
pub fn camera_specs(cfg: &Config) -> Result<Vec<CameraSpec>> {
    cfg.enabled_cameras()
        .map(|c| {
            let credentials = match &c.credentials {
                Some(name) => Some(
                    resolve_credentials(name, cfg.node.secrets_file.as_deref())
                        .with_context(|| format!("camera {}", c.id))?,
                ),
                None => None,
            };
            Ok(CameraSpec {
                id: CameraId(c.id.clone()),
                url: c.url.clone(),
                main_url: c.main_url.clone(),
                credentials,
                analysis_fps: c.analysis_fps,
                expected_fps: c.expected_fps,
                decode: c.decode,
            })
        })
        .collect()
}

fn camera_infos(cfg: &Config) -> Vec<CameraInfo> {
    cfg.cameras
        .iter()
        .map(|c| CameraInfo {
            id: c.id.clone(),
            site: c.site.clone(),
            name: c.display_name().to_owned(),
            url: redact_url(&c.url),
            analysis_fps: c.analysis_fps,
            enabled: c.enabled,
            main_url: c.main_url.as_deref().map(redact_url),
            decode: c.decode,
        })
        .collect()
}

/// The running stages that a reload changes.
struct Controller {
    cfg: Config,
    ingest: Ingest,
    pool: InferencePool,
}

/// Re-reads `path` and applies camera changes: added cameras start, removed ones stop
/// and are released, changed ones restart, the others are not touched. Node-wide
/// sections that changed are reported as needing a restart, not applied.
async fn reload(
    path: &Path,
    ctl: &Arc<Mutex<Option<Controller>>>,
    store: &Store,
    state: &AppState,
) -> Result<ReloadReport, varta_core::Error> {
    let invalid = |e: String| varta_core::err!(InvalidArgument, "{e}");
    let new = Config::load(path).map_err(|e| invalid(e.to_string()))?;
    check_against_model(&new).map_err(invalid)?;
    let specs = camera_specs(&new).map_err(|e| invalid(format!("{e:#}")))?;
    store.sync_config(&new).await?;
    let ctl = ctl.clone();
    let (report, infos) = tokio::task::spawn_blocking(move || {
        let mut guard = ctl.lock().unwrap();
        let c = guard.as_mut().ok_or_else(|| varta_core::err!(Unavailable, "shutting down"))?;
        let old = &c.cfg;
        let mut restart_required = Vec::new();
        if new.node != old.node {
            restart_required.push("node".to_owned());
        }
        if new.ingest != old.ingest {
            restart_required.push("ingest".to_owned());
        }
        if new.health != old.health {
            restart_required.push("health".to_owned());
        }
        if new.detect != old.detect {
            restart_required.push("detect".to_owned());
        }
        if new.store != old.store {
            restart_required.push("store".to_owned());
        }
        for cam in new.enabled_cameras() {
            c.pool.set_camera(&CameraId(cam.id.clone()), cam.into())?;
        }
        let applied = c.ingest.apply(specs);
        for id in &applied.removed {
            c.pool.remove_camera(id);
        }
        // Node-wide sections stay as running; camera sections are the new ones.
        let infos = camera_infos(&new);
        c.cfg = Config { sites: new.sites, cameras: new.cameras, ..old.clone() };
        let names = |v: Vec<CameraId>| v.into_iter().map(|c| c.0).collect::<Vec<_>>();
        let report = ReloadReport {
            unchanged: applied.unchanged.len(),
            added: names(applied.added),
            removed: names(applied.removed),
            changed: names(applied.changed),
            restart_required,
        };
        Ok::<_, varta_core::Error>((report, infos))
    })
    .await
    .map_err(|e| varta_core::err!(Internal, "reload task: {e}"))??;
    *state.cameras.write().unwrap() = infos;
    tracing::info!(
        added = ?report.added, removed = ?report.removed, changed = ?report.changed,
        unchanged = report.unchanged, restart_required = ?report.restart_required, "config reloaded"
    );
    Ok(report)
}

/// Runs a node until `shutdown` resolves. With `config_path`, SIGHUP and
/// `POST /api/v1/config/reload` re-read it.
pub async fn run(
    cfg: Config,
    config_path: Option<PathBuf>,
    database_url: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    check_against_model(&cfg).map_err(|e| anyhow::anyhow!(e))?;
    let specs = camera_specs(&cfg)?;
    let store = Store::connect(database_url).await?;
    store.migrate().await?;
    store.sync_config(&cfg).await?;

    let spec = varta_detect::manifest::load(&cfg.detect.models, &cfg.detect.model)?;
    let metrics = Arc::new(Registry::default());
    let d = &cfg.detect;
    let hub = FrameHub::with_config(SchedulerConfig {
        capacity: d.queue_per_camera,
        max_idle_check: Duration::from_secs_f64(d.max_idle_check_secs),
        max_age: Duration::from_millis(d.max_frame_age_ms),
        ..Default::default()
    });
    let (tx, rx) = mpsc::channel(STORE_QUEUE);
    let writer = tokio::spawn(varta_store::writer::run(
        store.clone(),
        rx,
        WriterConfig {
            batch_max: cfg.store.batch_max,
            flush: Duration::from_millis(cfg.store.flush_ms),
            node: cfg.node.name.clone(),
        },
        metrics.clone(),
    ));

    let workers = match cfg.detect.workers {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    };
    let pool_cfg = PoolConfig {
        runtime: RuntimeOptions {
            library: varta_detect::runtime::library_path(),
            intra_threads: d.intra_threads,
            provider: d.provider,
            device_id: d.device_id,
            fp16: d.fp16,
            engine_cache_dir: d.engine_cache_dir.clone(),
        },
        workers,
        tracker: TrackerConfig::from(d),
        snapshots: SnapshotStore::new(&d.snapshot_dir, d.snapshot_quality)?,
    };
    let pool = {
        let (spec, hub, tx, metrics) = (spec.clone(), hub.clone(), tx.clone(), metrics.clone());
        tokio::task::spawn_blocking(move || InferencePool::start(&spec, &pool_cfg, hub, tx, metrics)).await??
    };

    let settings = IngestSettings { ingest: cfg.ingest.clone(), health: cfg.health.clone() };
    let mut ingest = Ingest::new(settings, hub.clone(), metrics.clone(), tx.clone())?;
    drop(tx);
    for c in cfg.enabled_cameras() {
        pool.set_camera(&CameraId(c.id.clone()), c.into())?;
    }
    let n = specs.len();
    ingest.apply(specs);
    tracing::info!(cameras = n, "cameras started");

    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let state = Arc::new(AppState {
        node: cfg.node.name.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        cameras: RwLock::new(camera_infos(&cfg)),
        ready: Default::default(),
        reload: config_path.is_some().then(|| reload_tx.clone()),
        snapshot_dir: cfg.detect.snapshot_dir.clone(),
    });
    let api_listen = cfg.node.api_listen;
    let ctl = Arc::new(Mutex::new(Some(Controller { cfg, ingest, pool })));

    // Reloads run one at a time, from the API or SIGHUP.
    let reloader = {
        let (ctl, store, state) = (ctl.clone(), store.clone(), state.clone());
        tokio::spawn(async move {
            while let Some(reply) = reload_rx.recv().await {
                let result = match &config_path {
                    Some(p) => reload(p, &ctl, &store, &state).await,
                    None => Err(varta_core::err!(Unavailable, "no config file to reload")),
                };
                if let Err(e) = &result {
                    tracing::error!(error = %e, "config reload refused; the running config is kept");
                }
                let _ = reply.send(result);
            }
        })
    };
    let hup = tokio::spawn(async move {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).expect("SIGHUP handler");
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            let (reply, rx) = tokio::sync::oneshot::channel();
            if reload_tx.send(reply).await.is_err() {
                break;
            }
            let _ = rx.await;
        }
    });

    let listener = tokio::net::TcpListener::bind(api_listen)
        .await
        .with_context(|| format!("API cannot listen on {api_listen}"))?;
    let addr = listener.local_addr()?;
    state.ready.store(true, Ordering::Relaxed);
    tracing::info!(%addr, "API listening");
    println!("API: http://{addr}");
    axum::serve(listener, varta_api::router(state)).with_graceful_shutdown(shutdown).await?;

    hup.abort();
    reloader.abort();
    tokio::task::spawn_blocking(move || {
        if let Some(mut c) = ctl.lock().unwrap().take() {
            c.ingest.stop_all();
            c.pool.stop();
        }
    })
    .await?;
    writer.await?;
    tracing::info!("stopped");
    Ok(())
}
