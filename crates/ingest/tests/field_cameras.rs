//! Camera behaviours met in the field that the ingest already handled when issue #19
//! surveyed them, kept green here against the simulator: parameter sets only in the
//! SDP or only in-band, a resolution change mid-stream, an audio stream before the
//! video, and digest authentication.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;
use support::*;
use varta_core::config::{Credentials, DecodePolicy};
use varta_core::event::{CameraState, RestartReason};
use varta_ingest::config::RtspTransport;
use varta_sim::{Fault, ParameterSets, SimConfig, SimServer};

fn sim_with(cfg: SimConfig) -> SimServer {
    SimServer::start(&cfg).unwrap()
}

fn base(clip: &str) -> SimConfig {
    SimConfig::new("127.0.0.1:0".parse().unwrap(), 1, media(clip))
}

/// The analysed pictures for `d`: sizes, how many, the lowest luma stddev (a decoded
/// picture of the street is above 20).
fn pictures_lowest(rig: &Rig, d: Duration) -> (BTreeSet<(u32, u32)>, usize, f64) {
    let (sizes, stddevs) = pictures(rig, d);
    (sizes, stddevs.len(), stddevs.iter().copied().fold(f64::MAX, f64::min))
}

fn restarts(rig: &Rig, id: &str) -> u64 {
    let s = rig.metrics.camera(&id.into());
    RestartReason::ALL.iter().map(|&r| s.restarts(r)).sum()
}

#[test]
fn parameter_sets_only_in_the_sdp_or_only_in_band_decode() {
    for (placed, transport) in
        [(ParameterSets::SdpOnly, RtspTransport::Tcp), (ParameterSets::InBandOnly, RtspTransport::Udp)]
    {
        let sim = sim_with(SimConfig { parameter_sets: placed, ..base("vtest.mp4") });
        let mut rig = Rig::new(settings(transport));
        rig.ingest.start(spec("ps", sim.url(1), DecodePolicy::Full));
        rig.wait_state("ps", CameraState::Streaming, Duration::from_secs(20));
        let (sizes, n, lowest) = pictures_lowest(&rig, Duration::from_secs(6));
        let h = rig.metrics.camera(&"ps".into()).health();
        eprintln!("{placed:?}: {n} pictures {sizes:?}, lowest luma stddev {lowest:.1}");
        rig.ingest.stop_all();
        assert_eq!(sizes.into_iter().collect::<Vec<_>>(), [(768, 576)], "{placed:?}");
        assert!(n >= 20 && lowest > 20.0, "{placed:?}: {n} pictures, lowest stddev {lowest}");
        assert!(h.problems.is_empty(), "{placed:?}: {h:?}");
        assert_eq!(restarts(&rig, "ps"), 0, "{placed:?}");
        sim.stop();
    }
}

#[test]
fn a_resolution_change_mid_stream_is_followed_without_a_restart() {
    let sim = sim_with(SimConfig { resize_clip: Some(media("vtest-360p.mp4")), ..base("vtest.mp4") });
    let mut rig = Rig::new(settings(RtspTransport::Tcp));
    rig.ingest.start(spec("rs", sim.url(1), DecodePolicy::Full));
    rig.wait_state("rs", CameraState::Streaming, Duration::from_secs(20));
    let (before, _, _) = pictures_lowest(&rig, Duration::from_secs(2));
    sim.inject(1, Fault::Resize(Duration::from_secs(8)));
    // The switch waits for a keyframe (2 s apart): 640×360 within 4 s.
    let (during, n, lowest) = pictures_lowest(&rig, Duration::from_secs(7));
    // And back at the end of the 8 s.
    let (after, _, _) = pictures_lowest(&rig, Duration::from_secs(6));
    let h = rig.metrics.camera(&"rs".into()).health();
    eprintln!("resolution change: {before:?} → {during:?} → {after:?}, lowest stddev {lowest:.1}");
    rig.ingest.stop_all();
    assert_eq!(before.into_iter().collect::<Vec<_>>(), [(768, 576)]);
    assert!(during.contains(&(640, 360)), "{during:?}");
    assert!(n >= 20 && lowest > 20.0, "{n} pictures, lowest stddev {lowest}");
    assert!(after.contains(&(768, 576)), "{after:?}");
    assert_eq!(restarts(&rig, "rs"), 0);
    assert!(h.problems.is_empty(), "{h:?}");
    sim.stop();
}

