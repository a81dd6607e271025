//! The outbox of the NATS JetStream feed (migration 0015, issue #23).
//!
//! Triggers on `events`, `alerts`, `plate_reads` and `camera_status` write one
//! `feed_outbox` row per change *in the transaction that stores the change*, while a
//! publisher is registered ([`Store::feed_register`]): an event's start and its end
//! (the update that first sets `ended_at`), each alert, each plate read, each camera
//! status transition. A replay of the event log changes nothing and so adds nothing.
//!
//! A publisher claims the oldest rows ([`Store::feed_claim`]), sends them, and
//! deletes them once JetStream acked every one ([`FeedClaim::delete`]); a failure
//! rolls the claim back and the rows are sent again later (at least once; JetStream
//! drops the copies by their message id). One process of the region publishes at a
//! time (an advisory lock held by the claim's transaction), so messages leave in the
//! order they were stored; the others stand by.

use crate::{db_error, Store};
use chrono::{DateTime, Utc};
use varta_core::Error;

/// The `NOTIFY` channel the triggers announce new outbox rows on (empty payload).
pub const CHANNEL: &str = "varta_feed";

/// One message waiting in the outbox.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct FeedMessage {
    /// Outbox order (`bigserial`): the order changes were stored in.
    pub seq: i64,
    /// `events`, `alerts`, `plates` or `status`: the subject's last token.
    pub kind: String,
    /// The camera's site (`None` for a camera without one).
    pub site_id: Option<String>,
    /// The camera.
    pub camera_id: String,
    /// JetStream's `Nats-Msg-Id`: the same change has the same id, always.
    pub msg_id: String,
    /// The message body, JSON (fields per kind: docs/FEED.md).
    pub payload: String,
}

/// Messages claimed by one publisher: the rows stay locked (and in the outbox) until
/// [`FeedClaim::delete`] commits; dropping the claim rolls it back.
pub struct FeedClaim {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    /// The claimed messages, oldest first.
    pub messages: Vec<FeedMessage>,
}

impl FeedClaim {
    /// Deletes the claimed messages (they were delivered) and ends the claim.
    pub async fn delete(mut self) -> Result<(), Error> {
        let seqs: Vec<i64> = self.messages.iter().map(|m| m.seq).collect();
        sqlx::query("DELETE FROM feed_outbox WHERE seq = ANY($1)")
            .bind(&seqs)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| db_error("deleting sent feed messages", e))?;
        self.tx.commit().await.map_err(|e| db_error("commit", e))
    }
}

impl Store {
    /// Registers (or refreshes) `node` as a feed publisher: while one was seen within
    /// a day, the triggers fill the outbox. Call at start, before anything is stored
    /// that should be sent, and then every minute or so.
    pub async fn feed_register(&self, node: &str) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO feed_publishers (node, seen_at) VALUES ($1, now())
             ON CONFLICT (node) DO UPDATE SET seen_at = now()",
        )
        .bind(node)
        .execute(self.pool())
        .await
        .map_err(|e| db_error("registering a feed publisher", e))?;
        Ok(())
    }

    /// Claims up to `max` of the oldest outbox messages, locked until the claim ends.
    /// `None` when another process is publishing now (it holds the feed's advisory
    /// lock); an empty claim when there is nothing to send.
    pub async fn feed_claim(&self, max: usize) -> Result<Option<FeedClaim>, Error> {
        let mut tx = self.pool().begin().await.map_err(|e| db_error("begin", e))?;
        let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('varta_feed'))")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| db_error("feed lock", e))?;
        if !ours {
            return Ok(None);
        }
        let messages: Vec<FeedMessage> = sqlx::query_as(
            "SELECT seq, kind, site_id, camera_id, msg_id, payload::text AS payload
               FROM feed_outbox ORDER BY seq LIMIT $1",
        )
        .bind(max as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| db_error("reading the feed outbox", e))?;
        Ok(Some(FeedClaim { tx, messages }))
    }

    /// Messages waiting in the outbox, and the time the oldest was stored.
    pub async fn feed_backlog(&self) -> Result<(i64, Option<DateTime<Utc>>), Error> {
        sqlx::query_as("SELECT count(*), min(created_at) FROM feed_outbox")
            .fetch_one(self.pool())
            .await
            .map_err(|e| db_error("counting the feed outbox", e))
    }

    /// Deletes outbox messages stored before `before` (never sent: no publisher ran
    /// for that long); returns how many.
    pub async fn feed_trim(&self, before: DateTime<Utc>) -> Result<u64, Error> {
        let r = sqlx::query("DELETE FROM feed_outbox WHERE created_at < $1")
            .bind(before)
            .execute(self.pool())
            .await
            .map_err(|e| db_error("trimming the feed outbox", e))?;
        Ok(r.rows_affected())
    }
}
