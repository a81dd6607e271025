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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
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

impl TryFrom<String> for Role {
    type Error = Error;
    fn try_from(s: String) -> Result<Role, Error> {
        s.parse()
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
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// Login name.
    pub name: String,
    /// Role.
    #[sqlx(try_from = "String")]
    pub role: Role,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Set when the account may no longer log in.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Live login sessions (not revoked, not expired).
    pub sessions: i64,
    /// Last use of any of its tokens, to the minute.
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// What an administrator changes about an account ([`Store::update_user`]); `None`
/// keeps the field as it is.
#[derive(Clone, Debug, Default)]
pub struct UserChange<'a> {
    /// New role.
    pub role: Option<Role>,
    /// New password, already hashed (argon2id PHC string).
    pub password_hash: Option<&'a str>,
    /// Enable a disabled account.
    pub enable: bool,
}

/// Which audit rows to read ([`Store::list_audit`]); every field narrows.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Only this user.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this target (an event, task or account id).
    pub target: Option<String>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    /// Rows older than this id (the page cursor).
    pub before: Option<i64>,
    /// At most this many rows.
    pub limit: i64,
}

/// Who a valid token belongs to.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Principal {
    /// User row id.
    pub user_id: i64,
    /// Login name.
    pub name: String,
    /// Role.
    #[sqlx(try_from = "String")]
    pub role: Role,
    /// Token row id.
    pub token_id: i64,
    /// When the token expires; `None` for a machine token made without an expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token as listed (`varta user tokens`): never the token or its hash.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct TokenInfo {
    /// Row id (`varta user revoke ID`).
    pub id: i64,
    /// `session` (a login) or `machine` (`varta user token`).
    pub kind: String,
    /// The label given to a machine token.
    pub label: Option<String>,
    /// Made.
    pub created_at: DateTime<Utc>,
    /// Expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revoked (logout, password change, account disabled, `varta user revoke`).
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last used, to the minute.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What a login attempt's reservation found (see [`Store::reserve_login`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// The password may be checked: this attempt holds one of the window's
    /// `login_max_failures` places.
    Granted,
    /// The (account, address) pair used every place of its window: refuse without
    /// checking the password.
    Refused,
}

/// The result of `varta audit verify`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Rows checked.
    pub rows: u64,
    /// Hash of the newest row (hex), to write down outside the database: a later
    /// verify that no longer ends in it, or no longer has that row, was rewritten.
    pub head: Option<String>,
    /// The first row that breaks the chain, and how.
    pub broken: Option<(i64, String)>,
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

impl<'a> AuditEntry<'a> {
    /// The same entry with `key` set in its detail: what only the writing transaction
    /// knows (the id it made, the event it touched).
    pub fn with(&self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        let mut a = self.clone();
        if let Some(d) = a.detail.as_object_mut() {
            d.insert(key.into(), value.into());
        }
        a
    }

    /// An entry by `actor` with no client address (the command line, the demo, a
    /// benchmark).
    pub fn by(actor: &'a str, action: &'a str, target: impl Into<String>, detail: serde_json::Value) -> Self {
        AuditEntry { actor: Some(actor), action, target: Some(target.into()), address: None, detail }
    }
}

/// An audit row as read back.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
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
    pub detail: serde_json::Value,
}

fn role_of(s: &str) -> Result<Role, Error> {
    s.parse().map_err(|_| err!(Internal, "unknown role `{s}` in the database"))
}

/// Appends one audit entry on `conn`, so that it commits with the change it records.
pub async fn insert_audit(conn: &mut sqlx::PgConnection, a: &AuditEntry<'_>) -> Result<(), Error> {
    sqlx::query("INSERT INTO audit_log (actor, action, target, address, detail) VALUES ($1, $2, $3, $4::inet, $5)")
        .bind(a.actor)
        .bind(a.action)
        .bind(&a.target)
        .bind(a.address.map(|a| a.to_string()))
        .bind(&a.detail)
        .execute(conn)
        .await
        .map_err(|e| db_error("writing the audit log", e))?;
    Ok(())
}

