//! The PostgreSQL event store: schema (embedded migrations), the batched writer,
//! and the queries the API serves.

pub mod accounts;
pub mod alerts;
pub mod copy;
pub mod leases;
pub mod queries;
pub mod record;
pub mod recovery;
pub mod retention;
pub mod tasks;
pub mod uptime;
pub mod wal;
pub mod writer;

use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;
use varta_core::config::Config;
use varta_core::redact::redact_url;
use varta_core::{Error, ErrorKind};

/// Embedded migrations (`crates/store/migrations`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Maps a database error to Varta's kinds: connection trouble is `Unavailable`.
pub fn db_error(what: &str, e: sqlx::Error) -> Error {
    let kind = match &e {
        sqlx::Error::RowNotFound => ErrorKind::NotFound,
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => ErrorKind::Unavailable,
        sqlx::Error::Database(d) if d.code().is_some_and(|c| is_transient_sqlstate(&c)) => ErrorKind::Unavailable,
        sqlx::Error::Database(d) if d.is_foreign_key_violation() || d.is_check_violation() => {
            ErrorKind::InvalidArgument
        }
        _ => ErrorKind::Internal,
    };
    Error::wrap(kind, what.to_owned(), e)
}

/// SQLSTATEs that say "try again later", not "this row is wrong": connection
/// exceptions (08), insufficient resources (53), operator intervention such as a
/// shutdown in progress (57P01–57P03), serialization failure and deadlock.
fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") || code == "40001" || code == "40P01"
}

/// A handle on the database.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects to `url` (a `postgres://` URL; its password never reaches a log).
    pub async fn connect(url: &str) -> Result<Store, Error> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| db_error(&format!("connecting to {}", redact_url(url)), e))?;
        Ok(Store { pool })
    }

    /// A handle that connects on first use, so that a process can start while the
    /// database is down (the writer then spools).
    pub fn connect_lazy(url: &str) -> Result<Store, Error> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(url)
            .map_err(|e| db_error(&format!("database URL {}", redact_url(url)), e))?;
        Ok(Store { pool })
    }

    /// Creates the event partition of UTC day `day` if it is missing.
    pub async fn ensure_partition(&self, day: chrono::NaiveDate) -> Result<(), Error> {
        sqlx::query("SELECT varta_event_partition($1)")
            .bind(day)
            .execute(&self.pool)
            .await
            .map_err(|e| db_error(&format!("creating the event partition of {day}"), e))?;
        Ok(())
    }

    /// Wraps an existing pool (tests).
    pub fn from_pool(pool: PgPool) -> Store {
        Store { pool }
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), Error> {
        MIGRATOR.run(&self.pool).await.map_err(|e| Error::wrap(ErrorKind::Internal, "applying database migrations", e))
    }

    /// True if one connection attempt succeeds within `timeout` (the pool itself
    /// retries until its acquire timeout, which is too long to decide at start
    /// whether to wait for the database).
    pub async fn reachable(&self, timeout: Duration) -> bool {
        use sqlx::Connection;
        let opts = self.pool.connect_options();
        match tokio::time::timeout(timeout, sqlx::PgConnection::connect_with(&opts)).await {
            Ok(Ok(c)) => {
                let _ = c.close().await;
                true
            }
            _ => false,
        }
    }

    /// True if the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Makes the sites and cameras tables match `cfg`: upserts what is there and
    /// marks cameras no longer configured as removed (their history stays).
    pub async fn sync_config(&self, cfg: &Config) -> Result<(), Error> {
        let mut tx = self.pool.begin().await.map_err(|e| db_error("sync config", e))?;
        for s in &cfg.sites {
            sqlx::query(
                "INSERT INTO sites (id, name) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, updated_at = now()",
            )
            .bind(&s.id)
            .bind(&s.name)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error("upserting site", e))?;
        }
        for c in &cfg.cameras {
            sqlx::query(
                "INSERT INTO cameras (id, site_id, name, url, credentials_ref, analysis_fps, classes, min_score, enabled)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (id) DO UPDATE SET site_id = EXCLUDED.site_id, name = EXCLUDED.name,
                   url = EXCLUDED.url, credentials_ref = EXCLUDED.credentials_ref,
                   analysis_fps = EXCLUDED.analysis_fps, classes = EXCLUDED.classes,
                   min_score = EXCLUDED.min_score, enabled = EXCLUDED.enabled,
                   removed_at = NULL, updated_at = now()",
            )
            .bind(&c.id)
            .bind(&c.site)
            .bind(c.display_name())
            .bind(redact_url(&c.url))
            .bind(&c.credentials)
            .bind(c.analysis_fps)
            .bind(&c.classes)
            .bind(c.min_score)
            .bind(c.enabled)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error("upserting camera", e))?;
        }
        // Every camera has a lease row, free until a node claims it.
        sqlx::query("INSERT INTO camera_leases (camera_id) SELECT id FROM cameras ON CONFLICT DO NOTHING")
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error("adding camera leases", e))?;
        let ids: Vec<&str> = cfg.cameras.iter().map(|c| c.id.as_str()).collect();
        sqlx::query("UPDATE cameras SET removed_at = now() WHERE removed_at IS NULL AND NOT (id = ANY($1))")
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error("marking removed cameras", e))?;
        tx.commit().await.map_err(|e| db_error("sync config", e))
    }
}
