//! Users, login sessions and machine tokens, and the audit log.
//!
//! Passwords arrive here already hashed (argon2id, by the API crate); tokens arrive
//! as their SHA-256, so neither a password nor a usable token is ever stored.

use crate::{db_error, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use varta_core::{err, Error};

/// An account's role: what its holder may see and do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Police operator: alerts, events, snapshots, acknowledgements.
    Operator,
    /// Maintenance contractor: sites, camera health, uptime, tasks; no pictures of people.
    Contractor,
    /// Administrator: everything.
    Admin,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Contractor => "contractor",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Role, Error> {
        match s {
            "operator" => Ok(Role::Operator),
            "contractor" => Ok(Role::Contractor),
            "admin" => Ok(Role::Admin),
            _ => Err(err!(InvalidArgument, "`{s}` is not a role (operator, contractor, admin)")),
        }
    }
}

/// An account as listed (never with its hash).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Set when the account may no longer log in.
    pub disabled_at: Option<DateTime<Utc>>,
}

/// Who a valid token belongs to.
#[derive(Clone, Debug)]
pub struct Principal {
    /// User row id.
    pub user_id: i64,
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Token row id.
    pub token_id: i64,
}

/// One audit entry to write.
#[derive(Clone, Debug, Default)]
pub struct AuditEntry<'a> {
    /// Who (user name), if known.
    pub actor: Option<&'a str>,
    /// What, e.g. `login`, `login_failed`, `snapshot_view`.
    pub action: &'a str,
    /// On what, e.g. an event id or a task id.
    pub target: Option<String>,
    /// From which address.
    pub address: Option<std::net::IpAddr>,
    /// Details (filters of a search, the fields of a change).
    pub detail: serde_json::Value,
}

/// An audit row as read back.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuditRow {
    /// Row id (ascending in time).
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: Option<String>,
    /// What.
    pub action: String,
    /// On what.
    pub target: Option<String>,
    /// From where.
    pub address: Option<String>,
    /// Details.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

fn role_of(s: &str) -> Result<Role, Error> {
    s.parse().map_err(|_| err!(Internal, "unknown role `{s}` in the database"))
}

impl Store {
    /// Creates an account, or with `replace` sets an existing one's role and password.
    pub async fn upsert_user(&self, name: &str, role: Role, password_hash: &str, replace: bool) -> Result<i64, Error> {
        let sql = if replace {
            "INSERT INTO users (name, role, password_hash) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, password_hash = EXCLUDED.password_hash,
                 disabled_at = NULL
             RETURNING id"
        } else {
            "INSERT INTO users (name, role, password_hash) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING RETURNING id"
        };
        let id: Option<i64> = sqlx::query_scalar(sql)
            .bind(name)
            .bind(role.as_str())
            .bind(password_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| db_error("writing a user", e))?;
        id.ok_or_else(|| err!(Conflict, "user `{name}` already exists"))
    }

    /// Every account, by name.
    pub async fn list_users(&self) -> Result<Vec<User>, Error> {
        let rows = sqlx::query("SELECT id, name, role, created_at, disabled_at FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_error("listing users", e))?;
        rows.iter()
            .map(|r| {
                Ok(User {
                    id: r.get(0),
                    name: r.get(1),
                    role: role_of(r.get(2))?,
                    created_at: r.get(3),
                    disabled_at: r.get(4),
                })
            })
            .collect()
    }

    /// Disables an account and revokes its tokens; false if there is no such user.
    pub async fn disable_user(&self, name: &str) -> Result<bool, Error> {
        let mut tx = self.pool.begin().await.map_err(|e| db_error("disabling a user", e))?;
        let id: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET disabled_at = now() WHERE name = $1 AND disabled_at IS NULL RETURNING id",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| db_error("disabling a user", e))?;
        if let Some(id) = id {
            sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error("revoking tokens", e))?;
        }
        tx.commit().await.map_err(|e| db_error("disabling a user", e))?;
        Ok(id.is_some())
    }

