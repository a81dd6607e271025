//! The PostgreSQL event store: schema (embedded migrations), the batched writer,
//! and the queries the API serves.

pub mod accounts;
pub mod alerts;
pub mod bench;
pub mod clock;
pub mod config;
pub mod copy;
pub mod evidence;
pub mod feed;
pub mod leases;
pub mod localpg;
pub mod notify;
pub mod plates;
pub mod queries;
pub mod record;
pub mod recovery;
pub mod retention;
pub mod samples;
pub mod tasks;
pub mod uptime;
pub mod wal;
pub mod writer;

use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;
use varta_core::config::{CameraConfig, SiteConfig};
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
    /// This process's clock against the database's ([`clock`]).
    clock: std::sync::Arc<clock::DbClock>,
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
        Ok(Store { pool, clock: Default::default() })
    }

    /// A handle that connects on first use, so that a process can start while the
    /// database is down (the writer then spools).
    pub fn connect_lazy(url: &str) -> Result<Store, Error> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(url)
            .map_err(|e| db_error(&format!("database URL {}", redact_url(url)), e))?;
        Ok(Store { pool, clock: Default::default() })
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
        Store { pool, clock: Default::default() }
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), Error> {
        MIGRATOR.run(&self.pool).await.map_err(|e| Error::wrap(ErrorKind::Internal, "applying database migrations", e))
    }

    /// Brings the schema up to this build, the way every command that serves or
    /// changes data starts: with `owner_url` (the owner role's URL,
    /// `DATABASE_OWNER_URL`), the owner applies pending migrations; without it,
    /// pending migrations are tried on this connection (a database with one role
    /// for both), and a runtime role that may not apply them gets an error that
    /// says what to run. Warns when this connection could rewrite the audit log.
    pub async fn ensure_schema(&self, owner_url: Option<&str>) -> Result<(), Error> {
        if let Some(url) = owner_url {
            let owner = Store::connect(url).await?;
            let r = owner.migrate().await;
            owner.pool.close().await;
            r?;
        }
        let pending = self.pending_migrations().await?;
        if !pending.is_empty() {
            self.migrate().await.map_err(|e| {
                Error::wrap(
                    ErrorKind::Conflict,
                    format!(
                        "{} database migration(s) are pending and this role cannot apply them: run `varta migrate` \
                         with DATABASE_OWNER_URL set to the owner role's URL (docs/OPERATIONS.md, \"Database roles\")",
                        pending.len()
                    ),
                    e,
                )
            })?;
        }
        if self.audit_log_exposed().await? {
            tracing::warn!(
                "this process's database role could rewrite the audit log (it owns the tables, is a superuser, or \
                 may TRUNCATE, UPDATE or DELETE it): connect as a runtime role, see docs/OPERATIONS.md \"Database roles\""
            );
        }
        Ok(())
    }

    /// Migrations of this build not applied to the database yet (their versions).
    /// A database without the migrations table has them all pending.
    pub async fn pending_migrations(&self) -> Result<Vec<i64>, Error> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| db_error("reading the schema version", e))?;
        let applied: Vec<i64> = if exists {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| db_error("reading the schema version", e))?
        } else {
            Vec::new()
        };
        Ok(MIGRATOR.iter().map(|m| m.version).filter(|v| !applied.contains(v)).collect())
    }

    /// Whether this connection's role could rewrite the audit log: it owns the
    /// table (so may TRUNCATE, DISABLE TRIGGER, DROP), is a superuser, or has been
    /// granted TRUNCATE, UPDATE or DELETE on it. True means the database runs with
    /// one role for migrations and runtime; see docs/OPERATIONS.md.
    pub async fn audit_log_exposed(&self) -> Result<bool, Error> {
        sqlx::query_scalar(
            "SELECT r.rolsuper OR pg_has_role(current_user, c.relowner, 'USAGE')
                    OR has_table_privilege(current_user, 'audit_log', 'TRUNCATE, UPDATE, DELETE')
               FROM pg_roles r, pg_class c WHERE r.rolname = current_user AND c.oid = 'audit_log'::regclass",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| db_error("reading the audit log's privileges", e))
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

    /// Makes the sites and cameras tables match the config's: upserts what is there and
    /// marks cameras no longer configured as removed (their history stays).
    pub async fn sync_config(&self, sites: &[SiteConfig], cameras: &[CameraConfig]) -> Result<(), Error> {
        let mut tx = self.pool.begin().await.map_err(|e| db_error("sync config", e))?;
        for s in sites {
            sqlx::query(
                "INSERT INTO sites (id, name, lat, lon) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, lat = EXCLUDED.lat, lon = EXCLUDED.lon,
                   updated_at = now()",
            )
            .bind(&s.id)
            .bind(&s.name)
            .bind(s.lat)
            .bind(s.lon)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error("upserting site", e))?;
        }
        for c in cameras {
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
        let ids: Vec<&str> = cameras.iter().map(|c| c.id.as_str()).collect();
        sqlx::query("UPDATE cameras SET removed_at = now() WHERE removed_at IS NULL AND NOT (id = ANY($1))")
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error("marking removed cameras", e))?;
        tx.commit().await.map_err(|e| db_error("sync config", e))
    }
}
