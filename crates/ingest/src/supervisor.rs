//! One thread per camera owning its pipeline: start, watch, restart, stop.
//!
//! States: `starting` → `streaming` (⇄ `degraded` while a health check fails) →
//! on failure `stalled` (watchdog) or straight to `backing_off` → `starting` …, and
//! `stopped` when asked. Every transition is sent to the store with its time and
//! reason: uptime and maintenance are computed from that history.
//!
//! The thread waits on the pipeline's bus with a short timeout so that it also notices
//! a stall, evaluates health, runs the main-stream probe and sees a stop request. Any
//! failure sets the pipeline to `Null` (releasing sockets, threads and decoder memory)
//! and retries after an exponential backoff with jitter ([`Backoff`]), so 145 cameras
//! behind one dead link neither hammer it nor reconnect in lock-step.

use crate::config::{HealthConfig, IngestConfig};
use crate::gate::Gate;
use crate::keepalive::{KeepAlive, Reply};
use crate::mainprobe::MainProbe;
use crate::picture::PictureWatch;
use crate::pipeline::{self, PipelineParams, StreamInfo};
use chrono::Utc;
use gstreamer as gst;
use gstreamer::prelude::*;
use rand::Rng;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use varta_core::config::{Credentials, DecodePolicy};
use varta_core::event::{CameraState, RestartReason, StatusChange, StoreMsg};
use varta_core::frame::FrameHub;
use varta_core::journal::Journal;
use varta_core::metrics::{CameraStats, Health, HealthProblem};
use varta_core::redact::{redact_text, redact_url};
use varta_core::{CameraId, Shutdown};

/// How often the bus is polled (and the watchdog, health and stop request checked).
const TICK: Duration = Duration::from_millis(250);
/// Units a decoder may hold before outputting their pictures (reordering, threads).
const DECODER_DELAY: u64 = 8;
/// Units in a row that produced no picture, after which the pipeline is rebuilt.
const UNDECODABLE_RUN: u64 = 30;
/// First main-stream probe this long after the camera starts.
const FIRST_MAIN_PROBE: Duration = Duration::from_secs(5);
/// The longest keyframe interval waited for before a stream that sends data but
/// no picture is given up, while its GOP is not yet measured (smart codecs use up
/// to 60 s on a quiet scene).
const MAX_UNMEASURED_GOP: Duration = Duration::from_secs(65);
/// Short sessions are counted over this window for [`HealthProblem::LinkDrops`].
const LINK_DROP_WINDOW: Duration = Duration::from_secs(300);
/// Short sessions within [`LINK_DROP_WINDOW`] that make a link problem.
const LINK_DROPS: usize = 3;

/// A camera as the ingest sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraSpec {
    /// Camera id.
    pub id: CameraId,
    /// URL of the stream to analyse (the substream where there is one), no credentials.
    pub url: String,
    /// URL of the main stream, probed for health only.
    pub main_url: Option<String>,
    /// Resolved credentials, if the camera needs them.
    pub credentials: Option<Credentials>,
    /// Frames per second handed to analysis.
    pub analysis_fps: f64,
    /// Frames per second the camera should send; `None` = as the stream declares.
    pub expected_fps: Option<f64>,
    /// Which frames are decoded.
    pub decode: DecodePolicy,
}

/// Settings shared by every camera of the node.
#[derive(Clone, Debug)]
pub struct IngestSettings {
    /// `[ingest]` of the config.
    pub ingest: IngestConfig,
    /// `[health]` of the config.
    pub health: HealthConfig,
    /// The clip recorder, when `[clips]` is on: every camera's compressed units pass
    /// through its ring.
    pub clips: Option<Arc<crate::clip::Clips>>,
}

/// Exponential backoff with jitter: `initial × 2ⁿ` capped at `max`, plus up to
/// `jitter × wait` at random; [`Backoff::reset`] after a healthy period.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: f64,
    failures: u32,
}

impl Backoff {
    /// From `[ingest]`.
    pub fn new(cfg: &IngestConfig) -> Backoff {
        Backoff {
            initial: Duration::from_secs_f64(cfg.backoff_initial_secs),
            max: Duration::from_secs_f64(cfg.backoff_max_secs),
            jitter: cfg.backoff_jitter,
            failures: 0,
        }
    }

