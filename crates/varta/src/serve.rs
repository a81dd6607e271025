//! `varta serve`: one node running every stage, wired together.
//!
//! Start order: event log and store writer → database (migrate, sync config; in the
//! background when PostgreSQL does not answer) → inference pool → cameras → API.
//! Stop order is the reverse of the data flow so nothing in flight is lost: API,
//! cameras (pipelines to Null), inference (open events end as `node_stopped`), leases
//! handed back, then the journal closes and the writer syncs and writes what is left.
//!
//! A node starts without PostgreSQL: it runs the cameras it held last (kept in
//! `held-cameras.json` in its spool folder; all enabled cameras of the config the
//! first time), its events go to the event log on disk, and once the database
//! answers it applies the migrations, syncs the config, joins the lease split and
//! writes what the log holds. Events its earlier processes left open are closed
//! (`node_lost`) once that log is replayed.
//!
//! Camera changes apply at run time: SIGHUP or `POST /api/v1/config/reload` re-read
//! the config file; [`Ingest::apply`] starts, stops and restarts only the cameras
//! that differ. Node-wide sections are reported as needing a restart.
//!
//! Which cameras run here is decided by leases in PostgreSQL
//! ([`varta_store::leases`]): every `lease_renew_secs` a lease step renews, claims
//! or hands back, and the running set is made to match. A single node holds every
//! camera; several share them. On shutdown the leases are handed back after the
//! cameras have stopped.

use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use varta_api::{AppState, CameraInfo, ReloadReport, ReloadRequest};
use varta_core::config::{resolve_credentials, Config, KeyPath, Problems};
use varta_core::event::CameraState;
use varta_core::frame::{FrameHub, SchedulerConfig};
use varta_core::journal::Journal;
use varta_core::metrics::Registry;
use varta_core::redact::redact_url;
use varta_core::CameraId;
use varta_detect::pool::{InferencePool, PoolConfig};
use varta_detect::runtime::RuntimeOptions;
use varta_detect::snapshot::SnapshotStore;
use varta_detect::tracker::TrackerConfig;
use varta_ingest::{CameraSpec, Ingest, IngestSettings};
use varta_store::leases::{LeaseConfig, Leases, Plan};
use varta_store::writer::WriterConfig;
use varta_store::Store;

/// Messages that may wait for the disk before detection and the ingest block (the
/// event log syncs every flush interval; a node makes far fewer in that time).
const JOURNAL_CAPACITY: usize = 20_000;
/// The cameras a node held last, in its spool folder: what it runs when it starts
/// while PostgreSQL is down.
const HELD_FILE: &str = "held-cameras.json";
/// How long the first attempt to reach the database may hold up the start.
const FIRST_DB_ATTEMPT: Duration = Duration::from_secs(2);

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

