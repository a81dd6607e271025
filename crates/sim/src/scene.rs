//! Still scenes encoded once at start-up: an idle scene (the clip's background, with
//! sensor noise, as a real camera shows an empty street) and a dark one (a covered
//! lens or dead illuminator).
//!
//! The background is the per-pixel median of pictures spread over the whole clip:
//! people walking through are in any one place for a minority of the pictures, so
//! the median is the street without them. (The clip's first picture, used before,
//! has people standing in it, which a detector rightly keeps "active".)
//!
//! They are encoded the way a typical IP camera encodes (constant quality, so a still
//! picture costs few bytes per delta frame, its noise, and motion costs many), with the clip's
//! keyframe interval, so the simulator can switch between them and the clip at any
//! keyframe.

use crate::clip::Clip;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::path::Path;
use varta_core::{err, Error, ErrorKind};

/// A scene as access units, starting with a keyframe.
pub struct Track {
    /// Access units in decode order.
    pub frames: Vec<gst::Buffer>,
    /// `is_key[i]`: whether `frames[i]` is a keyframe.
    pub is_key: Vec<bool>,
}

impl Track {
    /// The clip itself.
    pub fn from_clip(clip: &Clip) -> Track {
        let mut is_key = vec![false; clip.frames.len()];
        for &k in &clip.keyframes {
            is_key[k] = true;
        }
        Track { frames: clip.frames.clone(), is_key }
    }

    /// The same H.264 access units without their parameter sets (SPS, PPS), and those
    /// of the first keyframe as `sprop-parameter-sets` (base64, comma separated): a
    /// camera that sends them only in its SDP.
    pub fn without_parameter_sets(&self) -> (Track, String) {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut sets: Vec<String> = Vec::new();
        let frames = self
            .frames
            .iter()
            .map(|buf| {
                let map = buf.map_readable().expect("clip units are readable");
                let mut out = Vec::with_capacity(map.len());
                for nal in nal_units(map.as_slice()) {
                    match nal.first().map(|h| h & 0x1f) {
                        Some(7 | 8) => {
                            if sets.len() < 2 {
                                sets.push(b64.encode(nal));
                            }
                        }
                        _ => {
                            out.extend_from_slice(&[0, 0, 0, 1]);
                            out.extend_from_slice(nal);
                        }
                    }
                }
                let mut stripped = gst::Buffer::from_mut_slice(out);
                stripped.get_mut().expect("new buffer").set_flags(buf.flags());
                stripped
            })
            .collect();
        (Track { frames, is_key: self.is_key.clone() }, sets.join(","))
    }

    /// The first keyframe at or after `pos` (wrapping).
    pub fn keyframe_from(&self, pos: usize) -> usize {
        let n = self.frames.len();
        (0..n).map(|i| (pos + i) % n).find(|&i| self.is_key[i]).unwrap_or(0)
    }
}

/// What a still scene shows.
#[derive(Clone, Copy, Debug)]
pub enum Still {
    /// The clip's background (moving people removed) with faint sensor noise and an
    /// on-screen clock, as a real camera shows an empty street.
    Idle,
    /// A black picture with faint noise.
    Dark,
    /// The clip's background, exactly the same in every frame: an encoder stuck on
    /// one picture, still sending keyframes at its interval.
    Frozen,
}

