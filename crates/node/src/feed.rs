//! The NATS JetStream feed (`[feed]`, issue #23): events, alerts, plate reads and
//! camera status changes for another system (the region's situation centre).
//!
//! What to send is written to PostgreSQL's outbox by the transaction that stores it
//! ([`varta_store::feed`]); this publisher sends it to JetStream on
//! `PREFIX.SITE.CAMERA.KIND` (KIND: `events`, `alerts`, `plates`, `status`) with the
//! change's id as `Nats-Msg-Id`, waits for every ack, and only then deletes what it
//! sent. So delivery is at least once: NATS away (or an ack lost) leaves the batch
//! in the outbox, sent again later, and JetStream's deduplication (the stream's
//! `duplicate_window`) stores a message sent twice once. The outbox is the spool
//! while NATS is away; the node's event log stays the spool while PostgreSQL is.
//!
//! Every process with `[feed]` (nodes and API-only processes) runs a publisher; one
//! at a time sends (an advisory lock), the others stand by, so the feed survives any
//! one of them and keeps the stored order. Message bodies: docs/FEED.md.

use anyhow::Context as _;
use async_nats::jetstream;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use varta_core::config::{KeyPath, Problems, Range};
use varta_core::metrics::Registry;
use varta_core::redact::redact_url;
use varta_store::feed::FeedMessage;
use varta_store::Store;

/// `[feed]`: the NATS JetStream feed. Unset `nats_url`: no feed.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FeedConfig {
    /// The NATS server, `tls://host:4222` (TLS) or `nats://host:4222` (loopback, or
    /// with `[api] allow_plaintext`). Credentials go in `credentials`.
    pub nats_url: Option<String>,
    /// First token(s) of every subject: `PREFIX.SITE.CAMERA.KIND`.
    pub subject_prefix: String,
    /// The JetStream stream the subjects belong to.
    pub stream: String,
    /// Create the stream (subjects `PREFIX.>`, file storage) when it does not exist.
    /// False: an administrator made it; the feed waits until it exists.
    pub create_stream: bool,
    /// Deduplication window of a stream made here, in seconds: a message sent again
    /// within it (after NATS was away) is stored once. Longer than any outage
    /// you expect the feed to ride out without duplicates.
    pub duplicate_window_secs: f64,
    /// How long a stream made here keeps messages, in days (0: until its limits).
    pub max_age_days: f64,
    /// Credentials name (environment or secrets file): the NATS user and password.
    pub credentials: Option<String>,
    /// PEM file of the certificate authorities a `tls://` server's certificate must
    /// chain to; unset: the system's.
    pub ca: Option<PathBuf>,
    /// Most messages sent per batch (one outbox transaction).
    pub batch_max: usize,
    /// How long to wait for JetStream's ack of a message before the batch is kept
    /// to send again, in seconds.
    pub ack_timeout_secs: f64,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            nats_url: None,
            subject_prefix: "varta".into(),
            stream: "VARTA".into(),
            create_stream: true,
            duplicate_window_secs: 600.0,
            max_age_days: 7.0,
            credentials: None,
            ca: None,
            batch_max: 256,
            ack_timeout_secs: 5.0,
        }
    }
}

