//! Building one camera's pipeline.
//!
//! Decoding is the expensive part on CPU; scaling and colour conversion cost nearly
//! as much again, so frames not needed for analysis are dropped right after the
//! decoder (a pad probe sampling at the analysis fps), before they are scaled or
//! converted. Scaling happens in YUV, and RGB conversion at the model's size.

use chrono::Utc;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use varta_core::config::{Credentials, DecodePolicy, RtspTransport};
use varta_core::frame::{Frame, FrameHub};
use varta_core::metrics::CameraStats;
use varta_core::redact::redact_url;
use varta_core::{err, CameraId, Error, ErrorKind};

/// H.264 decoders in order of preference: NVDEC, VA-API, software.
const H264_DECODERS: [&str; 3] = ["nvh264dec", "vah264dec", "avdec_h264"];

/// The best H.264 decoder element this machine has.
pub fn pick_h264_decoder() -> Result<&'static str, Error> {
    H264_DECODERS
        .into_iter()
        .find(|name| gst::ElementFactory::find(name).is_some())
        .ok_or_else(|| err!(Unavailable, "no H.264 decoder (install gstreamer1.0-libav)"))
}

/// Everything a pipeline needs to know about its camera.
pub struct PipelineParams<'a> {
    /// Camera id (names the pipeline and frames).
    pub camera: &'a CameraId,
    /// Stream URL, without credentials.
    pub url: &'a str,
    /// Credentials, set as rtspsrc properties so they never appear in the URL.
    pub credentials: Option<&'a Credentials>,
    /// RTSP transport.
    pub transport: RtspTransport,
    /// Jitter-buffer latency in ms.
    pub latency_ms: u32,
    /// Frames per second handed to analysis.
    pub analysis_fps: f64,
    /// Which frames are decoded.
    pub decode: DecodePolicy,
    /// Size of the frames handed to analysis.
    pub target: (u32, u32),
}

/// A built (not yet playing) pipeline.
pub struct CameraPipeline {
    /// The pipeline; the caller sets its state and must set it to `Null` when done.
    pub pipeline: gst::Pipeline,
    /// Name of the decoder element used.
    pub decoder: &'static str,
}

