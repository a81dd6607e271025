//! The API's wire types: what a response body, an SSE `data:` line or a sink's
//! message carries, with their OpenAPI schemas.
//!
//! They are defined here, not on the store's rows, so that the JSON the API
//! promises changes only by an edit to this file: a column added to a store row is
//! not published until a field is added here, and a column removed or renamed
//! there fails to compile here. Each type converts from its store row with `From`;
//! the enums convert both ways.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use varta_store::{accounts, alerts, plates, queries, samples, tasks, uptime};

/// A wire struct with the same fields as its store row, and `From` for the row.
/// Each field converts with `Into`, so a field may be a wire enum of the row's enum.
macro_rules! wire_struct {
    ($(#[$m:meta])* pub struct $name:ident from $src:ty {
        $($(#[$fm:meta])* pub $f:ident: $t:ty,)*
    }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Serialize, ToSchema)]
        pub struct $name {
            $($(#[$fm])* pub $f: $t,)*
        }

        impl From<$src> for $name {
            fn from(r: $src) -> $name {
                $name { $($f: r.$f.into(),)* }
            }
        }
    };
}

/// A wire enum (snake_case strings) mirroring a store enum variant for variant,
/// with `From` both ways.
macro_rules! wire_enum {
    ($(#[$m:meta])* pub enum $name:ident = $src:ident {
        $($(#[$vm:meta])* $v:ident,)*
    }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vm])* $v,)*
        }

        impl From<$src> for $name {
            fn from(x: $src) -> $name {
                match x { $($src::$v => $name::$v,)* }
            }
        }

        impl From<$name> for $src {
            fn from(x: $name) -> $src {
                match x { $($name::$v => $src::$v,)* }
            }
        }
    };
}

use accounts::Role as StoreRole;
use tasks::{TaskKind as StoreTaskKind, TaskState as StoreTaskState};

wire_enum! {
    /// An account's role: what its holder may see and do.
    pub enum Role = StoreRole {
        /// Police operator: alerts, events, snapshots, acknowledgements.
        Operator,
        /// Maintenance contractor: sites, camera health, uptime, tasks; no pictures of people.
        Contractor,
        /// Administrator: everything.
        Admin,
    }
}

wire_enum! {
    /// What a maintenance task is about: a camera's trouble as a node sees it, or
    /// `other` (opened by a person).
    pub enum TaskKind = StoreTaskKind {
        /// The camera is not streaming.
        Offline,
        /// The picture has not changed.
        Frozen,
        /// The picture is dark or featureless (covered lens).
        Blackout,
        /// Fewer frames than expected.
        LowFps,
        /// The stream does not decode cleanly.
        DecodeErrors,
        /// Sessions keep dropping after a short while (flapping link).
        LinkDrops,
        /// RTP packets are lost on the way (a lossy network).
        PacketLoss,
        /// Anything else, opened by a person.
        Other,
    }
}

wire_enum! {
    /// Where a maintenance task stands, in order.
    pub enum TaskState = StoreTaskState {
        /// Nobody has taken it.
        Open,
        /// Given to someone.
        Assigned,
        /// Being worked on.
        InProgress,
        /// The contractor says it is done.
        Resolved,
        /// An administrator confirmed it: final.
        Verified,
    }
}

wire_struct! {
    /// One event: one tracked object that a rule fired on.
    pub struct Event from queries::EventRow {
        /// UUIDv7.
        pub id: uuid::Uuid,
        /// Camera id.
        pub camera: String,
        /// Site id of the camera.
        pub site: String,
        /// Tracker id.
        pub track_id: i64,
        /// Class label.
        pub class: String,
        /// Best score, 0..1.
        pub score: f32,
        /// Left, top, right, bottom in camera pixels.
        pub bbox: Vec<f32>,
        /// First seen.
        pub started_at: DateTime<Utc>,
        /// Last seen.
        pub last_seen_at: DateTime<Utc>,
        /// When the event ended; null while it is open. For an event closed by
        /// recovery (`end_reason` other than `ended`), when the object was last seen.
        pub ended_at: Option<DateTime<Utc>>,
        /// Why it ended: `ended` (the object left, or the count fell), `node_stopped`
        /// (the node stopped analysing the camera), `node_lost` (the process that made
        /// it died; closed by recovery), `camera_lost` (the camera stopped sending
        /// pictures); null while open.
        pub end_reason: Option<String>,
        /// Analysed frames the object was matched in.
        pub frames: i32,
        /// Rule that fired.
        pub rule: String,
        /// Its zone or line.
        pub zone: Option<String>,
        /// Snapshot file in the snapshot directory.
        pub snapshot: Option<String>,
        /// The event's video clip (`/api/v1/events/{id}/clip`, MP4, range requests),
        /// or null while it is being written or when there is none.
        pub clip: Option<String>,
        /// SHA-256 of the clip as it was written, lower-case hex.
        pub clip_sha256: Option<String>,
        /// SHA-256 of the snapshot as it was written, lower-case hex.
        pub snapshot_sha256: Option<String>,
        /// SHA-256 of the crop (`?crop=true`) as it was written, lower-case hex.
        pub crop_sha256: Option<String>,
        /// Id of the node key that signed the event's manifest (`ed25519:…`); null
        /// until the event has ended and its evidence is signed. Signed events can be
        /// exported (`/api/v1/events/{id}/export`).
        pub manifest_key: Option<String>,
    }
}

