//! Decoding a video file into analysis frames, as the camera pipeline would hand
//! them over (I420 at the file's own size, sampled at an analysis rate), for
//! `varta eval` and benchmarks: the same frames, without the network and as fast as
//! the machine decodes.

use crate::pipeline::pack_i420;
use chrono::{DateTime, Utc};
use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use std::path::Path;
use varta_core::frame::{Frame, Pixels};
use varta_core::{CameraId, Error, ErrorKind};

/// Decodes `path` and calls `each` with the frames the service's [`Sampler`](crate::sampler::Sampler)
/// takes at `fps` on the file's timeline; a frame's `captured_at` is `start` plus its timestamp, so a
/// file always gives the same frames and times. Returns the number of frames given.
pub fn decode_file(
    path: &Path,
    camera: &CameraId,
    fps: f64,
    start: DateTime<Utc>,
    mut each: impl FnMut(Frame),
) -> Result<usize, Error> {
    let sampler = crate::sampler::Sampler::new(fps);
    decode_selected(
        path,
        camera,
        start,
        |_, pts| if sampler.take(pts) { Selected::Take } else { Selected::Skip },
        |_, f| each(f),
    )
}

/// Decodes `path` and calls `each` with the frames whose 0-based decode-order index
/// is in `indices` (the numbering of GStreamer's `multifilesink` and of ffmpeg's
/// `select=eq(n,…)`), with that index; stops after the last one asked for. Frame
/// times as [`decode_file`]. Returns the number of frames given: fewer than asked when
/// the file is shorter.
pub fn decode_frames(
    path: &Path,
    camera: &CameraId,
    indices: &std::collections::BTreeSet<usize>,
    start: DateTime<Utc>,
    each: impl FnMut(usize, Frame),
) -> Result<usize, Error> {
    let last = indices.iter().next_back().copied();
    decode_selected(
        path,
        camera,
        start,
        |i, _| match last {
            Some(l) if i > l => Selected::Stop,
            _ if indices.contains(&i) => Selected::Take,
            _ => Selected::Skip,
        },
        each,
    )
}

/// What [`decode_selected`] does with a decoded frame.
enum Selected {
    Take,
    Skip,
    Stop,
}

/// The decoding loop: `select` sees each decoded frame's index and timestamp
/// (nanoseconds) and says whether `each` gets it.
fn decode_selected(
    path: &Path,
    camera: &CameraId,
    start: DateTime<Utc>,
    mut select: impl FnMut(usize, u64) -> Selected,
    mut each: impl FnMut(usize, Frame),
) -> Result<usize, Error> {
    gst::init().map_err(|e| Error::wrap(ErrorKind::Internal, "GStreamer init", e))?;
    if !path.exists() {
        return Err(varta_core::err!(NotFound, "{} does not exist (run ./scripts/setup)", path.display()));
    }
    let ctx = |what: &str| format!("decoding {}: {what}", path.display());
    let pipeline = gst::parse::launch(
        "filesrc name=src ! decodebin ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false",
    )
    .map_err(|e| Error::wrap(ErrorKind::Internal, ctx("pipeline"), e))?
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    pipeline.by_name("src").expect("named").set_property("location", path.to_string_lossy().as_ref());
    let sink = pipeline.by_name("sink").expect("named").downcast::<gst_app::AppSink>().expect("appsink");
    pipeline.set_state(gst::State::Playing).map_err(|e| Error::wrap(ErrorKind::Internal, ctx("start"), e))?;
    let (mut index, mut given) = (0usize, 0usize);
    let result = loop {
        let Ok(sample) = sink.pull_sample() else {
            // End of stream, or an error posted on the bus.
            let bus = pipeline.bus().expect("pipelines have a bus");
            let err = bus.pop_filtered(&[gst::MessageType::Error]).and_then(|m| match m.view() {
                gst::MessageView::Error(e) => Some(e.error().to_string()),
                _ => None,
            });
            break match err {
                Some(e) => Err(varta_core::err!(InvalidArgument, "{}", ctx(&e))),
                None => Ok(given),
            };
        };
        let (Some(buf), Some(caps)) = (sample.buffer(), sample.caps()) else { continue };
        let pts = buf.pts().map(|t| t.nseconds()).unwrap_or(0);
        index += 1;
        match select(index - 1, pts) {
            Selected::Skip => continue,
            Selected::Stop => break Ok(given),
            Selected::Take => {}
        }
        let vi = gst_video::VideoInfo::from_caps(caps).map_err(|e| Error::wrap(ErrorKind::Internal, ctx("caps"), e))?;
        let vf = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, &vi)
            .map_err(|_| varta_core::err!(Internal, "{}", ctx("mapping a frame")))?;
        each(
            index - 1,
            Frame {
                camera: camera.clone(),
                pts_ns: pts,
                captured_at: start + chrono::Duration::nanoseconds(pts as i64),
                width: vi.width(),
                height: vi.height(),
                pixels: Pixels::I420(pack_i420(&vf).into()),
            },
        );
        given += 1;
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}
