//! Alerts: the list, acknowledgement, and the live stream (SSE).
//!
//! Each API process LISTENs on [`varta_store::alerts::CHANNEL`] through one
//! connection ([`AlertHub`]) and fans out to its SSE clients, so an alert committed
//! by any node reaches every console of every API process. A client that reconnects
//! with `Last-Event-ID` first gets what it missed from the `alerts` table, then the
//! live stream; ids are alert ids, and a client drops an id it has seen (see
//! [`varta_store::Store::alerts_since`] for why an alert may come twice).

use crate::auth::{Caller, Perm};
use crate::error::{int_id, ApiResult, Q};
use crate::wire::{self, Alert};
use crate::{AppState, Page};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use utoipa::IntoParams;
use varta_core::err;
use varta_core::metrics::Registry;
use varta_store::Store;

/// What the hub hears.
#[derive(Clone, Debug)]
pub enum HubMsg {
    /// A new alert.
    Alert(Arc<Alert>),
    /// An alert was acknowledged.
    Ack(Arc<Alert>),
    /// A token was revoked, an account disabled or its password changed: every
    /// stream re-checks its token before it sends anything more.
    Revoked,
}

/// One LISTEN connection per process, fanned out to its clients.
pub struct AlertHub {
    tx: broadcast::Sender<HubMsg>,
}

/// How far back a resuming client is re-sent lower ids (see `alerts_since`).
const RESUME_OVERLAP_SECS: f64 = 5.0;
/// Most alerts replayed to one resuming client.
const RESUME_MAX: i64 = 1000;

impl AlertHub {
    /// Starts listening. Never fails: while the database is away the task retries,
    /// and after a reconnect it reads the alerts raised meanwhile from the table.
    pub fn start(store: Store, metrics: Arc<Registry>) -> Arc<AlertHub> {
        let (tx, _) = broadcast::channel(4096);
        let hub = Arc::new(AlertHub { tx: tx.clone() });
        tokio::spawn(listen(store, tx, metrics));
        hub
    }

    /// A receiver of everything heard from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<HubMsg> {
        self.tx.subscribe()
    }
}

#[derive(Deserialize)]
struct Note {
    alert: Option<i64>,
    ack: Option<i64>,
    revoked: Option<i64>,
}