wire_struct! {
    /// An alert with what the console shows of its event.
    pub struct Alert from alerts::AlertRow {
        /// Alert id: increasing, the SSE event id.
        pub id: i64,
        /// The event.
        pub event_id: uuid::Uuid,
        /// Camera id.
        pub camera: String,
        /// Camera name.
        pub camera_name: String,
        /// Site id.
        pub site: String,
        /// Site name.
        pub site_name: String,
        /// Rule that fired.
        pub rule: String,
        /// Its zone or line.
        pub zone: Option<String>,
        /// Class of the object.
        pub class: String,
        /// Detection score, 0..1.
        pub score: f32,
        /// When the object was first seen.
        pub started_at: DateTime<Utc>,
        /// When the alert was raised (the event's commit).
        pub created_at: DateTime<Utc>,
        /// Whether the event has a snapshot (`/api/v1/events/{event_id}/snapshot`).
        pub has_snapshot: bool,
        /// Who acknowledged it.
        pub acked_by: Option<String>,
        /// When.
        pub acked_at: Option<DateTime<Utc>>,
        /// What came of it: `false_alarm`, `dispatched` or `other`.
        pub ack_outcome: Option<String>,
        /// The acknowledger's comment.
        pub ack_comment: Option<String>,
        /// A watchlist alert's plate, normalised Latin (`AX1234BI`); null for others.
        pub plate: Option<String>,
        /// The same as operators read it (`АХ 1234 ВІ`).
        pub plate_display: Option<String>,
        /// The plate read (its crop: `/api/v1/plates/reads/{id}/crop`).
        pub plate_read_id: Option<uuid::Uuid>,
        /// Why the plate is wanted (the watchlist entry's reason).
        pub watchlist_reason: Option<String>,
    }
}

wire_struct! {
    /// A camera's last recorded state (whichever node wrote it).
    pub struct CameraStatus from queries::CameraStatusRow {
        /// Camera id.
        pub camera: String,
        /// Camera name.
        pub name: String,
        /// Site id.
        pub site: String,
        /// Site name.
        pub site_name: String,
        /// Whether the camera is configured to be pulled.
        pub enabled: bool,
        /// Last state (`streaming`, `degraded`, `backing_off`, …); null if none recorded.
        pub state: Option<String>,
        /// Why.
        pub reason: Option<String>,
        /// Since when.
        pub since: Option<DateTime<Utc>>,
        /// Node holding its lease, if any.
        pub node: Option<String>,
        /// Open maintenance tasks of the camera.
        pub open_tasks: i64,
    }
}

wire_struct! {
    /// A node with the cameras it holds.
    pub struct Node from queries::NodeRow {
        /// Node run id.
        pub id: uuid::Uuid,
        /// Configured name.
        pub name: String,
        /// Started.
        pub started_at: DateTime<Utc>,
        /// Last heartbeat.
        pub last_heartbeat: DateTime<Utc>,
        /// Set on clean shutdown.
        pub stopped_at: Option<DateTime<Utc>>,
        /// Most cameras it may hold.
        pub capacity: i32,
        /// Its API address.
        pub api_addr: Option<String>,
        /// Varta version.
        pub version: String,
        /// Cameras it holds now.
        pub cameras: Vec<String>,
        /// Its clock against the database's at its last lease tick: database minus
        /// node, in milliseconds; beyond ±5000 the node's time synchronisation is
        /// broken (what nodes compare is stamped in database time meanwhile).
        pub clock_offset_ms: Option<i64>,
        /// Seconds since its last heartbeat, by the database's clock; a running node
        /// beats every `lease_renew_secs`, so one past its lease TTL is lost.
        pub heartbeat_age_secs: f64,
    }
}

