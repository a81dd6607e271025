//! Ingest against the simulator's faults: every one ends with the camera streaming
//! again, counted and recorded, and never a crash.

mod support;

use std::time::{Duration, Instant};
use support::*;
use varta_core::config::{Credentials, DecodePolicy};
use varta_core::event::{CameraState, RestartReason};
use varta_ingest::config::RtspTransport;
use varta_sim::{Fault, Scene, SimConfig, SimServer};

/// Waits until `camera` has left streaming and is streaming again; returns the time
/// from `since` to streaming again.
fn back_to_streaming(rig: &Rig, camera: &str, since: Instant, timeout: Duration) -> Duration {
    let s = rig.metrics.camera(&camera.into());
    wait_for(&format!("{camera} to notice the fault"), timeout, || !s.state().is_up());
    wait_for(&format!("{camera} streaming again"), timeout, || s.state().is_up());
    since.elapsed()
}

#[test]
fn dropped_connection_is_streaming_again_after_the_initial_backoff() {
    let sim = sim(1, Scene::Active);
    let mut rig = Rig::new(settings(RtspTransport::Tcp));
    rig.ingest.start(spec("d", sim.url(1), DecodePolicy::Full));
    rig.wait_state("d", CameraState::Streaming, Duration::from_secs(20));
    let t0 = Instant::now();
    let dropped = chrono::Utc::now();
    sim.inject(1, Fault::Drop);
    let took = back_to_streaming(&rig, "d", t0, Duration::from_secs(30));
    eprintln!("streaming again {took:?} after the drop");
    let s = rig.metrics.camera(&"d".into());
    assert!(s.restarts_total() >= 1);
    // The supervisor's own record: it noticed the drop, waited the initial backoff
    // (0.5 s plus up to 20% jitter) and reconnected. Its timestamps are its own, so
    // a loaded machine (a reconnect that fails once more, a late wake-up) cannot
    // make this wrong; only the upper bound allows for a late wake-up. The record
    // reaches the test's collector after the live state changes: wait for it.
    wait_for("the record of streaming again", Duration::from_secs(10), || {
        let c = rig.changes("d");
        c.last().is_some_and(|l| l.state == CameraState::Streaming && l.at > dropped)
    });
    let all = rig.changes("d");
    // From the streaming the drop ended: how the camera first came up is not what
    // this test is about (seen once: a first session that delivered nothing until
    // the connect timeout retried it; cause not found).
    let from =
        all.iter().rposition(|c| c.state == CameraState::Streaming && c.at <= dropped).expect("streaming before");
    let changes = &all[from..];
    let states: Vec<_> = changes.iter().map(|c| c.state).collect();
    assert_eq!(
        states[..4],
        [CameraState::Streaming, CameraState::BackingOff, CameraState::Starting, CameraState::Streaming],
        "{all:?}"
    );
    assert_eq!(states.last(), Some(&CameraState::Streaming), "{all:?}");
    let waited = (changes[2].at - changes[1].at).to_std().unwrap();
    assert!(
        waited >= Duration::from_millis(500) && waited <= Duration::from_millis(600 + 1000),
        "waited {waited:?} before reconnecting"
    );
    rig.ingest.stop_all();
}

#[test]
fn stalled_camera_is_detected_within_the_watchdog_time_and_restarted() {
    let sim = sim(1, Scene::Active);
    let mut rig = Rig::new(settings(RtspTransport::Tcp));
    rig.ingest.start(spec("st", sim.url(1), DecodePolicy::Adaptive));
    rig.wait_state("st", CameraState::Streaming, Duration::from_secs(20));
    let t0 = Instant::now();
    sim.inject(1, Fault::Stall(Duration::from_secs(6)));
    let injected = chrono::Utc::now();
    let s = rig.metrics.camera(&"st".into());
    wait_for("stall restart counted", Duration::from_secs(10), || s.restarts(RestartReason::Stall) >= 1);
    let stalled = rig.changes("st").into_iter().find(|c| c.state == CameraState::Stalled).unwrap();
    let took = (stalled.at - injected).to_std().unwrap();
    // Watchdog 3 s, checked every 250 ms; the upper bound allows for a late wake-up
    // of the supervisor thread on a loaded machine, and stays below the 6 s stall
    // (after which the camera sends again and there would be nothing to notice).
    assert!(took >= Duration::from_millis(2500) && took <= Duration::from_millis(5500), "stall noticed after {took:?}");
    assert!(stalled.reason.starts_with("no data for"), "{stalled:?}");
    // Once the camera sends again, it streams again.
    back_to_streaming(&rig, "st", t0, Duration::from_secs(20));
    rig.ingest.stop_all();
}