/// A NATS subject token or stream name may hold these only (no `.`, `*`, `>` or
/// white space).
fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl FeedConfig {
    /// Checks the section under `at` (`feed`): the URL (no credentials in it, no clear
    /// text off loopback unless `allow_plaintext`), names and ranges.
    pub fn validate(&self, at: &KeyPath, allow_plaintext: bool, p: &mut Problems<'_>) {
        if let Some(u) = &self.nats_url {
            match url::Url::parse(u) {
                Ok(nu)
                    if matches!(nu.scheme(), "nats" | "tls")
                        && nu.host().is_some()
                        && nu.username().is_empty()
                        && nu.password().is_none() =>
                {
                    if nu.scheme() == "nats"
                        && !allow_plaintext
                        && !varta_core::config::is_loopback_host(nu.host_str().unwrap_or(""))
                    {
                        p.add(&at.key("nats_url"), format!("nats:// off loopback {}", varta_api::config::PLAINTEXT));
                    }
                }
                _ => p.add(
                    &at.key("nats_url"),
                    format!(
                        "`{}`: must be tls://host:port or nats://host:port (credentials go in credentials)",
                        redact_url(u)
                    ),
                ),
            }
        }
        if !self.subject_prefix.split('.').all(is_name) {
            p.add(&at.key("subject_prefix"), "tokens of letters, digits, `_` or `-`, separated by `.`");
        }
        if !is_name(&self.stream) {
            p.add(&at.key("stream"), "letters, digits, `_` or `-`");
        }
        p.check_ranges(
            at,
            &[
                Range::closed("duplicate_window_secs", self.duplicate_window_secs, 1.0, 7.0 * 86400.0),
                Range::closed("max_age_days", self.max_age_days, 0.0, 3650.0),
                Range::closed("batch_max", self.batch_max as f64, 1.0, 10000.0),
                Range::closed("ack_timeout_secs", self.ack_timeout_secs, 0.1, 300.0),
            ],
        );
    }
}

/// The feed's settings with its credentials resolved.
struct Settings {
    url: String,
    prefix: String,
    stream: String,
    create_stream: bool,
    duplicate_window: Duration,
    max_age: Duration,
    user: Option<(String, String)>,
    ca: Option<PathBuf>,
    batch_max: usize,
    ack_timeout: Duration,
}

/// Starts the publisher when `[feed] nats_url` is set. Fails (naming the key) when
/// its credentials cannot be resolved; NATS itself need not answer.
/// `secrets_file` is `[node] secrets_file`; `node` names this process to NATS and in
/// `feed_publishers`.
pub(crate) fn start(
    f: &FeedConfig,
    secrets_file: Option<&std::path::Path>,
    node: &str,
    store: Store,
    metrics: Arc<Registry>,
) -> anyhow::Result<()> {
    let Some(url) = f.nats_url.clone() else {
        return Ok(());
    };
    let user = match &f.credentials {
        Some(name) => {
            let c = varta_core::config::resolve_credentials(name, secrets_file)
                .with_context(|| format!("[feed] credentials = \"{name}\""))?;
            Some((c.username, c.password))
        }
        None => None,
    };
    let s = Settings {
        url,
        prefix: f.subject_prefix.clone(),
        stream: f.stream.clone(),
        create_stream: f.create_stream,
        duplicate_window: Duration::from_secs_f64(f.duplicate_window_secs),
        max_age: Duration::from_secs_f64(f.max_age_days * 86400.0),
        user,
        ca: f.ca.clone(),
        batch_max: f.batch_max,
        ack_timeout: Duration::from_secs_f64(f.ack_timeout_secs),
    };
    tokio::spawn(run(s, store, metrics, node.to_owned()));
    Ok(())
}

/// A subject token from a site or camera id: characters NATS gives a meaning to
/// (`.`, `*`, `>`, white space) and any other outside `[A-Za-z0-9_-]` become `_`.
pub fn subject_token(id: Option<&str>) -> String {
    match id {
        Some(s) if !s.is_empty() => {
            s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
        }
        _ => "_".into(),
    }
}

/// The subject of `m`: `PREFIX.SITE.CAMERA.KIND`.
pub fn subject(prefix: &str, m: &FeedMessage) -> String {
    format!("{prefix}.{}.{}.{}", subject_token(m.site_id.as_deref()), subject_token(Some(&m.camera_id)), m.kind)
}

async fn connect(s: &Settings, node: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    let mut o = async_nats::ConnectOptions::new()
        .name(format!("varta-{node}"))
        // Connects (and reconnects) in the background, for ever: the outbox waits.
        .retry_on_initial_connect()
        .max_reconnects(None)
        .event_callback(|e| async move {
            match e {
                async_nats::Event::Connected => tracing::info!("feed: connected to NATS"),
                async_nats::Event::Disconnected => tracing::warn!("feed: NATS connection lost; reconnecting"),
                // A refused login or TLS handshake: the administrator must see it.
                async_nats::Event::ServerError(_) | async_nats::Event::ClientError(_) => {
                    tracing::warn!(event = %e, "feed: NATS")
                }
                other => tracing::debug!(event = %other, "feed: NATS"),
            }
        });
    if let Some((u, p)) = &s.user {
        o = o.user_and_password(u.clone(), p.clone());
    }
    if let Some(ca) = &s.ca {
        o = o.add_root_certificates(ca.clone());
    }
    if s.url.starts_with("tls://") {
        o = o.require_tls(true);
    }
    o.connect(s.url.as_str()).await
}