    /// The wait before the next attempt; counts one more failure.
    pub fn next_wait(&mut self, rng: &mut impl Rng) -> Duration {
        let base = self.initial.mul_f64(2f64.powi(self.failures.min(30) as i32)).min(self.max);
        self.failures += 1;
        base.mul_f64(1.0 + rng.random_range(0.0..=self.jitter))
    }

    /// Back to the initial wait.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A running camera thread.
pub struct Handle {
    cancel: Shutdown,
    thread: JoinHandle<()>,
}

impl Handle {
    /// Asks the thread to stop without waiting.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Stops the camera and waits until its pipeline is back to `Null`.
    pub fn stop(self) {
        self.cancel.cancel();
        let _ = self.thread.join();
    }
}

/// Starts the supervisor thread of one camera.
pub fn spawn(
    spec: CameraSpec,
    settings: IngestSettings,
    hub: Arc<FrameHub>,
    stats: Arc<CameraStats>,
    status: Arc<Journal>,
) -> Handle {
    let cancel = Shutdown::new();
    let c = cancel.clone();
    let thread = std::thread::Builder::new()
        .name(format!("camera-{}", spec.id))
        .spawn(move || {
            let _span = tracing::info_span!("camera", id = %spec.id).entered();
            let main_next = spec.main_url.as_ref().map(|_| Instant::now() + FIRST_MAIN_PROBE);
            Supervisor {
                spec,
                settings,
                hub,
                stats,
                status,
                cancel: c,
                announced: RefCell::new(None),
                main: RefCell::new(MainState { next: main_next, running: None }),
                drops: RefCell::new(LinkDrops::default()),
            }
            .run()
        })
        .expect("spawning a camera thread");
    Handle { cancel, thread }
}

struct MainState {
    next: Option<Instant>,
    running: Option<MainProbe>,
}

struct Supervisor {
    spec: CameraSpec,
    settings: IngestSettings,
    hub: Arc<FrameHub>,
    stats: Arc<CameraStats>,
    status: Arc<Journal>,
    cancel: Shutdown,
    /// The last state and reason recorded, so each transition is recorded once.
    announced: RefCell<Option<(CameraState, String)>>,
    main: RefCell<MainState>,
    drops: RefCell<LinkDrops>,
}

/// How a pipeline run ended.
enum Ended {
    Stopped,
    Failed(RestartReason, String),
}

/// Tracks access units that went into the decoder and never came out as pictures.
#[derive(Default)]
struct LostUnits {
    /// Units in when the first picture came out; nothing is counted before it (a
    /// stream joined mid-GOP cannot be decoded until its first keyframe).
    base: Option<u64>,
    counted: u64,
    run: u64,
    last_decoded: u64,
}

impl LostUnits {
    /// Returns the newly lost units and the current run of units lost in a row.
    fn update(&mut self, units_in: u64, decoded: u64) -> (u64, u64) {
        if decoded == 0 {
            return (0, 0);
        }
        let base = *self.base.get_or_insert(units_in.saturating_sub(decoded));
        let lost = units_in.saturating_sub(base + decoded + DECODER_DELAY);
        let new = lost.saturating_sub(self.counted);
        self.counted = self.counted.max(lost);
        // Corrupt input may still yield the odd picture; only a tick with more
        // pictures than losses ends the run.
        let pictures = decoded - self.last_decoded;
        self.last_decoded = decoded;
        if pictures > new {
            self.run = 0;
        }
        self.run += new;
        (new, self.run)
    }
}

/// Sessions that delivered video and then ended before `[ingest] backoff_reset_secs`:
/// a link that keeps dropping. The camera is reconnected at once after each (the
/// backoff restarts whenever a session delivered video), and reported, rather than
/// throttled in silence.
#[derive(Default)]
struct LinkDrops {
    /// When each short session ended, oldest first, within [`LINK_DROP_WINDOW`].
    ends: VecDeque<Instant>,
}

impl LinkDrops {
    fn record(&mut self, at: Instant) {
        self.ends.push_back(at);
        while self.ends.front().is_some_and(|&t| at.duration_since(t) > LINK_DROP_WINDOW) {
            self.ends.pop_front();
        }
    }

