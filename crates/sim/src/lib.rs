//! `varta sim`: N simulated RTSP cameras at `rtsp://ADDR/cam/1..N`.
//!
//! The clip is demuxed once into H.264 access units held in memory ([`clip`]).
//! Every camera replays those same buffers (shared memory, no per-camera encoding or
//! decoding), paced in real time by one feeder thread and time-stamped by a live
//! `appsrc`, so timestamps keep increasing across loops ([`server`]). Each camera
//! starts at a different keyframe so the cameras do not show the same picture.

pub mod clip;
pub mod server;

pub use clip::Clip;
pub use server::{SimConfig, SimServer};
