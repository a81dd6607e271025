//! The maintenance policy: when a held camera's trouble opens a maintenance task
//! (work order) for the contractors, and when its recovery is recorded on it.

use crate::controller::NodeCtx;
use std::sync::Arc;
use std::time::Duration;
use varta_core::event::CameraState;
use varta_core::metrics::HealthProblem;
use varta_store::tasks::TaskKind;

/// What the maintenance check remembers of one camera.
#[derive(Default)]
struct Trouble {
    /// Since when it has been down (not streaming), as first seen.
    down_since: Option<chrono::DateTime<chrono::Utc>>,
    /// Health problems (`frozen`, `blackout`, `low_fps`, `decode_errors`) and since when.
    problems: std::collections::HashMap<HealthProblem, chrono::DateTime<chrono::Utc>>,
    /// Whether a task of this camera may still be waiting for its recovery.
    maybe_open: bool,
}

/// Opens a maintenance task when a held camera has been down longer than
/// `offline_after_secs`, or has had a health problem longer than
/// `degraded_after_secs` (the database refuses a second open task of a kind), and
/// records on the task when the camera is well again.
pub(crate) async fn maintenance_loop(node: Arc<NodeCtx>, m: crate::config::MaintenanceConfig) {
    let mut seen: std::collections::HashMap<String, Trouble> = Default::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(m.check_interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let offline_after = chrono::Duration::milliseconds((m.offline_after_secs * 1000.0) as i64);
    let degraded_after = chrono::Duration::milliseconds((m.degraded_after_secs * 1000.0) as i64);
    loop {
        tick.tick().await;
        let held: Vec<String> = match node.ctl.lock().unwrap().as_ref() {
            Some(c) => c.held.iter().cloned().collect(),
            None => return,
        };
        seen.retain(|k, _| held.contains(k));
        let now = chrono::Utc::now();
        for cam in held {
            // One consistent copy of what the camera's ingest published.
            let live = node.metrics.camera(&varta_core::CameraId(cam.clone())).live();
            let state = live.state;
            let t = seen.entry(cam.clone()).or_insert_with(|| Trouble { maybe_open: true, ..Default::default() });
            let mut recovered: Vec<TaskKind> = Vec::new();
            if state == CameraState::Stopped {
                continue;
            }
            if state.is_up() {
                if t.down_since.take().is_some() || t.maybe_open {
                    recovered.push(TaskKind::Offline);
                }
            } else {
                let since = *t.down_since.get_or_insert(live.since.min(now));
                if now - since >= offline_after {
                    let reason = live.last_error.clone().unwrap_or_else(|| format!("camera {}", state.as_str()));
                    let reason = varta_core::redact::redact_text(&reason);
                    match node.store.open_camera_task(&cam, TaskKind::Offline, &reason, since).await {
                        Ok(Some(id)) => tracing::warn!(camera = %cam, task = id, "maintenance task opened: offline"),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(camera = %cam, error = %e, "cannot open a maintenance task"),
                    }
                    t.maybe_open = true;
                }
            }
            let problems = if state.is_up() { live.health.problems.clone() } else { Vec::new() };
            for &p in &problems {
                let since = *t.problems.entry(p).or_insert(now);
                if now - since >= degraded_after {
                    let reason = format!("{} since {}", p.as_str(), since.to_rfc3339());
                    match node.store.open_camera_task(&cam, p.into(), &reason, since).await {
                        Ok(Some(id)) => {
                            tracing::warn!(camera = %cam, task = id, kind = p.as_str(), "maintenance task opened")
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(camera = %cam, error = %e, "cannot open a maintenance task"),
                    }
                }
            }
            let gone: Vec<HealthProblem> = t.problems.keys().filter(|p| !problems.contains(p)).copied().collect();
            for p in gone {
                t.problems.remove(&p);
                recovered.push(p.into());
            }
            if state.is_up() && t.maybe_open {
                // Every health kind not seen now, each once (some may be in `gone`).
                for k in TaskKind::HEALTH {
                    if !recovered.contains(&k) && !problems.iter().any(|&p| TaskKind::from(p) == k) {
                        recovered.push(k);
                    }
                }
                t.maybe_open = false;
            }
            if !recovered.is_empty() {
                let kinds = recovered;
                match node.store.camera_recovered(&cam, &kinds, now).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(camera = %cam, kinds = ?kinds, "maintenance task: camera recovered")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(camera = %cam, error = %e, "cannot record a recovery; will retry");
                        t.maybe_open = true;
                    }
                }
            }
        }
    }
}
