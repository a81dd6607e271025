//! Login, logout, who am I; user management for administrators.

use crate::auth::{self, Caller, ClientAddr, Perm, COOKIE};
use crate::error::{ApiResult, Body};
use crate::wire::{self, Role, User};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use varta_core::err;
use varta_store::accounts::{AuditEntry, Reservation, UserChange};

/// Login request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// Account name.
    #[schema(min_length = 1, max_length = 64)]
    pub username: String,
    /// Password.
    #[schema(min_length = 1, max_length = 1024)]
    pub password: String,
}

/// A session.
#[derive(Serialize, ToSchema)]
pub struct Session {
    /// Bearer token for `Authorization: Bearer …`.
    pub token: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// Account name.
    pub name: String,
    /// Role.
    pub role: Role,
}

/// Who the caller is.
#[derive(Serialize, ToSchema)]
pub struct Me {
    /// Account name.
    pub name: String,
    /// Role.
    pub role: Role,
}

/// Logs in: a bearer token (also set as the console's cookie).
///
/// Each attempt first reserves one of the `[api] login_max_failures` places of its
/// (account, address) pair in the `login_window_secs` window, atomically in the
/// database, and only then checks the password in the bounded hashing pool. So
/// parallel guesses get exactly that many checks; the rest get 429 without one,
/// and failures from one address never lock the account's owner out of another.
/// A full hashing pool answers 503. Failures are audited one row each; refusals
/// are counted and audited as one row per pair and window when it closes.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Login,
    responses((status = 200, body = Session), (status = 401, body = crate::ErrorBody), (status = 429, body = crate::ErrorBody),
    (status = 503, body = crate::ErrorBody)))]
pub async fn login(
    State(st): State<Arc<AppState>>,
    ClientAddr(addr): ClientAddr,
    Body(l): Body<Login>,
) -> ApiResult<Response> {
    if l.username.is_empty() || l.username.len() > 64 || l.password.len() > 1024 {
        return Err(err!(InvalidArgument, "username must be 1 to 64 characters, password at most 1024").into());
    }
    let st = &*st;
    let (max, window) = (st.api.login_max_failures, st.api.login_window_secs);
    if st.store.reserve_login(&l.username, addr, max, window).await? == Reservation::Refused {
        st.metrics.api.logins_refused.inc();
        return Err(
            err!(RateLimited, "too many failed logins from this address; try again in up to {window} seconds").into()
        );
    }
    let checked = match auth::check_password(st, &l.username, &l.password).await {
        Err(e) if e.kind() == varta_core::ErrorKind::Unavailable => {
            // Never checked: the place goes back.
            st.metrics.api.logins_refused.inc();
            st.store.release_login(&l.username, addr).await?;
            return Err(e.into());
        }
        r => r?,
    };
    let Some((user_id, role)) = checked else {
        st.store
            .audit(&AuditEntry {
                actor: None,
                action: "login_failed",
                target: Some(l.username.clone()),
                address: addr,
                detail: serde_json::json!({}),
            })
            .await?;
        return Err(err!(Unauthenticated, "wrong user name or password").into());
    };
    st.store.login_succeeded(&l.username, addr).await?;
    let (token, hash) = auth::new_token();
    let expires_at = Utc::now() + chrono::Duration::seconds((st.api.session_hours * 3600.0) as i64);
    let audit = AuditEntry {
        actor: Some(&l.username),
        action: "login",
        target: Some(l.username.clone()),
        address: addr,
        detail: serde_json::json!({"role": role.as_str()}),
    };
    st.store.add_token(user_id, "session", &hash, None, Some(expires_at), &audit).await?;
    let secure = if st.api.tls { "; Secure" } else { "" };
    let max_age = (expires_at - Utc::now()).num_seconds();
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    let body = Session { token, expires_at, name: l.username, role: role.into() };
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// Ends the caller's session (revokes its token, clears the cookie); an open alert
/// stream of the token ends too.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = crate::ErrorBody)))]
pub async fn logout(State(st): State<Arc<AppState>>, c: Caller) -> ApiResult<Response> {
    st.store.revoke_token(c.who.token_id, &c.audit("logout", Some(c.who.name.clone()), serde_json::json!({}))).await?;
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

/// Who the token belongs to.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = crate::ErrorBody)))]
pub async fn me(c: Caller) -> Json<Me> {
    Json(Me { name: c.who.name, role: c.who.role.into() })
}

/// A new account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name: 1–64 of a-z, 0-9, '.', '-', '_'.
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z0-9._-]+$")]
    pub name: String,
    /// Role.
    pub role: Role,
    /// Password, at least 12 characters.
    #[schema(min_length = 12, max_length = 1024)]
    pub password: String,
}

/// Checks a user name and password for `varta user add` and the API alike.
pub fn check_new_user(name: &str, password: &str) -> Result<(), varta_core::Error> {
    if name.is_empty()
        || name.len() > 64
        || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return Err(err!(InvalidArgument, "user name must be 1 to 64 of a-z, 0-9, '.', '-', '_'"));
    }
    if password.chars().count() < 12 || password.len() > 1024 {
        return Err(err!(InvalidArgument, "password must be 12 to 1024 characters"));
    }
    Ok(())
}