    /// `Some(mean seconds between drops)` when the link counts as dropping at `now`:
    /// [`LINK_DROPS`] or more drops in the window, and the current session (streaming
    /// for `current`) no longer than `stable`, after which the link counts as healed.
    fn every(&self, now: Instant, current: Duration, stable: Duration) -> Option<f64> {
        // Called once a second: no allocation, the ends are in order.
        let mut recent = self.ends.iter().filter(|&&t| now.duration_since(t) <= LINK_DROP_WINDOW);
        let first = *recent.next()?;
        let (n, last) = recent.fold((1usize, first), |(n, _), &t| (n + 1, t));
        if n < LINK_DROPS || current > stable {
            return None;
        }
        Some(last.duration_since(first).as_secs_f64() / (n - 1) as f64)
    }
}

/// A pipeline error in words an engineer recognises: `element: message: detail`,
/// where the detail is what GStreamer's debug text adds after its source location
/// (rtspsrc puts the RTSP status and reason phrase there, `Not Found (404)`, or the
/// socket failure, `Failed to connect. (Generic error)`).
fn describe(from: &str, err: &gst::glib::Error, debug: Option<&str>) -> String {
    let message = err.message().trim_end_matches('.');
    // Debug text: "file.c(123): function (): /GstPipeline:p/GstRTSPSrc:src:\ndetail".
    let detail = debug
        .map(|d| d.split_once('\n').map_or(d, |(_, rest)| rest).trim())
        .filter(|d| !d.is_empty() && !d.starts_with("../") && *d != err.message());
    match detail.map(|d| d.replace('\n', "; ")) {
        // "Not found" + "Not Found (404)": the detail says it all.
        Some(d) if d.to_lowercase().starts_with(&message.to_lowercase()) => format!("{from}: {d}"),
        Some(d) => format!("{from}: {message}: {d}"),
        None => format!("{from}: {message}"),
    }
}

/// Whether a bus error or warning is about the stream's content (decoding, format)
/// rather than the connection (GStreamer's resource domain: refused, not found, not
/// authorised, lost).
fn is_stream_error(err: &gst::glib::Error) -> bool {
    err.is::<gst::StreamError>()
}

/// What the health check keeps over one session.
#[derive(Default)]
struct HealthWindow {
    /// Counters sampled once a second, over the health window.
    samples: VecDeque<Sample>,
    /// The highest frame rate measured over a full window in this session.
    steady_fps: Option<f64>,
}

/// The frame rate a camera is held to (see [`Health::fps_expected`]): `configured`,
/// else `steady` (the highest measured over a full window) capped at `declared` (0:
/// the stream declares none).
fn expected_fps(configured: Option<f64>, steady: Option<f64>, declared: f64) -> Option<f64> {
    configured.or(match steady {
        Some(steady) if declared > 0.0 => Some(steady.min(declared)),
        steady => steady,
    })
}

/// Counters sampled once a second for the health window.
struct Sample {
    at: Instant,
    frames: u64,
    bytes: u64,
    errors: u64,
    rtp_received: u64,
    rtp_lost: u64,
}

/// The session's RTP statistics so far, summed over its jitter buffers (rtpbin
/// makes one per stream and SSRC inside rtspsrc): rtpjitterbuffer's `stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct RtpTotals {
    pushed: u64,
    lost: u64,
    late: u64,
    duplicates: u64,
    /// The largest `avg-jitter` of the buffers, in nanoseconds.
    jitter_ns: u64,
}

impl RtpTotals {
    /// Reads the jitter buffers inside the pipeline's `rtspsrc`; `None` if it has
    /// none (yet).
    fn read(pipe: &gst::Pipeline) -> Option<RtpTotals> {
        let src = pipe.by_name("src")?.downcast::<gst::Bin>().ok()?;
        let mut t = RtpTotals::default();
        let mut any = false;
        for e in src.iterate_recurse().into_iter().flatten() {
            if e.factory().is_none_or(|f| f.name() != "rtpjitterbuffer") {
                continue;
            }
            let st = e.property::<gst::Structure>("stats");
            let get = |k: &str| st.get::<u64>(k).unwrap_or(0);
            t.pushed += get("num-pushed");
            t.lost += get("num-lost");
            t.late += get("num-late");
            t.duplicates += get("num-duplicates");
            t.jitter_ns = t.jitter_ns.max(get("avg-jitter"));
            any = true;
        }
        any.then_some(t)
    }
}