/// Encodes `gops` keyframe intervals of a still scene for `clip` (H.264 clips only),
/// a keyframe every `gop` frames (`None`: the clip's own interval).
pub fn encode_still(
    clip_path: &Path,
    clip: &Clip,
    still: Still,
    gop: Option<usize>,
    gops: usize,
) -> Result<Track, Error> {
    let (w, h, mut picture) = match still {
        Still::Idle | Still::Frozen => background(clip_path, (clip.frames.len() / 31).max(1))?,
        Still::Dark => pictures(clip_path, 1, 1)?.swap_remove(0),
    };
    if let Still::Dark = still {
        let (y, _) = picture.split_at_mut(w * h);
        y.fill(16);
        picture[w * h..].fill(128);
    }
    let gop = gop.unwrap_or_else(|| clip.keyframes.get(1).copied().unwrap_or(clip.frames.len())).max(1);
    let fps_milli = (clip.fps() * 1000.0).round() as i32;
    let desc = format!(
        "appsrc name=src format=time caps=video/x-raw,format=I420,width={w},height={h},framerate={fps_milli}/1000 \
         ! x264enc tune=zerolatency speed-preset=veryfast pass=quant quantizer=26 key-int-max={gop} \
         ! video/x-h264,profile=high ! h264parse config-interval=-1 \
         ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false"
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| Error::wrap(ErrorKind::Unavailable, "still scene encoder (x264enc, plugins-ugly)", e))?
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
    let src = pipeline.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
    let sink = pipeline.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).map_err(|e| Error::wrap(ErrorKind::Internal, "still encoder", e))?;
    let mut rng = 0x2545_f491_4f6c_dd1d_u64 ^ (w as u64) << 20;
    let amplitude = match still {
        Still::Idle => 2,
        Still::Dark => 1,
        Still::Frozen => 0,
    };
    for i in 0..gop * gops {
        let mut frame = picture.clone();
        // An on-screen clock, as real cameras burn in: eight 24×24 cells showing the
        // seconds of the scene in binary. Cheap to encode (one small region changes once
        // a second), and no two pictures a second or more apart are alike, as they are
        // on a frozen camera. Sensor noise alone does not survive the encoder.
        if let Still::Idle = still {
            let second = (i as f64 * clip.frame_duration.as_secs_f64()) as usize;
            for bit in 0..8 {
                let level = if second >> bit & 1 == 1 { 235 } else { 16 };
                for y in 16..40 {
                    let x0 = 16 + bit * 32;
                    frame[y * w + x0..y * w + x0 + 24].fill(level);
                }
            }
        }
        for v in frame[..w * h].iter_mut().filter(|_| amplitude > 0) {
            // xorshift64: cheap noise, the same every run.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let n = (rng % (2 * amplitude + 1)) as i16 - amplitude as i16;
            *v = (*v as i16 + n).clamp(0, 255) as u8;
        }
        let mut buf = gst::Buffer::from_mut_slice(frame);
        let d = clip.frame_duration.as_nanos() as u64;
        buf.get_mut().unwrap().set_pts(gst::ClockTime::from_nseconds(i as u64 * d));
        src.push_buffer(buf).map_err(|e| err!(Internal, "still encoder: {e:?}"))?;
    }
    let _ = src.end_of_stream();
    let mut frames = Vec::new();
    let mut is_key = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        if let Some(b) = sample.buffer_owned() {
            is_key.push(!b.flags().contains(gst::BufferFlags::DELTA_UNIT));
            frames.push(b);
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    if is_key.first() != Some(&true) {
        return Err(err!(Internal, "still scene encoding produced no keyframe"));
    }
    Ok(Track { frames, is_key })
}

/// The per-pixel median of every `every`-th picture of the clip, as I420.
fn background(path: &Path, every: usize) -> Result<(usize, usize, Vec<u8>), Error> {
    let picked = pictures(path, every, usize::MAX)?;
    let (w, h) = (picked[0].0, picked[0].1);
    let mut out = vec![0u8; picked[0].2.len()];
    let mut vals = Vec::with_capacity(picked.len());
    for (i, o) in out.iter_mut().enumerate() {
        vals.clear();
        vals.extend(picked.iter().map(|p| p.2[i]));
        let mid = vals.len() / 2;
        *o = *vals.select_nth_unstable(mid).1;
    }
    Ok((w, h, out))
}

