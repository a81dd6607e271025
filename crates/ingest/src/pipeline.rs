//! Building one camera's pipeline.
//!
//! ```text
//! rtspsrc ─(pad-added: H.264 or H.265)─▶ depay ! parse ! [gate] decoder [sampler]
//!         ! videoscale ! videoconvert ! appsink (RGB at the model's size)
//! ```
//!
//! The codec is only known once the camera has answered DESCRIBE, so the depayloader,
//! parser and decoder are added when rtspsrc exposes its video pad.
//!
//! Decoding is the expensive part on CPU, so two pad probes on the decoder keep it to
//! what analysis needs: the **gate** on its sink pad applies the decode policy to
//! compressed access units (see [`crate::gate`]), and the **sampler** on its src pad
//! passes decoded frames at the analysis fps only, before they are scaled or converted.
//! Scaling happens in YUV, and RGB conversion at the model's size.

use crate::config::RtspTransport;
use crate::gate::{Gate, GateAction};
use crate::picture::PictureWatch;
use chrono::Utc;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use varta_core::config::Credentials;
use varta_core::frame::{Frame, FrameHub, Pixels};
use varta_core::metrics::CameraStats;
use varta_core::redact::redact_url;
use varta_core::{err, CameraId, Error, ErrorKind};

/// A video codec the ingest can depayload, parse and decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    H265,
}

impl Codec {
    /// The codec of an RTP `encoding-name`, if supported.
    pub fn from_encoding_name(name: &str) -> Option<Codec> {
        match name.to_ascii_uppercase().as_str() {
            "H264" => Some(Codec::H264),
            "H265" => Some(Codec::H265),
            _ => None,
        }
    }

    /// Lower-case name (`h264`, `h265`).
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
        }
    }

    pub(crate) fn depay_and_parse(self) -> &'static str {
        match self {
            Codec::H264 => "rtph264depay ! h264parse",
            Codec::H265 => "rtph265depay ! h265parse",
        }
    }

    /// Decoders in order of preference: NVDEC, VA-API, software: libav (FFmpeg), then
    /// OpenH264 (BSD-2-Clause) and libde265 (LGPL-3.0). Debian builds FFmpeg with
    /// `--enable-gpl`, so the OCI image (deploy/image) ships the last two instead.
    fn decoders(self) -> [&'static str; 4] {
        match self {
            Codec::H264 => ["nvh264dec", "vah264dec", "avdec_h264", "openh264dec"],
            Codec::H265 => ["nvh265dec", "vah265dec", "avdec_h265", "libde265dec"],
        }
    }

    /// The best decoder element this machine has for the codec.
    pub fn pick_decoder(self) -> Result<&'static str, Error> {
        self.decoders().into_iter().find(|name| gst::ElementFactory::find(name).is_some()).ok_or_else(|| {
            err!(
                Unavailable,
                "no {} decoder (install gstreamer1.0-libav, or gstreamer1.0-plugins-bad for OpenH264/libde265)",
                self.as_str()
            )
        })
    }
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
    /// Which frames are decoded, and how `adaptive` decides.
    pub gate: Gate,
    /// Frozen and dark picture checks.
    pub picture: PictureWatch,
    /// The node's clip recorder and this camera's ring, when clips are on.
    pub clips: Option<(Arc<crate::clip::Clips>, Arc<Mutex<crate::clip::CameraClips>>)>,
}

/// What the pipeline learns about its stream while it runs.
pub struct StreamInfo {
    /// Frames per second the stream declares (×1000), 0 if unknown.
    pub declared_fps_milli: AtomicU32,
    /// Access units handed to the decoder (replayed ones included). A decoder that
    /// cannot decode a unit drops it without a word; comparing this with the frames it
    /// outputs is how undecodable input is noticed.
    pub units_in: AtomicU64,
    /// Stream time (the buffer's PTS, from the RTP timestamps) of the last keyframe
    /// received, in nanoseconds; 0 before the first.
    last_keyframe_ns: AtomicU64,
    /// Milliseconds between the last two keyframes received, in the stream's own time
    /// (the GOP length as the camera sends it, whatever the SDP says; smart codecs
    /// change it with the scene; unaffected by network or scheduling delays), 0
    /// before two were seen.
    gop_ms: AtomicU64,
    /// Picture statistics of the frames handed to analysis.
    pub picture: Mutex<PictureWatch>,
}

