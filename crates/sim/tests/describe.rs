//! What the simulator's field behaviours look like on the wire: the SDP and the
//! authentication challenge a client gets, read with a plain TCP client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;
use varta_sim::{ParameterSets, SimConfig, SimServer};

fn media(name: &str) -> PathBuf {
    let dir = std::env::var_os("VARTA_MEDIA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/media"));
    let p = dir.join(name);
    assert!(p.exists(), "{} is missing: run ./scripts/setup", p.display());
    p
}

/// Sends one DESCRIBE for camera 1 and returns the whole reply (headers and SDP).
fn describe(sim: &SimServer) -> String {
    let mut s = TcpStream::connect(sim.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!("DESCRIBE {} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n", sim.url(1));
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Headers, then Content-Length bytes of SDP.
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed: {}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            if body.len() >= len {
                return text;
            }
        }
    }
}

fn sim(cfg: SimConfig) -> SimServer {
    SimServer::start(&cfg).unwrap()
}

fn base(clip: &str) -> SimConfig {
    SimConfig::new("127.0.0.1:0".parse().unwrap(), 1, media(clip))
}

/// The value of `sprop-parameter-sets` in the SDP's fmtp line, if any.
fn sprop(reply: &str) -> Option<String> {
    let fmtp = reply.lines().find(|l| l.starts_with("a=fmtp:96"))?;
    let v = fmtp.split("sprop-parameter-sets=").nth(1)?;
    Some(v.split(';').next().unwrap_or("").trim().to_owned())
}

#[test]
fn the_sdp_carries_what_each_camera_variant_announces() {
    let plain = sim(base("vtest.mp4"));
    let normal = sprop(&describe(&plain)).expect("parameter sets in the SDP");
    plain.stop();
    assert!(normal.contains(','), "SPS and PPS: {normal}");

    let s = sim(SimConfig { parameter_sets: ParameterSets::SdpOnly, ..base("vtest.mp4") });
    assert_eq!(sprop(&describe(&s)).as_deref(), Some(normal.as_str()), "the clip's own, from the SDP only");
    s.stop();

    let s = sim(SimConfig { parameter_sets: ParameterSets::InBandOnly, ..base("vtest.mp4") });
    let r = describe(&s);
    assert!(sprop(&r).is_none_or(|v| v.is_empty()), "no parameter sets in the SDP: {r}");
    s.stop();

    let s = sim(SimConfig { announce: Some((1920, 1080, 30)), ..base("vtest-360p.mp4") });
    let stale = sprop(&describe(&s)).unwrap();
    s.stop();
    assert_ne!(stale, normal);
    // Base64 of a NAL header 0x67 (an SPS) starts "Z".
    assert!(stale.starts_with('Z'), "an SPS first: {stale}");

    let s = sim(SimConfig { audio_first: true, ..base("vtest.mp4") });
    let r = describe(&s);
    s.stop();
    let media: Vec<&str> = r.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(media.len(), 2, "{r}");
    assert!(media[0].starts_with("m=audio") && media[1].starts_with("m=video"), "{media:?}");
}

#[test]
fn digest_cameras_challenge_with_digest() {
    let s = sim(SimConfig { auth: Some(("admin".into(), "secret".into())), digest: true, ..base("vtest.mp4") });
    let r = describe(&s);
    s.stop();
    assert!(r.starts_with("RTSP/1.0 401"), "{r}");
    assert!(r.contains("WWW-Authenticate: Digest"), "{r}");
    assert!(!r.contains("Basic"), "{r}");
}

#[test]
fn the_b_frame_clip_reorders() {
    let clip = varta_sim::Clip::load(&media("vtest-bframes.mp4")).unwrap();
    let reordered = clip.frames.iter().filter(|b| matches!((b.pts(), b.dts()), (Some(p), Some(d)) if p > d)).count();
    assert!(reordered > clip.frames.len() / 4, "{reordered} of {} units shown after decoding", clip.frames.len());
    assert!((clip.fps() - 10.0).abs() < 0.1, "frame rate from decode times: {}", clip.fps());
}
