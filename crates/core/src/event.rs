//! What detection hands to the store: one record per tracked object, and camera
//! status transitions.

use crate::{CameraId, EventId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A box in source-image pixels: left, top, right, bottom.
pub type BBox = [f32; 4];

/// Where an event is in its life.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EventPhase {
    /// The rule fired.
    Started,
    /// Still going, with a better snapshot.
    Updated,
    /// Over: the object left the zone, or was lost, or the count fell.
    Ended,
}

/// Why an event ended (`events.end_reason`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The object left (the zone, or the picture for the tracker's max age) or the
    /// count fell: the rule's own end.
    Ended,
    /// This node stopped analysing the camera: shutdown, the camera handed to another
    /// node, removed, disabled or its rules changed. `ended_at` is when the object was
    /// last seen.
    NodeStopped,
    /// The process that made the event died without ending it (SIGKILL, crash, power
    /// loss); closed by the next process of the node, or by the node that took the
    /// camera over, at `last_seen_at`.
    NodeLost,
    /// The camera stopped sending pictures; closed at `last_seen_at`.
    CameraLost,
}

impl EndReason {
    /// snake_case name, as stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Ended => "ended",
            EndReason::NodeStopped => "node_stopped",
            EndReason::NodeLost => "node_lost",
            EndReason::CameraLost => "camera_lost",
        }
    }
}

/// One event: a rule that fired on a tracked object (or, for a `count` rule, on a
/// group of them). The same `id` is sent when it starts, when its best snapshot
/// improves and when it ends; the store upserts by `id`, so a replay never
/// duplicates an event. A track fires each rule at most once.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EventRecord {
    /// UUIDv7 made when the track was confirmed.
    pub id: EventId,
    /// Camera that saw it.
    pub camera: CameraId,
    /// The tracker's id for the object, unique per camera and process run; for a
    /// `count` event, the track that tipped the count over.
    pub track_id: u64,
    /// Class label from the model's label list, e.g. `person`.
    pub class: String,
    /// Best detection score seen on this track.
    pub score: f32,
    /// Box of the best-scoring detection, in source-image pixels.
    pub bbox: BBox,
    /// Capture time of the first frame of the track.
    pub started_at: DateTime<Utc>,
    /// Capture time of the last frame the object was seen in.
    pub last_seen_at: DateTime<Utc>,
    /// Set once the track has ended (object gone for the tracker's max age).
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it ended; set with `ended_at`. Absent in journal records from before
    /// end reasons existed (read as `ended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
    /// Number of analysed frames in which the object was matched.
    pub frames: u32,
    /// Name of the rule that fired (`presence` when the camera has no rules).
    pub rule: String,
    /// Whether the rule makes alerts: the store raises one when the event is first
    /// written. Absent in spool records from before alerts existed.
    #[serde(default)]
    pub alert: bool,
    /// Zone (or line) of the rule, if it has one.
    pub zone: Option<String>,
    /// Snapshot file name in the snapshot directory, if one was written.
    pub snapshot: Option<String>,
    /// Which step of the event this record is.
    pub phase: EventPhase,
    /// The process that made it (`nodes.id`, one per process start), stamped by the
    /// node's journal when the record is made durable; `None` before that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<uuid::Uuid>,
}

/// A camera's coarse state, as operators and contractors see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraState {
    /// Pipeline being built or connecting.
    Starting,
    /// Frames are arriving.
    Streaming,
    /// Failed; waiting before the next attempt.
    BackingOff,
    /// Stopped on purpose (shutdown, removed, disabled).
    Stopped,
    /// Connected, but nothing arrived for the stall timeout; about to restart.
    Stalled,
    /// Frames arrive but a health check fails (frozen, dark, low fps, decode errors);
    /// the reason says which.
    Degraded,
}

impl CameraState {
    /// snake_case name, as stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            CameraState::Starting => "starting",
            CameraState::Streaming => "streaming",
            CameraState::BackingOff => "backing_off",
            CameraState::Stopped => "stopped",
            CameraState::Stalled => "stalled",
            CameraState::Degraded => "degraded",
        }
    }

    /// True while frames arrive (streaming, or streaming with a health problem).
    pub fn is_up(self) -> bool {
        matches!(self, CameraState::Streaming | CameraState::Degraded)
    }

    /// Inverse of [`CameraState::as_str`]-as-u8 storage in atomics.
    pub fn from_u8(v: u8) -> CameraState {
        match v {
            1 => CameraState::Streaming,
            2 => CameraState::BackingOff,
            3 => CameraState::Stopped,
            4 => CameraState::Stalled,
            5 => CameraState::Degraded,
            _ => CameraState::Starting,
        }
    }

    /// Compact form for atomics.
    pub fn as_u8(self) -> u8 {
        match self {
            CameraState::Starting => 0,
            CameraState::Streaming => 1,
            CameraState::BackingOff => 2,
            CameraState::Stopped => 3,
            CameraState::Stalled => 4,
            CameraState::Degraded => 5,
        }
    }
}

