//! Nodes and camera leases: how several `varta serve` processes share the cameras
//! through PostgreSQL alone.
//!
//! Each process registers a `nodes` row (a restart is a new row) and, every
//! `lease_renew_secs`, runs [`Leases::tick`]: heartbeat, renew its leases, work out
//! its fair share, then claim free or expired leases with `FOR UPDATE SKIP LOCKED`
//! (so two nodes claiming at once never pick the same row) or hand back the excess.
//! Every time is the database's `now()`, so node clocks do not matter.
//!
//! The fair share is a water-filling of the enabled cameras over the live nodes
//! (heartbeat within one TTL, not stopped), smallest capacity first, so every node
//! computes the same split from the same rows. A node above its share hands back
//! cameras only after it has stopped them ([`Leases::release`]); one below claims
//! only free or expired leases. So a camera is never held by two nodes: the lease
//! log (`camera_lease_log`) shows it, and its partial unique index enforces it.
//!
//! A node that dies stops renewing; its leases expire after one TTL and the next
//! tick of a live node takes them over, closing the dead holder's log row at the
//! moment its lease expired and recording a `stopped` transition for the camera
//! (reason: the node was lost) so that uptime counts the gap.
//!
//! A node that cannot reach the database keeps its cameras and spools their events
//! (availability first: an outage of PostgreSQL must not blind every camera). If the
//! database was only unreachable from that node, another may take its cameras
//! meanwhile; its next successful renew then no longer lists them and it stops them.

use crate::{db_error, Store};
use sqlx::Row;
use std::collections::BTreeSet;
use std::time::Duration;
use uuid::Uuid;
use varta_core::Error;

/// Lease settings of one node.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Node name (for people; the id is per process).
    pub name: String,
    /// Most cameras held at once.
    pub capacity: u32,
    /// Lease lifetime without renewal.
    pub ttl: Duration,
    /// Address of the node's API, shown in `GET /api/v1/nodes`.
    pub api_addr: Option<String>,
}

/// What a tick decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Cameras to run: leases held and kept.
    pub run: BTreeSet<String>,
    /// Cameras still held that must be stopped and then [released](Leases::release)
    /// with the given reason (`rebalance` or `removed`).
    pub hand_back: Vec<(String, &'static str)>,
    /// Cameras newly claimed in this tick (also in `run`).
    pub claimed: Vec<String>,
    /// This node's fair share.
    pub target: usize,
}

/// One node's registration and lease operations.
pub struct Leases {
    store: Store,
    id: Uuid,
    cfg: LeaseConfig,
}