/// The ingest's view of the configured, enabled cameras (credentials resolved),
/// only those in `only` when given.
pub fn camera_specs(cfg: &Config, only: Option<&BTreeSet<String>>) -> Result<Vec<CameraSpec>> {
    cfg.enabled_cameras()
        .filter(|c| only.is_none_or(|o| o.contains(&c.id)))
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

pub(crate) fn camera_infos(cfg: &Config) -> Vec<CameraInfo> {
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

/// The running stages that a reload or a lease step changes.
struct Controller {
    cfg: Config,
    ingest: Ingest,
    pool: InferencePool,
    /// Cameras this node holds leases on and should run.
    held: BTreeSet<String>,
}

impl Controller {
    /// Makes the running cameras those of the config that this node holds.
    /// Blocking: stopping a camera waits for its pipeline.
    fn apply(&mut self) -> Result<varta_ingest::Applied, varta_core::Error> {
        let specs =
            camera_specs(&self.cfg, Some(&self.held)).map_err(|e| varta_core::err!(InvalidArgument, "{e:#}"))?;
        for cam in self.cfg.enabled_cameras().filter(|c| self.held.contains(&c.id)) {
            self.pool.set_camera(&CameraId(cam.id.clone()), cam.into())?;
        }
        let applied = self.ingest.apply(specs);
        for id in &applied.removed {
            self.pool.remove_camera(id);
        }
        Ok(applied)
    }
}

/// One lease step: renew and claim or hand back ([`Leases::tick`]), make the running
/// cameras match, then release what was handed back (only once it has stopped, so
/// no camera is ever run by two nodes). If the database cannot be reached the
/// cameras keep running on the leases held (see `varta_store::leases`).
///
/// The cameras are re-applied only when the held set changed, or with `config_changed`
/// (a reload): most steps only renew, and applying resolves every camera's
/// credentials and compares its rules. The node is ready once it holds its share.
async fn lease_step(node: &NodeCtx, config_changed: bool) -> Result<varta_ingest::Applied, varta_core::Error> {
    let plan = if *node.db_ready.borrow() {
        match node.leases.tick().await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "lease renewal failed; keeping the cameras held");
                None
            }
        }
    } else {
        None
    };
    let applied = apply_held(node, plan.as_ref().map(|p| p.run.clone()), config_changed).await?;
    if let Some(Plan { run, hand_back, claimed, target }) = plan {
        node.metrics.leases_held.set(run.len() as i64);
        node.state.ready.store(run.len() >= target, Ordering::Relaxed);
        if !claimed.is_empty() || !hand_back.is_empty() {
            tracing::info!(held = run.len(), target, claimed = ?claimed, handed_back = hand_back.len(), "leases changed");
        }
        for reason in ["rebalance", "removed"] {
            let cams: Vec<String> = hand_back.iter().filter(|h| h.1 == reason).map(|h| h.0.clone()).collect();
            node.leases.release(&cams, reason).await?;
        }
    }
    Ok(applied)
}

/// Makes `run` (when given) the held set and the running cameras match it, and
/// records the set in the spool folder when it changed.
async fn apply_held(
    node: &NodeCtx,
    run: Option<BTreeSet<String>>,
    config_changed: bool,
) -> Result<varta_ingest::Applied, varta_core::Error> {
    let (ctl, file) = (node.ctl.clone(), node.held_file.clone());
    tokio::task::spawn_blocking(move || {
        let mut guard = ctl.lock().unwrap();
        let c = guard.as_mut().ok_or_else(|| varta_core::err!(Unavailable, "shutting down"))?;
        let changed = run.as_ref().is_some_and(|r| *r != c.held);
        if let Some(run) = run {
            c.held = run;
        }
        if changed {
            if let Err(e) = save_held(&file, &c.held) {
                tracing::warn!(error = %e, file = %file.display(), "cannot record the cameras held");
            }
        }
        if changed || config_changed {
            c.apply()
        } else {
            Ok(varta_ingest::Applied::default())
        }
    })
    .await
    .map_err(|e| varta_core::err!(Internal, "lease step: {e}"))?
}

/// Writes the held set (by rename: a crash leaves the old or the new list).
fn save_held(path: &Path, held: &BTreeSet<String>) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(held)?)?;
    std::fs::rename(&tmp, path)
}

/// The cameras held last, if recorded.
fn load_held(path: &Path) -> Option<BTreeSet<String>> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Brings the schema up (as the owner role when `DATABASE_OWNER_URL` is set) and
/// syncs the config: what the node needs of the database before it takes leases
/// and writes events.
async fn bring_up_database(store: &Store, cfg: &Config) -> Result<(), varta_core::Error> {
    store.ensure_schema(crate::owner_url().as_deref()).await?;
    store.sync_config(cfg).await
}

