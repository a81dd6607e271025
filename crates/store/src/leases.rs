//! Nodes and camera leases: how several `varta serve` processes share the cameras
//! through PostgreSQL alone.
//!
//! Each process registers a `nodes` row (a restart is a new row) and, every
//! `lease_renew_secs`, runs [`Leases::tick`]: heartbeat, renew its leases, work out
//! its fair share, then claim free or expired leases with `FOR UPDATE SKIP LOCKED`
//! (so two nodes claiming at once never pick the same row) or hand back the excess.
//! Every time is the database's clock, so node clocks do not matter. The lease log's
//! times are `clock_timestamp()`, not `now()` (the transaction's start): a lease step
//! starts its transaction, then claims a camera another node released and committed
//! meanwhile; with `now()` the log showed the claim ~25 ms before the release (seen
//! on a loaded machine), with the statement's own time it follows it.
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
//! moment its lease expired, recording a `stopped` transition for the camera
//! (reason: the node was lost) so that uptime counts the gap, and closing the
//! events the dead process left open on those cameras (`node_lost`, at their last
//! sighting).
//!
//! A node restarted under the same name does not wait for its own leases to expire.
//! Each process holds a PostgreSQL advisory lock on its node name, on a connection
//! of its own, for its whole life; the server drops it the moment the process's
//! connection closes (a SIGKILL closes it too). A process that gets the lock knows
//! every other process of that name is dead: it marks their rows stopped (`lost`)
//! and takes their leases at once. If the lock is held, another live process runs
//! under the same name (a configuration mistake, logged), and leases are shared
//! with it as with any other node.
//!
//! Freed leases are claimed at once, not at the next tick: a node that hands leases
//! back (a clean stop, a rebalance) announces it on [`CHANNEL`] when it commits, and
//! the others listening run a lease step then (issue #23: a rolling restart's gap
//! per camera loses up to one `lease_renew_secs`).
//!
//! A node that cannot reach the database keeps its cameras and spools their events
//! (availability first: an outage of PostgreSQL must not blind every camera). If the
//! database was only unreachable from that node, another may take its cameras
//! meanwhile; its next successful renew then no longer lists them and it stops them.

use crate::{db_error, Store};
use sqlx::{Connection, Row};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
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
    registered: AtomicBool,
    name_lock: tokio::sync::Mutex<NameLock>,
}

/// The advisory lock on the node's name, on a connection of its own.
#[derive(Default)]
struct NameLock {
    conn: Option<sqlx::PgConnection>,
    held: bool,
    warned: bool,
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
    /// This process as a node; nothing is written until [`Leases::register`] or the
    /// first [`Leases::tick`], so a node can start while PostgreSQL is down.
    pub fn new(store: Store, cfg: LeaseConfig) -> Leases {
        Leases { store, id: Uuid::now_v7(), cfg, registered: AtomicBool::new(false), name_lock: Default::default() }
    }