impl Supervisor {
    fn run(self) {
        tracing::info!(url = %redact_url(&self.spec.url), decode = self.spec.decode.as_str(), "camera starting");
        if let Some(u) = &self.spec.main_url {
            self.stats
                .set_main_stream(Some(varta_core::metrics::MainStream { url: redact_url(u), ..Default::default() }));
        }
        let mut backoff = Backoff::new(&self.settings.ingest);
        let reset_after = Duration::from_secs_f64(self.settings.ingest.backoff_reset_secs);
        loop {
            self.transition(CameraState::Starting, "connecting");
            let (ended, streamed) = self.run_once();
            let (reason, msg) = match ended {
                Ended::Stopped => break,
                Ended::Failed(r, m) => (r, m),
            };
            // A session that delivered video proves the camera and the link work:
            // reconnect at once. One that ended early is a drop of the link, counted
            // for the health check (`link drops every ~N s`).
            if let Some(streamed) = streamed {
                backoff.reset();
                if streamed < reset_after {
                    self.drops.borrow_mut().record(Instant::now());
                }
            }
            self.stats.count_restart(reason);
            self.stats.set_last_error(Some(msg.clone()));
            self.stats.set_health(Health::default());
            let wait = backoff.next_wait(&mut rand::rng());
            tracing::warn!(reason = reason.as_str(), error = %msg, retry_in_ms = wait.as_millis() as u64, "camera pipeline failed");
            self.transition(CameraState::BackingOff, &format!("{}: {msg}", reason.as_str()));
            if self.sleep(wait) {
                break;
            }
        }
        self.main.borrow_mut().running = None;
        self.transition(CameraState::Stopped, "stopped");
        tracing::info!("camera stopped");
    }

    /// Builds and plays the pipeline until it fails or a stop is asked for; also
    /// returns how long it streamed, `None` if it delivered no video.
    fn run_once(&self) -> (Ended, Option<Duration>) {
        let ing = &self.settings.ingest;
        let h = &self.settings.health;
        let params = PipelineParams {
            camera: &self.spec.id,
            url: &self.spec.url,
            credentials: self.spec.credentials.as_ref(),
            transport: ing.rtsp_transport,
            latency_ms: ing.latency_ms,
            analysis_fps: self.spec.analysis_fps,
            gate: Gate::new(
                self.spec.decode,
                ing.activity_threshold,
                Duration::from_secs_f64(ing.activity_quiet_secs),
                Duration::from_secs_f64(ing.idle_keyframe_secs),
            ),
            picture: PictureWatch::new(h.frozen_max_diff, h.blackout_max_luma, h.blackout_max_stddev),
            clips: self.settings.clips.as_ref().map(|c| (c.clone(), c.camera(&self.spec.id))),
        };
        self.stats.set_decode_full(self.spec.decode == DecodePolicy::Full);
        let built = match pipeline::build(params, self.hub.clone(), self.stats.clone()) {
            Ok(b) => b,
            Err(e) => return (Ended::Failed(RestartReason::Connect, redact_text(&e.to_string())), None),
        };
        let mut streamed = None;
        let mut keepalive = KeepAlive::new(Duration::from_secs_f64(ing.rtsp_keepalive_secs), Instant::now());
        let result = self.watch(&built.pipeline, &built.info, &mut streamed, &mut keepalive);
        // Not while rtspsrc still has a keep-alive queued (see `KeepAlive::settle`);
        // a camera that never answers holds it for rtspsrc's TCP timeout at most.
        keepalive.settle(Duration::from_secs(5));
        // Always back to Null: releases sockets, threads and decoder memory.
        let _ = built.pipeline.set_state(gst::State::Null);
        (result, streamed)
    }