/// Re-reads `path` and applies camera changes: added cameras are claimed and start,
/// removed ones stop and are handed back, changed ones restart, the others are not
/// touched. Node-wide sections that changed are reported as needing a restart.
async fn reload(path: &Path, node: &NodeCtx) -> Result<ReloadReport, varta_core::Error> {
    let invalid = |e: String| varta_core::err!(InvalidArgument, "{e}");
    let new = Config::load(path).map_err(|e| invalid(e.to_string()))?;
    check_against_model(&new).map_err(invalid)?;
    // Every camera's credentials must resolve, held here or not.
    camera_specs(&new, None).map_err(|e| invalid(format!("{e:#}")))?;
    let _step = node.step.lock().await;
    node.store.sync_config(&new).await?;
    let (restart_required, infos) = {
        let mut guard = node.ctl.lock().unwrap();
        let c = guard.as_mut().ok_or_else(|| varta_core::err!(Unavailable, "shutting down"))?;
        let old = &c.cfg;
        let mut restart_required = Vec::new();
        for (name, changed) in [
            ("node", new.node != old.node),
            ("ingest", new.ingest != old.ingest),
            ("health", new.health != old.health),
            ("detect", new.detect != old.detect),
            ("store", new.store != old.store),
        ] {
            if changed {
                restart_required.push(name.to_owned());
            }
        }
        let infos = camera_infos(&new);
        // Node-wide sections stay as running; camera sections are the new ones.
        c.cfg = Config { sites: new.sites, cameras: new.cameras, ..old.clone() };
        (restart_required, infos)
    };
    let applied = lease_step(node, true).await?;
    *node.state.cameras.write().unwrap() = infos;
    let names = |v: Vec<CameraId>| v.into_iter().map(|c| c.0).collect::<Vec<_>>();
    let report = ReloadReport {
        unchanged: applied.unchanged.len(),
        added: names(applied.added),
        removed: names(applied.removed),
        changed: names(applied.changed),
        restart_required,
    };
    tracing::info!(
        added = ?report.added, removed = ?report.removed, changed = ?report.changed,
        unchanged = report.unchanged, restart_required = ?report.restart_required, "config reloaded"
    );
    Ok(report)
}

/// What the lease loop and reloads share.
struct NodeCtx {
    ctl: Arc<Mutex<Option<Controller>>>,
    leases: Arc<Leases>,
    store: Store,
    state: Arc<AppState>,
    metrics: Arc<Registry>,
    /// One lease step (or reload) at a time.
    step: tokio::sync::Mutex<()>,
    /// True once the database is migrated and has the config.
    db_ready: watch::Receiver<bool>,
    /// Where the held set is recorded.
    held_file: PathBuf,
}

/// Runs a node until `shutdown` resolves. With `config_path`, SIGHUP and
/// `POST /api/v1/config/reload` re-read it.
pub async fn run(
    cfg: Config,
    config_path: Option<PathBuf>,
    database_url: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    run_with(cfg, config_path, database_url, Arc::new(Registry::default()), shutdown).await
}

/// Makes every file and folder this process creates from now on (snapshots, the
/// event log, the held-cameras list) its user's alone: 0600 and 0700. Snapshots
/// are pictures of people.
pub fn private_files() {
    // SAFETY: umask(2) has no preconditions.
    unsafe { libc::umask(0o077) };
}