/// Revokes the live tokens of user `user_id` on `conn` (only its login sessions with
/// `sessions_only`); returns how many.
async fn revoke_user_tokens(conn: &mut sqlx::PgConnection, user_id: i64, sessions_only: bool) -> Result<u64, Error> {
    Ok(sqlx::query(
        "UPDATE api_tokens SET revoked_at = now()
          WHERE user_id = $1 AND revoked_at IS NULL AND (NOT $2 OR kind = 'session')",
    )
    .bind(user_id)
    .bind(sessions_only)
    .execute(conn)
    .await
    .map_err(|e| db_error("revoking tokens", e))?
    .rows_affected())
}

/// The address column of `login_attempts` ("" when the peer is unknown).
fn addr_key(addr: Option<std::net::IpAddr>) -> String {
    addr.map(|a| a.to_string()).unwrap_or_default()
}

impl Store {
    /// Creates an account, or with `replace` sets an existing one's role and password
    /// (and enables it), revoking every token of the account: a password reset ends
    /// every session and machine token made with the old one. `audit` is written in
    /// the same transaction.
    pub async fn upsert_user(
        &self,
        name: &str,
        role: Role,
        password_hash: &str,
        replace: bool,
        audit: &AuditEntry<'_>,
    ) -> Result<i64, Error> {
        let sql = if replace {
            "INSERT INTO users (name, role, password_hash) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, password_hash = EXCLUDED.password_hash,
                 disabled_at = NULL
             RETURNING id"
        } else {
            "INSERT INTO users (name, role, password_hash) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING RETURNING id"
        };
        let mut tx = self.pool.begin().await.map_err(|e| db_error("writing a user", e))?;
        let id: Option<i64> = sqlx::query_scalar(sql)
            .bind(name)
            .bind(role.as_str())
            .bind(password_hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| db_error("writing a user", e))?;
        let id = id.ok_or_else(|| err!(Conflict, "user `{name}` already exists"))?;
        let revoked = revoke_user_tokens(&mut tx, id, false).await?;
        insert_audit(&mut tx, &audit.with("tokens_revoked", revoked)).await?;
        tx.commit().await.map_err(|e| db_error("writing a user", e))?;
        Ok(id)
    }

    /// Every account, by name.
    pub async fn list_users(&self) -> Result<Vec<User>, Error> {
        sqlx::query_as(
            "SELECT u.id, u.name, u.role, u.created_at, u.disabled_at,
                    count(t.id) FILTER (WHERE t.kind = 'session' AND t.revoked_at IS NULL
                                          AND (t.expires_at IS NULL OR t.expires_at > now())) AS sessions,
                    max(t.last_used_at) AS last_seen_at
               FROM users u LEFT JOIN api_tokens t ON t.user_id = u.id
              GROUP BY u.id ORDER BY u.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("listing users", e))
    }

