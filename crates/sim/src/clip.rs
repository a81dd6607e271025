//! A pre-encoded H.264 clip held in memory as access units.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::path::Path;
use std::time::Duration;
use varta_core::{err, Error, ErrorKind};

/// A video codec the simulator can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimCodec {
    /// H.264.
    H264,
    /// H.265.
    H265,
}

impl SimCodec {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SimCodec::H264 => "h264",
            SimCodec::H265 => "h265",
        }
    }
}

/// An H.264 or H.265 clip as byte-stream access units, parameter sets repeated
/// before every keyframe.
pub struct Clip {
    /// Codec of the access units.
    pub codec: SimCodec,
    /// Caps of the access units (`video/x-h264, stream-format=byte-stream, alignment=au`).
    pub caps: gst::Caps,
    /// Access units in decode order.
    pub frames: Vec<gst::Buffer>,
    /// Indices of keyframes in `frames`.
    pub keyframes: Vec<usize>,
    /// Time between frames.
    pub frame_duration: Duration,
}

impl Clip {
    /// Demuxes `path` (MP4/Matroska/… with H.264 or H.265 video; no decoding) into
    /// memory.
    pub fn load(path: &Path) -> Result<Clip, Error> {
        gst::init().map_err(|e| Error::wrap(ErrorKind::Internal, "GStreamer init", e))?;
        if !path.exists() {
            return Err(err!(NotFound, "clip {} does not exist (run ./scripts/setup)", path.display()));
        }
        match Clip::load_as(path, SimCodec::H264) {
            Err(e) if e.to_string().contains("no h264 video") => Clip::load_as(path, SimCodec::H265),
            r => r,
        }
    }

    fn load_as(path: &Path, codec: SimCodec) -> Result<Clip, Error> {
        let c = codec.as_str();
        let desc = format!(
            "filesrc name=src ! parsebin ! {c}parse config-interval=-1 \
             ! video/x-{c},stream-format=byte-stream,alignment=au ! appsink name=sink sync=false"
        );
        let desc = desc.as_str();
        let pipeline = gst::parse::launch(desc)
            .map_err(|e| Error::wrap(ErrorKind::Internal, "clip pipeline", e))?
            .downcast::<gst::Pipeline>()
            .expect("a launch line with elements is a pipeline");
        pipeline.by_name("src").unwrap().set_property("location", path.to_string_lossy().as_ref());
        let sink = pipeline.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
        pipeline.set_state(gst::State::Playing).map_err(|e| Error::wrap(ErrorKind::Internal, "clip pipeline", e))?;
        let mut frames = Vec::new();
        let mut keyframes = Vec::new();
        let mut caps = None;
        let mut last_pts = None;
        let mut duration = Duration::from_millis(100);
        let bus = pipeline.bus().expect("pipelines have a bus");
        let mut bus_err = None;
        loop {
            // Not `pull_sample`: after an error (a clip of the other codec) no EOS comes.
            let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) else {
                if sink.is_eos() {
                    break;
                }
                bus_err = bus.pop_filtered(&[gst::MessageType::Error]);
                if bus_err.is_some() {
                    break;
                }
                continue;
            };
            let Some(buf) = sample.buffer_owned() else { continue };
            if caps.is_none() {
                caps = sample.caps().map(|c| c.to_owned());
            }
            if !buf.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                keyframes.push(frames.len());
            }
            // Decode time where there is one: with B-frames the PTS jump around.
            let t = buf.dts().or(buf.pts());
            if let (Some(p), Some(prev)) = (t, last_pts) {
                if p > prev && frames.len() == 1 {
                    let d: gst::ClockTime = p - prev;
                    duration = Duration::from_nanos(d.nseconds());
                }
            }
            last_pts = t;
            frames.push(buf);
        }
        let bus_err = bus_err.or_else(|| bus.pop_filtered(&[gst::MessageType::Error]));
        let _ = pipeline.set_state(gst::State::Null);
        if let Some(msg) = bus_err {
            if let gst::MessageView::Error(e) = msg.view() {
                if frames.is_empty() {
                    // parsebin found video of another codec: not linkable to our parser.
                    return Err(err!(InvalidArgument, "clip {} has no {c} video ({})", path.display(), e.error()));
                }
                return Err(err!(InvalidArgument, "clip {}: {}", path.display(), e.error()));
            }
        }
        let caps = caps.ok_or_else(|| err!(InvalidArgument, "clip {} has no {c} video", path.display()))?;
        if keyframes.first() != Some(&0) {
            return Err(err!(InvalidArgument, "clip {} does not start with a keyframe", path.display()));
        }
        Ok(Clip { codec, caps, frames, keyframes, frame_duration: duration })
    }

    /// Frames per second of the clip.
    pub fn fps(&self) -> f64 {
        1.0 / self.frame_duration.as_secs_f64()
    }
}
