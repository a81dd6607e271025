//! Shared vocabulary of Varta: identifiers, configuration, errors, metrics and the
//! frame hand-off between ingest and detection.
//!
//! This crate has no I/O of its own beyond reading config files; every other crate
//! depends on it and on nothing else of Varta's unless the architecture says so.

pub mod clock;
pub mod config;
pub mod error;
pub mod event;
pub mod frame;
pub mod ids;
pub mod journal;
pub mod metrics;
pub mod plate;
pub mod problems;
pub mod redact;
pub mod zones;

pub use error::{Error, ErrorKind};
pub use ids::{CameraId, EventId, SiteId};

/// Cancellation shared by every long-lived task and thread of one process.
pub use tokio_util::sync::CancellationToken as Shutdown;