/// Makes sure the stream exists (made when `create_stream`).
async fn ensure_stream(js: &jetstream::Context, s: &Settings) -> anyhow::Result<()> {
    let info = if s.create_stream {
        let config = jetstream::stream::Config {
            name: s.stream.clone(),
            subjects: vec![format!("{}.>", s.prefix)],
            storage: jetstream::stream::StorageType::File,
            duplicate_window: s.duplicate_window,
            max_age: s.max_age,
            ..Default::default()
        };
        js.get_or_create_stream(config).await?.info().await?.clone()
    } else {
        js.get_stream(&s.stream).await?.info().await?.clone()
    };
    let wanted = format!("{}.>", s.prefix);
    if !info.config.subjects.iter().any(|x| x == &wanted || x == ">") {
        tracing::warn!(stream = %s.stream, subjects = ?info.config.subjects, wanted,
            "feed: the stream does not take the feed's subjects; messages will be refused");
    }
    tracing::info!(stream = %s.stream, duplicate_window_secs = info.config.duplicate_window.as_secs(),
        messages = info.state.messages, "feed: JetStream stream ready");
    Ok(())
}

/// Sends `batch` and waits for every ack; returns how many JetStream found it had
/// stored already. Fails on the first message not acked in time.
async fn send(js: &jetstream::Context, prefix: &str, batch: &[FeedMessage]) -> anyhow::Result<u64> {
    let mut acks = Vec::with_capacity(batch.len());
    for m in batch {
        let publish = jetstream::message::PublishMessage::build()
            .payload(m.payload.clone().into_bytes().into())
            .message_id(&m.msg_id);
        acks.push(js.send_publish(subject(prefix, m), publish).await?);
    }
    let mut duplicates = 0;
    // The acks come back pipelined; waiting for them in order costs nothing more.
    for a in acks {
        duplicates += a.await?.duplicate as u64;
    }
    Ok(duplicates)
}