/// Lists accounts (admin).
#[utoipa::path(get, path = "/api/v1/users", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<User>), (status = 403, body = crate::ErrorBody)))]
pub async fn list_users(State(st): State<Arc<AppState>>, c: Caller) -> ApiResult<Json<Vec<User>>> {
    c.require(Perm::Admin)?;
    let users = st.store.list_users().await?;
    st.store.audit(&c.audit("user_list", None, serde_json::json!({"count": users.len()}))).await?;
    Ok(Json(wire::all(users)))
}

/// Creates an account (admin).
#[utoipa::path(post, path = "/api/v1/users", tag = "admin", security(("bearer" = [])), request_body = NewUser,
    responses((status = 201, body = Me), (status = 400, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub async fn add_user(State(st): State<Arc<AppState>>, c: Caller, Body(u): Body<NewUser>) -> ApiResult<Response> {
    c.require(Perm::Admin)?;
    check_new_user(&u.name, &u.password)?;
    let pw = u.password;
    let hash = st.hasher.run(move || auth::hash_password(&pw)).await??;
    let audit = c.audit("user_add", Some(u.name.clone()), serde_json::json!({"role": u.role}));
    st.store.upsert_user(&u.name, u.role.into(), &hash, false, &audit).await?;
    Ok((StatusCode::CREATED, Json(Me { name: u.name, role: u.role })).into_response())
}

/// Disables an account and revokes its tokens (admin). Accounts are never deleted:
/// the audit log names them.
#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path, description = "account name")),
    responses((status = 204), (status = 404, body = crate::ErrorBody)))]
pub async fn disable_user(
    State(st): State<Arc<AppState>>,
    c: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    c.require(Perm::Admin)?;
    if !st.store.disable_user(&name, &c.audit("user_disable", Some(name.clone()), serde_json::json!({}))).await? {
        return Err(err!(NotFound, "no enabled user `{name}`").into());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A change to an account (admin); at least one field.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeUser {
    /// New role (ends the account's sessions and tokens).
    pub role: Option<Role>,
    /// New password, at least 12 characters (ends the account's sessions and tokens).
    #[schema(min_length = 12, max_length = 1024)]
    pub password: Option<String>,
    /// `true` enables a disabled account (`DELETE` disables one).
    pub enabled: Option<bool>,
}

/// What a change or a logout did.
#[derive(Serialize, ToSchema)]
pub struct UserChanged {
    /// Account name.
    pub name: String,
    /// Sessions and tokens revoked by it.
    pub revoked: u64,
}

/// Changes an account's role or password, or enables it again (admin). A new role
/// or password revokes every token of the account. An administrator cannot take
/// their own role away (nobody would be left to give it back). Audited as
/// `user_change` (never with the password).
#[utoipa::path(patch, path = "/api/v1/users/{name}", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path, description = "account name")), request_body = ChangeUser,
    responses((status = 200, body = UserChanged), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
    (status = 409, body = crate::ErrorBody)))]
pub async fn change_user(
    State(st): State<Arc<AppState>>,
    c: Caller,
    Path(name): Path<String>,
    Body(ch): Body<ChangeUser>,
) -> ApiResult<Json<UserChanged>> {
    c.require(Perm::Admin)?;
    if ch.role.is_none() && ch.password.is_none() && ch.enabled.is_none() {
        return Err(err!(InvalidArgument, "nothing to change: give role, password or enabled").into());
    }
    if ch.enabled == Some(false) {
        return Err(err!(InvalidArgument, "`enabled: false` is DELETE /api/v1/users/{{name}}").into());
    }
    if name == c.who.name && ch.role.is_some_and(|r| r != Role::Admin) {
        return Err(err!(Conflict, "an administrator cannot take their own admin role away").into());
    }
    let hash = match ch.password {
        Some(pw) => {
            check_new_user(&name, &pw)?;
            Some(st.hasher.run(move || auth::hash_password(&pw)).await??)
        }
        None => None,
    };
    let detail = serde_json::json!({"role": ch.role, "password_reset": hash.is_some(), "enabled": ch.enabled});
    let change =
        UserChange { role: ch.role.map(Into::into), password_hash: hash.as_deref(), enable: ch.enabled == Some(true) };
    let revoked = st
        .store
        .update_user(&name, &change, &c.audit("user_change", Some(name.clone()), detail))
        .await?
        .ok_or_else(|| err!(NotFound, "no user `{name}`"))?;
    Ok(Json(UserChanged { name, revoked }))
}

/// Ends every login session of an account (admin); its machine tokens stay.
/// Audited as `user_logout`.
#[utoipa::path(post, path = "/api/v1/users/{name}/logout", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path, description = "account name")),
    responses((status = 200, body = UserChanged), (status = 404, body = crate::ErrorBody)))]
pub async fn end_sessions(
    State(st): State<Arc<AppState>>,
    c: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<UserChanged>> {
    c.require(Perm::Admin)?;
    let revoked = st
        .store
        .end_sessions(&name, &c.audit("user_logout", Some(name.clone()), serde_json::json!({})))
        .await?
        .ok_or_else(|| err!(NotFound, "no user `{name}`"))?;
    Ok(Json(UserChanged { name, revoked }))
}
