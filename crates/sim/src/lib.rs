//! `varta sim`: N simulated RTSP cameras at `rtsp://ADDR/cam/1..N`.
//!
//! The clip is demuxed once into H.264 or H.265 access units held in memory ([`clip`]).
//! Every camera replays those same buffers (shared memory, no per-camera encoding or
//! decoding), paced in real time by one feeder thread and time-stamped by a live
//! `appsrc`, so timestamps keep increasing across loops ([`server`]). Each camera
//! starts at a different keyframe so the cameras do not show the same picture.
//!
//! For the ingest's sake the simulator also plays the cameras' bad days: idle and
//! active scenes ([`Scene`], with still scenes encoded at start-up by [`scene`]) and
//! faults ([`Fault`]: dropped connections, stalls, refused connections, garbage,
//! frozen or dark pictures, and whole-server restarts).

pub mod clip;
pub mod plates;
pub mod scene;
pub mod server;

pub use clip::{Clip, SimCodec};
pub use server::{Fault, ParameterSets, Scene, SimConfig, SimServer};