/// Every `every`-th decoded picture of the clip (at most `max`) as I420 (width,
/// height, planes).
fn pictures(path: &Path, every: usize, max: usize) -> Result<Vec<(usize, usize, Vec<u8>)>, Error> {
    let desc = "filesrc name=src ! decodebin ! videoconvert ! video/x-raw,format=I420 \
                ! appsink name=sink sync=false";
    let pipeline = gst::parse::launch(desc)
        .map_err(|e| Error::wrap(ErrorKind::Internal, "clip pictures", e))?
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
    pipeline.by_name("src").unwrap().set_property("location", path.to_string_lossy().as_ref());
    let sink = pipeline.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).map_err(|e| Error::wrap(ErrorKind::Internal, "clip pictures", e))?;
    let mut out = Vec::new();
    let mut n = 0;
    while out.len() < max {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(10)) else { break };
        n += 1;
        if (n - 1) % every.max(1) != 0 {
            continue;
        }
        let caps = sample.caps().ok_or_else(|| err!(Internal, "picture without caps"))?;
        let s = caps.structure(0).ok_or_else(|| err!(Internal, "picture without caps"))?;
        let (w, h) = (s.get::<i32>("width").unwrap_or(0) as usize, s.get::<i32>("height").unwrap_or(0) as usize);
        let buf = sample.buffer().ok_or_else(|| err!(Internal, "picture without data"))?;
        let map = buf.map_readable().map_err(|_| err!(Internal, "picture unreadable"))?;
        // I420 with even sizes has no padding between planes when width is a multiple of 4.
        let size = w * h * 3 / 2;
        if w == 0 || h == 0 || map.len() < size || w % 4 != 0 || h % 2 != 0 {
            return Err(err!(Internal, "picture of unexpected size {w}x{h}"));
        }
        out.push((w, h, map.as_slice()[..size].to_vec()));
    }
    let _ = pipeline.set_state(gst::State::Null);
    if out.is_empty() {
        return Err(err!(Internal, "cannot decode the clip's pictures"));
    }
    Ok(out)
}

/// The parameter sets (SPS and PPS) of an H.264 stream of `width`×`height` at `fps`
/// frames per second, as an SDP's `sprop-parameter-sets` carries them (base64, comma
/// separated): encoded from one test picture with x264enc, for a camera whose stream
/// description lies (settings changed, SDP not).
pub fn sprop_parameter_sets(width: u32, height: u32, fps: u32) -> Result<String, Error> {
    use base64::Engine as _;
    let desc = format!(
        "videotestsrc num-buffers=1 ! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast ! h264parse config-interval=-1 \
         ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false"
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| Error::wrap(ErrorKind::Unavailable, "parameter set encoder (x264enc, plugins-ugly)", e))?
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
    let sink = pipeline.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| Error::wrap(ErrorKind::Internal, "parameter set encoder", e))?;
    let sample = sink.try_pull_sample(gst::ClockTime::from_seconds(10));
    let _ = pipeline.set_state(gst::State::Null);
    let buf =
        sample.as_ref().and_then(|s| s.buffer()).ok_or_else(|| err!(Internal, "parameter set encoder gave nothing"))?;
    let map = buf.map_readable().map_err(|_| err!(Internal, "unreadable access unit"))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let sets: Vec<String> = nal_units(map.as_slice())
        .filter(|n| matches!(n.first().map(|h| h & 0x1f), Some(7 | 8)))
        .map(|n| b64.encode(n))
        .collect();
    if sets.len() < 2 {
        return Err(err!(Internal, "no SPS and PPS in the encoded access unit"));
    }
    Ok(sets.join(","))
}

/// The NAL units of an Annex B byte stream, without their start codes.
fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| {
            // The next start code, with its fourth leading zero if it has one.
            let e = s - 3;
            if e > 0 && data[e - 1] == 0 {
                e - 1
            } else {
                e
            }
        })
        .chain([data.len()])
        .collect();
    starts.into_iter().zip(ends).map(move |(s, e)| &data[s..e])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nal_units_are_split_at_three_and_four_byte_start_codes() {
        let stream = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5];
        let units: Vec<&[u8]> = nal_units(&stream).collect();
        assert_eq!(units, [&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4, 5]]);
    }
}
