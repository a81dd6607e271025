//! A PostgreSQL cluster of the project's own, for demos and tests when
//! `DATABASE_URL` is not set: its own directory, port and socket, never the
//! machine's default cluster.
//!
//! PostgreSQL refuses to run as root; as root the cluster belongs to the `postgres`
//! user and its commands run through `runuser`. Authentication is `trust` for local
//! connections only (socket and 127.0.0.1): a development cluster, not production.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Default port of the local cluster (not PostgreSQL's 5432, to stay clear of it).
pub const DEFAULT_PORT: u16 = 54329;

/// Settings for sustained event writes (PostgreSQL's defaults are sized for a
/// small shared machine): a larger buffer cache and WAL buffers, and checkpoints
/// spaced out so that a burst is not interrupted by them. The same are advised
/// for a production server (README, "PostgreSQL").
const BULK_SETTINGS: &str =
    "-c shared_buffers=512MB -c wal_buffers=64MB -c max_wal_size=4GB -c checkpoint_timeout=15min";

fn bindir() -> Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL server not installed (run ./scripts/setup)")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop().context("no pg_ctl under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command for a PostgreSQL program, as the cluster's owner.
fn pg_cmd(bin: &Path, prog: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(prog));
        c
    } else {
        Command::new(bin.join(prog))
    }
}

fn run(mut c: Command, what: &str) -> Result<()> {
    let out = c.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Creates the cluster in `dir` if needed, starts it if stopped, makes sure the
/// `varta` database exists, and returns its URL.
///
/// The cluster has two login roles: `varta`, the superuser that owns the schema and
/// applies migrations, whose URL this returns, and [`RUNTIME_USER`] for the
/// processes ([`runtime_url`]).
pub async fn start(dir: &Path, port: u16) -> Result<String> {
    let bin = bindir()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    if is_root() {
        // The cluster runs as `postgres`, which must be able to walk down to it: a
        // clone under a private folder (mktemp -d makes them 0700) fails in initdb
        // with a bare "Permission denied", so say which folder and what to do.
        let enters = |p: &Path| {
            Command::new("runuser")
                .args(["-u", "postgres", "--", "test", "-x"])
                .arg(p)
                .status()
                .is_ok_and(|s| s.success())
        };
        if let Some(a) = dir.ancestors().skip(1).collect::<Vec<_>>().into_iter().rev().find(|a| !enters(a)) {
            bail!(
                "PostgreSQL runs as the `postgres` user, which cannot enter {}: `chmod o+x {}` \
                 or put the repository where other users can reach it",
                a.display(),
                a.display()
            );
        }
        let mut c = Command::new("chown");
        c.args(["-R", "postgres:postgres"]).arg(&dir);
        run(c, "chown")?;
    }
    let data = dir.join("data");
    if !data.join("PG_VERSION").exists() {
        let mut c = pg_cmd(&bin, "initdb");
        c.arg("-D").arg(&data).args(["-U", "varta", "--auth=trust", "-E", "UTF8", "--no-locale"]);
        run(c, "initdb")?;
    }
    let running = pg_cmd(&bin, "pg_ctl").arg("status").arg("-D").arg(&data).output()?.status.success();
    if !running {
        let mut c = pg_cmd(&bin, "pg_ctl");
        c.arg("start").arg("-D").arg(&data).arg("-w").arg("-l").arg(dir.join("postgres.log")).arg("-o").arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 {BULK_SETTINGS}",
            dir.display()
        ));
        run(c, "pg_ctl start").with_context(|| format!("see {}", dir.join("postgres.log").display()))?;
    }
    let admin = format!("postgres://varta@127.0.0.1:{port}/postgres");
    let mut conn =
        <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.context("connecting to local cluster")?;
    let exists: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = 'varta'").fetch_optional(&mut conn).await?;
    if exists.is_none() {
        sqlx::query("CREATE DATABASE varta").execute(&mut conn).await?;
    }
    // The runtime login role (migration 0007 grants to its group role; creating the
    // group here too lets the role exist before the first migration).
    sqlx::query(
        "DO $$ BEGIN
             IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'varta_runtime') THEN
                 CREATE ROLE varta_runtime NOLOGIN;
             END IF;
             IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'varta_app') THEN
                 CREATE ROLE varta_app LOGIN IN ROLE varta_runtime;
             END IF;
         END $$",
    )
    .execute(&mut conn)
    .await
    .context("creating the runtime role")?;
    Ok(format!("postgres://varta@127.0.0.1:{port}/varta"))
}

/// The login role processes use on a local cluster: a member of `varta_runtime`,
/// which owns nothing (migration 0007 says what it may do).
pub const RUNTIME_USER: &str = "varta_app";

/// `owner_url` (a URL of the local cluster's owner role `varta`) for the runtime
/// role instead.
pub fn runtime_url(owner_url: &str) -> String {
    owner_url.replacen("postgres://varta@", &format!("postgres://{RUNTIME_USER}@"), 1)
}

/// Stops the cluster in `dir` (if it runs). `mode` is pg_ctl's shutdown mode:
/// `fast` (clean) or `immediate` (no checkpoint: a crash, as the outage tests want).
pub fn stop(dir: &Path, mode: &str) -> Result<()> {
    let bin = bindir()?;
    let data = dir.join("data");
    if data.join("postmaster.pid").exists() {
        let mut c = pg_cmd(&bin, "pg_ctl");
        c.arg("stop").arg("-D").arg(&data).args(["-m", mode, "-w"]);
        run(c, "pg_ctl stop")?;
    }
    Ok(())
}
