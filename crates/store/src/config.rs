//! `[store]`: the store's section of the node config (writer, event log, retention),
//! its defaults, validation, and the writer settings it builds.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use varta_core::config::{KeyPath, Problems, Range};

/// `[store]`: the PostgreSQL writer. The database URL comes from `DATABASE_URL`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Most rows written in one transaction.
    pub batch_max: usize,
    /// Longest a row waits before its batch is written, in milliseconds.
    pub flush_ms: u64,
    /// Folder of the on-disk spool that holds batches while PostgreSQL is unreachable.
    pub spool_dir: PathBuf,
    /// Largest the spool may grow, in MiB. At the cap the writer stops taking
    /// events (detection backs up, readiness fails, loudly) rather than drop any.
    pub spool_max_mb: u64,
    /// Event partitions (one per UTC day) older than this many days are dropped;
    /// 0 keeps them for ever.
    pub retention_days: u32,
    /// Partitions created ahead of today.
    pub partitions_ahead_days: u32,
    /// How often retention runs, in seconds.
    pub retention_interval_secs: u64,
    /// Snapshots older than this many days are deleted; 0 keeps them by age.
    pub snapshot_max_age_days: u32,
    /// Most disk the snapshot folder may take, in MiB; the oldest go first. 0: no budget.
    pub snapshot_budget_mb: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            batch_max: 5000,
            flush_ms: 250,
            spool_dir: PathBuf::from(".varta/spool"),
            spool_max_mb: 2048,
            retention_days: 90,
            partitions_ahead_days: 3,
            retention_interval_secs: 3600,
            snapshot_max_age_days: 30,
            snapshot_budget_mb: 20480,
        }
    }
}

impl StoreConfig {
    /// Checks the values the types alone cannot, under `at` (`store`).
    pub fn validate(&self, at: &KeyPath, p: &mut Problems<'_>) {
        let st = self;
        p.check_ranges(
            at,
            &[
                Range::closed("batch_max", st.batch_max as f64, 1.0, f64::INFINITY),
                Range::closed("spool_max_mb", st.spool_max_mb as f64, 1.0, 1e7),
                Range::closed("partitions_ahead_days", st.partitions_ahead_days as f64, 1.0, 60.0),
                Range::closed("retention_interval_secs", st.retention_interval_secs as f64, 1.0, 86400.0),
            ],
        );
    }

    /// The writer's settings for node `node` in its run `run_id`; snapshots named by
    /// events are in `snapshot_dir`. `VARTA_TEST_LEDGER` (tests only) names the file
    /// the WAL thread logs durable event ids to.
    pub fn writer(
        &self,
        node: &str,
        run_id: uuid::Uuid,
        snapshot_dir: &std::path::Path,
    ) -> crate::writer::WriterConfig {
        crate::writer::WriterConfig {
            batch_max: self.batch_max,
            flush: Duration::from_millis(self.flush_ms),
            node: node.to_owned(),
            run_id,
            spool_dir: self.spool_dir.clone(),
            spool_max_bytes: self.spool_max_mb << 20,
            snapshot_dir: Some(snapshot_dir.to_owned()),
            ledger: std::env::var_os("VARTA_TEST_LEDGER").map(PathBuf::from),
            signer: None,
        }
    }
}
