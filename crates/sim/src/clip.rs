//! A pre-encoded H.264 clip held in memory as access units.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::path::Path;
use std::time::Duration;
use varta_core::{err, Error, ErrorKind};

/// An H.264 clip as byte-stream access units, SPS/PPS repeated before every IDR.
pub struct Clip {
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
    /// Demuxes `path` (MP4/Matroska/… with H.264 video; no decoding) into memory.
    pub fn load(path: &Path) -> Result<Clip, Error> {
        gst::init().map_err(|e| Error::wrap(ErrorKind::Internal, "GStreamer init", e))?;
        if !path.exists() {
            return Err(err!(NotFound, "clip {} does not exist (run ./scripts/setup)", path.display()));
        }
        let desc = "filesrc name=src ! parsebin ! h264parse config-interval=-1 \
                    ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false";
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
        while let Ok(sample) = sink.pull_sample() {
            let Some(buf) = sample.buffer_owned() else { continue };
            if caps.is_none() {
                caps = sample.caps().map(|c| c.to_owned());
            }
            if !buf.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                keyframes.push(frames.len());
            }
            if let (Some(p), Some(prev)) = (buf.pts(), last_pts) {
                if p > prev && frames.len() == 1 {
                    let d: gst::ClockTime = p - prev;
                    duration = Duration::from_nanos(d.nseconds());
                }
            }
            last_pts = buf.pts();
            frames.push(buf);
        }
        let bus_err = pipeline.bus().and_then(|b| b.pop_filtered(&[gst::MessageType::Error]));
        let _ = pipeline.set_state(gst::State::Null);
        if let Some(msg) = bus_err {
            if let gst::MessageView::Error(e) = msg.view() {
                return Err(err!(InvalidArgument, "clip {}: {}", path.display(), e.error()));
            }
        }
        let caps = caps.ok_or_else(|| err!(InvalidArgument, "clip {} has no H.264 video", path.display()))?;
        if keyframes.first() != Some(&0) {
            return Err(err!(InvalidArgument, "clip {} does not start with a keyframe", path.display()));
        }
        Ok(Clip { caps, frames, keyframes, frame_duration: duration })
    }

    /// Frames per second of the clip.
    pub fn fps(&self) -> f64 {
        1.0 / self.frame_duration.as_secs_f64()
    }
}