/// The publisher: claims, sends, deletes; standby while another process publishes.
async fn run(s: Settings, store: Store, metrics: Arc<Registry>, node: String) {
    let client = match connect(&s, &node).await {
        Ok(c) => c,
        // Only a malformed setting fails here (retry_on_initial_connect).
        Err(e) => {
            tracing::error!(url = %redact_url(&s.url), error = %e, "feed: cannot use the NATS server; no feed");
            return;
        }
    };
    let js = jetstream::ContextBuilder::new().timeout(s.ack_timeout).build(client);
    let fm = &metrics.feed;
    let mut stream_ready = false;
    let mut backoff = Duration::ZERO;
    let mut registered = Instant::now();
    let mut counted: Option<Instant> = None;
    let more = varta_store::notify::wake_on(&store, varta_store::feed::CHANNEL, None);
    loop {
        if registered.elapsed() >= REGISTER_EVERY {
            match store.feed_register(&node).await {
                Ok(()) => registered = Instant::now(),
                Err(e) => tracing::debug!(error = %e, "feed: registration not refreshed this time"),
            }
        }
        if counted.is_none_or(|c| c.elapsed() >= COUNT_EVERY) {
            if let Ok((n, oldest)) = store.feed_backlog().await {
                fm.backlog.set(n);
                let age = oldest.map_or(0, |t| (chrono::Utc::now() - t).num_seconds().max(0));
                fm.backlog_age_secs.set(age);
            }
            counted = Some(Instant::now());
        }
        if !stream_ready {
            match ensure_stream(&js, &s).await {
                Ok(()) => stream_ready = true,
                Err(e) => {
                    failed(fm, &mut backoff, &format!("stream {}: {e}", s.stream));
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
        }
        let claim = match store.feed_claim(s.batch_max).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                // Another process publishes; stand by.
                tokio::time::sleep(STANDBY).await;
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "feed: outbox not readable; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if claim.messages.is_empty() {
            drop(claim);
            // The triggers' notification, or a look anyway (one missed while the
            // listener reconnected).
            let _ = tokio::time::timeout(IDLE_POLL, more.notified()).await;
            continue;
        }
        let n = claim.messages.len() as u64;
        match send(&js, &s.prefix, &claim.messages).await {
            Ok(duplicates) => {
                if let Err(e) = claim.delete().await {
                    // Sent but still in the outbox: sent again, dropped by JetStream.
                    tracing::warn!(error = %e, "feed: sent messages not deleted; they will be sent again");
                    continue;
                }
                fm.published.add(n);
                fm.duplicates.add(duplicates);
                if fm.failing.get() == 1 {
                    tracing::info!("feed: sending again");
                    fm.failing.set(0);
                }
                backoff = Duration::ZERO;
            }
            Err(e) => {
                drop(claim);
                // NATS away, or the stream gone: look for it again once it answers.
                stream_ready = false;
                failed(fm, &mut backoff, &format!("{e:#}"));
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// Records a failed attempt, warns on the first of a series, and doubles the wait.
fn failed(fm: &varta_core::metrics::FeedStats, backoff: &mut Duration, why: &str) {
    fm.failures.inc();
    if fm.failing.get() == 0 {
        tracing::warn!(error = why, "feed: cannot send to NATS; messages wait in the outbox");
        fm.failing.set(1);
    } else {
        tracing::debug!(error = why, "feed: still cannot send");
    }
    *backoff = (*backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
}

/// Registration refresh (the outbox fills while a publisher was seen within a day).
const REGISTER_EVERY: Duration = Duration::from_secs(60);
/// How often the backlog is counted for the metrics.
const COUNT_EVERY: Duration = Duration::from_secs(5);
/// How often a standby process tries to take over.
const STANDBY: Duration = Duration::from_secs(1);
/// Longest wait for a notification before looking at the outbox anyway.
const IDLE_POLL: Duration = Duration::from_secs(2);
/// Waits after a failure: 0.5 s doubling to 8 s (NATS reconnects within 4 s).
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(8);

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(site: Option<&str>, camera: &str) -> FeedMessage {
        FeedMessage {
            seq: 1,
            kind: "events".into(),
            site_id: site.map(Into::into),
            camera_id: camera.into(),
            msg_id: "x".into(),
            payload: "{}".into(),
        }
    }

    #[test]
    fn subjects_have_safe_tokens() {
        assert_eq!(subject("varta", &msg(Some("site-01"), "cam-01")), "varta.site-01.cam-01.events");
        assert_eq!(subject("r.kh", &msg(None, "cam.1 *>")), "r.kh._.cam_1___.events");
    }

    #[test]
    fn config_is_checked() {
        let text = "nats_url = \"nats://user:pw@10.0.0.1:4222\"\nsubject_prefix = \"a..b\"\nstream = \"V.X\"\n";
        let c: FeedConfig = toml::from_str(text).unwrap();
        let mut p = Problems::new("f.toml", text);
        c.validate(&KeyPath::default().key("feed"), false, &mut p);
        let e = p.finish().unwrap_err().to_string();
        assert!(e.contains("feed.nats_url") && !e.contains("pw"), "{e}");
        assert!(e.contains("feed.subject_prefix") && e.contains("feed.stream"), "{e}");
        let text = "nats_url = \"nats://10.0.0.1:4222\"\n";
        let c: FeedConfig = toml::from_str(text).unwrap();
        let mut p = Problems::new("f.toml", text);
        c.validate(&KeyPath::default().key("feed"), false, &mut p);
        assert!(p.finish().unwrap_err().to_string().contains("off loopback"));
        let text = "nats_url = \"tls://nats.example:4222\"\n";
        let c: FeedConfig = toml::from_str(text).unwrap();
        let mut p = Problems::new("f.toml", text);
        c.validate(&KeyPath::default().key("feed"), false, &mut p);
        assert!(p.finish().is_ok());
    }
}
