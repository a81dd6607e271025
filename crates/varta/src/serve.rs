//! `varta serve`: one node running every stage, wired together.
//!
//! Start order: database (migrate, sync config) → store writer → inference pool →
//! cameras → API. Stop order is the reverse of the data flow so nothing in flight
//! is lost: API, cameras (pipelines to Null), inference (open tracks are ended and
//! sent), then the writer drains its channel and exits.

use anyhow::{Context, Result};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use varta_api::{AppState, CameraInfo};
use varta_core::config::{resolve_credentials, Config, KeyPath, Problems};
use varta_core::frame::FrameHub;
use varta_core::metrics::Registry;
use varta_core::redact::redact_url;
use varta_core::CameraId;
use varta_detect::pool::{InferencePool, PoolConfig};
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
    }
    p.finish().map_err(|e| e.to_string())
}

/// Runs a node until `shutdown` resolves.
pub async fn run(cfg: Config, database_url: &str, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    check_against_model(&cfg).map_err(|e| anyhow::anyhow!(e))?;
    let store = Store::connect(database_url).await?;
    store.migrate().await?;
    store.sync_config(&cfg).await?;

    let spec = varta_detect::manifest::load(&cfg.detect.models, &cfg.detect.model)?;
    let metrics = Arc::new(Registry::default());
    let hub = FrameHub::new(cfg.detect.queue_per_camera);
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
        library: varta_detect::runtime::library_path(),
        workers,
        intra_threads: cfg.detect.intra_threads,
        tracker: TrackerConfig {
            iou: cfg.detect.track_iou,
            min_hits: cfg.detect.track_min_hits,
            max_age: chrono::Duration::milliseconds((cfg.detect.track_max_age_secs * 1000.0) as i64),
        },
    };
    let pool = {
        let (spec, hub, tx, metrics) = (spec.clone(), hub.clone(), tx.clone(), metrics.clone());
        tokio::task::spawn_blocking(move || InferencePool::start(&spec, &pool_cfg, hub, tx, metrics)).await??
    };

    let settings = IngestSettings {
        restart_delay: Duration::from_secs_f64(cfg.ingest.restart_delay_secs),
        stall_timeout: Duration::from_secs_f64(cfg.ingest.stall_timeout_secs),
        transport: cfg.ingest.rtsp_transport,
        latency_ms: cfg.ingest.latency_ms,
        target: (spec.width, spec.height),
    };
    let mut ingest = Ingest::new(settings, hub.clone(), metrics.clone(), tx.clone())?;
    drop(tx);
    for c in cfg.enabled_cameras() {
        let id = CameraId(c.id.clone());
        pool.set_camera(&id, &c.classes, c.min_score)?;
        let credentials = match &c.credentials {
            Some(name) => Some(
                resolve_credentials(name, cfg.node.secrets_file.as_deref())
                    .with_context(|| format!("camera {}", c.id))?,
            ),
            None => None,
        };
        ingest.start(CameraSpec {
            id,
            url: c.url.clone(),
            credentials,
            analysis_fps: c.analysis_fps,
            decode: c.decode,
        });
    }
    tracing::info!(cameras = cfg.enabled_cameras().count(), "cameras started");

    let state = Arc::new(AppState {
        node: cfg.node.name.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        cameras: cfg
            .cameras
            .iter()
            .map(|c| CameraInfo {
                id: c.id.clone(),
                site: c.site.clone(),
                name: c.display_name().to_owned(),
                url: redact_url(&c.url),
                analysis_fps: c.analysis_fps,
                enabled: c.enabled,
            })
            .collect(),
        ready: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind(cfg.node.api_listen)
        .await
        .with_context(|| format!("API cannot listen on {}", cfg.node.api_listen))?;
    let addr = listener.local_addr()?;
    state.ready.store(true, Ordering::Relaxed);
    tracing::info!(%addr, "API listening");
    println!("API: http://{addr}");
    axum::serve(listener, varta_api::router(state)).with_graceful_shutdown(shutdown).await?;

    tokio::task::spawn_blocking(move || {
        ingest.stop_all();
        pool.stop();
    })
    .await?;
    writer.await?;
    tracing::info!("stopped");
    Ok(())
}