wire_struct! {
    /// A maintenance task (work order).
    pub struct Task from tasks::Task {
        /// Row id.
        pub id: i64,
        /// Site id.
        pub site: String,
        /// Camera id, if the task is about one camera.
        pub camera: Option<String>,
        /// What the task is about.
        pub kind: TaskKind,
        /// What was seen.
        pub reason: String,
        /// Where it stands.
        pub state: TaskState,
        /// Who works on it.
        pub assignee: Option<String>,
        /// `system` or the user who opened it.
        pub opened_by: String,
        /// Opened.
        pub opened_at: DateTime<Utc>,
        /// Since when the trouble lasted when the task was opened.
        pub trouble_since: Option<DateTime<Utc>>,
        /// When the camera was seen well again (cleared if the trouble comes back).
        pub recovered_at: Option<DateTime<Utc>>,
        /// Marked resolved.
        pub resolved_at: Option<DateTime<Utc>>,
        /// By whom.
        pub resolved_by: Option<String>,
        /// Set when it was marked resolved while the camera had not recovered.
        pub resolved_while_down: bool,
        /// Verified.
        pub verified_at: Option<DateTime<Utc>>,
        /// By whom.
        pub verified_by: Option<String>,
        /// Free text.
        pub notes: String,
        /// Last change.
        pub updated_at: DateTime<Utc>,
    }
}

wire_struct! {
    /// An account as listed (never with its password hash).
    pub struct User from accounts::User {
        /// Row id.
        pub id: i64,
        /// Login name.
        pub name: String,
        /// Role.
        pub role: Role,
        /// Created.
        pub created_at: DateTime<Utc>,
        /// Set when the account may no longer log in.
        pub disabled_at: Option<DateTime<Utc>>,
        /// Live login sessions (not revoked, not expired).
        pub sessions: i64,
        /// Last use of any of its tokens, to the minute.
        pub last_seen_at: Option<DateTime<Utc>>,
    }
}

wire_struct! {
    /// A node's health samples, oldest first, as columns (`[node] sample_secs` apart).
    pub struct NodeSeries from samples::NodeSeries {
        /// Node name.
        pub node: String,
        /// Sample times.
        pub at: Vec<DateTime<Utc>>,
        /// Camera leases held.
        pub cameras: Vec<i32>,
        /// `[node] capacity`.
        pub capacity: Vec<i32>,
        /// Frames decoded per second, every camera together.
        pub decoded_fps: Vec<f32>,
        /// Frames analysed per second, every camera together.
        pub analysed_fps: Vec<f32>,
        /// The process's CPU over the interval, percent of one core.
        pub cpu_percent: Vec<f32>,
    }
}

wire_struct! {
    /// A camera's health samples, oldest first, as columns.
    pub struct CameraSeries from samples::CameraSeries {
        /// Camera id.
        pub camera: String,
        /// Sample times.
        pub at: Vec<DateTime<Utc>>,
        /// Compressed frames received per second.
        pub fps: Vec<f32>,
        /// Kilobits per second received.
        pub kbps: Vec<f32>,
        /// Decoder and stream errors per interval.
        pub decode_errors: Vec<i32>,
        /// Frames analysed per second.
        pub analysed_fps: Vec<f32>,
    }
}

wire_struct! {
    /// One audit log entry.
    pub struct AuditRecord from accounts::AuditRow {
        /// Row id (ascending in time).
        pub id: i64,
        /// When.
        pub at: DateTime<Utc>,
        /// Who.
        pub actor: Option<String>,
        /// What (`login`, `snapshot_view`, `event_search`, …).
        pub action: String,
        /// On what.
        pub target: Option<String>,
        /// From where (client address).
        pub address: Option<String>,
        /// Details, by action.
        #[schema(value_type = Object)]
        pub detail: serde_json::Value,
    }
}

wire_struct! {
    /// One outage within the period (clipped to it).
    pub struct Outage from uptime::Outage {
        /// Start (the period's start if it began before).
        pub start: DateTime<Utc>,
        /// End (the period's end if it was still going on).
        pub end: DateTime<Utc>,
        /// True when the camera was still down at the period's end.
        pub ongoing: bool,
        /// The state it began with (`backing_off`, `stalled`, `stopped`, `degraded`, …).
        pub state: String,
        /// Why, as recorded.
        pub reason: String,
        /// Length in seconds.
        pub secs: f64,
    }
}

/// One camera's uptime over the period.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CameraUptime {
    /// Camera id.
    pub camera: String,
    /// Its site.
    pub site: String,
    /// Seconds in the period.
    pub period_secs: f64,
    /// Seconds online.
    pub online_secs: f64,
    /// Seconds down because `degraded`.
    pub degraded_secs: f64,
    /// Seconds in planned maintenance: not in `period_secs`, neither up nor down.
    pub planned_secs: f64,
    /// online / period × 100.
    pub uptime_percent: f64,
    /// Outages, oldest first.
    pub outages: Vec<Outage>,
}

impl From<uptime::CameraUptime> for CameraUptime {
    fn from(c: uptime::CameraUptime) -> CameraUptime {
        CameraUptime {
            camera: c.camera,
            site: c.site,
            period_secs: c.period_secs,
            online_secs: c.online_secs,
            degraded_secs: c.degraded_secs,
            planned_secs: c.planned_secs,
            uptime_percent: c.uptime_percent,
            outages: c.outages.into_iter().map(Outage::from).collect(),
        }
    }
}