/// Builds the pipeline for `p`; decoded, sampled frames go to `hub`.
pub fn build(p: &PipelineParams<'_>, hub: Arc<FrameHub>, stats: Arc<CameraStats>) -> Result<CameraPipeline, Error> {
    let decoder = pick_h264_decoder()?;
    let (tw, th) = p.target;
    // The scaler stretches the whole picture to the model size (no letterbox), as the
    // model's reference detections were made that way (models/PROVENANCE.md).
    let desc = format!(
        "rtspsrc name=src ! rtph264depay ! h264parse ! {decoder} name=dec \
         ! videoscale add-borders=false ! video/x-raw,width={tw},height={th},pixel-aspect-ratio=1/1 \
         ! videoconvert ! video/x-raw,format=RGB \
         ! appsink name=sink sync=false max-buffers=1 drop=true"
    );
    let ctx = |what: &str| format!("camera {} ({}): {what}", p.camera, redact_url(p.url));
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| Error::wrap(ErrorKind::Internal, ctx("building pipeline"), e))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| err!(Internal, "{}", ctx("launch line is not a pipeline")))?;
    pipeline.set_property("name", format!("camera-{}", p.camera));

    let src = pipeline.by_name("src").expect("named in launch line");
    src.set_property("location", p.url);
    src.set_property("latency", p.latency_ms);
    src.set_property_from_str(
        "protocols",
        match p.transport {
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
            RtspTransport::Auto => "tcp+udp+udp-mcast",
        },
    );
    if let Some(c) = p.credentials {
        src.set_property("user-id", &c.username);
        src.set_property("user-pw", &c.password);
    }
    if decoder == "avdec_h264" {
        // One thread per decoder: parallelism comes from many cameras, and 145
        // cameras times N decoder threads would drown the scheduler.
        dec_set(&pipeline, "max-threads", 1i32);
    }

    let dec = pipeline.by_name("dec").expect("named in launch line");
    let src_size = Arc::new((AtomicU32::new(0), AtomicU32::new(0)));

    // Count access units going into the decoder; under the keyframes policy, delta
    // units stop here, undecoded.
    let st = stats.clone();
    let keyframes_only = p.decode == DecodePolicy::Keyframes;
    dec.static_pad("sink").expect("decoders have a sink pad").add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        st.frames_received.inc();
        match info.buffer() {
            Some(b) if keyframes_only && b.flags().contains(gst::BufferFlags::DELTA_UNIT) => gst::PadProbeReturn::Drop,
            _ => gst::PadProbeReturn::Ok,
        }
    });

    // Count decoded frames, remember the source size, and sample at the analysis fps.
    let interval_ns = (1e9 / p.analysis_fps) as u64;
    let next_pts = AtomicU64::new(0);
    let st = stats.clone();
    let size = src_size.clone();
    dec.static_pad("src").expect("decoders have a src pad").add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            match &info.data {
                Some(gst::PadProbeData::Event(ev)) => {
                    if let gst::EventView::Caps(c) = ev.view() {
                        if let Ok(vi) = gst_video::VideoInfo::from_caps(c.caps()) {
                            size.0.store(vi.width(), Ordering::Relaxed);
                            size.1.store(vi.height(), Ordering::Relaxed);
                        }
                    }
                    gst::PadProbeReturn::Ok
                }
                Some(gst::PadProbeData::Buffer(buf)) => {
                    st.frames_decoded.inc();
                    st.last_frame_ms.store(Utc::now().timestamp_millis(), Ordering::Relaxed);
                    let pts = buf.pts().map(|t| t.nseconds()).unwrap_or(0);
                    let due = next_pts.load(Ordering::Relaxed);
                    // Take the frame if it is due, or if the clock went backwards (a new
                    // session restarts timestamps). The next slot is on a fixed grid, so
                    // timestamp jitter does not make the rate drift below the target.
                    if pts >= due || due.saturating_sub(pts) > 10 * interval_ns {
                        let next =
                            if pts >= due && pts - due < interval_ns { due + interval_ns } else { pts + interval_ns };
                        next_pts.store(next, Ordering::Relaxed);
                        gst::PadProbeReturn::Ok
                    } else {
                        gst::PadProbeReturn::Drop
                    }
                }
                _ => gst::PadProbeReturn::Ok,
            }
        },
    );

    let sink = pipeline.by_name("sink").expect("named in launch line").downcast::<gst_app::AppSink>().expect("appsink");
    let camera = p.camera.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let (Some(buf), Some(caps)) = (sample.buffer(), sample.caps()) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let info = gst_video::VideoInfo::from_caps(caps).map_err(|_| gst::FlowError::NotNegotiated)?;
                let map = buf.map_readable().map_err(|_| gst::FlowError::Error)?;
                let (w, h) = (info.width(), info.height());
                let row = (w * 3) as usize;
                let stride = info.stride()[0] as usize;
                let rgb = if stride == row {
                    map.as_slice()[..row * h as usize].to_vec()
                } else {
                    let mut v = Vec::with_capacity(row * h as usize);
                    for y in 0..h as usize {
                        v.extend_from_slice(&map.as_slice()[y * stride..y * stride + row]);
                    }
                    v
                };
                stats.frames_sampled.inc();
                hub.push(Frame {
                    camera: camera.clone(),
                    pts_ns: buf.pts().map(|t| t.nseconds()).unwrap_or(0),
                    captured_at: Utc::now(),
                    width: w,
                    height: h,
                    source_width: src_size.0.load(Ordering::Relaxed).max(1),
                    source_height: src_size.1.load(Ordering::Relaxed).max(1),
                    rgb,
                });
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(CameraPipeline { pipeline, decoder })
}

fn dec_set(pipeline: &gst::Pipeline, prop: &str, v: i32) {
    if let Some(dec) = pipeline.by_name("dec") {
        if dec.find_property(prop).is_some() {
            dec.set_property(prop, v);
        }
    }
}