    /// This process's id (`nodes.id`; also the `run_id` of the events it makes).
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Registers this process as a node (once) and takes the lock on its name.
    pub async fn register(&self) -> Result<(), Error> {
        if !self.registered.load(Ordering::Relaxed) {
            sqlx::query(
                "INSERT INTO nodes (id, name, capacity, api_addr, version) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(self.id)
            .bind(&self.cfg.name)
            .bind(self.cfg.capacity as i32)
            .bind(&self.cfg.api_addr)
            .bind(env!("CARGO_PKG_VERSION"))
            .execute(self.store.pool())
            .await
            .map_err(|e| db_error("registering the node", e))?;
            self.registered.store(true, Ordering::Relaxed);
            tracing::info!(node = %self.cfg.name, id = %self.id, capacity = self.cfg.capacity, "node registered");
        }
        self.hold_name().await;
        Ok(())
    }

    /// True while this process holds the lock on its node name: every other process
    /// of the name is dead.
    pub async fn holds_name(&self) -> bool {
        self.name_lock.lock().await.held
    }

    /// Keeps the name lock: checks its connection, and reconnects and locks again
    /// after the database was away (the server dropped the lock with the connection).
    async fn hold_name(&self) {
        let mut g = self.name_lock.lock().await;
        if let Some(c) = g.conn.as_mut() {
            if sqlx::query("SELECT 1").execute(&mut *c).await.is_ok() {
                return;
            }
            g.conn = None;
            g.held = false;
        }
        let opts = self.store.pool().connect_options();
        let mut conn = match sqlx::PgConnection::connect_with(&opts).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "name lock: no connection");
                return;
            }
        };
        let got: Result<bool, _> = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(format!("varta-node:{}", self.cfg.name))
            .fetch_one(&mut conn)
            .await;
        match got {
            Ok(true) => {
                g.held = true;
                g.warned = false;
                g.conn = Some(conn);
            }
            Ok(false) => {
                if !g.warned {
                    g.warned = true;
                    tracing::error!(
                        node = %self.cfg.name,
                        "another running process uses this node name: give every node its own [node] name; \
                         until then this one waits for leases like any other node"
                    );
                }
            }
            Err(e) => tracing::debug!(error = %e, "name lock not taken"),
        }
    }

    /// Registers (the first time), heartbeat, renew, then claim up to or hand back
    /// down to the fair share.
    pub async fn tick(&self) -> Result<Plan, Error> {
        self.register().await?;
        let holds_name = self.holds_name().await;
        let pool = self.store.pool();
        let ttl = secs(self.cfg.ttl);
        let offset = self.store.measure_clock().await?;
        let mut tx = pool.begin().await.map_err(|e| db_error("lease tick", e))?;
        sqlx::query("UPDATE nodes SET last_heartbeat = now(), clock_offset_ms = $2 WHERE id = $1")
            .bind(self.id)
            .bind(offset)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error("heartbeat", e))?;
        if holds_name {
            // Every other process of this name is dead: its leases are free now.
            let lost: Vec<Uuid> = sqlx::query_scalar(
                "UPDATE nodes SET stopped_at = GREATEST(last_heartbeat, started_at), stop_reason = 'lost'
                 WHERE name = $1 AND id <> $2 AND stopped_at IS NULL RETURNING id",
            )
            .bind(&self.cfg.name)
            .bind(self.id)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| db_error("marking dead processes of this node", e))?;
            if !lost.is_empty() {
                tracing::warn!(processes = ?lost, "earlier processes of this node died; taking their leases back");
            }
        }
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
                    SELECT l.camera_id, l.node_id AS prev_node, l.expires_at AS prev_expires,
                           (l.expires_at >= now()) AS prev_stopped
                    FROM camera_leases l JOIN cameras c ON c.id = l.camera_id
                    WHERE c.removed_at IS NULL AND c.enabled AND (l.node_id IS NULL OR l.expires_at < now()
                          OR l.node_id IN (SELECT id FROM nodes WHERE stopped_at IS NOT NULL))
                    ORDER BY l.camera_id
                    LIMIT $2
                    FOR UPDATE OF l SKIP LOCKED
                 )
                 UPDATE camera_leases l
                 SET node_id = $1, acquired_at = now(), expires_at = now() + make_interval(secs => $3)
                 FROM free WHERE l.camera_id = free.camera_id
                 RETURNING l.camera_id, free.prev_node, free.prev_expires, free.prev_stopped",
            )
            .bind(self.id)
            .bind(want)
            .bind(ttl)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| db_error("claiming leases", e))?;
            let mut lost_cameras = Vec::new();
            for r in &claimed {
                let camera: String = r.get(0);
                let prev: Option<Uuid> = r.get(1);
                if let Some(prev) = prev {
                    // Taken over from a process that died: close its holding (when its
                    // lease ran out, or now for a process found dead before that),
                    // mark the camera down from the process's last sign of life
                    // (after anything it recorded), and close the events it left open.
                    let stopped: Option<bool> = r.get(3);
                    let (at, reason, why) = if stopped == Some(true) {
                        (None, "lost", "restarted")
                    } else {
                        (r.get::<Option<chrono::DateTime<chrono::Utc>>, _>(2), "expired", "lease expired")
                    };
                    sqlx::query(
                        "UPDATE camera_lease_log SET released_at = COALESCE($3, clock_timestamp()), release_reason = $4
                         WHERE camera_id = $1 AND node_id = $2 AND released_at IS NULL",
                    )
                    .bind(&camera)
                    .bind(prev)
                    .bind(at)
                    .bind(reason)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error("closing a dead node's lease", e))?;
                    sqlx::query(
                        "INSERT INTO camera_status (camera_id, at, state, reason, node)
                         SELECT $1, LEAST(now(), GREATEST(n.last_heartbeat,
                                   (SELECT max(at) FROM camera_status WHERE camera_id = $1)) + interval '1 millisecond'),
                                'stopped', 'node ' || n.name || ' lost (' || $3 || ')', n.name
                         FROM nodes n WHERE n.id = $2
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&camera)
                    .bind(prev)
                    .bind(why)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error("recording a lost camera", e))?;
                    tracing::warn!(camera, previous_node = %prev, "took over the lease of a lost node");
                    lost_cameras.push(camera.clone());
                }
                sqlx::query(
                    "INSERT INTO camera_lease_log (camera_id, node_id, acquired_at) VALUES ($1, $2, clock_timestamp())",
                )
                .bind(&camera)
                .bind(self.id)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error("logging a lease", e))?;
                plan.run.insert(camera.clone());
                plan.claimed.push(camera);
            }
            if !lost_cameras.is_empty() {
                let n = crate::recovery::close_lost_events(
                    &mut tx,
                    crate::recovery::Scope::Cameras(&lost_cameras),
                    self.id,
                )
                .await?;
                if n > 0 {
                    tracing::warn!(events = n, cameras = ?lost_cameras, "closed the events a lost node left open (node_lost)");
                }
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
            "UPDATE camera_lease_log SET released_at = clock_timestamp(), release_reason = $3
             WHERE node_id = $1 AND camera_id = ANY($2) AND released_at IS NULL",
        )
        .bind(self.id)
        .bind(cameras)
        .bind(reason)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("logging released leases", e))?;
        // A rebalance frees cameras for a node below its share: it need not wait for
        // its next tick.
        if reason != "shutdown" {
            notify_freed(&mut tx, self.id).await?;
        }
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
        // Announced once the node is marked stopped: only then do the others' fair
        // shares grow to take its cameras.
        let mut tx = self.store.pool().begin().await.map_err(|e| db_error("marking the node stopped", e))?;
        sqlx::query("UPDATE nodes SET stopped_at = now(), stop_reason = 'shutdown' WHERE id = $1")
            .bind(self.id)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error("marking the node stopped", e))?;
        notify_freed(&mut tx, self.id).await?;
        tx.commit().await.map_err(|e| db_error("marking the node stopped", e))?;
        Ok(())
    }
}

/// The `NOTIFY` channel on which a node announces leases it freed (payload: its
/// process id, `nodes.id`), so that the others claim them at once.
pub const CHANNEL: &str = "varta_leases";

/// Announces, at the commit of `tx`, that process `id` freed leases ([`CHANNEL`]).
async fn notify_freed(tx: &mut sqlx::PgConnection, id: Uuid) -> Result<(), Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("announcing freed leases", e))?;
    Ok(())
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
