//! Maintenance tasks (work orders): opened by the node that sees a camera in
//! trouble, or by a person; moved through open → assigned → in_progress →
//! resolved → verified by contractors and administrators.
//!
//! The database keeps one open task per camera and kind (a partial unique index),
//! so two nodes, or one node checking every few seconds, never open a duplicate.

use crate::{db_error, Store};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use varta_core::{err, Error};

/// What a task is about: a camera's trouble as a node sees it, or `other` (by people).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// The camera is not streaming.
    Offline,
    /// The picture has not changed.
    Frozen,
    /// The picture is dark or featureless (covered lens).
    Blackout,
    /// Fewer frames than expected.
    LowFps,
    /// The stream does not decode cleanly.
    DecodeErrors,
    /// Sessions keep dropping after a short while (flapping link).
    LinkDrops,
    /// RTP packets are lost on the way (a lossy network).
    PacketLoss,
    /// Anything else, opened by a person.
    Other,
}

/// Where a task stands, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Nobody has taken it.
    Open,
    /// Given to someone.
    Assigned,
    /// Being worked on.
    InProgress,
    /// The contractor says it is done.
    Resolved,
    /// An administrator confirmed it: final.
    Verified,
}

impl TaskKind {
    /// Every kind.
    pub const ALL: [TaskKind; 8] = [
        TaskKind::Offline,
        TaskKind::Frozen,
        TaskKind::Blackout,
        TaskKind::LowFps,
        TaskKind::DecodeErrors,
        TaskKind::LinkDrops,
        TaskKind::PacketLoss,
        TaskKind::Other,
    ];
    /// The kinds of camera health problems, which a node opens and closes by itself.
    pub const HEALTH: [TaskKind; 6] = [
        TaskKind::Frozen,
        TaskKind::Blackout,
        TaskKind::LowFps,
        TaskKind::DecodeErrors,
        TaskKind::LinkDrops,
        TaskKind::PacketLoss,
    ];

    /// The name in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Offline => "offline",
            TaskKind::Frozen => "frozen",
            TaskKind::Blackout => "blackout",
            TaskKind::LowFps => "low_fps",
            TaskKind::DecodeErrors => "decode_errors",
            TaskKind::LinkDrops => "link_drops",
            TaskKind::PacketLoss => "packet_loss",
            TaskKind::Other => "other",
        }
    }
}

impl From<varta_core::metrics::HealthProblem> for TaskKind {
    fn from(p: varta_core::metrics::HealthProblem) -> Self {
        use varta_core::metrics::HealthProblem as H;
        match p {
            H::LowFps => TaskKind::LowFps,
            H::DecodeErrors => TaskKind::DecodeErrors,
            H::Frozen => TaskKind::Frozen,
            H::Blackout => TaskKind::Blackout,
            H::LinkDrops => TaskKind::LinkDrops,
            H::PacketLoss => TaskKind::PacketLoss,
        }
    }
}

impl TaskState {
    /// Every state, in order.
    pub const ALL: [TaskState; 5] =
        [TaskState::Open, TaskState::Assigned, TaskState::InProgress, TaskState::Resolved, TaskState::Verified];

    /// The name in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Open => "open",
            TaskState::Assigned => "assigned",
            TaskState::InProgress => "in_progress",
            TaskState::Resolved => "resolved",
            TaskState::Verified => "verified",
        }
    }

    /// Open, assigned or in progress: work is still to be done.
    pub fn is_active(self) -> bool {
        matches!(self, TaskState::Open | TaskState::Assigned | TaskState::InProgress)
    }
}

/// Parses a name as `as_str` writes it; `InvalidArgument` naming the choices.
fn parse_name<T: Copy>(s: &str, all: &[T], name: fn(T) -> &'static str, what: &str) -> Result<T, Error> {
    all.iter().copied().find(|v| name(*v) == s).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|v| name(*v)).collect();
        err!(InvalidArgument, "`{s}` is not a task {what} ({})", names.join(", "))
    })
}

impl std::str::FromStr for TaskKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        parse_name(s, &TaskKind::ALL, TaskKind::as_str, "kind")
    }
}

impl std::str::FromStr for TaskState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        parse_name(s, &TaskState::ALL, TaskState::as_str, "state")
    }
}