impl StreamInfo {
    /// The measured GOP length, once two keyframes were received.
    pub fn gop(&self) -> Option<std::time::Duration> {
        let ms = self.gop_ms.load(Ordering::Relaxed);
        (ms > 0).then(|| std::time::Duration::from_millis(ms))
    }
}

/// A built (not yet playing) pipeline.
pub struct CameraPipeline {
    /// The pipeline; the caller sets its state and must set it to `Null` when done.
    pub pipeline: gst::Pipeline,
    /// What is learnt about the stream as it plays.
    pub info: Arc<StreamInfo>,
}

thread_local! {
    /// Set while the gate replays held-back delta units into the decoder, so its own
    /// probe lets them through uncounted.
    static REPLAYING: Cell<bool> = const { Cell::new(false) };
}

/// Makes an `rtspsrc` for `url` with the node's settings.
pub fn rtsp_source(
    url: &str,
    credentials: Option<&Credentials>,
    transport: RtspTransport,
    latency_ms: u32,
) -> Result<gst::Element, Error> {
    let src = gst::ElementFactory::make("rtspsrc")
        .name("src")
        .build()
        .map_err(|e| Error::wrap(ErrorKind::Unavailable, "rtspsrc (install gstreamer1.0-plugins-good)", e))?;
    src.set_property("location", url);
    src.set_property("latency", latency_ms);
    src.set_property_from_str(
        "protocols",
        match transport {
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
            RtspTransport::Auto => "tcp+udp+udp-mcast",
        },
    );
    if let Some(c) = credentials {
        src.set_property("user-id", &c.username);
        src.set_property("user-pw", &c.password);
    }
    // Only the first video stream is pulled; audio and metadata streams are declined
    // rather than left unlinked (an unlinked pad would fail the whole pipeline).
    src.connect("select-stream", false, |args| {
        let caps = args[2].get::<gst::Caps>().ok();
        let video = caps
            .as_ref()
            .and_then(|c| c.structure(0))
            .and_then(|s| s.get::<&str>("media").ok())
            .is_some_and(|m| m == "video");
        Some(video.to_value())
    });
    Ok(src)
}

/// The codec of an rtspsrc pad, or why it cannot be used.
pub fn pad_codec(pad: &gst::Pad) -> Result<Codec, String> {
    let caps = pad.current_caps().ok_or("stream without caps")?;
    let s = caps.structure(0).ok_or("stream with empty caps")?;
    let name = s.get::<&str>("encoding-name").unwrap_or("?");
    Codec::from_encoding_name(name).ok_or_else(|| format!("unsupported video codec {name} (H.264 and H.265 are)"))
}

/// Posts an error on the pipeline's bus from a streaming thread.
pub fn post_error(element: &gst::Element, msg: &str) {
    let _ = element.post_message(gst::message::Error::builder(gst::StreamError::CodecNotFound, msg).build());
}

/// Builds the pipeline for `p`; decoded, sampled frames go to `hub`.
pub fn build(p: PipelineParams<'_>, hub: Arc<FrameHub>, stats: Arc<CameraStats>) -> Result<CameraPipeline, Error> {
    let ctx = |what: &str| format!("camera {} ({}): {what}", p.camera, redact_url(p.url));
    // Frames leave at the camera's own size as I420: detection scales, converts and
    // lays out the model input in one pass, and snapshots keep the full picture.
    // `videoconvert` is a pass-through when the decoder gives I420 already (libav
    // does for 8-bit 4:2:0, the common case); it converts NV12 (NVDEC, VA-API).
    let tail = "videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false max-buffers=1 drop=true";
    let pipeline = gst::Pipeline::with_name(&format!("camera-{}", p.camera));
    let tail = gst::parse::bin_from_description(tail, true)
        .map_err(|e| Error::wrap(ErrorKind::Internal, ctx("building pipeline"), e))?;
    let src = rtsp_source(p.url, p.credentials, p.transport, p.latency_ms)?;
    pipeline.add_many([&src, tail.upcast_ref()]).map_err(|e| Error::wrap(ErrorKind::Internal, ctx("adding"), e))?;
    let info = Arc::new(StreamInfo {
        declared_fps_milli: AtomicU32::new(0),
        units_in: AtomicU64::new(0),
        last_keyframe_ns: AtomicU64::new(0),
        gop_ms: AtomicU64::new(0),
        picture: Mutex::new(p.picture),
    });

    let gate = Arc::new(Mutex::new(p.gate));
    let clips = p.clips;
    let (st, inf, tail_weak, pipe_weak) = (stats.clone(), info.clone(), tail.downgrade(), pipeline.downgrade());
    src.connect_pad_added(move |src, pad| {
        let (Some(tail), Some(pipeline)) = (tail_weak.upgrade(), pipe_weak.upgrade()) else { return };
        if let Err(msg) = link_decoder(&pipeline, pad, &tail, &gate, p.analysis_fps, &st, &inf, clips.as_ref()) {
            post_error(src, &msg);
        }
    });

    let sink = tail.by_name("sink").expect("named in launch line").downcast::<gst_app::AppSink>().expect("appsink");
    let camera = p.camera.clone();
    let inf = info.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let (Some(buf), Some(caps)) = (sample.buffer(), sample.caps()) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let vi = gst_video::VideoInfo::from_caps(caps).map_err(|_| gst::FlowError::NotNegotiated)?;
                let vf =
                    gst_video::VideoFrameRef::from_buffer_ref_readable(buf, &vi).map_err(|_| gst::FlowError::Error)?;
                let (w, h) = (vi.width(), vi.height());
                let data = pack_i420(&vf);
                let diff = inf.picture.lock().unwrap().observe(&data[..(w * h) as usize], w as usize, h as usize);
                tracing::trace!(camera = %camera, ?diff, "picture");
                stats.counters.frames_sampled.inc();
                hub.push(Frame {
                    camera: camera.clone(),
                    pts_ns: buf.pts().map(|t| t.nseconds()).unwrap_or(0),
                    captured_at: Utc::now(),
                    width: w,
                    height: h,
                    pixels: Pixels::I420(data.into()),
                });
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(CameraPipeline { pipeline, info })
}

