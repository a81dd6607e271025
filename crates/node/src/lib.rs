//! One Varta node: every stage wired together ([`Node::start`] → [`NodeHandle`]);
//! `varta serve`, `varta demo` and `varta bench` run it.
//!
//! Start order: event log and store writer → database (migrate, sync config; in the
//! background when PostgreSQL does not answer) → inference pool → cameras → API.
//! Stop order is the reverse of the data flow so nothing in flight is lost: API,
//! cameras (pipelines to Null), leases handed back (the other nodes need not wait for
//! the rest), inference (open events end as `node_stopped`) and open clips, then the
//! journal closes and the writer syncs and writes what is left.
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

pub mod config;
mod controller;
pub mod feed;
mod maintenance;
mod retention;
mod samples;
mod state;

pub use controller::{camera_specs, check_against_model};
pub use state::{app_state, camera_infos};

use anyhow::{Context, Result};
use config::Config;
use controller::{apply_held, bring_up_database, lease_step, load_held, reload, restart_camera, Controller, NodeCtx};
use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use varta_api::ReloadRequest;
use varta_core::frame::FrameHub;
use varta_core::journal::Journal;
use varta_core::metrics::Registry;
use varta_detect::pool::InferencePool;
use varta_ingest::{Ingest, IngestSettings};
use varta_store::leases::{LeaseConfig, Leases};
use varta_store::writer::WriterHandle;
use varta_store::Store;

/// Messages that may wait for the disk before detection and the ingest block (the
/// event log syncs every flush interval; a node makes far fewer in that time).
const JOURNAL_CAPACITY: usize = 20_000;
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

/// Makes every file and folder this process creates from now on (snapshots, the
/// event log, the held-cameras list) its user's alone: 0600 and 0700. Snapshots
/// are pictures of people.
pub fn private_files() {
    // SAFETY: umask(2) has no preconditions.
    unsafe { libc::umask(0o077) };
}

/// `DATABASE_OWNER_URL`: the role that owns the schema and applies migrations
/// (`DATABASE_URL` is the runtime role's). Unset or empty: none.
pub fn owner_url_from_env() -> Option<String> {
    std::env::var("DATABASE_OWNER_URL").ok().filter(|u| !u.is_empty())
}

/// How a node reaches its database and where it reports.
pub struct NodeOptions {
    /// The runtime role's URL (`DATABASE_URL`).
    pub database_url: String,
    /// The schema owner's URL (`DATABASE_OWNER_URL`), which applies migrations;
    /// `None`: the runtime role must find the schema current.
    pub owner_url: Option<String>,
    /// With a path, SIGHUP and `POST /api/v1/config/reload` re-read it.
    pub config_path: Option<PathBuf>,
    /// The node's counters; `varta bench` passes its own to read them directly.
    pub metrics: Arc<Registry>,
}

impl NodeOptions {
    /// Options for `database_url`, the owner from the environment, no reloads, fresh metrics.
    pub fn new(database_url: &str) -> Self {
        NodeOptions {
            database_url: database_url.to_owned(),
            owner_url: owner_url_from_env(),
            config_path: None,
            metrics: Arc::new(Registry::default()),
        }
    }
}

/// A node: [`Node::start`] brings every stage up.
pub struct Node;

/// A started node; [`NodeHandle::stop`] (or [`NodeHandle::run_until`]) stops it in
/// order, losing nothing in flight.
pub struct NodeHandle {
    addr: SocketAddr,
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<()>>,
    /// Tasks that stop with the API, before the cameras.
    helpers: Vec<JoinHandle<()>>,
    lease_loop: JoinHandle<()>,
    retention: JoinHandle<()>,
    /// The clip recorder, when clips are on.
    clips: Option<Arc<varta_ingest::clip::Clips>>,
    node: Arc<NodeCtx>,
    writer: WriterHandle,
}

/// Where the other processes reach this node's API: `VARTA_ADVERTISE_ADDR`, else
/// `[node] advertise_addr`, else the address it listens on unless that is a wildcard
/// (then nowhere: its files are served by itself only, and it says so).
fn advertise_addr(cfg: &Config, listening: SocketAddr) -> Option<String> {
    let configured = std::env::var("VARTA_ADVERTISE_ADDR").ok().filter(|a| !a.is_empty());
    match configured.or_else(|| cfg.node.advertise_addr.clone()) {
        Some(a) => Some(a),
        None if listening.ip().is_unspecified() => {
            tracing::warn!(%listening, "listening on a wildcard address without [node] advertise_addr \
                           (or VARTA_ADVERTISE_ADDR): other processes cannot fetch this node's snapshots and clips");
            None
        }
        None => Some(listening.to_string()),
    }
}