/// [`run`] with the caller's metrics registry, so that `varta bench` reads the
/// node's counters directly.
pub async fn run_with(
    cfg: Config,
    config_path: Option<PathBuf>,
    database_url: &str,
    metrics: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    check_against_model(&cfg).map_err(|e| anyhow::anyhow!(e))?;
    camera_specs(&cfg, None)?;
    let n_cameras = cfg.cameras.len();
    private_files();
    let store = Store::connect_lazy(database_url)?;
    let listener = tokio::net::TcpListener::bind(cfg.node.api_listen)
        .await
        .with_context(|| format!("API cannot listen on {}", cfg.node.api_listen))?;
    let addr = listener.local_addr()?;
    let leases = Arc::new(Leases::new(
        store.clone(),
        LeaseConfig {
            name: cfg.node.name.clone(),
            capacity: cfg.node.capacity,
            ttl: Duration::from_secs_f64(cfg.node.lease_ttl_secs),
            api_addr: Some(addr.to_string()),
        },
    ));

    // Every record passes the event log on disk before PostgreSQL sees it.
    let journal = Journal::new(JOURNAL_CAPACITY);
    let (db_ready_tx, db_ready) = watch::channel(false);
    let wcfg = WriterConfig {
        batch_max: cfg.store.batch_max,
        flush: Duration::from_millis(cfg.store.flush_ms),
        node: cfg.node.name.clone(),
        run_id: leases.id(),
        spool_dir: cfg.store.spool_dir.clone(),
        spool_max_bytes: cfg.store.spool_max_mb << 20,
        snapshot_dir: Some(cfg.detect.snapshot_dir.clone()),
        ledger: std::env::var_os("VARTA_TEST_LEDGER").map(PathBuf::from),
    };
    let writer = varta_store::writer::start(store.clone(), &wcfg, journal.clone(), metrics.clone(), db_ready.clone())?;
    let held_file = cfg.store.spool_dir.join(HELD_FILE);

    // The database, if it answers now; otherwise in the background (below).
    if !store.reachable(FIRST_DB_ATTEMPT).await {
        tracing::warn!("PostgreSQL does not answer at start; going on without it");
    } else {
        match tokio::time::timeout(FIRST_DB_ATTEMPT * 5, bring_up_database(&store, &cfg)).await {
            Ok(Ok(())) => {
                let _ = db_ready_tx.send(true);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "PostgreSQL not ready at start; going on without it"),
            Err(_) => tracing::warn!("PostgreSQL too slow at start; going on without it"),
        }
    }
    let retention = tokio::spawn(retention_loop(store.clone(), cfg.clone(), metrics.clone()));

    let spec = varta_detect::manifest::load(&cfg.detect.models, &cfg.detect.model)?;
    let d = &cfg.detect;
    let hub = FrameHub::with_config(SchedulerConfig {
        capacity: d.queue_per_camera,
        max_idle_check: Duration::from_secs_f64(d.max_idle_check_secs),
        max_age: Duration::from_millis(d.max_frame_age_ms),
        ..Default::default()
    });
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
        clock: varta_core::clock::system(),
    };
    let pool = {
        let (spec, hub, journal, metrics) = (spec.clone(), hub.clone(), journal.clone(), metrics.clone());
        tokio::task::spawn_blocking(move || InferencePool::start(&spec, &pool_cfg, hub, journal, metrics)).await??
    };

    let settings = IngestSettings { ingest: cfg.ingest.clone(), health: cfg.health.clone() };
    let ingest = Ingest::new(settings, hub.clone(), metrics.clone(), journal.clone())?;
    let renew = Duration::from_secs_f64(cfg.node.lease_renew_secs);

    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let (restart_tx, mut restart_rx) = mpsc::channel::<varta_api::RestartRequest>(4);
    let state = crate::api_cmd::app_state(
        &cfg,
        store.clone(),
        metrics.clone(),
        camera_infos(&cfg),
        config_path.is_some().then(|| reload_tx.clone()),
        Some(restart_tx),
        false,
    )?;
    let mcfg = cfg.maintenance.clone();
    let api_cfg = cfg.api.clone();
    let ctl = Arc::new(Mutex::new(Some(Controller { cfg, ingest, pool, held: BTreeSet::new() })));
    let node = Arc::new(NodeCtx {
        ctl: ctl.clone(),
        leases: leases.clone(),
        store: store.clone(),
        state: state.clone(),
        metrics: metrics.clone(),
        step: tokio::sync::Mutex::new(()),
        db_ready: db_ready.clone(),
        held_file,
    });
    {
        let _step = node.step.lock().await;
        if *db_ready.borrow() {
            let applied = lease_step(&node, true).await?;
            tracing::info!(cameras = applied.added.len(), "cameras started");
        } else {
            // No database: the cameras held last (all enabled ones the first time).
            let held = load_held(&node.held_file).unwrap_or_else(|| {
                let guard = ctl.lock().unwrap();
                guard.as_ref().expect("running").cfg.enabled_cameras().map(|c| c.id.clone()).collect()
            });
            tracing::warn!(
                cameras = held.len(),
                "starting without PostgreSQL: running the cameras held last; events are kept on disk until it answers"
            );
            apply_held(&node, Some(held), true).await?;
            state.ready.store(true, Ordering::Relaxed);
        }
    }

    // The database, until it answers: then migrations, config, and the lease loop
    // joins the split at its next step.
    let bring_up = {
        let node = node.clone();
        tokio::spawn(async move {
            while !*node.db_ready.borrow() {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let cfg = match node.ctl.lock().unwrap().as_ref() {
                    Some(c) => c.cfg.clone(),
                    None => return,
                };
                match bring_up_database(&node.store, &cfg).await {
                    Ok(()) => {
                        tracing::info!("PostgreSQL answers: migrations applied, config synced");
                        let _ = db_ready_tx.send(true);
                    }
                    Err(e) => tracing::debug!(error = %e, "PostgreSQL still not ready"),
                }
            }
        })
    };

    // Once the event log's records from before this start are in PostgreSQL and
    // this process holds its node name, the events earlier processes of the node
    // left open are closed.
    let recovery = {
        let (node, mut replayed) = (node.clone(), writer.replayed());
        tokio::spawn(async move {
            let _ = replayed.wait_for(|r| *r).await;
            loop {
                if *node.db_ready.borrow() && node.leases.holds_name().await {
                    let name = node.state.node.clone();
                    match node.store.close_lost_events_of_node(&name, node.leases.id()).await {
                        Ok(0) => {}
                        Ok(n) => tracing::warn!(
                            events = n,
                            "closed the events earlier processes of this node left open (node_lost)"
                        ),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot close the events left open yet; retrying");
                            tokio::time::sleep(Duration::from_secs(2)).await;
                            continue;
                        }
                    }
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    // Lease steps every `lease_renew_secs`; reloads take the same step lock.
    let lease_loop = {
        let node = node.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(renew);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let _step = node.step.lock().await;
                if let Err(e) = lease_step(&node, false).await {
                    tracing::warn!(error = %e, "lease step failed");
                }
            }
        })
    };

    // Reloads run one at a time, from the API or SIGHUP.
    let reloader = {
        let node = node.clone();
        tokio::spawn(async move {
            while let Some(reply) = reload_rx.recv().await {
                let result = match &config_path {
                    Some(p) => reload(p, &node).await,
                    None => Err(varta_core::err!(Unavailable, "no config file to reload")),
                };
                if let Err(e) = &result {
                    tracing::error!(error = %e, "config reload refused; the running config is kept");
                }
                let _ = reply.send(result);
            }
        })
    };
    // Camera restarts asked for through the API, under the step lock too.
    let restarter = {
        let node = node.clone();
        tokio::spawn(async move {
            while let Some((id, reply)) = restart_rx.recv().await {
                let _step = node.step.lock().await;
                let ctl = node.ctl.clone();
                let result = tokio::task::spawn_blocking(move || restart_camera(&ctl, &id))
                    .await
                    .unwrap_or_else(|e| Err(varta_core::err!(Internal, "camera restart: {e}")));
                let _ = reply.send(result);
            }
        })
    };
    let hup_store = store.clone();
    let hup = tokio::spawn(async move {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).expect("SIGHUP handler");
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            let (reply, rx) = tokio::sync::oneshot::channel();
            if reload_tx.send(reply).await.is_err() {
                break;
            }
            // Audited like an API reload; the actor is whoever could signal the process.
            let detail = match rx.await {
                Ok(Ok(r)) => {
                    serde_json::json!({"ok": true, "added": r.added, "removed": r.removed, "changed": r.changed})
                }
                Ok(Err(e)) => serde_json::json!({"ok": false, "error": e.to_string()}),
                Err(_) => break,
            };
            let entry = varta_store::accounts::AuditEntry {
                actor: Some("signal:SIGHUP"),
                action: "config_reload",
                target: None,
                address: None,
                detail,
            };
            if let Err(e) = hup_store.audit(&entry).await {
                tracing::warn!(error = %e, "could not audit the SIGHUP reload");
            }
        }
    });

    let maintenance = tokio::spawn(maintenance_loop(node.clone(), mcfg));

    let scheme = if api_cfg.tls_cert.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, "API listening");
    println!("API: {scheme}://{addr}");
    let shutdown = state.shutdown_with(shutdown);
    // Descriptors kept from clients: the process's own (database pool, event log,
    // listeners) and, per camera it may run, its RTSP sockets and GStreamer's pipes
    // plus a snapshot being written.
    let edge = varta_api::tls::Edge::new(&api_cfg, 256 + 16 * n_cameras);
    varta_api::tls::serve(&api_cfg, listener, varta_api::router(state), shutdown, edge, metrics.clone()).await?;
    maintenance.abort();
    bring_up.abort();
    recovery.abort();

    hup.abort();
    reloader.abort();
    restarter.abort();
    {
        // Wait for a lease step in progress, then stop taking new ones.
        let _step = node.step.lock().await;
        lease_loop.abort();
    }
    tokio::task::spawn_blocking(move || {
        if let Some(mut c) = ctl.lock().unwrap().take() {
            c.ingest.stop_all();
            c.pool.stop();
        }
    })
    .await?;
    // The cameras are stopped: hand their leases to the other nodes now rather
    // than make them wait one TTL.
    if *node.db_ready.borrow() {
        if let Err(e) = node.leases.shutdown().await {
            tracing::warn!(error = %e, "could not hand back the leases; they expire in one TTL");
        }
    }
    retention.abort();
    writer.finish().await;
    tracing::info!("stopped");
    Ok(())
}