    fn watch(
        &self,
        pipe: &gst::Pipeline,
        info: &StreamInfo,
        streamed: &mut Option<Duration>,
        keepalive: &mut KeepAlive,
    ) -> Ended {
        if let Err(e) = pipe.set_state(gst::State::Playing) {
            return Ended::Failed(RestartReason::Connect, format!("cannot start pipeline: {e}"));
        }
        let stall = Duration::from_secs_f64(self.settings.ingest.stall_timeout_secs);
        let connect = Duration::from_secs_f64(self.settings.ingest.connect_timeout_secs);
        let bus = pipe.bus().expect("pipelines have a bus");
        let started = Instant::now();
        let start_ms = Utc::now().timestamp_millis();
        let mut streaming_since: Option<Instant> = None;
        let mut window = HealthWindow::default();
        let mut next_health = Instant::now();
        let mut lost = LostUnits::default();
        let mut rtp_seen = RtpTotals::default();
        let decoded0 = self.stats.counters.frames_decoded.get();
        let src = pipe.by_name("src");
        let mut server_closed = false;
        let idle_every = match self.spec.decode {
            DecodePolicy::Adaptive => Duration::from_secs_f64(self.settings.ingest.idle_keyframe_secs),
            DecodePolicy::Full | DecodePolicy::Keyframes => Duration::ZERO,
        };
        loop {
            if self.cancel.is_cancelled() {
                return Ended::Stopped;
            }
            if let Some(since) = streaming_since {
                *streamed = Some(since.elapsed());
            }
            let up = streaming_since.is_some();
            if let Some(msg) = bus.timed_pop_filtered(
                gst::ClockTime::from_nseconds(TICK.as_nanos() as u64),
                &[gst::MessageType::Error, gst::MessageType::Eos, gst::MessageType::Warning],
            ) {
                let from = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                match msg.view() {
                    gst::MessageView::Eos(_) => {
                        let why = if server_closed { "camera closed the RTSP connection" } else { "end of stream" };
                        return Ended::Failed(RestartReason::Eos, why.into());
                    }
                    gst::MessageView::Error(e) => {
                        let text = redact_text(&describe(&from, &e.error(), e.debug().as_deref()));
                        let reason = if up { RestartReason::Error } else { RestartReason::Connect };
                        // A refused or lost connection is counted as a restart, not
                        // as a decode error.
                        if is_stream_error(&e.error()) {
                            self.stats.counters.decode_errors.inc();
                        }
                        return Ended::Failed(reason, text);
                    }
                    gst::MessageView::Warning(w) => {
                        if is_stream_error(&w.error()) {
                            self.stats.counters.decode_errors.inc();
                        }
                        let text = redact_text(&describe(&from, &w.error(), w.debug().as_deref()));
                        // rtspsrc warns "The server closed the connection." before its EOS.
                        server_closed |= text.contains("server closed the connection");
                        tracing::debug!(warning = %text, "stream warning");
                    }
                    _ => {}
                }
            }
            let now_ms = Utc::now().timestamp_millis();
            let since_ms = |t: i64| Duration::from_millis((now_ms - t).max(0) as u64);
            let last_buffer = self.stats.last_buffer_ms.load(Ordering::Relaxed);
            let last_frame = self.stats.last_frame_ms.load(Ordering::Relaxed);
            if !up && last_frame >= start_ms {
                streaming_since = Some(Instant::now());
                *streamed = Some(Duration::ZERO);
                info.picture.lock().unwrap().reset();
                self.stats.set_last_error(None);
                self.transition(CameraState::Streaming, "frames arriving");
            }
            // Units the decoder swallowed without a picture (corrupt data).
            let decoded = self.stats.counters.frames_decoded.get() - decoded0;
            let (new, run) = lost.update(info.units_in.load(Ordering::Relaxed), decoded);
            self.stats.counters.decode_errors.add(new);
            if run >= UNDECODABLE_RUN {
                return Ended::Failed(RestartReason::Error, format!("{run} units in a row could not be decoded"));
            }
            // The watchdog: nothing from the camera, or nothing decodable from it.
            let quiet = if last_buffer >= start_ms { since_ms(last_buffer) } else { started.elapsed() };
            let undecoded = if last_frame >= start_ms { since_ms(last_frame) } else { started.elapsed() };
            if last_buffer < start_ms && quiet > connect {
                let why = format!("no data {:.1} s after connecting", quiet.as_secs_f64());
                return Ended::Failed(RestartReason::Connect, why);
            }
            // Data without pictures: give the decoder 3 stall timeouts, or what the
            // decode policy allows between pictures when that is longer: keyframe-only
            // decoding makes one per GOP (2.5 GOPs are waited), adaptive decoding of an
            // idle scene one per `idle_keyframe_secs` plus up to a GOP (that plus 2
            // GOPs); the longest GOP while it is unknown.
            let gop_wait = match info.gop() {
                Some(g) => g.mul_f64(2.5).max(idle_every + g * 2),
                None => MAX_UNMEASURED_GOP + idle_every,
            };
            // Both only once data has arrived: before the first buffer the connect
            // timeout alone governs (a stall timeout shorter than it restarted slow
            // first sessions as stalls).
            let why = if last_buffer < start_ms {
                None
            } else if quiet > stall {
                Some(format!("no data for {:.1} s", quiet.as_secs_f64()))
            } else if undecoded > (stall * 3).max(gop_wait) {
                Some(format!("nothing decodable for {:.1} s", undecoded.as_secs_f64()))
            } else {
                None
            };
            if let Some(why) = why {
                if up {
                    self.transition(CameraState::Stalled, &why);
                }
                return Ended::Failed(RestartReason::Stall, why);
            }
            if let (true, Some(src)) = (up, &src) {
                if keepalive.tick(src, Instant::now()) == Some(Reply::SessionGone) {
                    // The camera ended the session (its timeout, a restart): a clean
                    // end, reconnected at once like any session that delivered video.
                    let why = "camera ended the RTSP session (454 Session Not Found)".to_owned();
                    return Ended::Failed(RestartReason::Eos, why);
                }
            }
            if up && Instant::now() >= next_health {
                next_health += Duration::from_secs(1);
                let jitter_ms = self.count_rtp(pipe, &mut rtp_seen);
                self.check_health(info, &mut window, streaming_since.expect("up"), jitter_ms);
            }
            self.tick_main_probe();
        }
    }

