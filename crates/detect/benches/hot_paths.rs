//! Criterion micro-benchmarks of detection's per-frame hot paths: output decoding
//! (CenterNet, YOLO), preprocessing (scale + colour conversion + layout) of 768x576
//! and 1080p I420 frames, and a tracker update with 50 objects.
//! `cargo bench -p varta-detect` (not in CI; bench/README.md has the figures).

use chrono::{Duration, Utc};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::path::Path;
use varta_core::frame::{Frame, Pixels};
use varta_core::CameraId;
use varta_detect::tracker::{Observation, Tracker, TrackerConfig};

/// A deterministic pseudo-random sequence in [0, 1).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

fn frame(w: u32, h: u32) -> Frame {
    let px: Vec<u8> = (0..Frame::i420_len(w, h)).map(|i| (i * 7 % 251) as u8).collect();
    Frame {
        camera: CameraId::from("bench"),
        pts_ns: 0,
        captured_at: Utc::now(),
        width: w,
        height: h,
        pixels: Pixels::I420(px.into()),
    }
}

fn decoding(c: &mut Criterion) {
    // CenterNet export: 100 rows of (x1, y1, x2, y2, score, class) sorted by score, as
    // the graph emits them; a third score above the threshold.
    let mut rows: Vec<[f32; 6]> = noise(100 * 6, 7)
        .chunks(6)
        .map(|r| {
            [r[0] * 500.0, r[1] * 500.0, r[2] * 500.0 + 10.0, r[3] * 500.0 + 10.0, r[4] * 0.6, (r[5] * 80.0).floor()]
        })
        .collect();
    rows.sort_by(|a, b| b[4].total_cmp(&a[4]));
    let rows = ndarray::Array2::from_shape_vec((100, 6), rows.concat()).expect("100 x 6");
    assert!(varta_detect::decode::centernet(rows.view(), 80, 0.4).len() > 10);
    c.bench_function("decode/centernet 100 rows", |b| {
        b.iter(|| varta_detect::decode::centernet(black_box(rows.view()), 80, 0.4))
    });
    // YOLO (Ultralytics, 640): 8400 anchors × (4 + 80), a few dozen above threshold.
    let anchors = 8400;
    let mut data = noise((4 + 80) * anchors, 11);
    for (i, v) in data.iter_mut().enumerate() {
        let row = i / anchors;
        if row < 4 {
            *v *= 640.0;
        } else {
            *v = if *v > 0.9995 { 0.8 } else { *v * 0.1 };
        }
    }
    let data = ndarray::Array2::from_shape_vec((4 + 80, anchors), data).expect("84 x 8400");
    c.bench_function("decode/yolo 8400 anchors x 80 classes", |b| {
        b.iter(|| varta_detect::decode::yolo(black_box(data.view()), 80, 0.4, 0.5))
    });
}

fn preprocessing(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/models.toml");
    let spec = varta_detect::manifest::load(&root, &varta_detect::config::DetectConfig::default().model)
        .expect("models/models.toml");
    let mut dst = varta_detect::preprocess::input_tensor(&spec, 1);
    for (w, h) in [(768, 576), (1920, 1080)] {
        let f = frame(w, h);
        c.bench_function(&format!("preprocess/{w}x{h} I420 -> {}x{} RGB", spec.width, spec.height), |b| {
            b.iter(|| {
                let image = varta_detect::preprocess::image_mut(black_box(&mut dst), 0, spec.layout);
                varta_detect::preprocess::fill(image, black_box(&f), &spec)
            })
        });
    }
}

fn tracking(c: &mut Criterion) {
    // 50 objects moving a few pixels per frame.
    let obs = |t: usize| -> Vec<Observation> {
        (0..50)
            .map(|i| {
                let (x, y) = ((i % 10) as f32 * 70.0 + t as f32 * 2.0, (i / 10) as f32 * 100.0);
                Observation { class: "person".into(), score: 0.8, bbox: [x, y, x + 40.0, y + 90.0] }
            })
            .collect()
    };
    let frames: Vec<Vec<Observation>> = (0..50).map(obs).collect();
    c.bench_function("tracker/update 50 objects", |b| {
        let mut tr = Tracker::new(TrackerConfig::default());
        let t0 = Utc::now();
        let mut i = 0usize;
        b.iter(|| {
            let at = t0 + Duration::milliseconds(500 * i as i64);
            let out = tr.update(at, black_box(&frames[i % frames.len()]), None);
            i += 1;
            out
        })
    });
}

criterion_group!(benches, decoding, preprocessing, tracking);
criterion_main!(benches);