impl TryFrom<String> for TaskKind {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl TryFrom<String> for TaskState {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task as the API shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Task {
    /// Row id.
    pub id: i64,
    /// Site id.
    #[sqlx(rename = "site_id")]
    pub site: String,
    /// Camera id, if the task is about one camera.
    #[sqlx(rename = "camera_id")]
    pub camera: Option<String>,
    /// What the task is about.
    #[sqlx(try_from = "String")]
    pub kind: TaskKind,
    /// What was seen.
    pub reason: String,
    /// Where it stands.
    #[sqlx(try_from = "String")]
    pub state: TaskState,
    /// Who works on it.
    pub assignee: Option<String>,
    /// `system` or the user who opened it.
    pub opened_by: String,
    /// Opened.
    pub opened_at: DateTime<Utc>,
    /// Since when the trouble lasted when the task was opened.
    pub trouble_since: Option<DateTime<Utc>>,
    /// When the camera was seen well again (cleared if the trouble comes back).
    pub recovered_at: Option<DateTime<Utc>>,
    /// Marked resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// By whom.
    pub resolved_by: Option<String>,
    /// Set when it was marked resolved while the camera had not recovered.
    pub resolved_while_down: bool,
    /// Verified.
    pub verified_at: Option<DateTime<Utc>>,
    /// By whom.
    pub verified_by: Option<String>,
    /// Free text.
    pub notes: String,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Filters of a task list.
#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    /// Only this site.
    pub site: Option<String>,
    /// Only this camera.
    pub camera: Option<String>,
    /// Only this state.
    pub state: Option<TaskState>,
    /// Only open, assigned and in-progress tasks.
    pub open: bool,
    /// Before this id (cursor).
    pub before: Option<i64>,
    /// Most rows.
    pub limit: i64,
}

/// A change asked for by a person.
#[derive(Clone, Debug, Default)]
pub struct TaskChange {
    /// New state.
    pub state: Option<TaskState>,
    /// New assignee (empty string: nobody).
    pub assignee: Option<String>,
    /// New notes.
    pub notes: Option<String>,
}

const SELECT: &str =
    "SELECT id, site_id, camera_id, kind, reason, state, assignee, opened_by, opened_at, trouble_since,
        recovered_at, resolved_at, resolved_by, resolved_while_down, verified_at, verified_by, notes, updated_at
   FROM maintenance_tasks";

/// Whether a person may move a task from `from` to `to`.
pub fn transition_allowed(from: TaskState, to: TaskState) -> bool {
    use TaskState::*;
    matches!(
        (from, to),
        (Open, Assigned | InProgress | Resolved)
            | (Assigned, Open | InProgress | Resolved)
            | (InProgress, Assigned | Resolved)
            | (Resolved, Verified | InProgress)
    )
}

impl Store {
    /// Opens a task for `camera`'s trouble of `kind` unless one is open already;
    /// returns the new task's id. When one is open, its `recovered_at` is cleared
    /// (the trouble is back).
    pub async fn open_camera_task(
        &self,
        camera: &str,
        kind: TaskKind,
        reason: &str,
        trouble_since: DateTime<Utc>,
    ) -> Result<Option<i64>, Error> {
        let row = sqlx::query(
            "INSERT INTO maintenance_tasks (site_id, camera_id, kind, reason, trouble_since)
             SELECT site_id, id, $2, $3, $4 FROM cameras WHERE id = $1
             ON CONFLICT (camera_id, kind) WHERE state IN ('open', 'assigned', 'in_progress')
             DO UPDATE SET recovered_at = NULL, updated_at = now()
                 WHERE maintenance_tasks.recovered_at IS NOT NULL
             RETURNING id, xmax = 0",
        )
        .bind(camera)
        .bind(kind.as_str())
        .bind(reason)
        .bind(trouble_since)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| db_error("opening a maintenance task", e))?;
        Ok(row.and_then(|r| r.get::<bool, _>(1).then(|| r.get(0))))
    }

    /// Marks `camera`'s not-yet-verified tasks of `kinds` as recovered at `at`;
    /// returns how many changed.
    pub async fn camera_recovered(&self, camera: &str, kinds: &[TaskKind], at: DateTime<Utc>) -> Result<u64, Error> {
        let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let r = sqlx::query(
            "UPDATE maintenance_tasks SET recovered_at = $3, updated_at = now()
              WHERE camera_id = $1 AND kind = ANY($2) AND recovered_at IS NULL AND opened_by = 'system'
                AND state <> 'verified'",
        )
        .bind(camera)
        .bind(&kinds)
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("recording a recovery", e))?;
        Ok(r.rows_affected())
    }