    /// The id, role and password hash of an enabled account.
    pub async fn user_credentials(&self, name: &str) -> Result<Option<(i64, Role, String)>, Error> {
        let row = sqlx::query("SELECT id, role, password_hash FROM users WHERE name = $1 AND disabled_at IS NULL")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| db_error("reading a user", e))?;
        row.map(|r| Ok((r.get(0), role_of(r.get(1))?, r.get(2)))).transpose()
    }

    /// Stores a token (by its hash) for `user_id`.
    pub async fn add_token(
        &self,
        user_id: i64,
        kind: &str,
        token_hash: &[u8],
        name: Option<&str>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<i64, Error> {
        sqlx::query_scalar(
            "INSERT INTO api_tokens (user_id, kind, token_hash, name, expires_at) VALUES ($1, $2, $3, $4, $5)
             RETURNING id",
        )
        .bind(user_id)
        .bind(kind)
        .bind(token_hash)
        .bind(name)
        .bind(expires_at)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| db_error("storing a token", e))
    }

    /// The holder of a live token (not expired, not revoked, account enabled).
    ///
    /// A read only: `last_used_at` is written at most once a minute per token, since
    /// a write on every request would make concurrent requests of one token queue on
    /// its row lock and on a WAL flush each.
    pub async fn principal(&self, token_hash: &[u8]) -> Result<Option<Principal>, Error> {
        let row = sqlx::query(
            "SELECT u.id, u.name, u.role, t.id, t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute'
               FROM api_tokens t JOIN users u ON u.id = t.user_id
              WHERE t.token_hash = $1 AND t.revoked_at IS NULL
                AND (t.expires_at IS NULL OR t.expires_at > now()) AND u.disabled_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| db_error("checking a token", e))?;
        let Some(r) = row else { return Ok(None) };
        let p = Principal { user_id: r.get(0), name: r.get(1), role: role_of(r.get(2))?, token_id: r.get(3) };
        if r.get::<bool, _>(4) {
            sqlx::query("UPDATE api_tokens SET last_used_at = now() WHERE id = $1")
                .bind(p.token_id)
                .execute(&self.pool)
                .await
                .map_err(|e| db_error("noting a token's use", e))?;
        }
        Ok(Some(p))
    }

    /// Revokes one token (logout).
    pub async fn revoke_token(&self, token_id: i64) -> Result<(), Error> {
        sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
            .bind(token_id)
            .execute(&self.pool)
            .await
            .map_err(|e| db_error("revoking a token", e))?;
        Ok(())
    }

    /// Failed logins within the last `window_secs`, for account `name` and for
    /// address `addr`, counted from the audit log so every API process agrees.
    pub async fn recent_login_failures(
        &self,
        name: &str,
        addr: Option<std::net::IpAddr>,
        window_secs: u64,
    ) -> Result<(i64, i64), Error> {
        let r = sqlx::query(
            "SELECT count(*) FILTER (WHERE target = $1), count(*) FILTER (WHERE address = $2::inet)
               FROM audit_log
              WHERE action = 'login_failed' AND at > now() - make_interval(secs => $3)",
        )
        .bind(name)
        .bind(addr.map(|a| a.to_string()))
        .bind(window_secs as f64)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| db_error("counting failed logins", e))?;
        Ok((r.get(0), r.get(1)))
    }

    /// Appends one audit entry.
    pub async fn audit(&self, a: &AuditEntry<'_>) -> Result<(), Error> {
        sqlx::query("INSERT INTO audit_log (actor, action, target, address, detail) VALUES ($1, $2, $3, $4::inet, $5)")
            .bind(a.actor)
            .bind(a.action)
            .bind(&a.target)
            .bind(a.address.map(|a| a.to_string()))
            .bind(&a.detail)
            .execute(&self.pool)
            .await
            .map_err(|e| db_error("writing the audit log", e))?;
        Ok(())
    }

    /// Audit entries newest first, before row `before` when given.
    pub async fn list_audit(
        &self,
        actor: Option<&str>,
        action: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, Error> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, host(address), detail FROM audit_log
              WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR action = $2)
                AND ($3::bigint IS NULL OR id < $3)
              ORDER BY id DESC LIMIT $4",
        )
        .bind(actor)
        .bind(action)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("reading the audit log", e))?;
        Ok(rows
            .iter()
            .map(|r| AuditRow {
                id: r.get(0),
                at: r.get(1),
                actor: r.get(2),
                action: r.get(3),
                target: r.get(4),
                address: r.get(5),
                detail: r.get(6),
            })
            .collect())
    }
}