async fn listen(store: Store, tx: broadcast::Sender<HubMsg>, metrics: Arc<Registry>) {
    let mut last: Option<i64> = None;
    loop {
        let mut l = match sqlx::postgres::PgListener::connect_with(store.pool()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "alert listener cannot connect; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = l.listen(varta_store::alerts::CHANNEL).await {
            tracing::warn!(error = %e, "alert listener cannot LISTEN; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // Anything raised while we were not listening.
        if let Some(id) = last {
            match store.alerts_since(id, 0.0, RESUME_MAX).await {
                Ok(rows) => {
                    for a in rows {
                        last = Some(last.map_or(a.id, |l| l.max(a.id)));
                        let _ = tx.send(HubMsg::Alert(Arc::new(a.into())));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "alert listener: catching up failed"),
            }
        }
        loop {
            // `try_recv` says `None` when the connection dropped, so we re-LISTEN and
            // catch up rather than silently miss notifications.
            let n = match l.try_recv().await {
                Ok(Some(n)) => n,
                Ok(None) => {
                    tracing::warn!("alert listener lost its connection; reconnecting");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "alert listener failed; reconnecting");
                    break;
                }
            };
            let Ok(note) = serde_json::from_str::<Note>(n.payload()) else {
                tracing::warn!(payload = n.payload(), "alert listener: unexpected payload");
                continue;
            };
            if note.revoked.is_some() {
                let _ = tx.send(HubMsg::Revoked);
                continue;
            }
            let (id, is_ack) = match (note.alert, note.ack) {
                (Some(id), _) => (id, false),
                (None, Some(id)) => (id, true),
                _ => continue,
            };
            match store.alert(id).await {
                Ok(Some(a)) => {
                    let a = Arc::new(Alert::from(a));
                    if is_ack {
                        let _ = tx.send(HubMsg::Ack(a));
                    } else {
                        let lat = (chrono::Utc::now() - a.created_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
                        metrics.alert_latency.observe(lat.max(0.0));
                        last = Some(last.map_or(id, |l| l.max(id)));
                        let _ = tx.send(HubMsg::Alert(a));
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, alert = id, "alert listener: cannot read the alert"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Alert list filters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only alerts nobody acknowledged yet.
    #[serde(default)]
    open: bool,
    /// Cursor from the previous page's `next_cursor`.
    cursor: Option<String>,
    /// Page size, 1–500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// Alerts, newest first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = Page<Alert>), (status = 400, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub async fn list(State(st): State<Arc<AppState>>, c: Caller, Q(p): Q<ListParams>) -> ApiResult<Json<Page<Alert>>> {
    c.require(Perm::Alerts)?;
    let limit = crate::limit(p.limit, 100, 500)?;
    let before = p.cursor.as_deref().map(crate::id_cursor).transpose()?;
    let items = st.store.list_alerts(p.open, before, limit).await?;
    // The ids shown: the thumbnails of these alerts are not audited one by one.
    let ids: Vec<i64> = items.iter().map(|a| a.id).collect();
    let detail = serde_json::json!({"open": p.open, "before": before, "count": items.len(), "alerts": ids});
    st.store.audit(&c.audit("alert_list", None, detail)).await?;
    Ok(Json(Page::by_id(wire::all(items), limit, |a: &Alert| a.id)))
}

/// What came of an alert.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// `false_alarm`, `dispatched` or `other`.
    #[schema(pattern = "^(false_alarm|dispatched|other)$")]
    outcome: Option<String>,
    /// A comment, up to 1000 characters.
    #[schema(max_length = 1000)]
    comment: Option<String>,
}

/// Acknowledges an alert in the caller's name, optionally with what came of it and a
/// comment (the body may be left out). A second acknowledgement is refused (409) and
/// names the first.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/ack", tag = "alerts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "alert id")), request_body(content = Option<AckBody>),
    responses((status = 200, body = Alert), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
    (status = 409, body = crate::ErrorBody)))]
pub async fn ack(
    State(st): State<Arc<AppState>>,
    c: Caller,
    Path(id): Path<String>,
    crate::error::MaybeBody(body): crate::error::MaybeBody<AckBody>,
) -> ApiResult<Json<Alert>> {
    c.require(Perm::Alerts)?;
    let id = int_id(&id)?;
    let (outcome, comment) = body.map(|b| (b.outcome, b.comment)).unwrap_or_default();
    if outcome.as_deref().is_some_and(|o| !matches!(o, "false_alarm" | "dispatched" | "other")) {
        return Err(varta_core::err!(InvalidArgument, "`outcome` must be false_alarm, dispatched or other").into());
    }
    let comment = comment.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
    if comment.as_ref().is_some_and(|c| c.chars().count() > 1000) {
        return Err(varta_core::err!(InvalidArgument, "`comment` is longer than 1000 characters").into());
    }
    let audit = c.audit("alert_ack", Some(id.to_string()), serde_json::json!({"outcome": outcome, "comment": comment}));
    let a = st.store.ack_alert(id, &c.who.name, outcome.as_deref(), comment.as_deref(), &audit).await?;
    Ok(Json(a.into()))
}

/// Stream parameters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Resume after this alert id (same as the `Last-Event-ID` header, which wins).
    #[param(minimum = 0)]
    last_id: Option<i64>,
}

/// The live alert stream (Server-Sent Events). Each alert is an `alert` event whose
/// id is the alert id and whose data is the alert (JSON); acknowledgements come as
/// `ack` events. Reconnect with `Last-Event-ID` to get what was missed.
///
/// The stream lives only as long as its token: it ends when the token expires, and
/// when the token is revoked (logout, `varta user revoke`), its account disabled
/// or its password changed, before any alert committed after that change (the
/// revocation comes on the same notification channel as the alerts, in commit
/// order); it also re-checks the token every [`RECHECK`]. At most
/// [`MAX_STREAMS_PER_TOKEN`] streams per token (429 beyond).
#[utoipa::path(get, path = "/api/v1/alerts/stream", tag = "alerts", security(("bearer" = [])), params(StreamParams),
    responses((status = 200, content_type = "text/event-stream", body = String), (status = 403, body = crate::ErrorBody)))]
pub async fn stream(
    State(st): State<Arc<AppState>>,
    c: Caller,
    headers: HeaderMap,
    Q(p): Q<StreamParams>,
) -> ApiResult<Response> {
    c.require(Perm::Alerts)?;
    let slot = StreamSlot::take(&st, c.who.token_id)?;
    let last = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| err!(InvalidArgument, "Last-Event-ID must be an alert id"))?,
        ),
        None => p.last_id,
    };
    // Subscribe before reading the backlog, so nothing falls between the two.
    let mut rx = st.alerts.subscribe();
    let backlog: Vec<Alert> = match last {
        Some(id) => wire::all(st.store.alerts_since(id, RESUME_OVERLAP_SECS, RESUME_MAX).await?),
        None => Vec::new(),
    };
    st.store.audit(&c.audit("alert_stream_open", None, serde_json::json!({"last_id": last}))).await?;
    let (out, out_rx) = mpsc::channel(64);
    let store = st.store.clone();
    let mut closing = st.closing.subscribe();
    let token = c.who.token_id;
    let expires_at = c.who.expires_at;
    // An alert raised after the token's expiry is never sent, whichever of the
    // alert and the expiry timer comes first (same clock as the database's).
    let expired = move || expires_at.is_some_and(|t| chrono::Utc::now() >= t);
    let expires = c.who.expires_at.map(|t| {
        let left = (t - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::time::Instant::now() + left
    });
    tokio::spawn(async move {
        let _slot = slot;
        let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
        let expiry = async move {
            match expires {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expiry);
        // Ids already sent, to drop repeats; pruned far below the newest.
        let mut seen: HashSet<i64> = HashSet::new();
        let mut newest = last.unwrap_or(0);
        for a in backlog {
            if expired() {
                return;
            }
            newest = newest.max(a.id);
            seen.insert(a.id);
            if out.send(Ok(alert_event(&a))).await.is_err() {
                return;
            }
        }
        loop {
            let next = tokio::select! {
                m = rx.recv() => Some(m),
                _ = closing.wait_for(|c| *c) => return,
                _ = &mut expiry => return,
                _ = recheck.tick() => None,
            };
            let Some(next) = next else {
                // A database that does not answer is no licence to go on.
                if !store.token_live(token).await.unwrap_or(false) {
                    return;
                }
                continue;
            };
            let msg = match next {
                Ok(m) => m,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // A slow client: re-read from the table instead of dropping.
                    tracing::warn!(skipped = n, "SSE client lagged; re-reading missed alerts");
                    // What was skipped may have been a revocation.
                    if !store.token_live(token).await.unwrap_or(false) {
                        return;
                    }
                    match store.alerts_since(newest, RESUME_OVERLAP_SECS, RESUME_MAX).await {
                        Ok(rows) => {
                            for a in rows.into_iter().filter(|a| seen.insert(a.id)) {
                                if expired() {
                                    return;
                                }
                                newest = newest.max(a.id);
                                if out.send(Ok(alert_event(&a.into()))).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Err(_) => return,
                    }
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if seen.len() > 20_000 {
                seen.retain(|&i| i > newest - 10_000);
            }
            let ev = match msg {
                HubMsg::Alert(a) => {
                    if expired() {
                        return;
                    }
                    if !seen.insert(a.id) {
                        continue;
                    }
                    newest = newest.max(a.id);
                    alert_event(&a)
                }
                HubMsg::Ack(a) => Event::default().event("ack").data(serde_json::to_string(&*a).unwrap_or_default()),
                HubMsg::Revoked => {
                    if !store.token_live(token).await.unwrap_or(false) {
                        return;
                    }
                    continue;
                }
            };
            if out.send(Ok(ev)).await.is_err() {
                return;
            }
        }
    });
    let events = tokio_stream::wrappers::ReceiverStream::<Result<Event, Infallible>>::new(out_rx);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

/// How often an open stream re-checks its token, besides on every revocation notice.
pub const RECHECK: Duration = Duration::from_secs(5);

/// Most alert streams open at once per token.
pub const MAX_STREAMS_PER_TOKEN: usize = 4;

/// One of a token's stream places, given back when the stream ends.
struct StreamSlot {
    st: Arc<AppState>,
    token: i64,
}

impl StreamSlot {
    fn take(st: &Arc<AppState>, token: i64) -> Result<StreamSlot, varta_core::Error> {
        let mut open = st.streams.lock().unwrap();
        let n = open.entry(token).or_insert(0);
        if *n >= MAX_STREAMS_PER_TOKEN {
            return Err(err!(RateLimited, "this token has {MAX_STREAMS_PER_TOKEN} alert streams open already"));
        }
        *n += 1;
        Ok(StreamSlot { st: st.clone(), token })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.st.streams.lock().unwrap();
        if let Some(n) = open.get_mut(&self.token) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.token);
            }
        }
    }
}

fn alert_event(a: &Alert) -> Event {
    Event::default().id(a.id.to_string()).event("alert").data(serde_json::to_string(a).unwrap_or_default())
}