    /// Disables an account and revokes its tokens, writing `audit` in the same
    /// transaction; false (and nothing written) if there is no such enabled user.
    pub async fn disable_user(&self, name: &str, audit: &AuditEntry<'_>) -> Result<bool, Error> {
        let mut tx = self.pool.begin().await.map_err(|e| db_error("disabling a user", e))?;
        let id: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET disabled_at = now() WHERE name = $1 AND disabled_at IS NULL RETURNING id",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| db_error("disabling a user", e))?;
        if let Some(id) = id {
            revoke_user_tokens(&mut tx, id, false).await?;
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await.map_err(|e| db_error("disabling a user", e))?;
        Ok(id.is_some())
    }

    /// Changes an account's role or password, or enables it again, writing `audit`
    /// (with `tokens_revoked`) in the same transaction. A new password or a new role
    /// revokes every token of the account: a reset ends the sessions made with the
    /// old password, and a console that shows the old role's views is ended too.
    /// `None` (and nothing written) when there is no such account.
    pub async fn update_user(
        &self,
        name: &str,
        ch: &UserChange<'_>,
        audit: &AuditEntry<'_>,
    ) -> Result<Option<u64>, Error> {
        let mut tx = self.pool.begin().await.map_err(|e| db_error("changing a user", e))?;
        let id: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET role = COALESCE($2, role), password_hash = COALESCE($3, password_hash),
                    disabled_at = CASE WHEN $4 THEN NULL ELSE disabled_at END
              WHERE name = $1 RETURNING id",
        )
        .bind(name)
        .bind(ch.role.map(Role::as_str))
        .bind(ch.password_hash)
        .bind(ch.enable)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| db_error("changing a user", e))?;
        let Some(id) = id else { return Ok(None) };
        let mut revoked = 0;
        if ch.role.is_some() || ch.password_hash.is_some() {
            revoked = revoke_user_tokens(&mut tx, id, false).await?;
        }
        insert_audit(&mut tx, &audit.with("tokens_revoked", revoked)).await?;
        tx.commit().await.map_err(|e| db_error("changing a user", e))?;
        Ok(Some(revoked))
    }

    /// Ends every login session of account `name` (its machine tokens stay), writing
    /// `audit` (with `sessions_ended`) in the same transaction; `None` (and nothing
    /// written) when there is no such account.
    pub async fn end_sessions(&self, name: &str, audit: &AuditEntry<'_>) -> Result<Option<u64>, Error> {
        let mut tx = self.pool.begin().await.map_err(|e| db_error("ending sessions", e))?;
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| db_error("ending sessions", e))?;
        let Some(id) = id else { return Ok(None) };
        let n = revoke_user_tokens(&mut tx, id, true).await?;
        insert_audit(&mut tx, &audit.with("sessions_ended", n)).await?;
        tx.commit().await.map_err(|e| db_error("ending sessions", e))?;
        Ok(Some(n))
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

    /// Stores a token (by its hash) for `user_id`, writing `audit` in the same
    /// transaction.
    pub async fn add_token(
        &self,
        user_id: i64,
        kind: &str,
        token_hash: &[u8],
        name: Option<&str>,
        expires_at: Option<DateTime<Utc>>,
        audit: &AuditEntry<'_>,
    ) -> Result<i64, Error> {
        let mut tx = self.pool.begin().await.map_err(|e| db_error("storing a token", e))?;
        let id = sqlx::query_scalar(
            "INSERT INTO api_tokens (user_id, kind, token_hash, name, expires_at) VALUES ($1, $2, $3, $4, $5)
             RETURNING id",
        )
        .bind(user_id)
        .bind(kind)
        .bind(token_hash)
        .bind(name)
        .bind(expires_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_error("storing a token", e))?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(|e| db_error("storing a token", e))?;
        Ok(id)
    }

    /// The tokens of account `name`, newest first.
    pub async fn list_tokens(&self, name: &str) -> Result<Vec<TokenInfo>, Error> {
        sqlx::query_as(
            "SELECT t.id, t.kind, t.name AS label, t.created_at, t.expires_at, t.revoked_at, t.last_used_at
               FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE u.name = $1 ORDER BY t.id DESC",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("listing tokens", e))
    }

    /// Whether token `token_id` is still live (not revoked, not expired, its account
    /// enabled): what a long response asks before it sends more.
    pub async fn token_live(&self, token_id: i64) -> Result<bool, Error> {
        let live: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM api_tokens t JOIN users u ON u.id = t.user_id
              WHERE t.id = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())
                AND u.disabled_at IS NULL",
        )
        .bind(token_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| db_error("checking a token", e))?;
        Ok(live.is_some())
    }

    /// The holder of a live token (not expired, not revoked, account enabled).
    ///
    /// A read only: `last_used_at` is written at most once a minute per token, since
    /// a write on every request would make concurrent requests of one token queue on
    /// its row lock and on a WAL flush each.
    pub async fn principal(&self, token_hash: &[u8]) -> Result<Option<Principal>, Error> {
        /// A principal, and whether its token's `last_used_at` is due for a write.
        #[derive(sqlx::FromRow)]
        struct Found {
            #[sqlx(flatten)]
            p: Principal,
            touch: bool,
        }
        let row: Option<Found> = sqlx::query_as(
            "SELECT u.id AS user_id, u.name, u.role, t.id AS token_id, t.expires_at,
                    t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute' AS touch
               FROM api_tokens t JOIN users u ON u.id = t.user_id
              WHERE t.token_hash = $1 AND t.revoked_at IS NULL
                AND (t.expires_at IS NULL OR t.expires_at > now()) AND u.disabled_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| db_error("checking a token", e))?;
        let Some(Found { p, touch }) = row else { return Ok(None) };
        if touch {
            sqlx::query("UPDATE api_tokens SET last_used_at = now() WHERE id = $1")
                .bind(p.token_id)
                .execute(&self.pool)
                .await
                .map_err(|e| db_error("noting a token's use", e))?;
        }
        Ok(Some(p))
    }

    /// Revokes token `token_id`, writing `audit` in the same transaction; false (and
    /// nothing written) when it was revoked already or does not exist.
    pub async fn revoke_token(&self, token_id: i64, audit: &AuditEntry<'_>) -> Result<bool, Error> {
        let mut tx = self.pool.begin().await.map_err(|e| db_error("revoking a token", e))?;
        let n = sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
            .bind(token_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error("revoking a token", e))?
            .rows_affected();
        if n == 1 {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await.map_err(|e| db_error("revoking a token", e))?;
        Ok(n == 1)
    }

    /// Reserves one login attempt of `account` from `addr` before its password is
    /// checked: one atomic upsert on the pair's row, so parallel attempts cannot
    /// all pass a count read earlier. At most `max` attempts are granted per pair
    /// and window of `window_secs` (a successful login frees the pair with
    /// [`Store::login_succeeded`]); the rest are [`Reservation::Refused`] and only
    /// counted. Windows that ended are closed first ([`Store::close_login_windows`]).
    pub async fn reserve_login(
        &self,
        account: &str,
        addr: Option<std::net::IpAddr>,
        max: u32,
        window_secs: u64,
    ) -> Result<Reservation, Error> {
        self.close_login_windows(window_secs).await?;
        let refused: bool = sqlx::query_scalar(
            "INSERT INTO login_attempts AS l (account, address, reserved) VALUES ($1, $2, 1)
             ON CONFLICT (account, address) DO UPDATE SET
                 reserved = CASE WHEN l.reserved < $3 THEN l.reserved + 1 ELSE l.reserved END,
                 throttled = CASE WHEN l.reserved < $3 THEN l.throttled ELSE l.throttled + 1 END,
                 last_refused = l.reserved >= $3
             RETURNING last_refused OR reserved > $3",
        )
        .bind(account)
        .bind(addr_key(addr))
        .bind(max as i32)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| db_error("reserving a login attempt", e))?;
        Ok(if refused { Reservation::Refused } else { Reservation::Granted })
    }

    /// Frees the pair's places after a correct password.
    pub async fn login_succeeded(&self, account: &str, addr: Option<std::net::IpAddr>) -> Result<(), Error> {
        sqlx::query("DELETE FROM login_attempts WHERE account = $1 AND address = $2")
            .bind(account)
            .bind(addr_key(addr))
            .execute(&self.pool)
            .await
            .map_err(|e| db_error("clearing login attempts", e))?;
        Ok(())
    }

    /// Gives back a place reserved by an attempt whose password was never checked
    /// (the hashing pool was full).
    pub async fn release_login(&self, account: &str, addr: Option<std::net::IpAddr>) -> Result<(), Error> {
        sqlx::query(
            "UPDATE login_attempts SET reserved = greatest(reserved - 1, 0) WHERE account = $1 AND address = $2",
        )
        .bind(account)
        .bind(addr_key(addr))
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("releasing a login attempt", e))?;
        Ok(())
    }

    /// Deletes the login windows older than `window_secs`, writing for each that
    /// refused attempts one `login_throttled` audit row with the count (in the same
    /// transaction). The table so holds only pairs seen within one window.
    pub async fn close_login_windows(&self, window_secs: u64) -> Result<u64, Error> {
        let mut tx = self.pool.begin().await.map_err(|e| db_error("closing login windows", e))?;
        let closed = sqlx::query(
            "DELETE FROM login_attempts WHERE window_start <= now() - make_interval(secs => $1)
             RETURNING account, address, window_start, reserved, throttled",
        )
        .bind(window_secs as f64)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| db_error("closing login windows", e))?;
        for r in closed.iter().filter(|r| r.get::<i32, _>(4) > 0) {
            let address: String = r.get(1);
            let start: DateTime<Utc> = r.get(2);
            insert_audit(
                &mut tx,
                &AuditEntry {
                    actor: None,
                    action: "login_throttled",
                    target: Some(r.get(0)),
                    address: address.parse().ok(),
                    detail: serde_json::json!({
                        "refused": r.get::<i32, _>(4),
                        "failures": r.get::<i32, _>(3),
                        "window_start": start,
                        "window_secs": window_secs,
                    }),
                },
            )
            .await?;
        }
        tx.commit().await.map_err(|e| db_error("closing login windows", e))?;
        Ok(closed.len() as u64)
    }

    /// Checks the audit log's hash chain from its first row, in id order: each row's
    /// hash must be SHA-256 of the previous hash and its own fields
    /// (`varta_audit_hash`, migration 0007), and its `prev_hash` the previous row's
    /// hash. Reads in pages of 10 000 rows.
    pub async fn verify_audit(&self) -> Result<ChainReport, Error> {
        let mut report = ChainReport { rows: 0, head: None, broken: None };
        let mut last_id = 0i64;
        let mut last_hash: Option<Vec<u8>> = None;
        loop {
            let rows = sqlx::query(
                "SELECT id, prev_hash, hash,
                        varta_audit_hash(prev_hash, id, at, actor, action, target, address, detail)
                   FROM audit_log WHERE id > $1 ORDER BY id LIMIT 10000",
            )
            .bind(last_id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_error("reading the audit log", e))?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let id: i64 = r.get(0);
                let prev: Option<Vec<u8>> = r.get(1);
                let hash: Option<Vec<u8>> = r.get(2);
                let computed: Option<Vec<u8>> = r.get(3);
                report.rows += 1;
                let why = if hash.is_none() {
                    Some("it has no hash (written with the chain trigger disabled)".to_owned())
                } else if prev != last_hash {
                    Some(format!(
                        "it does not follow row {last_id}: a row between them was removed, or one of them was replaced"
                    ))
                } else if hash != computed {
                    Some("its fields do not match its hash: it was changed after it was written".to_owned())
                } else {
                    None
                };
                if let Some(why) = why {
                    report.broken = Some((id, why));
                    return Ok(report);
                }
                last_id = id;
                last_hash = hash;
            }
        }
        report.head = last_hash.map(|h| h.iter().map(|b| format!("{b:02x}")).collect());
        Ok(report)
    }

    /// Appends one audit entry on its own (for reads and refusals; a change writes
    /// its entry in its own transaction with [`insert_audit`]).
    pub async fn audit(&self, a: &AuditEntry<'_>) -> Result<(), Error> {
        let mut c = self.pool.acquire().await.map_err(|e| db_error("writing the audit log", e))?;
        insert_audit(&mut c, a).await
    }

    /// Audit entries newest first, narrowed by `f`.
    pub async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRow>, Error> {
        sqlx::query_as(
            "SELECT id, at, actor, action, target, host(address) AS address, detail FROM audit_log
              WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR action = $2)
                AND ($3::text IS NULL OR target = $3)
                AND ($4::timestamptz IS NULL OR at >= $4) AND ($5::timestamptz IS NULL OR at < $5)
                AND ($6::bigint IS NULL OR id < $6)
              ORDER BY id DESC LIMIT $7",
        )
        .bind(&f.actor)
        .bind(&f.action)
        .bind(&f.target)
        .bind(f.since)
        .bind(f.until)
        .bind(f.before)
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("reading the audit log", e))
    }
}
