//! Retention: event partitions by age, snapshot files by age and disk budget.
//!
//! Partitions are whole UTC days, so dropping a day is one `DROP TABLE`, with no
//! row-by-row delete and no bloat. Partitions for the coming days are created here
//! too, ahead of the writer (which also creates any it finds missing). Several
//! nodes may run this at once: an advisory lock makes them take turns.
//!
//! Snapshots live in each node's own folder; each node trims its own.

use crate::{db_error, Store};
use chrono::{Duration as Days, NaiveDate};
use serde::Serialize;
use sqlx::Row;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use varta_core::{Error, ErrorKind};

/// What one retention run did.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct PartitionReport {
    /// Partitions created ahead.
    pub created: Vec<String>,
    /// Partitions dropped for age.
    pub dropped: Vec<String>,
}

/// The partition holding day `day`.
pub fn partition_name(day: NaiveDate) -> String {
    format!("events_{}", day.format("%Y%m%d"))
}

impl Store {
    /// Creates the partitions for `today` and `ahead` days after it, and drops those
    /// of days more than `keep_days` before `today` (0: drop nothing).
    pub async fn maintain_partitions(
        &self,
        today: NaiveDate,
        ahead: u32,
        keep_days: u32,
    ) -> Result<PartitionReport, Error> {
        let mut tx = self.pool().begin().await.map_err(|e| db_error("retention", e))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('varta_retention'))")
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error("retention lock", e))?;
        let existing: Vec<String> = sqlx::query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'events'::regclass ORDER BY 1",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| db_error("listing event partitions", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
        let mut report = PartitionReport::default();
        for d in 0..=ahead as i64 {
            let day = today + Days::days(d);
            let name = partition_name(day);
            if !existing.contains(&name) {
                sqlx::query("SELECT varta_event_partition($1)")
                    .bind(day)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error("creating a partition", e))?;
                report.created.push(name);
            }
        }
        if keep_days > 0 {
            let oldest_kept = today - Days::days(keep_days as i64);
            for name in &existing {
                let day = name.strip_prefix("events_").and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok());
                if day.is_some_and(|d| d < oldest_kept) {
                    // The runtime role owns no table: the owner's function drops it
                    // (migration 0007), and only a real event partition.
                    sqlx::query("SELECT varta_drop_event_partition($1)")
                        .bind(name)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| db_error("dropping a partition", e))?;
                    report.dropped.push(name.clone());
                }
            }
        }
        tx.commit().await.map_err(|e| db_error("retention", e))?;
        Ok(report)
    }
}

/// What trimming the snapshot folder did.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct SnapshotReport {
    /// Files deleted for age.
    pub deleted_for_age: u64,
    /// Files deleted to keep within the budget.
    pub deleted_for_budget: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Bytes left in the folder.
    pub bytes_left: u64,
}

/// Deletes snapshot files older than `max_age`, then the oldest until the folder
/// holds at most `budget` bytes. Only `*.jpg` (snapshots, crops) and `*.mp4` (event
/// clips) files are touched, and they share the budget.
pub fn trim_snapshots(
    dir: &Path,
    max_age: Option<Duration>,
    budget: Option<u64>,
    now: SystemTime,
) -> Result<SnapshotReport, Error> {
    let mut files: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SnapshotReport::default()),
        Err(e) => return Err(Error::wrap(ErrorKind::Internal, format!("reading {}", dir.display()), e)),
    };
    for entry in rd.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "jpg" && x != "mp4") {
            continue;
        }
        if let Ok(m) = entry.metadata() {
            if m.is_file() {
                files.push((m.modified().unwrap_or(now), m.len(), path));
            }
        }
    }
    files.sort();
    let mut report = SnapshotReport::default();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    let mut keep = Vec::with_capacity(files.len());
    for f in files {
        let too_old = max_age.is_some_and(|a| now.duration_since(f.0).unwrap_or_default() > a);
        if too_old && std::fs::remove_file(&f.2).is_ok() {
            report.deleted_for_age += 1;
            report.bytes_freed += f.1;
            total -= f.1;
        } else if !too_old {
            keep.push(f);
        }
    }
    if let Some(budget) = budget {
        for f in keep {
            if total <= budget {
                break;
            }
            if std::fs::remove_file(&f.2).is_ok() {
                report.deleted_for_budget += 1;
                report.bytes_freed += f.1;
                total -= f.1;
            }
        }
    }
    report.bytes_left = total;
    Ok(report)
}