/// Copies the three planes of an I420 frame into one buffer without row padding.
pub(crate) fn pack_i420(vf: &gst_video::VideoFrameRef<&gst::BufferRef>) -> Vec<u8> {
    use gst_video::prelude::VideoFrameExt;
    let (w, h) = (vf.width() as usize, vf.height() as usize);
    let mut out = Vec::with_capacity(Frame::i420_len(w as u32, h as u32));
    for (plane, (pw, ph)) in
        [(w, h), (w.div_ceil(2), h.div_ceil(2)), (w.div_ceil(2), h.div_ceil(2))].into_iter().enumerate()
    {
        let stride = vf.plane_stride()[plane] as usize;
        let data = vf.plane_data(plane as u32).expect("I420 has three planes");
        if stride == pw {
            out.extend_from_slice(&data[..pw * ph]);
        } else {
            for y in 0..ph {
                out.extend_from_slice(&data[y * stride..y * stride + pw]);
            }
        }
    }
    out
}

/// Adds `depay ! parse ! decoder` for the codec of `pad` and links it between the
/// source and the tail, with the gate and sampler probes on the decoder (and every
/// unit into the clip ring first, when clips are on).
#[allow(clippy::too_many_arguments)]
fn link_decoder(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    tail: &gst::Bin,
    gate: &Arc<Mutex<Gate>>,
    analysis_fps: f64,
    stats: &Arc<CameraStats>,
    info: &Arc<StreamInfo>,
    clips: Option<&(Arc<crate::clip::Clips>, Arc<Mutex<crate::clip::CameraClips>>)>,
) -> Result<(), String> {
    if tail.static_pad("sink").and_then(|p| p.peer()).is_some() {
        return Ok(()); // a second video stream: select-stream should have declined it
    }
    let codec = pad_codec(pad)?;
    let decoder = codec.pick_decoder().map_err(|e| e.to_string())?;
    let desc = format!("{} name=parse ! {decoder} name=dec", codec.depay_and_parse());
    let bin = gst::parse::bin_from_description(&desc, true).map_err(|e| format!("building decoder: {e}"))?;
    let dec = bin.by_name("dec").expect("named");
    if decoder.starts_with("avdec_") {
        // One thread per decoder: parallelism comes from many cameras, and 145
        // cameras times N decoder threads would drown the scheduler.
        dec.set_property("max-threads", 1i32);
    }
    stats.set_decoder(decoder, codec.as_str());
    tracing::info!(codec = codec.as_str(), decoder, "stream negotiated");

    // The declared frame rate, for the health check; the units' caps, for clips.
    let inf = info.clone();
    let ring = clips.map(|(_, r)| r.clone());
    bin.by_name("parse").expect("named").static_pad("src").expect("parsers have a src pad").add_probe(
        gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, pi| {
            if let Some(gst::PadProbeData::Event(ev)) = &pi.data {
                if let gst::EventView::Caps(c) = ev.view() {
                    if let Some(r) = &ring {
                        r.lock().unwrap().set_caps(c.caps().to_owned());
                    }
                    if let Some(f) = c.caps().structure(0).and_then(|s| s.get::<gst::Fraction>("framerate").ok()) {
                        if f.denom() > 0 && f.numer() > 0 {
                            let milli = (f.numer() as f64 * 1000.0 / f.denom() as f64) as u32;
                            inf.declared_fps_milli.store(milli, Ordering::Relaxed);
                        }
                    }
                }
            }
            gst::PadProbeReturn::Ok
        },
    );

    // The gate: counts what arrives and applies the decode policy.
    let (st, g, inf) = (stats.clone(), gate.clone(), info.clone());
    let clips = clips.cloned();
    dec.static_pad("sink").expect("decoders have a sink pad").add_probe(gst::PadProbeType::BUFFER, move |pad, pi| {
        if REPLAYING.get() {
            inf.units_in.fetch_add(1, Ordering::Relaxed);
            return gst::PadProbeReturn::Ok;
        }
        let Some(buf) = pi.buffer() else { return gst::PadProbeReturn::Ok };
        let now = Utc::now();
        let now_ms = now.timestamp_millis();
        // Every unit into the clip ring, whatever the gate does with it next: an idle
        // camera decoded on keyframes still has whole GOPs for a clip.
        if let Some((recorder, ring)) = &clips {
            let done = ring.lock().unwrap().on_unit(buf, now, recorder.span());
            recorder.finish_all(done);
        }
        st.counters.frames_received.inc();
        st.counters.bytes_received.add(buf.size() as u64);
        st.last_buffer_ms.store(now_ms, Ordering::Relaxed);
        if let (false, Some(pts)) = (buf.flags().contains(gst::BufferFlags::DELTA_UNIT), buf.pts()) {
            let pts = pts.nseconds().max(1);
            let prev = inf.last_keyframe_ns.swap(pts, Ordering::Relaxed);
            if prev > 0 && pts > prev {
                inf.gop_ms.store((pts - prev) / 1_000_000, Ordering::Relaxed);
            }
        }
        let action = g.lock().unwrap().on_buffer(buf, inf.gop(), now_ms, &st);
        if !matches!(action, GateAction::Drop) {
            inf.units_in.fetch_add(1, Ordering::Relaxed);
        }
        match action {
            GateAction::Pass => gst::PadProbeReturn::Ok,
            // `Handled`, not `Drop`: gstreamer-rs takes the buffer out of the probe
            // info (and frees it), and GStreamer 1.22's chain path would then unref the
            // empty slot of a dropped buffer, logging a critical for every unit.
            GateAction::Drop => gst::PadProbeReturn::Handled,
            GateAction::ReplayThenPass(held) => {
                // Bring the decoder up to date from the last keyframe it decoded, so
                // full decoding starts now rather than at the next keyframe. We are on
                // the pad's streaming thread, holding its (recursive) stream lock.
                REPLAYING.set(true);
                for b in held {
                    if pad.chain(b).is_err() {
                        break;
                    }
                }
                REPLAYING.set(false);
                gst::PadProbeReturn::Ok
            }
        }
    });

    // The sampler: counts decoded frames and passes frames at the analysis fps.
    let sampler = crate::sampler::Sampler::new(analysis_fps);
    let st = stats.clone();
    dec.static_pad("src").expect("decoders have a src pad").add_probe(
        gst::PadProbeType::BUFFER,
        move |_, pi| match &pi.data {
            Some(gst::PadProbeData::Buffer(buf)) => {
                st.counters.frames_decoded.inc();
                st.last_frame_ms.store(Utc::now().timestamp_millis(), Ordering::Relaxed);
                if sampler.take(buf.pts().map(|t| t.nseconds()).unwrap_or(0)) {
                    gst::PadProbeReturn::Ok
                } else {
                    gst::PadProbeReturn::Drop
                }
            }
            _ => gst::PadProbeReturn::Ok,
        },
    );

    pipeline.add(&bin).map_err(|e| format!("adding decoder: {e}"))?;
    bin.sync_state_with_parent().map_err(|e| format!("starting decoder: {e}"))?;
    let bin_sink = bin.static_pad("sink").expect("ghost pad");
    pad.link(&bin_sink).map_err(|e| format!("linking source: {e:?}"))?;
    bin.link(tail).map_err(|e| format!("linking decoder: {e}"))?;
    Ok(())
}
