//! RTSP session keep-alive sent from outside `rtspsrc`.
//!
//! A camera may end a session that sends no request within the timeout it announced
//! in `Session: …;timeout=N` (RFC 2326 §12.37; many cameras and NVRs do, often with 30
//! or 60 s). GStreamer 1.22's rtspsrc (Debian 12) sends its keep-alive only when its
//! RTSP connection has been *silent* for the timeout: over UDP that is the case, but
//! over TCP the connection carries the interleaved RTP, so no keep-alive ever goes
//! out and the camera closes the session every timeout. GStreamer fixed this in 1.27
//! ("rtspsrc: Send RTSP keepalives in TCP/interleaved modes", merge request 9577).
//! Until then the supervisor sends one itself, on every transport: a `GET_PARAMETER`
//! without a body (RFC 2326 §10.8's "ping") through rtspsrc's `get-parameters` action,
//! which sends it on the session's own connection with its session id.
//!
//! rtspsrc does not tell the announced timeout, so keep-alives go every
//! `[ingest] rtsp_keepalive_secs` (15 s: within the shortest timeouts met in the
//! field, 20–30 s; RFC 2326's default is 60 s). The reply is read: `454 Session Not
//! Found` means the camera has ended the session, and the pipeline is rebuilt at once;
//! a camera that does not offer `GET_PARAMETER` (its OPTIONS reply) gets none, and is
//! logged once; over UDP rtspsrc's own OPTIONS keep-alive still covers it.

use gstreamer as gst;
use gstreamer::prelude::*;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What became of one keep-alive.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// The camera answered 2xx.
    Ok,
    /// `454 Session Not Found`: the camera has ended the session.
    SessionGone,
    /// The camera does not offer GET_PARAMETER (rtspsrc refused to send it, or the
    /// camera answered 405/501).
    Unsupported,
    /// Any other answer or failure, in words (`403 Forbidden`, `no reply`).
    Other(String),
}

impl Reply {
    /// From rtspsrc's `get-parameter-reply` structure: `rtsp-result` (0 = sent and
    /// answered, negative = a `GstRTSPResult` error), `rtsp-code` and `rtsp-reason`.
    fn from_structure(s: &gst::StructureRef) -> Reply {
        let result = s.get::<i32>("rtsp-result").unwrap_or(-1);
        let code = s.get::<i32>("rtsp-code").unwrap_or(0);
        let reason = s.get::<&str>("rtsp-reason").unwrap_or("");
        match (result, code) {
            (_, 454) => Reply::SessionGone,
            (_, 405 | 501) => Reply::Unsupported,
            // GST_RTSP_ERROR without an answer: rtspsrc did not send it, the camera's
            // OPTIONS reply lacked the method.
            (-1, 200) => Reply::Unsupported,
            (0, 200..=299) => Reply::Ok,
            (0, c) => Reply::Other(format!("{reason} ({c})")),
            (r, _) => Reply::Other(format!("request failed (GstRTSPResult {r})")),
        }
    }
}

/// Keep-alives of one pipeline run.
pub struct KeepAlive {
    every: Duration,
    next: Instant,
    /// Replies, sent by the promises' change functions on rtspsrc's thread.
    replies: (mpsc::Sender<Reply>, mpsc::Receiver<Reply>),
    pending: bool,
    /// The camera does not offer GET_PARAMETER: nothing more is sent.
    unsupported: bool,
}

impl KeepAlive {
    /// Keep-alives every `every` (zero: none), the first one `every` after `now`.
    pub fn new(every: Duration, now: Instant) -> KeepAlive {
        KeepAlive { every, next: now + every, replies: mpsc::channel(), pending: false, unsupported: every.is_zero() }
    }

    /// Sends a keep-alive through `src` (an rtspsrc) when one is due, and returns the
    /// reply to the previous one once it is there.
    pub fn tick(&mut self, src: &gst::Element, now: Instant) -> Option<Reply> {
        let mut reply = if self.pending { self.replies.1.try_recv().ok() } else { None };
        if self.pending && reply.is_none() && now >= self.next {
            // Unanswered for a whole interval (rtspsrc may fold a queued command into
            // a reconnection of its own): sent anew rather than never again.
            reply = Some(Reply::Other("no reply".into()));
        }
        if let Some(r) = &reply {
            self.pending = false;
            match r {
                Reply::Ok => tracing::trace!("keep-alive answered"),
                Reply::Unsupported => {
                    self.unsupported = true;
                    tracing::info!(
                        "the camera does not offer GET_PARAMETER: no keep-alives over TCP (GStreamer 1.22 \
                         sends its OPTIONS keep-alive only over UDP)"
                    );
                }
                Reply::SessionGone => {}
                Reply::Other(what) => tracing::debug!(reply = %what, "keep-alive refused"),
            }
        }
        if !self.unsupported && !self.pending && now >= self.next {
            self.next = now + self.every;
            self.send(src);
        }
        reply
    }

    /// Waits up to `max` for the reply to a keep-alive in flight; call it before the
    /// pipeline's state changes. rtspsrc 1.22 drops any command sent while its
    /// GET_PARAMETER is still queued ("ignore, we have a pending GET_PARAMETER"),
    /// including the WAIT that a change to PAUSED sends, and the change then blocks
    /// forever on the stream lock of its still-running receive loop. Once the reply
    /// is in, the command has left the queue.
    pub fn settle(&mut self, max: Duration) {
        if self.pending && self.replies.1.recv_timeout(max).is_ok() {
            self.pending = false;
        }
    }

    fn send(&mut self, src: &gst::Element) {
        let tx = self.replies.0.clone();
        let promise = gst::Promise::with_change_func(move |r| {
            let reply = match r {
                Ok(Some(s)) => Reply::from_structure(s),
                Ok(None) => Reply::Other("no reply".into()),
                Err(e) => Reply::Other(format!("no reply ({e:?})")),
            };
            // The receiver is gone once the run has ended: nothing to tell.
            let _ = tx.send(reply);
        });
        // No parameters: an empty body, the keep-alive form of GET_PARAMETER.
        let none: Vec<String> = Vec::new();
        let queued = src.emit_by_name::<bool>("get-parameters", &[&none, &None::<String>, &promise]);
        if queued {
            self.pending = true;
        } else {
            tracing::debug!("rtspsrc did not queue the keep-alive");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(result: i32, code: i32, reason: &str) -> Reply {
        gst::init().unwrap();
        let s = gst::Structure::builder("get-parameter-reply")
            .field("rtsp-result", result)
            .field("rtsp-code", code)
            .field("rtsp-reason", reason)
            .build();
        Reply::from_structure(&s)
    }

    #[test]
    fn replies_are_read_as_rtspsrc_gives_them() {
        assert_eq!(reply(0, 200, "OK"), Reply::Ok);
        assert_eq!(reply(0, 454, "Session Not Found"), Reply::SessionGone);
        assert_eq!(reply(0, 501, "Not Implemented"), Reply::Unsupported);
        assert_eq!(reply(-1, 200, "OK"), Reply::Unsupported, "not offered in OPTIONS: never sent");
        assert_eq!(reply(0, 403, "Forbidden"), Reply::Other("Forbidden (403)".into()));
        assert_eq!(reply(-7, 200, "OK"), Reply::Other("request failed (GstRTSPResult -7)".into()));
    }
}
