//! `varta api` (the API and console alone, for a second API process or a console
//! host without cameras), `varta user …` (accounts from the command line), and the
//! HTTP server both this and `varta serve` use.

use anyhow::{Context, Result};
use clap::Subcommand;
use std::future::Future;
use std::sync::{Arc, RwLock};
use varta_api::auth::{self, Role};
use varta_api::{ApiSettings, AppState};
use varta_core::config::Config;
use varta_core::metrics::Registry;
use varta_store::accounts::AuditEntry;
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
    varta_api::sinks::start(store.clone(), &alerts, cfg.node.name.clone(), &cfg.alerts, mqtt);
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
        api: ApiSettings::from(&cfg.api),
        alerts,
        closing: tokio::sync::watch::channel(false).0,
    }))
}

/// Runs the API alone (no cameras, no leases) until `shutdown`.
pub async fn run_api_only(
    cfg: Config,
    database_url: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let store = Store::connect(database_url).await?;
    store.migrate().await?;
    let metrics = Arc::new(Registry::default());
    let state = app_state(&cfg, store, metrics, crate::serve::camera_infos(&cfg), None, None, true)?;
    let listener = tokio::net::TcpListener::bind(cfg.node.api_listen)
        .await
        .with_context(|| format!("API cannot listen on {}", cfg.node.api_listen))?;
    let addr = listener.local_addr()?;
    state.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let scheme = if cfg.api.tls_cert.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, "API (alone) listening");
    println!("API: {scheme}://{addr}");
    let shutdown = state.shutdown_with(shutdown);
    varta_api::tls::serve(&cfg.api, listener, varta_api::router(state), shutdown).await?;
    Ok(())
}

/// `varta user …`.
#[derive(Subcommand)]
pub enum UserCmd {
    /// Create an account. The password is read from VARTA_PASSWORD, else from the
    /// first line of standard input; `--generate` makes one and prints it.
    Add {
        /// Login name (a-z, 0-9, '.', '-', '_').
        name: String,
        /// `operator`, `contractor` or `admin`.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Make a random password and print it.
        #[arg(long)]
        generate: bool,
        /// If the account exists, set its role and password (and enable it).
        #[arg(long)]
        replace: bool,
    },
    /// Print a new machine token for an account (for scripts and integrations).
    Token {
        /// Account name.
        name: String,
        /// A label for the token.
        #[arg(long)]
        label: Option<String>,
        /// Expire after this many days (default: never).
        #[arg(long)]
        days: Option<u32>,
    },
    /// Disable an account and revoke its tokens.
    Disable {
        /// Account name.
        name: String,
    },
    /// List accounts.
    List,
}

fn generated_password() -> String {
    let (t, _) = auth::new_token();
    t.trim_start_matches("vt_")[..20].to_owned()
}

/// Runs a `varta user` command against DATABASE_URL. Changes are audited with the
/// actor `cli:<login name of the operating system user>`.
pub async fn user(cmd: UserCmd, database_url: &str) -> Result<()> {
    let store = Store::connect(database_url).await?;
    store.migrate().await?;
    let who = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| {
        // SAFETY: getuid(2) has no preconditions.
        format!("uid{}", unsafe { libc::getuid() })
    });
    let actor = format!("cli:{who}");
    match cmd {
        UserCmd::Add { name, role, generate, replace } => {
            let password = if generate {
                generated_password()
            } else if let Ok(p) = std::env::var("VARTA_PASSWORD") {
                p
            } else {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
                line.trim_end_matches(['\r', '\n']).to_owned()
            };
            varta_api::session::check_new_user(&name, &password)?;
            let to_hash = password.clone();
            let hash = tokio::task::spawn_blocking(move || auth::hash_password(&to_hash)).await??;
            store.upsert_user(&name, role, &hash, replace).await?;
            store
                .audit(&AuditEntry {
                    actor: Some(&actor),
                    action: "user_add",
                    target: Some(name.clone()),
                    address: None,
                    detail: serde_json::json!({"role": role.as_str(), "replace": replace}),
                })
                .await?;
            if generate {
                println!("user {name} ({}) created; password: {password}", role.as_str());
            } else {
                println!("user {name} ({}) created", role.as_str());
            }
        }
        UserCmd::Token { name, label, days } => {
            let users = store.list_users().await?;
            let u = users
                .iter()
                .find(|u| u.name == name && u.disabled_at.is_none())
                .ok_or_else(|| anyhow::anyhow!("no enabled user `{name}`"))?;
            let (token, hash) = auth::new_token();
            let expires = days.map(|d| chrono::Utc::now() + chrono::Duration::days(d as i64));
            store.add_token(u.id, "machine", &hash, label.as_deref(), expires).await?;
            store
                .audit(&AuditEntry {
                    actor: Some(&actor),
                    action: "token_add",
                    target: Some(name.clone()),
                    address: None,
                    detail: serde_json::json!({"label": label, "days": days}),
                })
                .await?;
            println!("{token}");
        }
        UserCmd::Disable { name } => {
            if !store.disable_user(&name).await? {
                anyhow::bail!("no enabled user `{name}`");
            }
            store
                .audit(&AuditEntry {
                    actor: Some(&actor),
                    action: "user_disable",
                    target: Some(name.clone()),
                    address: None,
                    detail: serde_json::json!({}),
                })
                .await?;
            println!("user {name} disabled");
        }
        UserCmd::List => {
            for u in store.list_users().await? {
                let state = if u.disabled_at.is_some() { "disabled" } else { "enabled" };
                println!("{}\t{}\t{state}", u.name, u.role.as_str());
            }
        }
    }
    Ok(())
}

/// Parses `--role`.
pub fn parse_role(s: &str) -> Result<Role, String> {
    s.parse::<Role>().map_err(|e| e.to_string())
}
