//! What the benchmark harness (`crates/bench`) keeps and reads: `bench_runs`, the
//! commit times of a run's events, and the fixtures of the store and alert loads.

use crate::{db_error, Store};
use chrono::{DateTime, Utc};
use sqlx::Row;
use varta_core::Error;

impl Store {
    /// Keeps one run in `bench_runs` (the admin console's Nodes view lists them):
    /// `kind` is `run` or `capacity`, `params` its settings, `results` its report
    /// (JSON, as `varta_bench::report` defines it), `node` the host it ran on.
    pub async fn insert_bench_run(
        &self,
        kind: &str,
        started_at: DateTime<Utc>,
        node: &str,
        params: &serde_json::Value,
        results: &serde_json::Value,
        version: &str,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO bench_runs (started_at, finished_at, node, kind, params, results, version)
             VALUES ($1, now(), $2, $3, $4, $5, $6)",
        )
        .bind(started_at)
        .bind(node)
        .bind(kind)
        .bind(params)
        .bind(results)
        .bind(version)
        .execute(self.pool())
        .await
        .map_err(|e| db_error("keeping a benchmark run", e))?;
        Ok(())
    }

    /// Benchmark runs, newest first, at most `limit`: objects with `id`, `started_at`,
    /// `finished_at`, `node`, `kind`, `params`, `results`, `version`.
    pub async fn bench_runs(&self, limit: i64) -> Result<Vec<serde_json::Value>, Error> {
        let rows = sqlx::query(
            "SELECT json_build_object('id', id, 'started_at', started_at, 'finished_at', finished_at, 'node', node,
                    'kind', kind, 'params', params, 'results', results, 'version', version)
               FROM bench_runs ORDER BY started_at DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(|e| db_error("listing benchmark runs", e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Events of `node` that started in `[from, to)`: (id, started_at = capture time
    /// of the first frame, written_at = commit time).
    /// Events `node` started in [`from`, `to`): those of `classes`, and all.
    pub async fn event_class_counts(
        &self,
        node: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        classes: &[String],
    ) -> Result<(u64, u64), Error> {
        let (some, all): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE class = ANY($4)), count(*) FROM events
              WHERE node = $1 AND started_at >= $2 AND started_at < $3",
        )
        .bind(node)
        .bind(from)
        .bind(to)
        .bind(classes)
        .fetch_one(self.pool())
        .await
        .map_err(|e| crate::db_error("counting events by class", e))?;
        Ok((some as u64, all as u64))
    }

    pub async fn event_commit_times(
        &self,
        node: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>, DateTime<Utc>)>, Error> {
        sqlx::query_as(
            "SELECT id::text, started_at, written_at FROM events WHERE node = $1 AND started_at >= $2 AND started_at < $3",
        )
        .bind(node)
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await
        .map_err(|e| db_error("reading event commit times", e))
    }

    /// The site `load` and cameras `cameras` on it, if missing: what `varta store-load`'s
    /// synthetic events refer to.
    pub async fn ensure_load_cameras(&self, cameras: &[String]) -> Result<(), Error> {
        sqlx::query("INSERT INTO sites (id, name) VALUES ('load', 'Load test') ON CONFLICT DO NOTHING")
            .execute(self.pool())
            .await
            .map_err(|e| db_error("load site", e))?;
        sqlx::query(
            "INSERT INTO cameras (id, site_id, name, url, analysis_fps, classes, min_score, enabled)
             SELECT c, 'load', c, 'rtsp://127.0.0.1/' || c, 2, '{person}', 0.5, true FROM unnest($1::text[]) c
             ON CONFLICT DO NOTHING",
        )
        .bind(cameras)
        .execute(self.pool())
        .await
        .map_err(|e| db_error("load cameras", e))?;
        Ok(())
    }

    /// Commits one alerting event `id` on `camera` directly (node `alert-bench`, rule
    /// `bench`), today's partition made first: the load of `varta alert-bench`, which
    /// measures the path from commit to SSE clients.
    pub async fn insert_bench_alert(&self, id: uuid::Uuid, camera: &str) -> Result<(), Error> {
        sqlx::query("SELECT varta_event_partition(current_date)")
            .execute(self.pool())
            .await
            .map_err(|e| db_error("event partition", e))?;
        sqlx::query(
            "INSERT INTO events (id, camera_id, track_id, class, score, bbox, started_at, last_seen_at, frames, node,
                                 rule, alert)
             VALUES ($1, $2, 1, 'person', 0.9, '{1,2,3,4}', now(), now(), 1, 'alert-bench', 'bench', true)",
        )
        .bind(id)
        .bind(camera)
        .execute(self.pool())
        .await
        .map_err(|e| db_error("bench alert", e))?;
        Ok(())
    }
}
