//! The API's shared state as a node (or an API-only process) builds it from the config.

use crate::config::Config;
use anyhow::{Context, Result};
use std::sync::{Arc, RwLock};
use varta_api::auth;
use varta_api::{ApiSettings, AppState, CameraInfo};
use varta_core::metrics::Registry;
use varta_core::redact::redact_url;
use varta_store::Store;

/// The shared API state of a process, with its alert listener and sinks started.
pub fn app_state(
    cfg: &Config,
    store: Store,
    metrics: Arc<Registry>,
    cameras: Vec<varta_api::CameraInfo>,
    reload: Option<tokio::sync::mpsc::Sender<varta_api::ReloadRequest>>,
    restart: Option<tokio::sync::mpsc::Sender<varta_api::RestartRequest>>,
    database_required: bool,
) -> Result<Arc<AppState>> {
    let alerts = varta_api::alerts::AlertHub::start(store.clone(), metrics.clone());
    let mqtt_credentials = match &cfg.alerts.mqtt_credentials {
        Some(name) => {
            let c = varta_core::config::resolve_credentials(name, cfg.node.secrets_file.as_deref())
                .with_context(|| format!("[alerts] mqtt_credentials = \"{name}\""))?;
            Some((c.username, c.password))
        }
        None => None,
    };
    let mqtt = varta_api::sinks::MqttSettings::from_config(&cfg.alerts, mqtt_credentials);
    let webhook_key = match &cfg.alerts.webhook_secret {
        Some(name) => Some(
            varta_core::config::resolve_credentials(name, cfg.node.secrets_file.as_deref())
                .with_context(|| format!("[alerts] webhook_secret = \"{name}\""))?
                .password
                .into_bytes(),
        ),
        None => None,
    };
    varta_api::sinks::start(store.clone(), &alerts, cfg.node.name.clone(), &cfg.alerts, mqtt, webhook_key)?;
    // Other nodes' snapshots and clips, through their APIs (varta_api::peers).
    let peers = match &cfg.node.peer_credentials {
        Some(name) => Some(
            varta_core::config::resolve_credentials(name, cfg.node.secrets_file.as_deref())
                .and_then(|c| varta_api::peers::Peers::new(c.password.into_bytes()))
                .with_context(|| format!("[node] peer_credentials = \"{name}\""))?,
        ),
        None => None,
    };
    // Login windows close (and their refusals reach the audit log) even when
    // nobody logs in afterwards.
    let (sweep, window) = (store.clone(), cfg.api.login_window_secs);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(window.clamp(1, 60)));
        loop {
            every.tick().await;
            if let Err(e) = sweep.close_login_windows(window).await {
                tracing::debug!(error = %e, "closing login windows");
            }
        }
    });
    Ok(Arc::new(AppState {
        node: cfg.node.name.clone(),
        store,
        metrics,
        cameras: RwLock::new(cameras),
        ready: Default::default(),
        database_required,
        reload,
        restart,
        snapshot_dir: cfg.detect.snapshot_dir.clone(),
        peers,
        api: ApiSettings::from(&cfg.api),
        sla_percent: cfg.maintenance.sla_percent,
        alerts,
        closing: tokio::sync::watch::channel(false).0,
        hasher: auth::Hasher::for_machine(),
        streams: Default::default(),
    }))
}

/// The API's view of the configured cameras: URLs redacted, nothing secret.
pub fn camera_infos(cfg: &Config) -> Vec<CameraInfo> {
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
