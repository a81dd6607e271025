//! Ingest against the real RTSP simulator (gst-rtsp-server) on loopback.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use varta_core::config::{Credentials, RtspTransport};
use varta_core::event::{CameraState, StoreMsg};
use varta_core::frame::FrameHub;
use varta_core::metrics::Registry;
use varta_ingest::{CameraSpec, Ingest, IngestSettings};
use varta_sim::{SimConfig, SimServer};

fn clip() -> PathBuf {
    let dir = std::env::var_os("VARTA_MEDIA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/media"));
    let p = dir.join("vtest.mp4");
    assert!(p.exists(), "{} is missing: run ./scripts/setup", p.display());
    p
}

fn settings(transport: RtspTransport) -> IngestSettings {
    IngestSettings {
        restart_delay: Duration::from_millis(300),
        stall_timeout: Duration::from_secs(10),
        transport,
        latency_ms: 100,
        target: (128, 96),
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn frames_arrive_over_tcp_and_udp_at_the_analysis_rate() {
    let sim =
        SimServer::start(&SimConfig { listen: "127.0.0.1:0".parse().unwrap(), cameras: 2, clip: clip() }).unwrap();
    let hub = FrameHub::new(100);
    let metrics = Arc::new(Registry::default());
    let (tx, mut rx) = mpsc::channel(1000);
    let mut ingest = Ingest::new(settings(RtspTransport::Tcp), hub.clone(), metrics.clone(), tx.clone()).unwrap();
    ingest.start(CameraSpec {
        id: "tcp".into(),
        url: sim.url(1),
        credentials: None,
        analysis_fps: 5.0,
        decode: Default::default(),
    });
    let mut udp = Ingest::new(settings(RtspTransport::Udp), hub.clone(), metrics.clone(), tx).unwrap();
    udp.start(CameraSpec {
        id: "udp".into(),
        url: sim.url(2),
        credentials: None,
        analysis_fps: 5.0,
        decode: Default::default(),
    });

    let (t, u) = (metrics.camera(&"tcp".into()), metrics.camera(&"udp".into()));
    wait_for("both cameras streaming", Duration::from_secs(20), || {
        t.state() == CameraState::Streaming && u.state() == CameraState::Streaming
    });
    let before = t.frames_sampled.get();
    let decoded_before = t.frames_decoded.get();
    std::thread::sleep(Duration::from_secs(3));
    let sampled = t.frames_sampled.get() - before;
    let decoded = t.frames_decoded.get() - decoded_before;
    // The clip is 10 fps: all of it is decoded, half of it sampled for analysis.
    assert!((22..=38).contains(&decoded), "decoded {decoded} in 3 s");
    assert!((11..=19).contains(&sampled), "sampled {sampled} in 3 s at 5 fps");
    assert!(u.frames_sampled.get() > 0);
    assert!(t.decoder().is_some());

    let f = hub.take(Duration::from_secs(1)).unwrap().frame;
    assert_eq!((f.width, f.height, f.rgb.len()), (128, 96, 128 * 96 * 3));
    assert_eq!((f.source_width, f.source_height), (768, 576));

    ingest.stop_all();
    udp.stop_all();
    assert_eq!(t.state(), CameraState::Stopped);
    let mut states = Vec::new();
    while let Ok(StoreMsg::Status(s)) = rx.try_recv() {
        if s.camera.as_str() == "tcp" {
            states.push(s.state);
        }
    }
    assert_eq!(states, [CameraState::Starting, CameraState::Streaming, CameraState::Stopped]);
    sim.stop();
}

#[test]
fn unreachable_camera_is_retried_and_its_password_never_shows() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let hub = FrameHub::new(2);
    let metrics = Arc::new(Registry::default());
    let (tx, _rx) = mpsc::channel(1000);
    let mut ingest = Ingest::new(settings(RtspTransport::Tcp), hub, metrics.clone(), tx).unwrap();
    ingest.start(CameraSpec {
        id: "dead".into(),
        url: format!("rtsp://127.0.0.1:{port}/cam/1"),
        credentials: Some(Credentials { username: "admin".into(), password: "hunter2".into() }),
        analysis_fps: 1.0,
        decode: Default::default(),
    });
    let s = metrics.camera(&"dead".into());
    wait_for("two restarts", Duration::from_secs(20), || s.restarts.get() >= 2);
    let err = s.last_error().unwrap();
    assert!(!err.contains("hunter2") && !err.contains("admin"), "{err}");
    assert_ne!(s.state(), CameraState::Streaming);
    ingest.stop_all();
}

#[test]
fn keyframes_policy_decodes_only_keyframes() {
    let sim =
        SimServer::start(&SimConfig { listen: "127.0.0.1:0".parse().unwrap(), cameras: 1, clip: clip() }).unwrap();
    let hub = FrameHub::new(10);
    let metrics = Arc::new(Registry::default());
    let (tx, _rx) = mpsc::channel(1000);
    let mut ingest = Ingest::new(settings(RtspTransport::Tcp), hub, metrics.clone(), tx).unwrap();
    ingest.start(CameraSpec {
        id: "k".into(),
        url: sim.url(1),
        credentials: None,
        analysis_fps: 5.0,
        decode: varta_core::config::DecodePolicy::Keyframes,
    });
    let s = metrics.camera(&"k".into());
    wait_for("streaming", Duration::from_secs(20), || s.state() == CameraState::Streaming);
    let (r0, d0) = (s.frames_received.get(), s.frames_decoded.get());
    std::thread::sleep(Duration::from_secs(6));
    let (received, decoded) = (s.frames_received.get() - r0, s.frames_decoded.get() - d0);
    // The clip has a keyframe every 20 frames (2 s at 10 fps): ~60 received, ~3 decoded.
    assert!(received >= 45, "received {received}");
    assert!((2..=5).contains(&decoded), "decoded {decoded} of {received}");
    ingest.stop_all();
}
