//! Event clips without re-encoding (issue #22, first part): the ring keeps whole GOPs
//! within its time and byte bounds, and a clip remuxed from it decodes to exactly the
//! frames of the source it came from.

mod support;

use chrono::{DateTime, TimeZone, Utc};
use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use std::collections::BTreeSet;
use std::time::Duration;
use support::media;
use varta_ingest::clip::{write_mp4, ClipRing};

/// The compressed access units of `name` as the camera pipeline's parser hands them
/// on (`qtdemux ! h264parse`), with the parser's caps.
fn units_of(name: &str) -> (gst::Caps, Vec<gst::Buffer>) {
    gst::init().unwrap();
    let p = gst::parse::launch("filesrc name=src ! qtdemux ! h264parse ! appsink name=sink sync=false")
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    p.by_name("src").unwrap().set_property("location", media(name).to_string_lossy().as_ref());
    let sink = p.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let (mut caps, mut units) = (None, Vec::new());
    while let Ok(s) = sink.pull_sample() {
        caps = s.caps().map(|c| c.to_owned());
        units.push(s.buffer().unwrap().to_owned());
    }
    p.set_state(gst::State::Null).unwrap();
    (caps.expect("the file has video"), units)
}

/// Arrival time of a unit: a fixed start plus its presentation time, as a live
/// camera's units would arrive.
fn arrival(u: &gst::Buffer) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
        + chrono::Duration::nanoseconds(u.pts().unwrap().nseconds() as i64)
}

#[test]
fn the_ring_keeps_whole_gops_within_its_time_and_byte_bounds() {
    let (caps, units) = units_of("vtest.mp4");
    let keys: Vec<usize> =
        (0..units.len()).filter(|&i| !units[i].flags().contains(gst::BufferFlags::DELTA_UNIT)).collect();
    assert!(keys.len() >= 4, "vtest.mp4 has {} keyframes", keys.len());
    let mut ring = ClipRing::new(Duration::from_secs(5), usize::MAX);
    ring.set_caps(caps.clone());
    for u in &units {
        ring.push(u, arrival(u));
        let newest = arrival(u);
        // From the keyframe at or before "newest − 5 s" (or the first) up to the newest.
        let (first, held) = ring.since(newest - chrono::Duration::seconds(5)).unwrap();
        assert!(!held[0].flags().contains(gst::BufferFlags::DELTA_UNIT), "starts on a keyframe");
        let oldest = ring.since(DateTime::<Utc>::MIN_UTC).unwrap().0;
        assert!(first >= oldest);
        if newest - arrival(&units[0]) > chrono::Duration::seconds(12) {
            // Never much more than 5 s and one GOP back.
            let gop = chrono::Duration::milliseconds(2500);
            assert!(newest - oldest <= chrono::Duration::seconds(5) + gop * 2, "held {:?}", newest - oldest);
            assert!(newest - first >= chrono::Duration::seconds(5), "5 s of pre-roll available");
        }
    }
    // Over its byte budget, the ring keeps the newest GOP only.
    let mut small = ClipRing::new(Duration::from_secs(5), 1);
    small.set_caps(caps);
    for u in &units {
        small.push(u, arrival(u));
    }
    let (_, held) = small.since(DateTime::<Utc>::MIN_UTC).unwrap();
    assert_eq!(held.len(), units.len() - keys.last().unwrap(), "only the last GOP under a 1-byte budget");
}

#[test]
fn a_clip_remuxed_from_the_ring_decodes_to_the_source_frames() {
    let (caps, units) = units_of("vtest.mp4");
    let mut ring = ClipRing::new(Duration::from_secs(5), 64 << 20);
    ring.set_caps(caps.clone());
    // An "event" 20 s into the stream: what was held then from 5 s before it.
    let event = arrival(&units[0]) + chrono::Duration::seconds(20);
    let mut clip = None;
    for u in &units {
        ring.push(u, arrival(u));
        if clip.is_none() && arrival(u) >= event {
            clip = ring.since(event - chrono::Duration::seconds(5));
        }
    }
    let (start, held) = clip.expect("the file is longer than 20 s");
    let first = units.iter().position(|u| arrival(u) == start).unwrap();
    assert!(event - start >= chrono::Duration::seconds(5), "pre-roll from the keyframe before the event");
    let dir = std::env::temp_dir().join(format!("varta-clip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("event.mp4");
    let t = std::time::Instant::now();
    let f = write_mp4(&caps, &held, &path).unwrap();
    eprintln!("write_mp4: {} units, {:.1} s, {} bytes in {:?}", f.units, f.secs, f.bytes, t.elapsed());
    assert!(!dir.join("event.mp4.tmp").exists());
    assert_eq!(f.units, held.len());
    assert!(f.secs >= 5.0, "{f:?}");
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(f.bytes, on_disk.len() as u64);
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(&on_disk).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(f.sha256, sha);
    // Decoded, the clip's frames are the source's, pixel for pixel: the camera's own
    // bitstream, not a re-encoding.
    let cam = varta_core::CameraId::from("c");
    let t0 = Utc::now();
    let picks: Vec<usize> = vec![0, 1, held.len() / 2, held.len() - 1];
    let mut from_clip = Vec::new();
    let n = varta_ingest::file::decode_frames(&path, &cam, &picks.iter().copied().collect(), t0, |i, fr| {
        from_clip.push((i, fr))
    })
    .unwrap();
    assert_eq!(n, picks.len(), "every unit of the clip decodes");
    let mut from_source = Vec::new();
    varta_ingest::file::decode_frames(
        &media("vtest.mp4"),
        &cam,
        &picks.iter().map(|i| i + first).collect::<BTreeSet<_>>(),
        t0,
        |i, fr| from_source.push((i - first, fr)),
    )
    .unwrap();
    assert_eq!(from_clip.len(), from_source.len());
    for ((i, a), (j, b)) in from_clip.iter().zip(&from_source) {
        assert_eq!(i, j);
        let (varta_core::frame::Pixels::I420(a), varta_core::frame::Pixels::I420(b)) = (&a.pixels, &b.pixels) else {
            panic!("I420 frames")
        };
        assert!(a[..] == b[..], "clip frame {i} differs from source frame {}", i + first);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
