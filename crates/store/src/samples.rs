//! Health over time: what each node measured of itself and of its cameras, one row
//! per `[node] sample_secs` (migration 0012), for the console's charts of node load
//! and camera health. Kept [`KEEP_HOURS`]; the sampling node deletes older rows.

use crate::{db_error, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;
use varta_core::Error;

/// How long samples are kept, in hours.
pub const KEEP_HOURS: i64 = 48;

/// One node over one interval.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSample {
    /// Camera leases held.
    pub cameras: i32,
    /// `[node] capacity`.
    pub capacity: i32,
    /// Frames decoded per second, every camera together.
    pub decoded_fps: f32,
    /// Frames analysed per second, every camera together.
    pub analysed_fps: f32,
    /// CPU time of the process over the interval, percent of one core.
    pub cpu_percent: f32,
}

/// One camera over one interval.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraSample {
    /// Camera id.
    pub camera: String,
    /// Compressed frames received per second.
    pub fps: f32,
    /// Kilobits per second received.
    pub kbps: f32,
    /// Decoder and stream errors in the interval.
    pub decode_errors: i32,
    /// Frames analysed per second.
    pub analysed_fps: f32,
}

/// A node's samples, oldest first, as columns (what a chart takes).
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeSeries {
    /// Node name.
    pub node: String,
    /// Sample times.
    pub at: Vec<DateTime<Utc>>,
    /// Leases held.
    pub cameras: Vec<i32>,
    /// Capacity.
    pub capacity: Vec<i32>,
    /// Frames decoded per second.
    pub decoded_fps: Vec<f32>,
    /// Frames analysed per second.
    pub analysed_fps: Vec<f32>,
    /// CPU, percent of one core.
    pub cpu_percent: Vec<f32>,
}

/// A camera's samples, oldest first, as columns.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CameraSeries {
    /// Camera id.
    pub camera: String,
    /// Sample times.
    pub at: Vec<DateTime<Utc>>,
    /// Frames received per second.
    pub fps: Vec<f32>,
    /// Kilobits per second received.
    pub kbps: Vec<f32>,
    /// Decoder and stream errors per interval.
    pub decode_errors: Vec<i32>,
    /// Frames analysed per second.
    pub analysed_fps: Vec<f32>,
}

/// A `node_samples` row: node, at, cameras, capacity, decoded, analysed, CPU.
type NodeRow = (String, DateTime<Utc>, i32, i32, f32, f32, f32);
/// A `camera_samples` row: camera, at, fps, kbps, decode errors, analysed fps.
type CameraRow = (String, DateTime<Utc>, f32, f32, i32, f32);

impl Store {
    /// Writes one interval's samples of node `node` (run `node_id`) and of its
    /// cameras, in one transaction.
    pub async fn record_samples(
        &self,
        node_id: uuid::Uuid,
        node: &str,
        n: &NodeSample,
        cams: &[CameraSample],
    ) -> Result<(), Error> {
        let mut tx = self.pool.begin().await.map_err(|e| db_error("writing samples", e))?;
        sqlx::query(
            "INSERT INTO node_samples (node_id, node, cameras, capacity, decoded_fps, analysed_fps, cpu_percent)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(node_id)
        .bind(node)
        .bind(n.cameras)
        .bind(n.capacity)
        .bind(n.decoded_fps)
        .bind(n.analysed_fps)
        .bind(n.cpu_percent)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("writing a node sample", e))?;
        sqlx::query(
            "INSERT INTO camera_samples (camera_id, node, fps, kbps, decode_errors, analysed_fps)
             SELECT c, $1, f, k, d, a FROM UNNEST($2::text[], $3::real[], $4::real[], $5::int[], $6::real[]) AS x(c, f, k, d, a)
             ON CONFLICT (camera_id, at) DO NOTHING",
        )
        .bind(node)
        .bind(cams.iter().map(|c| c.camera.clone()).collect::<Vec<_>>())
        .bind(cams.iter().map(|c| c.fps).collect::<Vec<_>>())
        .bind(cams.iter().map(|c| c.kbps).collect::<Vec<_>>())
        .bind(cams.iter().map(|c| c.decode_errors).collect::<Vec<_>>())
        .bind(cams.iter().map(|c| c.analysed_fps).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("writing camera samples", e))?;
        tx.commit().await.map_err(|e| db_error("writing samples", e))
    }

    /// Deletes samples older than [`KEEP_HOURS`]; returns how many rows went.
    pub async fn delete_old_samples(&self) -> Result<u64, Error> {
        let mut n = 0;
        for table in ["node_samples", "camera_samples"] {
            n += sqlx::query(&format!("DELETE FROM {table} WHERE at < now() - make_interval(hours => $1)"))
                .bind(KEEP_HOURS as i32)
                .execute(&self.pool)
                .await
                .map_err(|e| db_error("deleting old samples", e))?
                .rows_affected();
        }
        Ok(n)
    }

    /// Every node's samples since `since`, by node name (a restarted node's runs
    /// continue one series).
    pub async fn node_series(&self, since: DateTime<Utc>) -> Result<Vec<NodeSeries>, Error> {
        let rows: Vec<NodeRow> = sqlx::query_as(
            "SELECT node, at, cameras, capacity, decoded_fps, analysed_fps, cpu_percent FROM node_samples
              WHERE at >= $1 ORDER BY node, at",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("reading node samples", e))?;
        let mut out: Vec<NodeSeries> = Vec::new();
        for (node, at, cameras, capacity, dec, ana, cpu) in rows {
            if out.last().is_none_or(|s| s.node != node) {
                out.push(NodeSeries { node, ..Default::default() });
            }
            let s = out.last_mut().expect("pushed above");
            s.at.push(at);
            s.cameras.push(cameras);
            s.capacity.push(capacity);
            s.decoded_fps.push(dec);
            s.analysed_fps.push(ana);
            s.cpu_percent.push(cpu);
        }
        Ok(out)
    }

    /// Every camera's samples since `since` (only `camera` when given).
    pub async fn camera_series(&self, since: DateTime<Utc>, camera: Option<&str>) -> Result<Vec<CameraSeries>, Error> {
        let rows: Vec<CameraRow> = sqlx::query_as(
            "SELECT camera_id, at, fps, kbps, decode_errors, analysed_fps FROM camera_samples
              WHERE at >= $1 AND ($2::text IS NULL OR camera_id = $2) ORDER BY camera_id, at",
        )
        .bind(since)
        .bind(camera)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("reading camera samples", e))?;
        let mut out: Vec<CameraSeries> = Vec::new();
        for (camera, at, fps, kbps, errors, analysed) in rows {
            if out.last().is_none_or(|s| s.camera != camera) {
                out.push(CameraSeries { camera, ..Default::default() });
            }
            let s = out.last_mut().expect("pushed above");
            s.at.push(at);
            s.fps.push(fps);
            s.kbps.push(kbps);
            s.decode_errors.push(errors);
            s.analysed_fps.push(analysed);
        }
        Ok(out)
    }
}