/// Splits `total` cameras over nodes given as (id, capacity), smallest capacity
/// first: each gets the ceiling of an equal share of what is left, up to its
/// capacity. Returns each node's target, in the given order.
pub fn water_fill(total: usize, nodes: &[(Uuid, u32)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by_key(|&i| (nodes[i].1, nodes[i].0));
    let mut out = vec![0; nodes.len()];
    let mut left = total;
    for (k, &i) in order.iter().enumerate() {
        let share = left.div_ceil(nodes.len() - k);
        let give = share.min(nodes[i].1 as usize);
        out[i] = give;
        left -= give;
    }
    out
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Leases {
    /// Registers this process as a node.
    pub async fn register(store: Store, cfg: LeaseConfig) -> Result<Leases, Error> {
        let id = Uuid::now_v7();
        sqlx::query("INSERT INTO nodes (id, name, capacity, api_addr, version) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(&cfg.name)
            .bind(cfg.capacity as i32)
            .bind(&cfg.api_addr)
            .bind(env!("CARGO_PKG_VERSION"))
            .execute(store.pool())
            .await
            .map_err(|e| db_error("registering the node", e))?;
        tracing::info!(node = %cfg.name, %id, capacity = cfg.capacity, "node registered");
        Ok(Leases { store, id, cfg })
    }

    /// Heartbeat, renew, then claim up to or hand back down to the fair share.
    pub async fn tick(&self) -> Result<Plan, Error> {
        let pool = self.store.pool();
        let ttl = secs(self.cfg.ttl);
        let mut tx = pool.begin().await.map_err(|e| db_error("lease tick", e))?;
        sqlx::query("UPDATE nodes SET last_heartbeat = now() WHERE id = $1")
            .bind(self.id)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error("heartbeat", e))?;
        let held = sqlx::query(
            "UPDATE camera_leases l SET expires_at = now() + make_interval(secs => $2)
             FROM cameras c WHERE l.node_id = $1 AND c.id = l.camera_id
             RETURNING l.camera_id, (c.removed_at IS NOT NULL OR NOT c.enabled) AS gone",
        )
        .bind(self.id)
        .bind(ttl)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| db_error("renewing leases", e))?;
        let mut plan = Plan::default();
        for r in held {
            let camera: String = r.get(0);
            if r.get::<bool, _>(1) {
                plan.hand_back.push((camera, "removed"));
            } else {
                plan.run.insert(camera);
            }
        }
        let nodes: Vec<(Uuid, u32)> = sqlx::query(
            "SELECT id, capacity FROM nodes
             WHERE stopped_at IS NULL AND last_heartbeat > now() - make_interval(secs => $1)",
        )
        .bind(ttl)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| db_error("listing live nodes", e))?
        .iter()
        .map(|r| (r.get::<Uuid, _>(0), r.get::<i32, _>(1) as u32))
        .collect();
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM cameras WHERE removed_at IS NULL AND enabled")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| db_error("counting cameras", e))?;
        let targets = water_fill(total as usize, &nodes);
        plan.target = nodes.iter().position(|n| n.0 == self.id).map(|i| targets[i]).unwrap_or(0);

        if plan.run.len() < plan.target {
            let want = (plan.target - plan.run.len()) as i64;
            let claimed = sqlx::query(
                "WITH free AS (
                    SELECT l.camera_id, l.node_id AS prev_node, l.expires_at AS prev_expires
                    FROM camera_leases l JOIN cameras c ON c.id = l.camera_id
                    WHERE c.removed_at IS NULL AND c.enabled AND (l.node_id IS NULL OR l.expires_at < now())
                    ORDER BY l.camera_id
                    LIMIT $2
                    FOR UPDATE OF l SKIP LOCKED
                 )
                 UPDATE camera_leases l
                 SET node_id = $1, acquired_at = now(), expires_at = now() + make_interval(secs => $3)
                 FROM free WHERE l.camera_id = free.camera_id
                 RETURNING l.camera_id, free.prev_node, free.prev_expires",
            )
            .bind(self.id)
            .bind(want)
            .bind(ttl)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| db_error("claiming leases", e))?;
            for r in &claimed {
                let camera: String = r.get(0);
                let prev: Option<Uuid> = r.get(1);
                if let Some(prev) = prev {
                    // Taken over from a node that stopped renewing: close its holding
                    // when its lease ran out, and mark the camera down from the
                    // node's last sign of life (after anything it recorded).
                    sqlx::query(
                        "UPDATE camera_lease_log SET released_at = $3, release_reason = 'expired'
                         WHERE camera_id = $1 AND node_id = $2 AND released_at IS NULL",
                    )
                    .bind(&camera)
                    .bind(prev)
                    .bind(r.get::<Option<chrono::DateTime<chrono::Utc>>, _>(2))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error("closing an expired lease", e))?;
                    sqlx::query(
                        "INSERT INTO camera_status (camera_id, at, state, reason, node)
                         SELECT $1, GREATEST(n.last_heartbeat,
                                   (SELECT max(at) FROM camera_status WHERE camera_id = $1)) + interval '1 millisecond',
                                'stopped', 'node ' || n.name || ' lost (lease expired)', n.name
                         FROM nodes n WHERE n.id = $2
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&camera)
                    .bind(prev)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error("recording a lost camera", e))?;
                    tracing::warn!(camera, previous_node = %prev, "took over the lease of a lost node");
                }
                sqlx::query("INSERT INTO camera_lease_log (camera_id, node_id, acquired_at) VALUES ($1, $2, now())")
                    .bind(&camera)
                    .bind(self.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error("logging a lease", e))?;
                plan.run.insert(camera.clone());
                plan.claimed.push(camera);
            }
        } else if plan.run.len() > plan.target {
            // Hand back the excess, newest ids first (the others keep theirs).
            let excess = plan.run.len() - plan.target;
            let shed: Vec<String> = plan.run.iter().rev().take(excess).cloned().collect();
            for c in shed {
                plan.run.remove(&c);
                plan.hand_back.push((c, "rebalance"));
            }
        }
        tx.commit().await.map_err(|e| db_error("lease tick", e))?;
        Ok(plan)
    }

    /// Releases leases on cameras this node has stopped.
    pub async fn release(&self, cameras: &[String], reason: &str) -> Result<(), Error> {
        if cameras.is_empty() {
            return Ok(());
        }
        let mut tx = self.store.pool().begin().await.map_err(|e| db_error("releasing leases", e))?;
        sqlx::query(
            "UPDATE camera_leases SET node_id = NULL, acquired_at = NULL, expires_at = NULL
             WHERE node_id = $1 AND camera_id = ANY($2)",
        )
        .bind(self.id)
        .bind(cameras)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("releasing leases", e))?;
        sqlx::query(
            "UPDATE camera_lease_log SET released_at = now(), release_reason = $3
             WHERE node_id = $1 AND camera_id = ANY($2) AND released_at IS NULL",
        )
        .bind(self.id)
        .bind(cameras)
        .bind(reason)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("logging released leases", e))?;
        tx.commit().await.map_err(|e| db_error("releasing leases", e))?;
        tracing::info!(cameras = ?cameras, reason, "leases handed back");
        Ok(())
    }

    /// Clean shutdown (cameras already stopped): hands back every lease and marks
    /// the node stopped, so the others take the cameras at their next tick.
    pub async fn shutdown(&self) -> Result<(), Error> {
        let held: Vec<String> = sqlx::query_scalar("SELECT camera_id FROM camera_leases WHERE node_id = $1")
            .bind(self.id)
            .fetch_all(self.store.pool())
            .await
            .map_err(|e| db_error("listing leases", e))?;
        self.release(&held, "shutdown").await?;
        sqlx::query("UPDATE nodes SET stopped_at = now() WHERE id = $1")
            .bind(self.id)
            .execute(self.store.pool())
            .await
            .map_err(|e| db_error("marking the node stopped", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn water_fill_splits_fairly_within_capacity() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        assert_eq!(water_fill(16, &[(a, 100)]), vec![16]);
        assert_eq!(water_fill(16, &[(a, 100), (b, 100)]), vec![8, 8]);
        assert_eq!(water_fill(15, &[(a, 100), (b, 100)]), vec![8, 7]);
        // A small node takes what it can; the others share the rest.
        assert_eq!(water_fill(16, &[(a, 100), (b, 4), (c, 100)]), vec![6, 4, 6]);
        // Not enough capacity: every node full, the rest unassigned.
        assert_eq!(water_fill(16, &[(a, 5), (b, 4)]), vec![5, 4]);
        assert_eq!(water_fill(0, &[(a, 5)]), vec![0]);
        // The same split whatever order the rows came in.
        assert_eq!(water_fill(15, &[(b, 100), (a, 100)]), vec![7, 8]);
    }
}