#[test]
fn an_audio_stream_before_the_video_is_declined_and_the_video_decoded() {
    for transport in [RtspTransport::Tcp, RtspTransport::Udp] {
        let sim = sim_with(SimConfig { audio_first: true, ..base("vtest.mp4") });
        let mut rig = Rig::new(settings(transport));
        rig.ingest.start(spec("av", sim.url(1), DecodePolicy::Full));
        rig.wait_state("av", CameraState::Streaming, Duration::from_secs(20));
        let (sizes, n, lowest) = pictures_lowest(&rig, Duration::from_secs(5));
        let s = rig.metrics.camera(&"av".into());
        rig.ingest.stop_all();
        assert_eq!(sizes.into_iter().collect::<Vec<_>>(), [(768, 576)], "{transport:?}");
        assert!(n >= 15 && lowest > 20.0, "{transport:?}: {n} pictures, lowest stddev {lowest}");
        assert_eq!(s.codec().as_deref(), Some("h264"));
        assert_eq!(restarts(&rig, "av"), 0, "{transport:?}: {:?}", rig.changes("av"));
        sim.stop();
    }
}

#[test]
fn digest_authentication_is_answered_and_a_wrong_password_named() {
    let sim = sim_with(SimConfig {
        auth: Some(("admin".into(), "p@ss:w/rd%".into())),
        digest: true,
        ..SimConfig::new("127.0.0.1:0".parse().unwrap(), 2, media("vtest.mp4"))
    });
    let mut rig = Rig::new(settings(RtspTransport::Tcp));
    let creds = |p: &str| Some(Credentials { username: "admin".into(), password: p.into() });
    rig.ingest.start(varta_ingest::CameraSpec {
        credentials: creds("p@ss:w/rd%"),
        ..spec("right", sim.url(1), DecodePolicy::Full)
    });
    rig.ingest.start(varta_ingest::CameraSpec {
        credentials: creds("wrong"),
        ..spec("wrong", sim.url(2), DecodePolicy::Full)
    });
    rig.wait_state("right", CameraState::Streaming, Duration::from_secs(20));
    let w = rig.metrics.camera(&"wrong".into());
    wait_for("the wrong password refused", Duration::from_secs(20), || w.restarts(RestartReason::Connect) >= 1);
    let err = w.last_error().unwrap_or_default();
    rig.ingest.stop_all();
    assert!(err.contains("401"), "{err}");
    assert!(!err.contains("wrong"), "{err}");
    assert_eq!(restarts(&rig, "right"), 0);
    sim.stop();
}

#[test]
fn b_frames_decode_under_every_decode_policy() {
    // Two B-frames between references; the RTP timestamps follow presentation order.
    let sim = sim_with(SimConfig { cameras: 3, ..base("vtest-bframes.mp4") });
    let mut rig = Rig::new(settings(RtspTransport::Tcp));
    let policies = [DecodePolicy::Full, DecodePolicy::Keyframes, DecodePolicy::Adaptive];
    for (n, p) in policies.iter().enumerate() {
        rig.ingest.start(spec(p.as_str(), sim.url(n + 1), *p));
    }
    for p in policies {
        rig.wait_state(p.as_str(), CameraState::Streaming, Duration::from_secs(20));
    }
    let (sizes, n, lowest) = pictures_lowest(&rig, Duration::from_secs(8));
    let stats: Vec<_> = policies.iter().map(|p| rig.metrics.camera(&p.as_str().into())).collect();
    let full = stats[0].health();
    eprintln!("B-frames: {n} pictures {sizes:?}, lowest stddev {lowest:.1}, full decoding {:?} fps", full.fps_measured);
    rig.ingest.stop_all();
    assert_eq!(sizes.into_iter().collect::<Vec<_>>(), [(768, 576)]);
    assert!(n >= 30 && lowest > 20.0, "{n} pictures, lowest stddev {lowest}");
    assert!(full.fps_measured.is_some_and(|f| (f - 10.0).abs() < 1.5), "{full:?}");
    for (p, s) in policies.iter().zip(&stats) {
        assert!(s.counters.frames_decoded.get() > 0, "{p:?}");
        assert_eq!(s.counters.decode_errors.get(), 0, "{p:?}");
        assert_eq!(restarts(&rig, p.as_str()), 0, "{p:?}: {:?}", s.last_error());
        assert!(s.health().problems.is_empty(), "{p:?}: {:?}", s.health());
    }
    sim.stop();
}