/// Restarts camera `id`'s pipeline if this node runs it.
fn restart_camera(ctl: &Mutex<Option<Controller>>, id: &str) -> Result<(), varta_core::Error> {
    let mut guard = ctl.lock().unwrap();
    let c = guard.as_mut().ok_or_else(|| varta_core::err!(Unavailable, "shutting down"))?;
    if !c.held.contains(id) {
        return Err(varta_core::err!(Conflict, "camera `{id}` is not held by this node; restart it on its holder"));
    }
    let spec = camera_specs(&c.cfg, Some(&c.held))
        .map_err(|e| varta_core::err!(InvalidArgument, "{e:#}"))?
        .into_iter()
        .find(|s| s.id.as_str() == id)
        .ok_or_else(|| varta_core::err!(Conflict, "camera `{id}` is disabled"))?;
    tracing::info!(camera = id, "restarting the camera's pipeline (API)");
    c.ingest.start(spec);
    Ok(())
}

/// What the maintenance check remembers of one camera.
#[derive(Default)]
struct Trouble {
    /// Since when it has been down (not streaming), as first seen.
    down_since: Option<chrono::DateTime<chrono::Utc>>,
    /// Health problems (`frozen`, `blackout`, `low_fps`, `decode_errors`) and since when.
    problems: std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>,
    /// Whether a task of this camera may still be waiting for its recovery.
    maybe_open: bool,
}

