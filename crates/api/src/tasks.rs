//! Maintenance tasks: `GET|POST /api/v1/maintenance/tasks`,
//! `PATCH /api/v1/maintenance/tasks/{id}`. Every change is audited with its before
//! and after.

use crate::auth::{Caller, Perm};
use crate::error::{int_id, ApiResult, Body, Q};
use crate::wire::{self, Task};
use crate::{AppState, Page};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use varta_core::err;
use varta_store::accounts::{AuditFilter, Role};
use varta_store::tasks::{TaskChange, TaskFilter, TaskKind, TaskState};

/// Task list filters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this site.
    site: Option<String>,
    /// Only this camera.
    camera: Option<String>,
    /// Only this state.
    #[param(pattern = "^(open|assigned|in_progress|resolved|verified)$")]
    state: Option<String>,
    /// Only tasks not yet resolved.
    #[serde(default)]
    open: bool,
    /// Cursor from the previous page.
    cursor: Option<String>,
    /// Page size, 1–500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// Tasks, newest first.
#[utoipa::path(get, path = "/api/v1/maintenance/tasks", tag = "maintenance", security(("bearer" = [])),
    params(ListParams), responses((status = 200, body = Page<Task>), (status = 400, body = crate::ErrorBody),
    (status = 403, body = crate::ErrorBody)))]
pub async fn list(State(st): State<Arc<AppState>>, c: Caller, Q(p): Q<ListParams>) -> ApiResult<Json<Page<Task>>> {
    c.require(Perm::Tasks)?;
    let state = p.state.as_deref().map(str::parse::<TaskState>).transpose()?;
    let limit = crate::limit(p.limit, 100, 500)?;
    let f = TaskFilter {
        site: p.site,
        camera: p.camera,
        state,
        open: p.open,
        before: p.cursor.as_deref().map(crate::id_cursor).transpose()?,
        limit,
    };
    let items = st.store.list_tasks(&f).await?;
    Ok(Json(Page::by_id(wire::all(items), limit, |t: &Task| t.id)))
}

/// A task opened by hand.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// Site id.
    site: String,
    /// Camera id (of that site), if the task is about one camera.
    camera: Option<String>,
    /// `offline`, `frozen`, `blackout`, `low_fps`, `decode_errors` or `other`.
    #[schema(pattern = "^(offline|frozen|blackout|low_fps|decode_errors|other)$")]
    kind: String,
    /// What is wrong.
    #[schema(min_length = 1, max_length = 2000)]
    reason: String,
}

/// Opens a task by hand.
#[utoipa::path(post, path = "/api/v1/maintenance/tasks", tag = "maintenance", security(("bearer" = [])),
    request_body = NewTask, responses((status = 201, body = Task), (status = 400, body = crate::ErrorBody),
    (status = 409, body = crate::ErrorBody)))]
pub async fn create(
    State(st): State<Arc<AppState>>,
    c: Caller,
    Body(t): Body<NewTask>,
) -> ApiResult<(StatusCode, Json<Task>)> {
    c.require(Perm::Tasks)?;
    let kind: TaskKind = t.kind.parse()?;
    if t.reason.trim().is_empty() || t.reason.len() > 2000 {
        return Err(err!(InvalidArgument, "reason must be 1 to 2000 characters").into());
    }
    let states = st.store.camera_states().await?;
    let site_known = states.iter().any(|s| s.site == t.site);
    if let Some(cam) = &t.camera {
        if !states.iter().any(|s| &s.camera == cam && s.site == t.site) {
            return Err(err!(InvalidArgument, "no camera `{cam}` on site `{}`", t.site).into());
        }
    } else if !site_known {
        return Err(err!(InvalidArgument, "no site `{}` with cameras", t.site).into());
    }
    let audit = c.audit("task_open", None, serde_json::json!({"site": t.site, "camera": t.camera, "kind": t.kind}));
    let task = st.store.open_task_by(&c.who.name, &t.site, t.camera.as_deref(), kind, t.reason.trim(), &audit).await?;
    Ok((StatusCode::CREATED, Json(task.into())))
}

/// A change to a task.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// New state; allowed moves: open → assigned/in_progress/resolved, assigned →
    /// open/in_progress/resolved, in_progress → assigned/resolved, resolved →
    /// verified/in_progress.
    #[schema(pattern = "^(open|assigned|in_progress|resolved|verified)$")]
    state: Option<String>,
    /// Who works on it ("" for nobody).
    #[schema(max_length = 200)]
    assignee: Option<String>,
    /// Notes (replace the old ones).
    #[schema(max_length = 10000)]
    notes: Option<String>,
}