impl Node {
    /// Starts a node on `cfg`: checks it against the model and resolves every
    /// camera's credentials (errors name the key), binds the API on
    /// `node.api_listen`, and starts the stages in the order of the module docs.
    /// Returns once the cameras it holds are started; PostgreSQL need not answer.
    pub async fn start(cfg: Config, opts: NodeOptions) -> Result<NodeHandle> {
        let NodeOptions { database_url, owner_url, config_path, metrics } = opts;
        check_against_model(&cfg).map_err(|e| anyhow::anyhow!(e))?;
        camera_specs(&cfg, None)?;
        let n_cameras = cfg.cameras.len();
        private_files();
        let store = Store::connect_lazy(&database_url)?;
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
                api_addr: advertise_addr(&cfg, addr),
            },
        ));

        // Every record passes the event log on disk before PostgreSQL sees it.
        let journal = Journal::new(JOURNAL_CAPACITY);
        let (db_ready_tx, db_ready) = watch::channel(false);
        // The node's evidence key (made on first start), kept with its event log.
        let key = Arc::new(varta_store::evidence::NodeKey::load_or_create(
            &cfg.store.spool_dir.join(varta_store::evidence::KEY_FILE),
        )?);
        let mut wcfg = cfg.store.writer(&cfg.node.name, leases.id(), &cfg.detect.snapshot_dir);
        wcfg.signer = Some(key.clone());
        let writer =
            varta_store::writer::start(store.clone(), &wcfg, journal.clone(), metrics.clone(), db_ready.clone())?;
        let held_file = cfg.store.spool_dir.join(controller::HELD_FILE);

        // The database, if it answers now; otherwise in the background (below).
        if !store.reachable(FIRST_DB_ATTEMPT).await {
            tracing::warn!("PostgreSQL does not answer at start; going on without it");
        } else {
            match tokio::time::timeout(
                FIRST_DB_ATTEMPT * 5,
                bring_up_database(&store, &cfg, owner_url.as_deref(), &key),
            )
            .await
            {
                Ok(Ok(())) => {
                    let _ = db_ready_tx.send(true);
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "PostgreSQL not ready at start; going on without it"),
                Err(_) => tracing::warn!("PostgreSQL too slow at start; going on without it"),
            }
        }
        let retention = tokio::spawn(retention::retention_loop(store.clone(), cfg.clone(), metrics.clone()));

        let spec = varta_detect::manifest::load(&cfg.detect.models, &cfg.detect.model)?;
        let hub = FrameHub::with_config(cfg.detect.scheduler());
        let mut pool_cfg = cfg.detect.pool(varta_core::clock::system())?;
        // Clips: the recorder follows the detector's events and every camera's
        // compressed stream; its files go beside the snapshots (same retention).
        let clips = match cfg.clips.enabled {
            true => {
                Some(varta_ingest::clip::Clips::start(&cfg.clips, cfg.detect.snapshot_dir.clone(), journal.clone())?)
            }
            false => None,
        };
        pool_cfg.observer = clips.clone().map(|c| c as Arc<dyn varta_core::event::EventObserver>);
        let pool = {
            let (spec, hub, journal, metrics) = (spec.clone(), hub.clone(), journal.clone(), metrics.clone());
            tokio::task::spawn_blocking(move || InferencePool::start(&spec, &pool_cfg, hub, journal, metrics)).await??
        };

        let settings = IngestSettings { ingest: cfg.ingest.clone(), health: cfg.health.clone(), clips: clips.clone() };
        let ingest = Ingest::new(settings, hub.clone(), metrics.clone(), journal.clone())?;
        let renew = Duration::from_secs_f64(cfg.node.lease_renew_secs);

        let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
        let (restart_tx, mut restart_rx) = mpsc::channel::<varta_api::RestartRequest>(4);
        let state = app_state(
            &cfg,
            store.clone(),
            metrics.clone(),
            camera_infos(&cfg),
            config_path.is_some().then(|| reload_tx.clone()),
            Some(restart_tx),
            false,
        )?;
        // The JetStream feed's publisher (registered with the database above).
        feed::start(&cfg.feed, cfg.node.secrets_file.as_deref(), &cfg.node.name, store.clone(), metrics.clone())?;
        let mcfg = cfg.maintenance.clone();
        let api_cfg = cfg.api.clone();
        // What the health sampler needs of the config, which the controller takes.
        let sampling = (cfg.node.name.clone(), cfg.node.capacity, Duration::from_secs_f64(cfg.node.sample_secs));
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
            owner_url,
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
            let (node, key) = (node.clone(), key.clone());
            tokio::spawn(async move {
                while !*node.db_ready.borrow() {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let cfg = match node.ctl.lock().unwrap().as_ref() {
                        Some(c) => c.cfg.clone(),
                        None => return,
                    };
                    match bring_up_database(&node.store, &cfg, node.owner_url.as_deref(), &key).await {
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

        // Lease steps every `lease_renew_secs`, and at once when another node frees
        // leases (varta_store::leases::CHANNEL); reloads take the same step lock.
        let lease_loop = {
            let node = node.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(renew);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                let freed = varta_store::notify::wake_on(
                    &node.store,
                    varta_store::leases::CHANNEL,
                    Some(node.leases.id().to_string()),
                );
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = freed.notified() => tick.reset(),
                    }
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
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).expect("SIGHUP handler");
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

        let maintenance = tokio::spawn(maintenance::maintenance_loop(node.clone(), mcfg));
        let sampler = tokio::spawn(samples::sample_loop(node.clone(), sampling.0, sampling.1, sampling.2));

        let tls = api_cfg.tls_cert.is_some();
        tracing::info!(%addr, scheme = if tls { "https" } else { "http" }, "API listening");
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let shutdown = state.shutdown_with(async move {
            let _ = stop_rx.await;
        });
        // Descriptors kept from clients: the process's own (database pool, event log,
        // listeners) and, per camera it may run, its RTSP sockets and GStreamer's pipes
        // plus a snapshot being written.
        let edge = varta_api::tls::Edge::new(&api_cfg, 256 + 16 * n_cameras);
        let server = tokio::spawn(async move {
            varta_api::tls::serve(&api_cfg, listener, varta_api::router(state), shutdown, edge, metrics).await
        });
        Ok(NodeHandle {
            addr,
            tls,
            stop: Some(stop_tx),
            server,
            helpers: vec![maintenance, bring_up, recovery, hup, reloader, restarter, sampler],
            lease_loop,
            retention,
            clips,
            node,
            writer,
        })
    }
}

impl NodeHandle {
    /// Where the API listens (the port chosen when `api_listen` gave 0).
    pub fn api_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The console's base URL: `http://ADDR` or `https://ADDR`.
    pub fn api_url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// Runs until `shutdown` resolves (or the API fails), then [`stop`](Self::stop)s.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> Result<()> {
        tokio::select! {
            _ = shutdown => self.stop().await,
            r = &mut self.server => {
                self.stop = None;
                let served = r.context("API task").and_then(|r| r);
                let stopped = self.teardown().await;
                served.and(stopped)
            }
        }
    }

    /// Stops in the reverse of the data flow: API, cameras (pipelines to Null), leases
    /// handed back, inference (open events end as `node_stopped`) and open clips
    /// written, then the event log closes and the writer writes what is left.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = (&mut self.server).await.context("API task").and_then(|r| r);
        let stopped = self.teardown().await;
        served.and(stopped)
    }

    async fn teardown(self) -> Result<()> {
        for h in &self.helpers {
            h.abort();
        }
        let node = self.node;
        {
            // Wait for a lease step in progress, then stop taking new ones.
            let _step = node.step.lock().await;
            self.lease_loop.abort();
        }
        let ctl = node.ctl.clone();
        let clips = self.clips.clone();
        let controller = tokio::task::spawn_blocking(move || {
            let mut c = ctl.lock().unwrap().take();
            if let Some(c) = c.as_mut() {
                c.ingest.stop_all();
            }
            c
        })
        .await?;
        // The cameras are stopped: hand their leases to the other nodes at once (not
        // after the inference drain and the clips below, nor one TTL later), so that a
        // rolling restart leaves each camera unanalysed as briefly as possible.
        if *node.db_ready.borrow() {
            if let Err(e) = node.leases.shutdown().await {
                tracing::warn!(error = %e, "could not hand back the leases; they expire in one TTL");
            }
        }
        tokio::task::spawn_blocking(move || {
            if let Some(c) = controller {
                c.pool.stop();
            }
            // The events are ended: their clips close now, are written and recorded
            // before the event log closes.
            if let Some(c) = clips {
                c.stop();
            }
        })
        .await?;
        self.retention.abort();
        self.writer.finish().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Starts a node and runs it until `shutdown` resolves.
pub async fn run(cfg: Config, opts: NodeOptions, shutdown: impl Future<Output = ()>) -> Result<()> {
    let node = Node::start(cfg, opts).await?;
    println!("API: {}", node.api_url());
    node.run_until(shutdown).await
}

/// Runs the API alone (no cameras, no leases) until `shutdown`: a second API
/// process, or a console host without cameras. Needs PostgreSQL at start.
pub async fn run_api_only(
    cfg: Config,
    opts: NodeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    private_files();
    let store = Store::connect(&opts.database_url).await?;
    store.ensure_schema(opts.owner_url.as_deref()).await?;
    let metrics = opts.metrics;
    if cfg.feed.nats_url.is_some() {
        store.feed_register(&cfg.node.name).await?;
    }
    feed::start(&cfg.feed, cfg.node.secrets_file.as_deref(), &cfg.node.name, store.clone(), metrics.clone())?;
    let state = app_state(&cfg, store, metrics.clone(), camera_infos(&cfg), None, None, true)?;
    let listener = tokio::net::TcpListener::bind(cfg.node.api_listen)
        .await
        .with_context(|| format!("API cannot listen on {}", cfg.node.api_listen))?;
    let addr = listener.local_addr()?;
    state.ready.store(true, Ordering::Relaxed);
    let scheme = if cfg.api.tls_cert.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, "API (alone) listening");
    println!("API: {scheme}://{addr}");
    let shutdown = state.shutdown_with(shutdown);
    let edge = varta_api::tls::Edge::new(&cfg.api, 256);
    varta_api::tls::serve(&cfg.api, listener, varta_api::router(state), shutdown, edge, metrics).await
}