/// Opens a maintenance task when a held camera has been down longer than
/// `offline_after_secs`, or has had a health problem longer than
/// `degraded_after_secs` (the database refuses a second open task of a kind), and
/// records on the task when the camera is well again.
async fn maintenance_loop(node: Arc<NodeCtx>, m: varta_core::config::MaintenanceConfig) {
    let mut seen: std::collections::HashMap<String, Trouble> = Default::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(m.check_interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let offline_after = chrono::Duration::milliseconds((m.offline_after_secs * 1000.0) as i64);
    let degraded_after = chrono::Duration::milliseconds((m.degraded_after_secs * 1000.0) as i64);
    loop {
        tick.tick().await;
        let held: Vec<String> = match node.ctl.lock().unwrap().as_ref() {
            Some(c) => c.held.iter().cloned().collect(),
            None => return,
        };
        seen.retain(|k, _| held.contains(k));
        let now = chrono::Utc::now();
        for cam in held {
            let stats = node.metrics.camera(&varta_core::CameraId(cam.clone()));
            let state = stats.state();
            let t = seen.entry(cam.clone()).or_insert_with(|| Trouble { maybe_open: true, ..Default::default() });
            let mut recovered: Vec<String> = Vec::new();
            if state == CameraState::Stopped {
                continue;
            }
            if state.is_up() {
                if t.down_since.take().is_some() || t.maybe_open {
                    recovered.push("offline".into());
                }
            } else {
                let since = *t.down_since.get_or_insert(stats.state_since().unwrap_or(now).min(now));
                if now - since >= offline_after {
                    let reason = stats.last_error().unwrap_or_else(|| format!("camera {}", state.as_str()));
                    let reason = varta_core::redact::redact_text(&reason);
                    match node.store.open_camera_task(&cam, "offline", &reason, since).await {
                        Ok(Some(id)) => tracing::warn!(camera = %cam, task = id, "maintenance task opened: offline"),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(camera = %cam, error = %e, "cannot open a maintenance task"),
                    }
                    t.maybe_open = true;
                }
            }
            let problems = if state.is_up() { stats.health().problems } else { Vec::new() };
            for p in &problems {
                let since = *t.problems.entry(p.clone()).or_insert(now);
                if now - since >= degraded_after && varta_store::tasks::KINDS.contains(&p.as_str()) {
                    let reason = format!("{p} since {}", since.to_rfc3339());
                    match node.store.open_camera_task(&cam, p, &reason, since).await {
                        Ok(Some(id)) => tracing::warn!(camera = %cam, task = id, kind = %p, "maintenance task opened"),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(camera = %cam, error = %e, "cannot open a maintenance task"),
                    }
                }
            }
            let gone: Vec<String> = t.problems.keys().filter(|p| !problems.contains(p)).cloned().collect();
            for p in gone {
                t.problems.remove(&p);
                recovered.push(p);
            }
            if state.is_up() && t.maybe_open {
                recovered.extend(["frozen", "blackout", "low_fps", "decode_errors"].map(String::from));
                recovered.retain(|k| !problems.contains(k));
                t.maybe_open = false;
            }
            if !recovered.is_empty() {
                let kinds: Vec<&str> = recovered.iter().map(String::as_str).collect();
                match node.store.camera_recovered(&cam, &kinds, now).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(camera = %cam, kinds = ?kinds, "maintenance task: camera recovered")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(camera = %cam, error = %e, "cannot record a recovery; will retry");
                        t.maybe_open = true;
                    }
                }
            }
        }
    }
}

