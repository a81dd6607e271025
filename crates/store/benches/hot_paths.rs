//! Criterion micro-benchmarks of the store's per-event hot paths: encoding event rows
//! for binary COPY, and appending a group to the event log (with its fdatasync).
//! `cargo bench -p varta-store` (not in CI; bench/README.md has the figures).

use chrono::Utc;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use varta_core::event::{EventPhase, EventRecord, StoreMsg};

fn events(n: usize) -> Vec<EventRecord> {
    let now = Utc::now();
    (0..n)
        .map(|i| EventRecord {
            id: uuid::Uuid::now_v7(),
            camera: format!("cam-{:03}", i % 145).as_str().into(),
            track_id: i as u64,
            class: "person".into(),
            score: 0.7,
            bbox: [10.0, 20.0, 70.0, 200.0],
            started_at: now,
            last_seen_at: now,
            ended_at: None,
            frames: 3,
            rule: "presence".into(),
            alert: false,
            zone: None,
            snapshot: Some(format!("{i}.jpg")),
            phase: EventPhase::Started,
            end_reason: None,
            run_id: Some(uuid::Uuid::now_v7()),
        })
        .collect()
}

fn copy_encoding(c: &mut Criterion) {
    let evs = events(5000);
    let mut g = c.benchmark_group("copy");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.bench_function("encode 5000 event rows", |b| {
        b.iter(|| varta_store::copy::encode_events(black_box(&evs), "node-1"))
    });
    g.finish();
}

fn spool_append(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("varta-spool-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (wal, _) = varta_store::wal::Wal::open(&dir, 1 << 40).expect("event log");
    let batch: Vec<StoreMsg> = events(500).into_iter().map(StoreMsg::Event).collect();
    let mut g = c.benchmark_group("wal");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.sample_size(20);
    g.bench_function("append 500 events (fdatasync)", |b| b.iter(|| wal.append(&[black_box(&batch)]).expect("append")));
    g.finish();
    drop(wal);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, copy_encoding, spool_append);
criterion_main!(benches);