#[test]
fn refused_connections_and_a_server_restart_bring_every_camera_back() {
    let sim = sim(3, Scene::Active);
    let mut rig = Rig::new(settings(RtspTransport::Tcp));
    for n in 1..=3 {
        rig.ingest.start(spec(&format!("c{n}"), sim.url(n), DecodePolicy::Adaptive));
    }
    for n in 1..=3 {
        rig.wait_state(&format!("c{n}"), CameraState::Streaming, Duration::from_secs(20));
    }
    // Camera 1 refuses connections (404) for 4 s.
    let t0 = Instant::now();
    sim.inject(1, Fault::Refuse(Duration::from_secs(4)));
    let took = back_to_streaming(&rig, "c1", t0, Duration::from_secs(20));
    assert!(took >= Duration::from_secs(4), "not before the camera accepts again: {took:?}");
    let c1 = rig.metrics.camera(&"c1".into());
    assert!(c1.restarts(RestartReason::Connect) >= 1, "refused attempts count as connect failures");

    // The whole server goes away for 2 s.
    let restarts: Vec<u64> =
        (1..=3).map(|n| rig.metrics.camera(&format!("c{n}").as_str().into()).restarts_total()).collect();
    sim.restart(Duration::from_secs(2)).unwrap();
    for n in 1..=3 {
        let s = rig.metrics.camera(&format!("c{n}").as_str().into());
        wait_for("restart noticed", Duration::from_secs(10), || s.restarts_total() > restarts[n - 1]);
        rig.wait_state(&format!("c{n}"), CameraState::Streaming, Duration::from_secs(20));
    }
    rig.ingest.stop_all();
}

#[test]
fn garbage_bytes_are_counted_and_the_camera_recovers() {
    let sim = sim(1, Scene::Active);
    let mut rig = Rig::new(settings(RtspTransport::Tcp));
    rig.ingest.start(spec("g", sim.url(1), DecodePolicy::Full));
    rig.wait_state("g", CameraState::Streaming, Duration::from_secs(20));
    let s = rig.metrics.camera(&"g".into());
    let (errors, restarts) = (s.counters.decode_errors.get(), s.restarts_total());
    sim.inject(1, Fault::Garbage(Duration::from_secs(5)));
    wait_for("decode errors counted", Duration::from_secs(10), || s.counters.decode_errors.get() > errors);
    wait_for("a restart", Duration::from_secs(15), || s.restarts_total() > restarts);
    rig.wait_state("g", CameraState::Streaming, Duration::from_secs(20));
    let before = s.counters.frames_decoded.get();
    wait_for("decoding again", Duration::from_secs(20), || s.counters.frames_decoded.get() > before + 10);
    rig.ingest.stop_all();
}

#[test]
fn credentials_open_a_protected_camera_and_never_reach_the_logs() {
    capture_logs();
    let sim = SimServer::start(&SimConfig {
        auth: Some(("viewer".into(), "s3cr3t-Pa55".into())),
        ..SimConfig::new("127.0.0.1:0".parse().unwrap(), 1, media("vtest.mp4"))
    })
    .unwrap();
    let mut rig = Rig::new(settings(RtspTransport::Tcp));
    rig.ingest.start(varta_ingest::CameraSpec {
        credentials: Some(Credentials { username: "viewer".into(), password: "s3cr3t-Pa55".into() }),
        ..spec("auth-ok", sim.url(1), DecodePolicy::Adaptive)
    });
    rig.ingest.start(varta_ingest::CameraSpec {
        credentials: Some(Credentials { username: "viewer".into(), password: "wr0ng-Pa55".into() }),
        ..spec("auth-bad", sim.url(1), DecodePolicy::Adaptive)
    });
    rig.ingest.start(spec("auth-none", sim.url(1), DecodePolicy::Adaptive));
    rig.wait_state("auth-ok", CameraState::Streaming, Duration::from_secs(20));
    let bad = rig.metrics.camera(&"auth-bad".into());
    wait_for("refused twice", Duration::from_secs(20), || bad.restarts(RestartReason::Connect) >= 2);
    let none = rig.metrics.camera(&"auth-none".into());
    wait_for("refused twice", Duration::from_secs(20), || none.restarts(RestartReason::Connect) >= 2);
    rig.ingest.stop_all();
    let logs = captured_logs();
    assert!(logs.contains("auth-bad"), "the failing camera is logged");
    for secret in ["s3cr3t-Pa55", "wr0ng-Pa55"] {
        assert!(!logs.contains(secret), "a password is in the logs");
    }
    for c in rig.changes("auth-bad") {
        assert!(!c.reason.contains("wr0ng"), "{c:?}");
    }
}