wire_struct! {
    /// One site's uptime: its cameras' time added up.
    pub struct SiteUptime from uptime::SiteUptime {
        /// Site id.
        pub site: String,
        /// Cameras counted.
        pub cameras: usize,
        /// Camera-seconds in the period.
        pub period_secs: f64,
        /// Camera-seconds online.
        pub online_secs: f64,
        /// online / period × 100.
        pub uptime_percent: f64,
        /// Outages of its cameras.
        pub outages: usize,
    }
}

/// The uptime report for a period.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UptimeReport {
    /// Period start.
    pub from: DateTime<Utc>,
    /// Period end (at most now).
    pub to: DateTime<Utc>,
    /// Per camera.
    pub cameras: Vec<CameraUptime>,
    /// Per site.
    pub sites: Vec<SiteUptime>,
}

impl From<uptime::UptimeReport> for UptimeReport {
    fn from(r: uptime::UptimeReport) -> UptimeReport {
        UptimeReport {
            from: r.from,
            to: r.to,
            cameras: r.cameras.into_iter().map(CameraUptime::from).collect(),
            sites: r.sites.into_iter().map(SiteUptime::from).collect(),
        }
    }
}

/// Converts a list of store rows into their wire type.
pub fn all<R, W: From<R>>(rows: Vec<R>) -> Vec<W> {
    rows.into_iter().map(W::from).collect()
}

wire_struct! {
    /// A plate found by a search, with its sightings summed up.
    pub struct PlateHit from plates::PlateHitRow {
        /// Normalised Latin text (`AX1234BI`).
        pub plate: String,
        /// As operators read it (`АХ 1234 ВІ`).
        pub display: String,
        /// How it matched: `exact`, `partial`, `confusion` (one OCR confusion away) or
        /// `similar` (trigram similarity ≥ 0.3).
        pub matched: String,
        /// Sightings (vehicle passages).
        pub sightings: i64,
        /// Cameras it was seen on.
        pub cameras: i64,
        /// First sighting.
        pub first_seen: DateTime<Utc>,
        /// Last sighting.
        pub last_seen: DateTime<Utc>,
        /// Best vote confidence, 0–1.
        pub best_confidence: f32,
    }
}

wire_struct! {
    /// One sighting of a plate: a vehicle passage on one camera.
    pub struct PlateSighting from plates::PlateSightingRow {
        /// Plate read id (its crop: `/api/v1/plates/reads/{id}/crop`).
        pub id: uuid::Uuid,
        /// The vehicle's event.
        pub event_id: uuid::Uuid,
        /// Normalised plate as voted.
        pub plate: String,
        /// As operators read it.
        pub display: String,
        /// When the best read's frame was captured.
        pub read_at: DateTime<Utc>,
        /// Camera id.
        pub camera: String,
        /// Camera name.
        pub camera_name: String,
        /// Site id.
        pub site: String,
        /// Site name.
        pub site_name: String,
        /// Vote confidence, 0–1.
        pub confidence: f32,
        /// Reads that voted.
        pub reads: i32,
        /// Class of the vehicle (`car`, `bus`, …).
        pub class: Option<String>,
        /// Whether the plate's crop exists.
        pub has_crop: bool,
    }
}

wire_struct! {
    /// A watchlist entry: a wanted plate.
    pub struct WatchlistEntry from plates::WatchlistRow {
        /// Entry id.
        pub id: i64,
        /// Normalised Latin plate.
        pub plate: String,
        /// As operators read it.
        pub display: String,
        /// Why it is wanted.
        pub reason: String,
        /// Who added it.
        pub added_by: String,
        /// When.
        pub added_at: DateTime<Utc>,
        /// When it stops matching (null: until removed).
        pub expires_at: Option<DateTime<Utc>>,
        /// Who removed it.
        pub removed_by: Option<String>,
        /// When.
        pub removed_at: Option<DateTime<Utc>>,
        /// Why.
        pub removed_reason: Option<String>,
    }
}

wire_struct! {
    /// A planned maintenance window: time left out of uptime.
    pub struct MaintenanceWindow from uptime::WindowRow {
        /// Id.
        pub id: i64,
        /// Site id.
        pub site: String,
        /// Camera id; null: every camera of the site.
        pub camera: Option<String>,
        /// Start.
        pub starts_at: DateTime<Utc>,
        /// End.
        pub ends_at: DateTime<Utc>,
        /// What is done.
        pub reason: String,
        /// Who recorded it.
        pub created_by: String,
        /// When.
        pub created_at: DateTime<Utc>,
    }
}
