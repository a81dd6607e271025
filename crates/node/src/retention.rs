//! Retention: event partitions made ahead and dropped when old, the snapshot folder
//! trimmed to its age and size budget.

use crate::config::Config;
use std::sync::Arc;
use std::time::Duration;
use varta_core::metrics::Registry;
use varta_store::Store;

/// Creates event partitions ahead, drops old ones and trims the snapshot folder,
/// at start and every `retention_interval_secs`.
pub(crate) async fn retention_loop(store: Store, cfg: Config, metrics: Arc<Registry>) {
    let st = &cfg.store;
    let mut tick = tokio::time::interval(Duration::from_secs(st.retention_interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let today = chrono::Utc::now().date_naive();
        match store.maintain_partitions(today, st.partitions_ahead_days, st.retention_days).await {
            Ok(r) => {
                metrics.store.partitions_dropped.add(r.dropped.len() as u64);
                if !r.created.is_empty() || !r.dropped.is_empty() {
                    tracing::info!(created = ?r.created, dropped = ?r.dropped, "retention: event partitions");
                }
            }
            Err(e) => tracing::warn!(error = %e, "retention: event partitions not maintained this time"),
        }
        // Feed messages no publisher sent within the retention (docs/FEED.md).
        if st.retention_days > 0 {
            let before = chrono::Utc::now() - chrono::Duration::days(st.retention_days as i64);
            match store.feed_trim(before).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(deleted = n, "retention: feed messages never sent deleted"),
                Err(e) => tracing::warn!(error = %e, "retention: feed outbox not trimmed this time"),
            }
        }
        let dir = cfg.detect.snapshot_dir.clone();
        let max_age =
            (st.snapshot_max_age_days > 0).then(|| Duration::from_secs(st.snapshot_max_age_days as u64 * 86400));
        let budget = (st.snapshot_budget_mb > 0).then_some(st.snapshot_budget_mb << 20);
        let r = tokio::task::spawn_blocking(move || {
            varta_store::retention::trim_snapshots(&dir, max_age, budget, std::time::SystemTime::now())
        })
        .await;
        match r {
            Ok(Ok(r)) => {
                metrics.store.snapshots_deleted.add(r.deleted_for_age + r.deleted_for_budget);
                metrics.store.snapshot_bytes.set(r.bytes_left as i64);
                if r.deleted_for_age + r.deleted_for_budget > 0 {
                    tracing::info!(
                        for_age = r.deleted_for_age,
                        for_budget = r.deleted_for_budget,
                        bytes_freed = r.bytes_freed,
                        bytes_left = r.bytes_left,
                        "retention: snapshots deleted"
                    );
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "retention: snapshots not trimmed this time"),
            Err(e) => tracing::warn!(error = %e, "retention task failed"),
        }
    }
}