    /// Opens a task by hand, writing `audit` (its target set to the task id) in the
    /// same transaction.
    pub async fn open_task_by(
        &self,
        by: &str,
        site: &str,
        camera: Option<&str>,
        kind: TaskKind,
        reason: &str,
        audit: &crate::accounts::AuditEntry<'_>,
    ) -> Result<Task, Error> {
        let mut tx = self.pool.begin().await.map_err(|e| db_error("opening a maintenance task", e))?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO maintenance_tasks (site_id, camera_id, kind, reason, opened_by) VALUES ($1, $2, $3, $4, $5)
             RETURNING id",
        )
        .bind(site)
        .bind(camera)
        .bind(kind.as_str())
        .bind(reason)
        .bind(by)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                err!(Conflict, "an open `{}` task for this camera already exists", kind.as_str())
            }
            _ => db_error("opening a maintenance task", e),
        })?;
        let mut audit = audit.clone();
        audit.target = Some(id.to_string());
        crate::accounts::insert_audit(&mut tx, &audit).await?;
        tx.commit().await.map_err(|e| db_error("opening a maintenance task", e))?;
        self.task(id).await?.ok_or_else(|| err!(Internal, "task {id} vanished"))
    }

    /// One task.
    pub async fn task(&self, id: i64) -> Result<Option<Task>, Error> {
        sqlx::query_as(&format!("{SELECT} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| db_error("reading a task", e))
    }

    /// Tasks newest first.
    pub async fn list_tasks(&self, f: &TaskFilter) -> Result<Vec<Task>, Error> {
        sqlx::query_as(&format!(
            "{SELECT} WHERE ($1::text IS NULL OR site_id = $1) AND ($2::text IS NULL OR camera_id = $2)
                AND ($3::text IS NULL OR state = $3)
                AND (NOT $4 OR state IN ('open', 'assigned', 'in_progress'))
                AND ($5::bigint IS NULL OR id < $5)
              ORDER BY id DESC LIMIT $6"
        ))
        .bind(&f.site)
        .bind(&f.camera)
        .bind(f.state.map(TaskState::as_str))
        .bind(f.open)
        .bind(f.before)
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("listing tasks", e))
    }

    /// Applies a person's change, checking the state machine, and writes the audit
    /// entry `audit` makes of the task before and after in the same transaction;
    /// returns the task before and after. Whoever resolved a task may not also
    /// verify it (`PermissionDenied`).
    pub async fn change_task<'a>(
        &self,
        id: i64,
        by: &str,
        c: &TaskChange,
        audit: &(dyn Fn(&Task, &Task) -> crate::accounts::AuditEntry<'a> + Sync),
    ) -> Result<(Task, Task), Error> {
        let mut tx = self.pool.begin().await.map_err(|e| db_error("changing a task", e))?;
        let before = task_in(&mut tx, id, " FOR UPDATE").await?;
        if let Some(to) = c.state {
            if to != before.state && !transition_allowed(before.state, to) {
                return Err(err!(Conflict, "a task cannot go from `{}` to `{to}`", before.state));
            }
        }
        let to = c.state.unwrap_or(before.state);
        let entering = |s: TaskState| to == s && before.state != s;
        if entering(TaskState::Verified) && before.resolved_by.as_deref() == Some(by) {
            return Err(err!(PermissionDenied, "task {id} was resolved by `{by}`: someone else must verify it"));
        }
        sqlx::query(
            "UPDATE maintenance_tasks SET state = $2,
                    assignee = CASE WHEN $3::text IS NULL THEN assignee ELSE NULLIF($3, '') END,
                    notes = COALESCE($4, notes),
                    resolved_at = CASE WHEN $5 THEN now() WHEN $2 IN ('open', 'assigned', 'in_progress') THEN NULL
                                       ELSE resolved_at END,
                    resolved_by = CASE WHEN $5 THEN $7 WHEN $2 IN ('open', 'assigned', 'in_progress') THEN NULL
                                       ELSE resolved_by END,
                    resolved_while_down = CASE WHEN $5 THEN opened_by = 'system' AND recovered_at IS NULL
                                               WHEN $2 IN ('open', 'assigned', 'in_progress') THEN false
                                               ELSE resolved_while_down END,
                    verified_at = CASE WHEN $6 THEN now() ELSE verified_at END,
                    verified_by = CASE WHEN $6 THEN $7 ELSE verified_by END,
                    updated_at = now()
              WHERE id = $1",
        )
        .bind(id)
        .bind(to.as_str())
        .bind(&c.assignee)
        .bind(&c.notes)
        .bind(entering(TaskState::Resolved))
        .bind(entering(TaskState::Verified))
        .bind(by)
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                err!(Conflict, "another open task of this kind exists for the camera")
            }
            _ => db_error("changing a task", e),
        })?;
        let after = task_in(&mut tx, id, "").await?;
        crate::accounts::insert_audit(&mut tx, &audit(&before, &after)).await?;
        tx.commit().await.map_err(|e| db_error("changing a task", e))?;
        Ok((before, after))
    }
}

/// Task `id` read on `conn` (with `lock`, e.g. `" FOR UPDATE"`); `NotFound` if none.
async fn task_in(conn: &mut sqlx::PgConnection, id: i64, lock: &str) -> Result<Task, Error> {
    sqlx::query_as(&format!("{SELECT} WHERE id = $1{lock}"))
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(|e| db_error("changing a task", e))?
        .ok_or_else(|| err!(NotFound, "no task {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_is_final_and_resolved_can_reopen() {
        use TaskState::*;
        assert!(transition_allowed(Open, Assigned));
        assert!(transition_allowed(Resolved, Verified));
        assert!(transition_allowed(Resolved, InProgress));
        assert!(!transition_allowed(Verified, Open));
        assert!(!transition_allowed(Open, Verified));
        for s in TaskState::ALL {
            assert!(!transition_allowed(Verified, s));
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for k in TaskKind::ALL {
            assert_eq!(k.as_str().parse::<TaskKind>().unwrap(), k);
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        let e = "closed".parse::<TaskState>().unwrap_err().to_string();
        assert!(e.contains("`closed` is not a task state (open, assigned, in_progress, resolved, verified)"), "{e}");
    }
}
