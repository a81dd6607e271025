//! Wake-ups from PostgreSQL's `LISTEN`/`NOTIFY`, for loops that otherwise poll.

use crate::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Listens on `channel` from a task of its own (its own connection, made again after
/// it fails, every second while PostgreSQL is away) and wakes the returned [`Notify`]
/// on every notification whose payload is not `ignore` (a process's own). One
/// permit is kept while nobody waits, so a wake-up is never lost between two waits;
/// notifications sent while the connection was down are, so callers keep a timer
/// too. The task ends when the last other handle to the `Notify` is dropped.
pub fn wake_on(store: &Store, channel: &'static str, ignore: Option<String>) -> Arc<Notify> {
    let wake = Arc::new(Notify::new());
    let weak = Arc::downgrade(&wake);
    let pool = store.pool().clone();
    tokio::spawn(async move {
        loop {
            let mut l = match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(channel, error = %e, "cannot connect to LISTEN; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(e) = l.listen(channel).await {
                tracing::debug!(channel, error = %e, "cannot LISTEN; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            loop {
                // Wakes at least every few seconds to see whether anyone still cares.
                let n = tokio::time::timeout(Duration::from_secs(5), l.try_recv()).await;
                let Some(wake) = weak.upgrade() else { return };
                match n {
                    Err(_) => {}
                    Ok(Ok(Some(n))) if ignore.as_deref() != Some(n.payload()) => wake.notify_one(),
                    Ok(Ok(Some(_))) => {}
                    Ok(Ok(None)) | Ok(Err(_)) => break,
                }
            }
        }
    });
    wake
}
