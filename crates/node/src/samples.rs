//! Health over time: every `[node] sample_secs` the node writes what it measured of
//! itself (leases held against capacity, frames decoded and analysed per second, its
//! CPU) and of each camera it holds (frames and kilobits received per second,
//! decode errors, frames analysed per second) to PostgreSQL (`varta_store::samples`),
//! for the console's node chart and camera sparklines. Rates are the counters'
//! differences over the interval. Samples are not spooled: an interval without the
//! database is a gap in the chart, not a backlog. Rows older than
//! `varta_store::samples::KEEP_HOURS` are deleted here once an hour.

use crate::controller::NodeCtx;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use varta_core::metrics::process_cpu_secs as cpu_secs;
use varta_store::samples::{CameraSample, NodeSample};

/// A camera's counters at one moment: received frames, bytes, decode errors, decoded
/// and analysed frames.
type Reading = [u64; 5];

pub(crate) async fn sample_loop(node: Arc<NodeCtx>, name: String, capacity: u32, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: HashMap<String, Reading> = HashMap::new();
    let (mut last_at, mut last_cpu) = (Instant::now(), cpu_secs());
    let mut last_cleanup: Option<Instant> = None;
    tick.tick().await;
    loop {
        tick.tick().await;
        let held = node.ctl.lock().unwrap().as_ref().map(|c| c.held.clone()).unwrap_or_default();
        let (now, cpu) = (Instant::now(), cpu_secs());
        let secs = now.duration_since(last_at).as_secs_f64().max(1e-3);
        let (mut cams, mut decoded, mut analysed) = (Vec::new(), 0.0, 0.0);
        let mut seen = HashMap::new();
        for (id, stats) in node.metrics.cameras() {
            if !held.contains(id.as_str()) {
                continue;
            }
            let c = &stats.counters;
            let r: Reading = [
                c.frames_received.get(),
                c.bytes_received.get(),
                c.decode_errors.get(),
                c.frames_decoded.get(),
                c.frames_analysed.get(),
            ];
            // A camera new to this node (or restarted: counters start again) has no
            // interval yet.
            if let Some(p) = last.get(id.as_str()).filter(|p| p.iter().zip(&r).all(|(a, b)| a <= b)) {
                let d = |i: usize| (r[i] - p[i]) as f64;
                decoded += d(3) / secs;
                analysed += d(4) / secs;
                cams.push(CameraSample {
                    camera: id.as_str().to_owned(),
                    fps: (d(0) / secs) as f32,
                    kbps: (d(1) * 8.0 / 1000.0 / secs) as f32,
                    decode_errors: d(2).min(i32::MAX as f64) as i32,
                    analysed_fps: (d(4) / secs) as f32,
                });
            }
            seen.insert(id.as_str().to_owned(), r);
        }
        let sample = NodeSample {
            cameras: held.len() as i32,
            capacity: capacity as i32,
            decoded_fps: decoded as f32,
            analysed_fps: analysed as f32,
            cpu_percent: ((cpu - last_cpu) / secs * 100.0) as f32,
        };
        (last, last_at, last_cpu) = (seen, now, cpu);
        if !*node.db_ready.borrow() {
            continue;
        }
        if let Err(e) = node.store.record_samples(node.leases.id(), &name, &sample, &cams).await {
            tracing::debug!(error = %e, "health samples not written this time");
        }
        if last_cleanup.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
            last_cleanup = Some(Instant::now());
            match node.store.delete_old_samples().await {
                Ok(n) if n > 0 => tracing::debug!(rows = n, "old health samples deleted"),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "old health samples not deleted this time"),
            }
        }
    }
}
