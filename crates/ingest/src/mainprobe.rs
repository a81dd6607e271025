//! Health probe of a camera's main (full-resolution) stream.
//!
//! Analysis uses the substream; the main stream is what investigators export later, so
//! maintenance must know when it is broken even though nothing here decodes it. Every
//! `main_probe_interval_secs` the probe connects, depayloads and parses (no decoding)
//! for `main_probe_secs`, and reports fps, bitrate and codec, or why it failed.

use crate::config::RtspTransport;
use crate::pipeline::{pad_codec, post_error, rtsp_source};
use chrono::Utc;
use gstreamer as gst;
use gstreamer::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use varta_core::config::Credentials;
use varta_core::metrics::MainStream;
use varta_core::redact::{redact_text, redact_url};
use varta_core::{Error, ErrorKind};

#[derive(Default)]
struct Counts {
    units: AtomicU64,
    bytes: AtomicU64,
    first: Mutex<Option<Instant>>,
    codec: Mutex<Option<&'static str>>,
}

/// One running probe; dropping it releases the connection.
pub struct MainProbe {
    pipeline: gst::Pipeline,
    url: String,
    started: Instant,
    length: Duration,
    counts: Arc<Counts>,
}

impl MainProbe {
    /// Starts probing `url` for `length`.
    pub fn start(
        url: &str,
        credentials: Option<&Credentials>,
        transport: RtspTransport,
        latency_ms: u32,
        length: Duration,
    ) -> Result<MainProbe, Error> {
        let pipeline = gst::Pipeline::new();
        let src = rtsp_source(url, credentials, transport, latency_ms)?;
        pipeline.add(&src).map_err(|e| Error::wrap(ErrorKind::Internal, "main probe", e))?;
        let counts = Arc::new(Counts::default());
        let (c, weak) = (counts.clone(), pipeline.downgrade());
        src.connect_pad_added(move |src, pad| {
            let Some(pipeline) = weak.upgrade() else { return };
            if let Err(msg) = link(&pipeline, pad, &c) {
                post_error(src, &msg);
            }
        });
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| Error::wrap(ErrorKind::Unavailable, "main probe cannot start", e))?;
        Ok(MainProbe { pipeline, url: redact_url(url), started: Instant::now(), length, counts })
    }

    /// The result once the probe is over (its time is up or it failed), else `None`.
    pub fn poll(&self) -> Option<MainStream> {
        let bus = self.pipeline.bus().expect("pipelines have a bus");
        let error = bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos]).map(|m| match m.view() {
            gst::MessageView::Error(e) => redact_text(&e.error().to_string()),
            _ => "end of stream".to_owned(),
        });
        if error.is_none() && self.started.elapsed() < self.length {
            return None;
        }
        let units = self.counts.units.load(Ordering::Relaxed);
        let bytes = self.counts.bytes.load(Ordering::Relaxed);
        let since = self.counts.first.lock().unwrap().map(|t| t.elapsed().as_secs_f64()).filter(|s| *s > 0.5);
        let ok = units > 1 && error.is_none();
        Some(MainStream {
            url: self.url.clone(),
            ok: Some(ok),
            checked_at: Some(Utc::now()),
            fps: since.map(|s| (units - 1) as f64 / s),
            bitrate_kbps: since.map(|s| bytes as f64 * 8.0 / 1000.0 / s),
            codec: self.counts.codec.lock().unwrap().map(String::from),
            error: if ok { None } else { Some(error.unwrap_or_else(|| "no video received".into())) },
        })
    }
}

impl Drop for MainProbe {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn link(pipeline: &gst::Pipeline, pad: &gst::Pad, counts: &Arc<Counts>) -> Result<(), String> {
    let codec = pad_codec(pad)?;
    *counts.codec.lock().unwrap() = Some(codec.as_str());
    let parse = codec.depay_and_parse();
    let bin = gst::parse::bin_from_description(&format!("{parse} ! fakesink name=sink sync=false"), true)
        .map_err(|e| format!("main probe: {e}"))?;
    let c = counts.clone();
    bin.by_name("sink").expect("named").static_pad("sink").expect("sink pad").add_probe(
        gst::PadProbeType::BUFFER,
        move |_, pi| {
            if let Some(b) = pi.buffer() {
                c.units.fetch_add(1, Ordering::Relaxed);
                c.first.lock().unwrap().get_or_insert_with(Instant::now);
                // The first unit only starts the clock: rates count what came after it.
                if c.units.load(Ordering::Relaxed) > 1 {
                    c.bytes.fetch_add(b.size() as u64, Ordering::Relaxed);
                }
            }
            gst::PadProbeReturn::Ok
        },
    );
    pipeline.add(&bin).map_err(|e| format!("main probe: {e}"))?;
    bin.sync_state_with_parent().map_err(|e| format!("main probe: {e}"))?;
    pad.link(&bin.static_pad("sink").expect("ghost pad")).map_err(|e| format!("main probe: {e:?}"))?;
    Ok(())
}
