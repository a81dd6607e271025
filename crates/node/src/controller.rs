//! The running stages and what changes them: lease steps, config reloads and
//! camera restarts, one at a time under [`NodeCtx::step`].

use crate::config::Config;
use crate::state::camera_infos;
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use varta_api::{AppState, ReloadReport};
use varta_core::config::{resolve_credentials, KeyPath, Problems};
use varta_core::metrics::Registry;
use varta_core::CameraId;
use varta_detect::pool::InferencePool;
use varta_ingest::{CameraSpec, Ingest};
use varta_store::leases::{Leases, Plan};
use varta_store::Store;

/// The cameras a node held last, in its spool folder: what it runs when it starts
/// while PostgreSQL is down.
pub(crate) const HELD_FILE: &str = "held-cameras.json";

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

/// The running stages that a reload or a lease step changes.
pub(crate) struct Controller {
    pub(crate) cfg: Config,
    pub(crate) ingest: Ingest,
    pub(crate) pool: InferencePool,
    /// Cameras this node holds leases on and should run.
    pub(crate) held: BTreeSet<String>,
}

impl Controller {
    /// Makes the running cameras those of the config that this node holds.
    /// Blocking: stopping a camera waits for its pipeline.
    pub(crate) fn apply(&mut self) -> Result<varta_ingest::Applied, varta_core::Error> {
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
pub(crate) async fn lease_step(
    node: &NodeCtx,
    config_changed: bool,
) -> Result<varta_ingest::Applied, varta_core::Error> {
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
        node.metrics.totals.leases_held.set(run.len() as i64);
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
pub(crate) async fn apply_held(
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
pub(crate) fn load_held(path: &Path) -> Option<BTreeSet<String>> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Brings the schema up (as the owner role when `DATABASE_OWNER_URL` is set) and
/// syncs the config: what the node needs of the database before it takes leases
/// and writes events.
pub(crate) async fn bring_up_database(
    store: &Store,
    cfg: &Config,
    owner_url: Option<&str>,
    key: &varta_store::evidence::NodeKey,
) -> Result<(), varta_core::Error> {
    store.ensure_schema(owner_url).await?;
    // Before the writer may sign anything with it (the writer waits for this).
    store.register_node_key(&cfg.node.name, key).await?;
    // Before the writer stores anything the feed should send (the outbox fills
    // only while a publisher is registered).
    if cfg.feed.nats_url.is_some() {
        store.feed_register(&cfg.node.name).await?;
    }
    store.sync_config(&cfg.sites, &cfg.cameras).await
}

/// Re-reads `path` and applies camera changes: added cameras are claimed and start,
/// removed ones stop and are handed back, changed ones restart, the others are not
/// touched. Node-wide sections that changed are reported as needing a restart.
pub(crate) async fn reload(path: &Path, node: &NodeCtx) -> Result<ReloadReport, varta_core::Error> {
    let invalid = |e: String| varta_core::err!(InvalidArgument, "{e}");
    let new = Config::load(path).map_err(|e| invalid(e.to_string()))?;
    check_against_model(&new).map_err(invalid)?;
    // Every camera's credentials must resolve, held here or not.
    camera_specs(&new, None).map_err(|e| invalid(format!("{e:#}")))?;
    let _step = node.step.lock().await;
    node.store.sync_config(&new.sites, &new.cameras).await?;
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
            ("feed", new.feed != old.feed),
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
pub(crate) struct NodeCtx {
    pub(crate) ctl: Arc<Mutex<Option<Controller>>>,
    pub(crate) leases: Arc<Leases>,
    pub(crate) store: Store,
    pub(crate) state: Arc<AppState>,
    pub(crate) metrics: Arc<Registry>,
    /// One lease step (or reload) at a time.
    pub(crate) step: tokio::sync::Mutex<()>,
    /// True once the database is migrated and has the config.
    pub(crate) db_ready: watch::Receiver<bool>,
    /// Where the held set is recorded.
    pub(crate) held_file: PathBuf,
    /// The schema owner's URL, for migrations (`DATABASE_OWNER_URL`).
    pub(crate) owner_url: Option<String>,
}

/// Restarts camera `id`'s pipeline if this node runs it.
pub(crate) fn restart_camera(ctl: &Mutex<Option<Controller>>, id: &str) -> Result<(), varta_core::Error> {
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