/// Why a camera's pipeline was torn down and rebuilt (the `reason` label of
/// `varta_pipeline_restarts_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartReason {
    /// Could not connect or negotiate (refused, unreachable, 401, 404, bad SDP).
    Connect,
    /// An error while streaming (connection dropped, decoder error).
    Error,
    /// The camera ended the stream.
    Eos,
    /// No buffer for the stall timeout.
    Stall,
}

impl RestartReason {
    /// Every reason, in label order.
    pub const ALL: [RestartReason; 4] =
        [RestartReason::Connect, RestartReason::Error, RestartReason::Eos, RestartReason::Stall];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartReason::Connect => "connect",
            RestartReason::Error => "error",
            RestartReason::Eos => "eos",
            RestartReason::Stall => "stall",
        }
    }
}

/// A camera state transition, recorded for uptime and maintenance.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StatusChange {
    /// Which camera.
    pub camera: CameraId,
    /// When the transition happened.
    pub at: DateTime<Utc>,
    /// The new state.
    pub state: CameraState,
    /// Why, in words (error message with credentials removed, "eos", …).
    pub reason: String,
}

/// Everything the store's writer accepts, in one channel so order is kept. The
/// serde form is what the spool holds on disk.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum StoreMsg {
    /// An event insert or update.
    Event(EventRecord),
    /// A camera status transition.
    Status(StatusChange),
    /// A vehicle track's number plate (issue #20).
    Plate(PlateRecord),
    /// An event's video clip, written (issue #22).
    Clip(ClipRecord),
    /// An event's snapshot and crop, written: their hashes (issue #22).
    Snapshot(SnapshotRecord),
}

/// Follows events as the detector makes them, in the order it makes them: the clip
/// recorder (`varta_ingest::clip::Clips`) opens a clip on `Started` and closes it
/// after the post-roll once `Ended`. Called on a detection worker: it must not block.
pub trait EventObserver: Send + Sync + std::fmt::Debug {
    /// One record, as it goes to the event log.
    fn event(&self, record: &EventRecord);
}

/// The video clip of one event: the camera's own bitstream from the keyframe before
/// the event's pre-roll to its post-roll, remuxed to MP4 without re-encoding
/// (`varta_ingest::clip`), written (atomically) before this record is journalled.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ClipRecord {
    /// The event.
    pub event_id: EventId,
    /// Its start (the partition key).
    pub event_started_at: DateTime<Utc>,
    /// The clip's file in the snapshot directory (`<event id>.mp4`).
    pub file: String,
    /// SHA-256 of the file as written, lower-case hex.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// From its first frame to its last, in seconds.
    pub secs: f64,
}

/// The SHA-256 of an event's two pictures (`<event id>.jpg` and `<event id>.crop.jpg`)
/// as the snapshot thread wrote them, journalled after both files exist. An
/// `updated` event rewrites them, and a new record follows.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SnapshotRecord {
    /// The event.
    pub event_id: EventId,
    /// Its start (the partition key).
    pub event_started_at: DateTime<Utc>,
    /// SHA-256 of the whole picture's JPEG bytes, lower-case hex.
    pub snapshot_sha256: String,
    /// SHA-256 of the crop's JPEG bytes, lower-case hex.
    pub crop_sha256: String,
}

/// The number plate of one vehicle track: the vote over the reads of its best crops
/// (`varta_core::plate::vote`), stored once per event in `plate_reads`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PlateRecord {
    /// Id of the read (UUIDv7), also the crop's file name (`<id>.plate.jpg`).
    pub id: uuid::Uuid,
    /// The vehicle's event.
    pub event_id: EventId,
    /// Its start (the partition key).
    pub event_started_at: DateTime<Utc>,
    /// Which camera.
    pub camera: CameraId,
    /// The vehicle's track.
    pub track_id: u64,
    /// When the plate became known: capture time of the frame whose read decided it.
    pub read_at: DateTime<Utc>,
    /// The best single read, normalised Latin.
    pub text: String,
    /// The voted plate, normalised Latin (searched and matched).
    pub plate: String,
    /// Confidence of the vote, 0–1.
    pub confidence: f32,
    /// Reads that voted.
    pub reads: u32,
    /// The plate's box in camera pixels (left, top, right, bottom).
    pub bbox: BBox,
    /// Crop file in the snapshot directory, if written.
    pub crop: Option<String>,
}
