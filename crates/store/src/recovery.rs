//! Closing the events a dead process left open.
//!
//! A process that is killed cannot send the `ended` record of the events it has open
//! (at 145 cameras, hundreds per crash). Two moments close them, both at
//! `ended_at = last_seen_at` with `end_reason = 'node_lost'`:
//! - **the next start of the node** (same `[node] name`), once the records its event
//!   log held from before the start are all in PostgreSQL (so a later replay cannot
//!   insert an open event again): every open event of the node's earlier processes;
//! - **the node that takes a dead node's cameras over** (its lease expired, or its
//!   process was found dead): the open events of those cameras that it did not make.
//!
//! A record of the dead process that still arrives later (its log replayed when it
//! comes back) is not lost: its real end replaces the recovered one (the writer's
//! upsert takes an incoming `ended_at` and its reason).

use crate::{db_error, Store};
use uuid::Uuid;
use varta_core::Error;

/// Which open events to close.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// Those of these cameras, made by any other process.
    Cameras(&'a [String]),
    /// Those of this node name, made by its other processes.
    Node(&'a str),
}

/// Closes the open events in `scope` not made by process `run_id`; returns how many.
pub async fn close_lost_events(conn: &mut sqlx::PgConnection, scope: Scope<'_>, run_id: Uuid) -> Result<u64, Error> {
    let q = match scope {
        Scope::Cameras(cams) => sqlx::query(
            "UPDATE events SET ended_at = last_seen_at, end_reason = 'node_lost'
             WHERE ended_at IS NULL AND camera_id = ANY($1) AND run_id IS DISTINCT FROM $2",
        )
        .bind(cams),
        Scope::Node(node) => sqlx::query(
            "UPDATE events SET ended_at = last_seen_at, end_reason = 'node_lost'
             WHERE ended_at IS NULL AND node = $1 AND run_id IS DISTINCT FROM $2",
        )
        .bind(node),
    };
    let r = q.bind(run_id).execute(conn).await.map_err(|e| db_error("closing events left open", e))?;
    Ok(r.rows_affected())
}

impl Store {
    /// Closes the events the earlier processes of node `node` left open (call once
    /// this process's event log has replayed everything from before its start, and
    /// while it holds the node's name lock).
    pub async fn close_lost_events_of_node(&self, node: &str, run_id: Uuid) -> Result<u64, Error> {
        let mut c = self.pool().acquire().await.map_err(|e| db_error("closing events left open", e))?;
        close_lost_events(&mut c, Scope::Node(node), run_id).await
    }
}