/// Creates event partitions ahead, drops old ones and trims the snapshot folder,
/// at start and every `retention_interval_secs`.
async fn retention_loop(store: Store, cfg: Config, metrics: Arc<Registry>) {
    let st = &cfg.store;
    let mut tick = tokio::time::interval(Duration::from_secs(st.retention_interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let today = chrono::Utc::now().date_naive();
        match store.maintain_partitions(today, st.partitions_ahead_days, st.retention_days).await {
            Ok(r) => {
                metrics.store.partitions_dropped.add(r.dropped.len() as u64);
                if !r.created.is_empty() || !r.dropped.is_empty() {
                    tracing::info!(created = ?r.created, dropped = ?r.dropped, "retention: event partitions");
                }
            }
            Err(e) => tracing::warn!(error = %e, "retention: event partitions not maintained this time"),
        }
        let dir = cfg.detect.snapshot_dir.clone();
        let max_age =
            (st.snapshot_max_age_days > 0).then(|| Duration::from_secs(st.snapshot_max_age_days as u64 * 86400));
        let budget = (st.snapshot_budget_mb > 0).then_some(st.snapshot_budget_mb << 20);
        let r = tokio::task::spawn_blocking(move || {
            varta_store::retention::trim_snapshots(&dir, max_age, budget, std::time::SystemTime::now())
        })
        .await;
        match r {
            Ok(Ok(r)) => {
                metrics.store.snapshots_deleted.add(r.deleted_for_age + r.deleted_for_budget);
                metrics.store.snapshot_bytes.set(r.bytes_left as i64);
                if r.deleted_for_age + r.deleted_for_budget > 0 {
                    tracing::info!(
                        for_age = r.deleted_for_age,
                        for_budget = r.deleted_for_budget,
                        bytes_freed = r.bytes_freed,
                        bytes_left = r.bytes_left,
                        "retention: snapshots deleted"
                    );
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "retention: snapshots not trimmed this time"),
            Err(e) => tracing::warn!(error = %e, "retention task failed"),
        }
    }
}
