//! One clock for shared history: the database's.
//!
//! Each node's wall clock may be wrong (an NTP daemon that died, a VM restored from a
//! snapshot). What two nodes compare (camera status transitions, the row written when
//! one node takes a camera over from a dead one) is stamped in database time: the
//! node measures its offset to the database (`clock_timestamp()` against its own
//! clock, midway through the round trip) at start and at every lease tick, and the
//! writer adds it to the times the ingest took from the local clock.

use crate::{db_error, Store};
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use varta_core::Error;

/// A node clock further than this from the database's is warned about (log, and
/// `clock_offset_ms` in `GET /api/v1/nodes`).
pub const MAX_SKEW_MS: i64 = 5_000;

/// The measured offset, shared by every clone of a [`Store`].
#[derive(Debug, Default)]
pub(crate) struct DbClock {
    /// Database time minus local time, in milliseconds.
    offset_ms: AtomicI64,
    /// Whether a skew beyond [`MAX_SKEW_MS`] was warned about (once until it heals).
    warned: AtomicBool,
}

impl Store {
    /// Measures this process's clock against the database's and keeps the offset
    /// (database minus local, milliseconds) for [`Store::db_time`]; warns once when
    /// it exceeds [`MAX_SKEW_MS`]. `ErrorKind::Unavailable` when the database is.
    pub async fn measure_clock(&self) -> Result<i64, Error> {
        let before = Utc::now();
        let db: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(self.pool())
            .await
            .map_err(|e| db_error("reading the database's clock", e))?;
        let after = Utc::now();
        let local = before + (after - before) / 2;
        let offset = (db - local).num_milliseconds();
        let c = &self.clock;
        c.offset_ms.store(offset, Ordering::Relaxed);
        if offset.abs() > MAX_SKEW_MS {
            if !c.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    offset_ms = offset,
                    "this node's clock is {:.1} s {} the database's: fix its time synchronisation (NTP); \
                     camera states and takeovers are stamped in database time meanwhile",
                    offset.abs() as f64 / 1000.0,
                    if offset < 0 { "ahead of" } else { "behind" }
                );
            }
        } else if c.warned.swap(false, Ordering::Relaxed) {
            tracing::info!(offset_ms = offset, "this node's clock agrees with the database's again");
        }
        Ok(offset)
    }

    /// The last measured offset, database minus local, in milliseconds (0 before
    /// the first measurement).
    pub fn clock_offset_ms(&self) -> i64 {
        self.clock.offset_ms.load(Ordering::Relaxed)
    }
}
