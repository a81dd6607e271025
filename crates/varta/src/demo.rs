//! `varta demo`: everything on one machine for a first look.

use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use varta_core::config::{CameraConfig, DecodePolicy, SiteConfig};
use varta_node::config::Config;
use varta_store::localpg;

/// Arguments of `varta demo`.
pub struct DemoArgs {
    /// Demo config.
    pub config: PathBuf,
    /// Camera count override.
    pub cameras: Option<usize>,
    /// Clip for the simulator.
    pub clip: PathBuf,
    /// Simulator address.
    pub sim_listen: SocketAddr,
    /// Stop after this many seconds.
    pub duration: Option<u64>,
    /// Decode policy for every camera (default: the config's).
    pub decode: Option<DecodePolicy>,
}

/// Sites the demo spreads generated cameras over, like the real 49 sites.
const DEMO_SITES: usize = 49;

/// The config's cameras, extended (or cut) to `n`, all pointed at the simulator.
fn demo_config(mut cfg: Config, n: Option<usize>, sim: SocketAddr, decode: Option<DecodePolicy>) -> Result<Config> {
    let template = cfg.cameras.first().cloned().context("the demo config needs at least one camera as a template")?;
    let n = n.unwrap_or(cfg.cameras.len());
    cfg.cameras.truncate(n);
    for i in cfg.cameras.len()..n {
        let site = format!("site-{:02}", i % DEMO_SITES + 1);
        if !cfg.sites.iter().any(|s| s.id == site) {
            let k = (i % DEMO_SITES) as f64;
            // Spread over the Kharkiv region (about 49.2–50.3 N, 35.5–37.8 E), the same
            // place for the same site every run.
            cfg.sites.push(SiteConfig {
                id: site.clone(),
                name: format!("Demo site {}", i % DEMO_SITES + 1),
                lat: Some(49.2 + (k * 0.377) % 1.1),
                lon: Some(35.5 + (k * 0.613) % 2.3),
            });
        }
        cfg.cameras.push(CameraConfig { id: format!("cam-{:03}", i + 1), site, name: None, ..template.clone() });
    }
    for (i, c) in cfg.cameras.iter_mut().enumerate() {
        c.url = format!("rtsp://{sim}/cam/{}", i + 1);
        c.credentials = None;
        if let Some(d) = decode {
            c.decode = d;
        }
    }
    Ok(cfg)
}

/// Runs the demo until Ctrl-C (or `duration`).
pub async fn run(a: DemoArgs) -> Result<()> {
    let cfg = Config::load(&a.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let cfg = demo_config(cfg, a.cameras, a.sim_listen, a.decode)?;
    let opts = match std::env::var("DATABASE_URL") {
        Ok(u) => varta_node::NodeOptions::new(&u),
        Err(_) => {
            // The owner role migrates; the node runs as the runtime role.
            let owner = localpg::start(std::path::Path::new(".varta/pg"), localpg::DEFAULT_PORT).await?;
            let u = localpg::runtime_url(&owner);
            println!("PostgreSQL: {u} (local cluster in .varta/pg; owner role: {owner})");
            varta_node::NodeOptions { owner_url: Some(owner), ..varta_node::NodeOptions::new(&u) }
        }
    };
    let accounts = demo_accounts(&opts.database_url, opts.owner_url.as_deref()).await?;
    let n = cfg.cameras.len();
    let (clip, listen) = (a.clip.clone(), a.sim_listen);
    let sim =
        tokio::task::spawn_blocking(move || varta_sim::SimServer::start(&varta_sim::SimConfig::new(listen, n, clip)))
            .await??;
    println!("Simulator: rtsp://{}/cam/1 .. /cam/{n}", sim.addr());
    let duration = a.duration;
    let stop = async move {
        match duration {
            Some(s) => tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(s)) => {},
                _ = varta_node::shutdown_signal() => {},
            },
            None => varta_node::shutdown_signal().await,
        }
    };
    println!("Console: http://{}/ — accounts (also in {}):", cfg.node.api_listen, ACCOUNTS_FILE);
    for line in accounts.lines() {
        println!("  {line}");
    }
    let result = varta_node::run(cfg, opts, stop).await;
    tokio::task::spawn_blocking(move || sim.stop()).await?;
    result
}

/// Where the demo keeps the passwords it generated (readable by the owner only).
const ACCOUNTS_FILE: &str = ".varta/demo-accounts.txt";

/// Makes the demo's three accounts (admin, operator, contractor) with generated
/// passwords the first time, and returns "name (role): password" lines.
async fn demo_accounts(database_url: &str, owner_url: Option<&str>) -> Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = std::path::Path::new(ACCOUNTS_FILE);
    let store = varta_store::Store::connect(database_url).await?;
    store.ensure_schema(owner_url).await?;
    let existing = store.list_users().await?;
    let known = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = Vec::new();
    for (name, role) in [
        ("admin", varta_api::auth::Role::Admin),
        ("operator", varta_api::auth::Role::Operator),
        ("contractor", varta_api::auth::Role::Contractor),
    ] {
        if let Some(line) = known.lines().find(|l| l.starts_with(&format!("{name} ("))) {
            if existing.iter().any(|u| u.name == name) {
                lines.push(line.to_owned());
                continue;
            }
        }
        // New, or its password was not kept: (re)set it.
        let (token, _) = varta_api::auth::new_token();
        let password = token.trim_start_matches("vt_")[..16].to_owned();
        let p = password.clone();
        let hash = tokio::task::spawn_blocking(move || varta_api::auth::hash_password(&p)).await??;
        let audit = varta_store::accounts::AuditEntry::by(
            "cli:varta-demo",
            "user_add",
            name,
            serde_json::json!({"role": role.as_str(), "replace": true}),
        );
        store.upsert_user(name, role, &hash, true, &audit).await?;
        lines.push(format!("{name} ({}): {password}", role.as_str()));
    }
    let text = lines.join("\n") + "\n";
    std::fs::create_dir_all(".varta")?;
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(path)?;
    std::io::Write::write_all(&mut f, text.as_bytes())?;
    Ok(text)
}