/// Changes a task's state, assignee or notes.
#[utoipa::path(patch, path = "/api/v1/maintenance/tasks/{id}", tag = "maintenance", security(("bearer" = [])),
    params(("id" = i64, Path, description = "task id")), request_body = Change,
    responses((status = 200, body = Task), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody),
    (status = 409, body = crate::ErrorBody)))]
pub async fn change(
    State(st): State<Arc<AppState>>,
    c: Caller,
    Path(id): Path<String>,
    Body(ch): Body<Change>,
) -> ApiResult<Json<Task>> {
    c.require(Perm::Tasks)?;
    let id = int_id(&id)?;
    let state = ch.state.as_deref().map(str::parse::<TaskState>).transpose()?;
    if ch.assignee.as_ref().is_some_and(|a| a.len() > 200) || ch.notes.as_ref().is_some_and(|n| n.len() > 10000) {
        return Err(err!(InvalidArgument, "assignee is at most 200 characters, notes at most 10000").into());
    }
    if ch.state.is_none() && ch.assignee.is_none() && ch.notes.is_none() {
        return Err(err!(InvalidArgument, "nothing to change: give state, assignee or notes").into());
    }
    // Verifying closes the contract's work order: the administrator's word, never
    // the contractor's own.
    if state == Some(TaskState::Verified) {
        c.require(Perm::Admin)?;
    }
    let change = TaskChange { state, assignee: ch.assignee, notes: ch.notes };
    let audit = |before: &varta_store::tasks::Task, after: &varta_store::tasks::Task| {
        c.audit(
            "task_change",
            Some(id.to_string()),
            serde_json::json!({
                "state": [before.state, after.state],
                "assignee": [before.assignee, after.assignee],
                "notes_changed": before.notes != after.notes,
                "resolved_while_down": after.resolved_while_down,
            }),
        )
    };
    let (_, after) = st.store.change_task(id, &c.who.name, &change, &audit).await?;
    Ok(Json(after.into()))
}

/// One change in a task's history.
#[derive(Serialize, ToSchema)]
pub struct TaskStep {
    /// When.
    pub at: DateTime<Utc>,
    /// Who (`system` for the service's own changes).
    pub who: String,
    /// What changed: `state` and `assignee` as `[before, after]`, `notes_changed`.
    pub change: serde_json::Value,
}

/// A task with its history.
#[derive(Serialize, ToSchema)]
pub struct TaskDetail {
    /// The task as it stands.
    #[serde(flatten)]
    pub task: Task,
    /// Its changes, oldest first (from the audit log), the opening first of all.
    pub history: Vec<TaskStep>,
}

/// A task and its history: who opened, assigned, resolved and verified it, when.
#[utoipa::path(get, path = "/api/v1/maintenance/tasks/{id}", tag = "maintenance", security(("bearer" = [])),
    params(("id" = i64, Path, description = "task id")),
    responses((status = 200, body = TaskDetail), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn one(State(st): State<Arc<AppState>>, c: Caller, Path(id): Path<String>) -> ApiResult<Json<TaskDetail>> {
    c.require(Perm::Tasks)?;
    let id = int_id(&id)?;
    let task = st.store.task(id).await?.ok_or_else(|| err!(NotFound, "no task {id}"))?;
    let f = AuditFilter {
        action: Some("task_change".into()),
        target: Some(id.to_string()),
        limit: 500,
        ..Default::default()
    };
    let mut rows = st.store.list_audit(&f).await?;
    rows.reverse();
    let opened = TaskStep {
        at: task.opened_at,
        who: task.opened_by.clone(),
        change: serde_json::json!({"state": [null, "open"], "reason": task.reason}),
    };
    let history = std::iter::once(opened)
        .chain(rows.into_iter().map(|r| TaskStep {
            at: r.at,
            who: r.actor.unwrap_or_else(|| "system".into()),
            change: r.detail,
        }))
        .collect();
    Ok(Json(TaskDetail { task: task.into(), history }))
}

/// Who a task can be assigned to: enabled contractor and administrator accounts, by
/// name.
#[utoipa::path(get, path = "/api/v1/maintenance/assignees", tag = "maintenance", security(("bearer" = [])),
    responses((status = 200, body = Vec<String>), (status = 403, body = crate::ErrorBody)))]
pub async fn assignees(State(st): State<Arc<AppState>>, c: Caller) -> ApiResult<Json<Vec<String>>> {
    c.require(Perm::Tasks)?;
    let users = st.store.list_users().await?;
    Ok(Json(
        users
            .into_iter()
            .filter(|u| u.disabled_at.is_none() && matches!(u.role, Role::Contractor | Role::Admin))
            .map(|u| u.name)
            .collect(),
    ))
}
