//! Run-time camera changes: only what changed is touched, and nothing leaks.

mod support;

use std::time::Duration;
use support::*;
use varta_core::config::DecodePolicy;
use varta_core::event::CameraState;
use varta_ingest::config::RtspTransport;
use varta_sim::Scene;

#[test]
fn apply_adds_changes_and_removes_cameras_without_touching_the_others() {
    let sim = sim(4, Scene::Active);
    let mut rig = Rig::new(settings(RtspTransport::Tcp));
    let keep = spec("keep", sim.url(1), DecodePolicy::Adaptive);
    let edit = spec("edit", sim.url(2), DecodePolicy::Adaptive);
    let gone = spec("gone", sim.url(3), DecodePolicy::Adaptive);
    let a = rig.ingest.apply(vec![keep.clone(), edit.clone(), gone.clone()]);
    assert_eq!(a.added.len(), 3);
    for id in ["keep", "edit", "gone"] {
        rig.wait_state(id, CameraState::Streaming, Duration::from_secs(20));
    }
    let k = rig.metrics.camera(&"keep".into());
    let keep_changes = rig.changes("keep").len();

    // Sample the unchanged camera's counter while the others change.
    let sampler = {
        let k = k.clone();
        std::thread::spawn(move || {
            let mut v = Vec::new();
            for _ in 0..40 {
                v.push(k.counters.frames_received.get());
                std::thread::sleep(Duration::from_millis(100));
            }
            v
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let edited = varta_ingest::CameraSpec { analysis_fps: 1.0, url: sim.url(4), ..edit };
    let added = spec("new", sim.url(4), DecodePolicy::Full);
    let a = rig.ingest.apply(vec![keep, edited, added]);
    assert_eq!(a.added, ["new".into()]);
    assert_eq!(a.removed, ["gone".into()]);
    assert_eq!(a.changed, ["edit".into()]);
    assert_eq!(a.unchanged, ["keep".into()]);
    assert!(rig.metrics.cameras().iter().all(|(id, _)| id.as_str() != "gone"), "removed camera's counters go");
    rig.wait_state("new", CameraState::Streaming, Duration::from_secs(20));
    rig.wait_state("edit", CameraState::Streaming, Duration::from_secs(20));

    let samples = sampler.join().unwrap();
    // 10 fps: every 100 ms sample should see the count rise; a restart would be a
    // run of equal samples of seconds (teardown, reconnect, the next keyframe up to
    // a 2 s GOP later). A loaded machine may pause a few samples; not a second.
    let longest_flat = samples.windows(2).fold((0, 0), |(cur, max), w| {
        let cur = if w[1] == w[0] { cur + 1 } else { 0 };
        (cur, max.max(cur))
    });
    assert!(longest_flat.1 <= 9, "unchanged camera's frames paused: {samples:?}");
    assert_eq!(rig.changes("keep").len(), keep_changes, "no transition recorded for the unchanged camera");
    assert_eq!(k.restarts_total(), 0);
    assert_eq!(rig.states("gone").last(), Some(&CameraState::Stopped));
    rig.ingest.stop_all();
}