    /// Adds what the session's jitter buffers counted since `seen` to the camera's RTP
    /// counters; returns their jitter in milliseconds.
    fn count_rtp(&self, pipe: &gst::Pipeline, seen: &mut RtpTotals) -> Option<f64> {
        let now = RtpTotals::read(pipe)?;
        let c = &self.stats.counters;
        // A jitter buffer made anew (new SSRC) starts from 0: count it from there.
        let base = if now.pushed < seen.pushed || now.lost < seen.lost { RtpTotals::default() } else { *seen };
        c.rtp_packets_received.add(now.pushed - base.pushed);
        c.rtp_packets_lost.add(now.lost - base.lost);
        c.rtp_packets_late.add(now.late.saturating_sub(base.late));
        c.rtp_packets_duplicate.add(now.duplicates.saturating_sub(base.duplicates));
        *seen = now;
        Some(now.jitter_ns as f64 / 1e6)
    }

    /// Measures fps, bitrate, errors and RTP loss over the health window, reads the
    /// picture checks, and moves between `streaming` and `degraded`.
    fn check_health(&self, info: &StreamInfo, hw: &mut HealthWindow, since: Instant, jitter_ms: Option<f64>) {
        let h = &self.settings.health;
        let window = Duration::from_secs_f64(h.window_secs);
        let samples = &mut hw.samples;
        let now = Instant::now();
        samples.push_back(Sample {
            at: now,
            frames: self.stats.counters.frames_received.get(),
            bytes: self.stats.counters.bytes_received.get(),
            errors: self.stats.counters.decode_errors.get(),
            rtp_received: self.stats.counters.rtp_packets_received.get(),
            rtp_lost: self.stats.counters.rtp_packets_lost.get(),
        });
        while samples.len() > 2 && now.duration_since(samples[1].at) >= window {
            samples.pop_front();
        }
        let (first, last) = (&samples[0], &samples[samples.len() - 1]);
        let span = last.at.duration_since(first.at).as_secs_f64();
        let full_window = now.duration_since(since) >= window;
        let mut health = Health::default();
        if span > 0.5 {
            let fps = (last.frames - first.frames) as f64 / span;
            health.fps_measured = Some(fps);
            health.bitrate_kbps = Some((last.bytes - first.bytes) as f64 * 8.0 / 1000.0 / span);
            if full_window {
                hw.steady_fps = Some(hw.steady_fps.map_or(fps, |s| s.max(fps)));
            }
        }
        // The rate to hold the camera to: the config's, else what it has been seen to
        // send steadily, capped at what its stream declares (SDP or VUI). A declared
        // rate alone is not trusted: a stale SDP or a VUI fixed at 30 fps is common.
        let declared = info.declared_fps_milli.load(Ordering::Relaxed) as f64 / 1000.0;
        health.fps_expected = expected_fps(self.spec.expected_fps, hw.steady_fps, declared);
        let mut why = Vec::new();
        if let (true, Some(exp), Some(got)) = (full_window, health.fps_expected, health.fps_measured) {
            if got < exp * h.min_fps_ratio {
                health.problems.push(HealthProblem::LowFps);
                why.push(format!("low fps: {got:.1} of {exp:.1} expected"));
            }
        }
        health.jitter_ms = jitter_ms;
        health.gop_secs = info.gop().map(|g| g.as_secs_f64());
        let (received, lost) = (last.rtp_received - first.rtp_received, last.rtp_lost - first.rtp_lost);
        if received + lost > 0 {
            let pct = lost as f64 * 100.0 / (received + lost) as f64;
            health.packet_loss_pct = Some(pct);
            if full_window && pct > h.max_packet_loss_pct {
                health.problems.push(HealthProblem::PacketLoss);
                why.push(format!("{pct:.1}% packet loss"));
            }
        }
        let errors = last.errors - first.errors;
        if errors >= h.max_decode_errors {
            health.problems.push(HealthProblem::DecodeErrors);
            why.push(format!("{errors} decode errors in {span:.0} s"));
        }
        {
            let pic = info.picture.lock().unwrap();
            health.mean_luma = pic.mean_luma;
            health.luma_stddev = pic.stddev;
            let unchanged = pic.unchanged_for();
            health.unchanged_secs = Some(unchanged.as_secs_f64());
            if unchanged.as_secs_f64() >= h.frozen_secs {
                health.problems.push(HealthProblem::Frozen);
                why.push(format!("frozen picture for {:.0} s", unchanged.as_secs_f64()));
            }
            let dark = pic.dark_for();
            if dark.as_secs_f64() >= h.blackout_secs {
                health.problems.push(HealthProblem::Blackout);
                why.push(format!(
                    "blackout or obstruction for {:.0} s (mean luma {:.0}, stddev {:.1})",
                    dark.as_secs_f64(),
                    pic.mean_luma.unwrap_or(0.0),
                    pic.stddev.unwrap_or(0.0)
                ));
            }
        }
        let stable = Duration::from_secs_f64(self.settings.ingest.backoff_reset_secs);
        if let Some(every) = self.drops.borrow().every(now, now.duration_since(since), stable) {
            health.problems.push(HealthProblem::LinkDrops);
            why.push(format!("link drops every ~{every:.0} s"));
        }
        let key = health.problems.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",");
        self.stats.set_health(health);
        if why.is_empty() {
            if self.stats.state() == CameraState::Degraded {
                self.transition(CameraState::Streaming, "healthy again");
            }
        } else {
            self.transition_keyed(CameraState::Degraded, &why.join("; "), &key);
        }
    }

    /// Starts, polls and finishes the main-stream probe when one is due.
    fn tick_main_probe(&self) {
        let mut m = self.main.borrow_mut();
        let Some(next) = m.next else { return };
        let h = &self.settings.health;
        if let Some(probe) = &m.running {
            if let Some(result) = probe.poll() {
                if result.ok == Some(false) {
                    tracing::warn!(error = ?result.error, "main stream probe failed");
                }
                self.stats.set_main_stream(Some(result));
                m.running = None;
                m.next = Some(Instant::now() + Duration::from_secs_f64(h.main_probe_interval_secs));
            }
        } else if Instant::now() >= next {
            let url = self.spec.main_url.as_deref().expect("a main probe is scheduled only with a main_url");
            let ing = &self.settings.ingest;
            let length = Duration::from_secs_f64(h.main_probe_secs);
            match MainProbe::start(url, self.spec.credentials.as_ref(), ing.rtsp_transport, ing.latency_ms, length) {
                Ok(p) => m.running = Some(p),
                Err(e) => {
                    let mut ms = self.stats.main_stream().unwrap_or_default();
                    ms.ok = Some(false);
                    ms.error = Some(redact_text(&e.to_string()));
                    ms.checked_at = Some(Utc::now());
                    self.stats.set_main_stream(Some(ms));
                    m.next = Some(Instant::now() + Duration::from_secs_f64(h.main_probe_interval_secs));
                }
            }
        }
    }

    /// Sleeps up to `d`; true if a stop was asked for meanwhile.
    fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.cancel.is_cancelled() {
                return true;
            }
            self.tick_main_probe();
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(100)));
        }
        self.cancel.is_cancelled()
    }

    fn transition(&self, state: CameraState, reason: &str) {
        self.transition_keyed(state, reason, reason)
    }

    /// Records a transition unless it repeats the last one; `key` says what counts as
    /// the same (for `degraded`: the same problems, whatever their durations).
    fn transition_keyed(&self, state: CameraState, reason: &str, key: &str) {
        self.stats.set_state(state, reason);
        {
            let mut last = self.announced.borrow_mut();
            // Each failure is news even when the previous one was too; a degraded
            // camera is news again when what is wrong changes.
            let repeat = match &*last {
                Some((s, _)) if *s != state => false,
                Some(_) if state == CameraState::BackingOff => false,
                Some((_, k)) if state == CameraState::Degraded => k == key,
                Some(_) => true,
                None => false,
            };
            if repeat {
                return;
            }
            *last = Some((state, key.to_owned()));
        }
        if state == CameraState::Degraded {
            tracing::warn!(reason, "camera degraded");
        } else {
            tracing::info!(to = state.as_str(), reason, "camera state");
        }
        let msg = StatusChange { camera: self.spec.id.clone(), at: Utc::now(), state, reason: reason.to_owned() };
        // Blocking while the journal is full: transitions feed uptime and must not be
        // lost. Closed only once every camera has stopped.
        if self.status.append(vec![StoreMsg::Status(msg)]).is_err() {
            tracing::warn!("event journal closed; status transition not recorded");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_units_count_only_what_never_decodes() {
        let mut l = LostUnits::default();
        assert_eq!(l.update(5, 0), (0, 0), "nothing before the first picture");
        assert_eq!(l.update(10, 1), (0, 0));
        assert_eq!(l.update(20, 11), (0, 0), "in step");
        assert_eq!(l.update(25, 12), (0, 0), "within the decoder's delay");
        assert_eq!(l.update(40, 12), (11, 11), "15 units in, none out");
        assert_eq!(l.update(60, 12), (20, 31));
        assert_eq!(l.update(63, 13), (2, 33), "a stray picture does not end the run");
        assert_eq!(l.update(66, 16), (0, 0), "pictures again end the run");
    }

    #[test]
    fn the_expected_frame_rate_is_measured_and_never_the_declared_one_alone() {
        // A stale SDP or a VUI fixed at 30 fps on a camera sending 10.
        assert_eq!(expected_fps(None, Some(10.1), 30.0), Some(10.1));
        // A camera sending more than it declares is held to what it declares.
        assert_eq!(expected_fps(None, Some(25.0), 10.0), Some(10.0));
        assert_eq!(expected_fps(None, Some(12.5), 0.0), Some(12.5), "nothing declared");
        assert_eq!(expected_fps(None, None, 30.0), None, "nothing measured yet");
        assert_eq!(expected_fps(Some(25.0), Some(10.0), 30.0), Some(25.0), "the config wins");
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_bounded_jitter_and_resets() {
        let cfg = IngestConfig {
            backoff_initial_secs: 1.0,
            backoff_max_secs: 10.0,
            backoff_jitter: 0.2,
            ..Default::default()
        };
        let mut b = Backoff::new(&cfg);
        let mut rng = rand::rng();
        let waits: Vec<f64> = (0..6).map(|_| b.next_wait(&mut rng).as_secs_f64()).collect();
        for (w, base) in waits.iter().zip([1.0, 2.0, 4.0, 8.0, 10.0, 10.0]) {
            assert!(*w >= base && *w <= base * 1.2 + 1e-9, "{waits:?}");
        }
        b.reset();
        assert!(b.next_wait(&mut rng).as_secs_f64() <= 1.2);
    }
}
