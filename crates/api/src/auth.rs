//! Accounts, tokens and roles.
//!
//! A login gives a random bearer token (only its SHA-256 is stored) that expires
//! after `[api] session_hours`; machine tokens (`varta user token`) do not expire
//! unless given days. Requests name their token in `Authorization: Bearer …`. The
//! console also gets it as an `HttpOnly; SameSite=Strict` cookie, which is accepted
//! for `GET` only (the live stream and pictures, which a browser cannot send with a
//! header): anything that changes state needs the header, so a forged cross-site
//! request has nothing to ride on.
//!
//! What each role may do is one table, [`allowed`].

use crate::{ApiError, AppState};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method};
use base64::Engine as _;
use sha2::Digest;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use varta_core::{err, Error};
pub use varta_store::accounts::Role;
use varta_store::accounts::{AuditEntry, Principal};

/// The console's cookie.
pub const COOKIE: &str = "varta_token";

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    /// Live alerts, acknowledging them.
    Alerts,
    /// Event search.
    Events,
    /// Pictures of events (people).
    Snapshots,
    /// Camera configuration and live counters.
    Cameras,
    /// Sites and cameras' up/down state, uptime reports.
    Health,
    /// Maintenance tasks.
    Tasks,
    /// Nodes and their leases, benchmark runs.
    Nodes,
    /// Number plates: search, sightings, crops, the watchlist (issue #20).
    Plates,
    /// Users, audit log, configuration reload, camera restarts.
    Admin,
}

/// The role table: who may do what. Contractors never see events or pictures of
/// people; operators do not manage work orders.
pub fn allowed(role: Role, perm: Perm) -> bool {
    use Perm::*;
    match role {
        Role::Admin => true,
        Role::Operator => matches!(perm, Alerts | Events | Snapshots | Plates | Cameras | Health),
        Role::Contractor => matches!(perm, Cameras | Health | Tasks),
    }
}

/// An argon2id PHC string of `password` (the crate's defaults: 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> Result<String, Error> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| err!(Internal, "hashing a password: {e}"))
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash made once, checked against when the account does not exist, so that the
/// time a refusal takes does not say whether the name is real.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password("not a password of anyone").unwrap_or_default())
}

/// A new random token (`vt_` + 32 random bytes, base64url) and the hash to store.
pub fn new_token() -> (String, Vec<u8>) {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    let token = format!("vt_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b));
    let hash = token_hash(&token);
    (token, hash)
}

/// SHA-256 of a token, as stored.
pub fn token_hash(token: &str) -> Vec<u8> {
    sha2::Sha256::digest(token.as_bytes()).to_vec()
}

/// A bounded pool for password hashing. Each argon2 run takes 19 MiB and tens of
/// milliseconds of one core, so hashing runs on `parallel` threads of its own, at
/// most `queue` more wait, and the rest are refused at once (`Unavailable`, 503)
/// rather than queued without limit. Own threads, not tokio's blocking pool: glibc
/// keeps each thread's freed 19 MiB in that thread's arena, and the blocking pool
/// hands work to ever new threads (100 logins grew the peak RSS by 275 MB that way,
/// against tens here; `tests/protection.rs`).
pub struct Hasher {
    tx: crossbeam_channel::Sender<HashJob>,
}

type HashJob = Box<dyn FnOnce() + Send>;

/// The longest a login waits for its hash before it is refused.
const HASH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Hasher {
    /// A pool of `parallel` threads with `queue` places for waiting work.
    pub fn new(parallel: usize, queue: usize) -> Hasher {
        // Multi-consumer: each thread takes the next job itself.
        let (tx, rx) = crossbeam_channel::bounded::<HashJob>(queue);
        for i in 0..parallel.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("varta-hash-{i}"))
                .spawn(move || {
                    for job in rx.iter() {
                        job();
                    }
                })
                .expect("spawning a password hashing thread");
        }
        Hasher { tx }
    }

    /// The pool for this machine: one thread per core, up to 4, and 4 waiting per
    /// thread.
    pub fn for_machine() -> Hasher {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
        Hasher::new(n, 4 * n)
    }

    /// Runs `f` (a hash or a verification) in the pool. `Unavailable` when the queue
    /// is full, or when `f` has not finished within 5 s (work that waited that long
    /// is then skipped, not run for nobody).
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
        let busy = || err!(Unavailable, "too many password checks at once; try again in a few seconds");
        let (done, result) = tokio::sync::oneshot::channel();
        let deadline = std::time::Instant::now() + HASH_WAIT;
        let job: HashJob = Box::new(move || {
            if std::time::Instant::now() < deadline {
                let _ = done.send(f());
            }
        });
        self.tx.try_send(job).map_err(|_| busy())?;
        match tokio::time::timeout(HASH_WAIT, result).await {
            Ok(Ok(v)) => Ok(v),
            _ => Err(busy()),
        }
    }
}

/// Checks `name`/`password` in the hashing pool. `Unavailable` when the pool is full
/// (the password was then not checked).
pub async fn check_password(st: &AppState, name: &str, password: &str) -> Result<Option<(i64, Role)>, Error> {
    let found = st.store.user_credentials(name).await?;
    let password = password.to_owned();
    let (hash, who) = match found {
        Some((id, role, hash)) => (hash, Some((id, role))),
        None => (dummy_hash().to_owned(), None),
    };
    let ok = st.hasher.run(move || verify_password(&password, &hash)).await?;
    st.metrics.api.password_checks.inc();
    Ok(who.filter(|_| ok))
}

/// The authenticated caller of a request, with its address.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who.
    pub who: Principal,
    /// From where.
    pub addr: Option<IpAddr>,
}

impl Caller {
    /// `PermissionDenied` unless the caller's role may `perm`.
    pub fn require(&self, perm: Perm) -> Result<(), ApiError> {
        if allowed(self.who.role, perm) {
            Ok(())
        } else {
            let e = err!(PermissionDenied, "role `{}` may not do this", self.who.role.as_str());
            Err(ApiError(e, Some(self.who.name.clone())))
        }
    }

    /// An audit entry by this caller.
    pub fn audit<'a>(&'a self, action: &'a str, target: Option<String>, detail: serde_json::Value) -> AuditEntry<'a> {
        AuditEntry { actor: Some(&self.who.name), action, target, address: self.addr, detail }
    }
}

/// A connection's peer address, for `into_make_service_with_connect_info::<Peer>()`
/// over any listener that knows it (plain TCP, or TLS).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// The peer address of a request, when the server was started with connect info.
pub fn peer(parts: &Parts) -> Option<IpAddr> {
    parts.extensions.get::<ConnectInfo<Peer>>().map(|c| c.0 .0.ip())
}

/// The client's address, as an extractor (for handlers without a [`Caller`]).
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientAddr, Self::Rejection> {
        Ok(ClientAddr(peer(parts)))
    }
}

fn bearer(parts: &Parts) -> Result<Option<String>, Error> {
    if let Some(h) = parts.headers.get(header::AUTHORIZATION) {
        let v = h.to_str().map_err(|_| err!(Unauthenticated, "malformed Authorization header"))?;
        let t = v
            .strip_prefix("Bearer ")
            .ok_or_else(|| err!(Unauthenticated, "the Authorization header must be `Bearer TOKEN`"))?;
        return Ok(Some(t.trim().to_owned()));
    }
    if parts.method == Method::GET || parts.method == Method::HEAD {
        for h in parts.headers.get_all(header::COOKIE) {
            for c in h.to_str().unwrap_or("").split(';') {
                if let Some(v) = c.trim().strip_prefix(COOKIE).and_then(|r| r.strip_prefix('=')) {
                    return Ok(Some(v.to_owned()));
                }
            }
        }
    }
    Ok(None)
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Caller, ApiError> {
        let token = bearer(parts)?.ok_or_else(|| err!(Unauthenticated, "log in first: no bearer token"))?;
        let who = st
            .store
            .principal(&token_hash(&token))
            .await?
            .ok_or_else(|| err!(Unauthenticated, "the token is unknown, expired or revoked; log in again"))?;
        Ok(Caller { who, addr: peer(parts) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_as_argon2id_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, ha) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with("vt_") && a.len() > 40);
        assert_eq!(ha, token_hash(&a));
    }

    #[test]
    fn contractors_never_see_people() {
        assert!(!allowed(Role::Contractor, Perm::Events));
        assert!(!allowed(Role::Contractor, Perm::Snapshots));
        assert!(!allowed(Role::Contractor, Perm::Alerts));
        assert!(allowed(Role::Contractor, Perm::Tasks));
        assert!(!allowed(Role::Operator, Perm::Tasks));
        assert!(!allowed(Role::Operator, Perm::Admin));
        assert!(allowed(Role::Admin, Perm::Admin));
    }
}
