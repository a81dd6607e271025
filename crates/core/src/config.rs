//! The node's configuration file: typed, strict, and explained when wrong.
//!
//! Every struct denies unknown fields, so a misspelt key is an error rather than a
//! silently ignored setting. Errors name the key path (`cameras[2].url`) and the line
//! in the file. Stream credentials are never part of this text: a camera names its
//! credentials, which come from the environment or the secrets file (see
//! [`resolve_credentials`]). Every key is documented in `config/README.md`.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A whole config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Settings of this node.
    #[serde(default)]
    pub node: NodeConfig,
    /// Ingest (RTSP, decoding) settings shared by all cameras.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Detection (model, workers, tracker) settings.
    #[serde(default)]
    pub detect: DetectConfig,
    /// Event store settings.
    #[serde(default)]
    pub store: StoreConfig,
    /// Camera health checks (beyond up/down).
    #[serde(default)]
    pub health: HealthConfig,
    /// The control API and console: TLS, CORS, limits, sessions.
    #[serde(default)]
    pub api: ApiConfig,
    /// Where alerts go besides the console: MQTT, webhooks.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// When maintenance tasks open by themselves.
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
    /// Camera sites.
    #[serde(default)]
    pub sites: Vec<SiteConfig>,
    /// Cameras, each on one site.
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
}

/// `[node]`: this process.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Name of this node in logs and the API.
    pub name: String,
    /// Address the API and console listen on.
    pub api_listen: SocketAddr,
    /// TOML file with camera credentials (`[credentials.NAME] username/password`).
    pub secrets_file: Option<PathBuf>,
    /// Most cameras this node holds leases on at once.
    pub capacity: u32,
    /// How long a camera lease lasts without renewal: a dead node's cameras pass to
    /// the others within this time.
    pub lease_ttl_secs: f64,
    /// How often leases are renewed and free cameras claimed.
    pub lease_renew_secs: f64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "node-1".into(),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            secrets_file: None,
            capacity: 256,
            lease_ttl_secs: 15.0,
            lease_renew_secs: 3.0,
        }
    }
}

/// RTSP lower transport.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// Interleaved in the RTSP TCP connection: works through NAT and firewalls.
    Tcp,
    /// RTP over UDP: lower overhead, loses packets on bad links.
    Udp,
    /// Let the client try UDP, then TCP.
    Auto,
}

/// Which frames a camera's decoder decodes.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DecodePolicy {
    /// Every frame; analysis samples at `analysis_fps`.
    Full,
    /// Keyframes only (delta frames are dropped before the decoder): a fraction of
    /// the CPU, analysis at the stream's keyframe rate at most.
    Keyframes,
    /// Keyframes while the scene is idle, every frame while there is activity, read
    /// from the sizes of compressed delta frames (no decoding needed to notice it).
    #[default]
    Adaptive,
}

impl DecodePolicy {
    /// Lower-case name, as in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodePolicy::Full => "full",
            DecodePolicy::Keyframes => "keyframes",
            DecodePolicy::Adaptive => "adaptive",
        }
    }
}

/// `[ingest]`: how streams are pulled and decoded.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// First wait, in seconds, before rebuilding a pipeline that failed.
    pub backoff_initial_secs: f64,
    /// Longest wait between attempts; each failure in a row doubles the wait up to this.
    pub backoff_max_secs: f64,
    /// A pipeline that streamed this many seconds resets the wait to the initial one.
    pub backoff_reset_secs: f64,
    /// Random extra wait, as a fraction of the wait (0.2 = up to 20% more), so that
    /// cameras behind one dead link do not reconnect in lock-step.
    pub backoff_jitter: f64,
    /// RTSP transport.
    pub rtsp_transport: RtspTransport,
    /// rtspsrc jitter-buffer latency in milliseconds.
    pub latency_ms: u32,
    /// Seconds without a buffer from the camera after which the pipeline is restarted.
    pub stall_timeout_secs: f64,
    /// Seconds from starting a pipeline to its first buffer after which the attempt is
    /// abandoned (reason `connect`) and retried with backoff: a camera or link that
    /// accepts the connection and then says nothing must not hold a camera for a whole
    /// stall timeout, or for rtspsrc's own 20 s TCP timeout.
    pub connect_timeout_secs: f64,
    /// `adaptive` decode: activity score (recent delta-frame bytes over the camera's
    /// idle baseline) at which full decoding starts.
    pub activity_threshold: f64,
    /// `adaptive` decode: seconds without activity before going back to keyframes.
    pub activity_quiet_secs: f64,
    /// `adaptive` decode: while idle, decode one keyframe at most this often (0 = all;
    /// default 8 s: within the scheduler's 10 s idle check).
    pub idle_keyframe_secs: f64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            backoff_initial_secs: 1.0,
            backoff_max_secs: 60.0,
            backoff_reset_secs: 30.0,
            backoff_jitter: 0.2,
            rtsp_transport: RtspTransport::Tcp,
            latency_ms: 200,
            stall_timeout_secs: 10.0,
            connect_timeout_secs: 10.0,
            activity_threshold: 2.5,
            activity_quiet_secs: 5.0,
            idle_keyframe_secs: 8.0,
        }
    }
}

/// `[health]`: signals that a camera streams but needs a technician.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Measured fps below this share of the expected fps is `low_fps`.
    pub min_fps_ratio: f64,
    /// Seconds over which fps and bitrate are measured.
    pub window_secs: f64,
    /// Seconds of identical pictures before a camera is `frozen`.
    pub frozen_secs: f64,
    /// Mean absolute difference (0–255) between analysed frames below which they count
    /// as identical (a live scene has sensor noise well above this).
    pub frozen_max_diff: f64,
    /// Seconds of a dark or featureless picture before a camera is `blackout`.
    pub blackout_secs: f64,
    /// Mean luma (0–255) at or below which a picture is dark.
    pub blackout_max_luma: f64,
    /// Luma standard deviation at or below which a picture is featureless (covered lens,
    /// blank screen).
    pub blackout_max_stddev: f64,
    /// Decode errors within one window that make a camera `decode_errors`.
    pub max_decode_errors: u64,
    /// Seconds between health probes of a camera's `main_url`.
    pub main_probe_interval_secs: f64,
    /// Seconds each probe of the main stream listens.
    pub main_probe_secs: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            min_fps_ratio: 0.5,
            window_secs: 10.0,
            frozen_secs: 10.0,
            frozen_max_diff: 0.05,
            blackout_secs: 10.0,
            blackout_max_luma: 20.0,
            blackout_max_stddev: 4.0,
            max_decode_errors: 10,
            main_probe_interval_secs: 300.0,
            main_probe_secs: 5.0,
        }
    }
}

/// `[detect]`: model, inference workers and tracker.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Model manifest file; relative paths are taken from the current directory.
    pub models: PathBuf,
    /// Model name in the manifest.
    pub model: String,
    /// Where inference runs: `cpu`, `cuda` or `tensorrt`. A GPU provider that
    /// cannot load falls back to the CPU with a warning.
    pub provider: Provider,
    /// GPU to use (`cuda`, `tensorrt`).
    pub device_id: u32,
    /// TensorRT: build FP16 engines (faster, a little less precise).
    pub fp16: bool,
    /// TensorRT engine cache, so a restart does not rebuild engines (minutes).
    pub engine_cache_dir: PathBuf,
    /// Inference worker threads, each with its own session; 0 = one per CPU core.
    pub workers: usize,
    /// Threads ONNX Runtime may use inside one inference.
    pub intra_threads: usize,
    /// Frames kept per camera awaiting analysis (oldest dropped when full).
    pub queue_per_camera: usize,
    /// Every camera gets an analysed frame at least this often (seconds), however
    /// busy the others are.
    pub max_idle_check_secs: f64,
    /// Frames that waited longer than this (milliseconds) are dropped, not analysed.
    pub max_frame_age_ms: u64,
    /// Minimum IoU between a detection and a track's predicted box to continue it.
    pub track_iou: f32,
    /// Frames a track must be matched in before it becomes an event.
    pub track_min_hits: u32,
    /// Seconds a lost track is remembered (and can be picked up again) before it ends.
    pub track_max_age_secs: f64,
    /// Detections scoring at least this start tracks and are matched first
    /// (ByteTrack's high pass); lower ones (down to 0.2) only continue tracks.
    pub track_high_score: f32,
    /// Directory of event snapshots (`<event id>.jpg` and `<event id>.crop.jpg`).
    pub snapshot_dir: PathBuf,
    /// JPEG quality of snapshots, 1..100.
    pub snapshot_quality: u8,
}

/// Where inference runs.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// ONNX Runtime's CPU provider.
    #[default]
    Cpu,
    /// NVIDIA CUDA.
    Cuda,
    /// NVIDIA TensorRT (CUDA for what TensorRT cannot run).
    Tensorrt,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            models: PathBuf::from("models/models.toml"),
            model: "yolox_nano_352x256".into(),
            provider: Provider::Cpu,
            device_id: 0,
            fp16: true,
            engine_cache_dir: PathBuf::from(".varta/trt-cache"),
            workers: 0,
            intra_threads: 1,
            queue_per_camera: 2,
            max_idle_check_secs: 10.0,
            max_frame_age_ms: 1500,
            track_iou: 0.3,
            track_min_hits: 2,
            track_max_age_secs: 3.0,
            track_high_score: 0.5,
            snapshot_dir: PathBuf::from(".varta/snapshots"),
            snapshot_quality: 85,
        }
    }
}

/// `[store]`: the PostgreSQL writer. The database URL comes from `DATABASE_URL`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Most rows written in one transaction.
    pub batch_max: usize,
    /// Longest a row waits before its batch is written, in milliseconds.
    pub flush_ms: u64,
    /// Folder of the on-disk spool that holds batches while PostgreSQL is unreachable.
    pub spool_dir: PathBuf,
    /// Largest the spool may grow, in MiB. At the cap the writer stops taking
    /// events (detection backs up, readiness fails, loudly) rather than drop any.
    pub spool_max_mb: u64,
    /// Event partitions (one per UTC day) older than this many days are dropped;
    /// 0 keeps them for ever.
    pub retention_days: u32,
    /// Partitions created ahead of today.
    pub partitions_ahead_days: u32,
    /// How often retention runs, in seconds.
    pub retention_interval_secs: u64,
    /// Snapshots older than this many days are deleted; 0 keeps them by age.
    pub snapshot_max_age_days: u32,
    /// Most disk the snapshot folder may take, in MiB; the oldest go first. 0: no budget.
    pub snapshot_budget_mb: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            batch_max: 5000,
            flush_ms: 250,
            spool_dir: PathBuf::from(".varta/spool"),
            spool_max_mb: 2048,
            retention_days: 90,
            partitions_ahead_days: 3,
            retention_interval_secs: 3600,
            snapshot_max_age_days: 30,
            snapshot_budget_mb: 20480,
        }
    }
}

/// `[api]`: the control API and web console. The listen address is `[node] api_listen`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// PEM certificate chain; with `tls_key`, the API speaks HTTPS only (rustls).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Origins (`https://host:port`) allowed to call the API from a browser page
    /// served elsewhere; empty (the default) allows none but the console's own.
    pub cors_origins: Vec<String>,
    /// Largest request body accepted, in KiB.
    pub body_limit_kb: usize,
    /// How long a login session lasts, in hours.
    pub session_hours: f64,
    /// Failed logins allowed per account, and per address, within `login_window_secs`
    /// before further attempts are refused (HTTP 429) until the window passes.
    pub login_max_failures: u32,
    /// The window of `login_max_failures`, in seconds.
    pub login_window_secs: u64,
    /// Seconds a client has to send a request head (and its TLS handshake) after
    /// connecting or after its previous response; then the connection is closed.
    pub header_timeout_secs: f64,
    /// Connections open at once, in all (lowered at start so that file descriptors
    /// stay free for cameras, snapshots and the event log).
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_address: usize,
    /// Allow what sends personal data in clear: an `api_listen` off loopback
    /// without `tls_cert`, `mqtt://` and `http://` alert sinks off loopback.
    /// Default false: such a config is refused.
    pub allow_plaintext: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            tls_cert: None,
            tls_key: None,
            cors_origins: Vec::new(),
            body_limit_kb: 64,
            session_hours: 12.0,
            login_max_failures: 5,
            login_window_secs: 300,
            header_timeout_secs: 10.0,
            max_connections: 512,
            max_connections_per_address: 64,
            allow_plaintext: false,
        }
    }
}

/// `[alerts]`: optional alert sinks. The console's live stream needs no setting.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// MQTT broker, `mqtts://host:port` (TLS) or `mqtt://host:port` (loopback, or
    /// with `[api] allow_plaintext`); unset: no MQTT.
    pub mqtt_url: Option<String>,
    /// Topic prefix; an alert goes to `TOPIC/SITE/CAMERA`.
    pub mqtt_topic: Option<String>,
    /// Credentials name (environment or secrets file) for the broker.
    pub mqtt_credentials: Option<String>,
    /// PEM file of the certificate authorities an `mqtts://` broker's certificate
    /// must chain to; unset: the system's (rustls-native-certs).
    pub mqtt_ca: Option<PathBuf>,
    /// URLs that each alert is POSTed to as JSON, retried with backoff on failure.
    pub webhooks: Vec<String>,
    /// Attempts per webhook delivery before it is given up (and logged).
    pub webhook_attempts: Option<u32>,
    /// Credentials name (environment or secrets file) whose password is the key of
    /// the HMAC-SHA256 signature sent with every webhook body
    /// (`X-Varta-Signature: t=UNIX_SECONDS,v1=HEX`, over `t` "." body); unset: unsigned.
    pub webhook_secret: Option<String>,
}

/// `[maintenance]`: when a camera's trouble becomes a work order.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    /// A camera offline (stalled, backing off) this long opens an `offline` task.
    pub offline_after_secs: f64,
    /// A camera degraded (frozen, blackout, low fps, decode errors) this long opens a
    /// task of that kind.
    pub degraded_after_secs: f64,
    /// How often cameras are checked, in seconds.
    pub check_interval_secs: f64,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig { offline_after_secs: 300.0, degraded_after_secs: 900.0, check_interval_secs: 10.0 }
    }
}

/// `[[sites]]`: a place with cameras.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Slug id, e.g. `site-05`.
    pub id: String,
    /// Human name, e.g. "Central Station".
    pub name: String,
}

/// `[[cameras]]`: one RTSP camera.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Slug id, unique in the file, e.g. `cam-017`.
    pub id: String,
    /// Id of the site it belongs to.
    pub site: String,
    /// Human name; defaults to the id.
    #[serde(default)]
    pub name: Option<String>,
    /// RTSP URL of the stream to analyse, without credentials; also accepted as
    /// `detect_url`. Where the camera offers a low-resolution substream, use it here.
    #[serde(alias = "detect_url")]
    pub url: String,
    /// RTSP URL of the camera's main (full-resolution) stream, probed for health only.
    #[serde(default)]
    pub main_url: Option<String>,
    /// Frames per second the camera is set to send; unset = read from the stream.
    #[serde(default)]
    pub expected_fps: Option<f64>,
    /// Name of the credentials to use (environment or secrets file).
    #[serde(default)]
    pub credentials: Option<String>,
    /// Frames per second handed to analysis.
    #[serde(default = "default_analysis_fps")]
    pub analysis_fps: f64,
    /// Classes (model labels) that make events.
    #[serde(default = "default_classes")]
    pub classes: Vec<String>,
    /// Minimum detection score for a class to count.
    #[serde(default = "default_min_score")]
    pub min_score: f32,
    /// Which frames are decoded.
    #[serde(default)]
    pub decode: DecodePolicy,
    /// Set false to keep the camera configured but not pulled.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Named polygons for rules.
    #[serde(default)]
    pub zones: Vec<crate::zones::ZoneConfig>,
    /// Named line segments for crossing rules.
    #[serde(default)]
    pub lines: Vec<crate::zones::LineConfig>,
    /// Rules that turn tracks into events; none = one `presence` event per object.
    #[serde(default)]
    pub rules: Vec<crate::zones::RuleConfig>,
}

fn default_analysis_fps() -> f64 {
    2.0
}
/// The classes a camera reports unless its config says otherwise (COCO label names):
/// people and vehicles.
pub fn default_classes() -> Vec<String> {
    ["person", "bicycle", "car", "motorcycle", "bus", "truck"].map(String::from).to_vec()
}
fn default_min_score() -> f32 {
    0.4
}
fn default_true() -> bool {
    true
}

impl CameraConfig {
    /// The name to show: `name`, or the id when unset.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

/// A config problem, located by key path and (when known) line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// File the config came from.
    pub file: String,
    /// 1-based line of the offending key or value.
    pub line: Option<usize>,
    /// Key path, e.g. `cameras[2].url`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: key `{}`: {}", self.file, l, self.key, self.message),
            None => write!(f, "{}: key `{}`: {}", self.file, self.key, self.message),
        }
    }
}

/// All problems found in one file.
#[derive(Clone, Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// One step of a key path.
#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A key path built during validation.
#[derive(Clone, Debug, Default)]
pub struct KeyPath(Vec<Seg>);

impl KeyPath {
    /// `root.key`.
    pub fn key(&self, k: &str) -> KeyPath {
        let mut p = self.0.clone();
        p.push(Seg::Key(k.to_owned()));
        KeyPath(p)
    }
    /// `root[i]`.
    pub fn index(&self, i: usize) -> KeyPath {
        let mut p = self.0.clone();
        p.push(Seg::Index(i));
        KeyPath(p)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Collects problems while walking a parsed config; locates them in the source.
pub struct Problems<'a> {
    file: &'a str,
    doc: Option<toml_edit::ImDocument<&'a str>>,
    text: &'a str,
    found: Vec<ConfigError>,
}

impl<'a> Problems<'a> {
    /// A collector for `text` read from `file`.
    pub fn new(file: &'a str, text: &'a str) -> Self {
        Problems { file, doc: toml_edit::ImDocument::parse(text).ok(), text, found: Vec::new() }
    }

    /// Records that the value at `path` is wrong.
    pub fn add(&mut self, path: &KeyPath, message: impl Into<String>) {
        let line = self.line_of(path);
        self.found.push(ConfigError { file: self.file.into(), line, key: path.to_string(), message: message.into() });
    }

    /// Checks `(key, value, min, max)` under `table`; NaN is out of every range.
    pub fn check_ranges(&mut self, table: &KeyPath, ranges: &[(&str, f64, f64, f64)]) {
        for &(key, v, lo, hi) in ranges {
            if !(lo..=hi).contains(&v) {
                self.add(&table.key(key), format!("must be between {lo} and {hi}"));
            }
        }
    }

    /// Done: `Ok` if nothing was found.
    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.found.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.found))
        }
    }

    /// The line of the deepest part of `path` present in the document.
    fn line_of(&self, path: &KeyPath) -> Option<usize> {
        // Where the walk stands: a table of an array of tables has no `Item` of its own.
        enum At<'d> {
            Item(&'d toml_edit::Item),
            Table(&'d toml_edit::Table),
        }
        let doc = self.doc.as_ref()?;
        let mut at = At::Table(doc.as_table());
        let mut span = None;
        for seg in &path.0 {
            let next = match (seg, &at) {
                (Seg::Key(k), At::Table(t)) => t.get_key_value(k).map(|(key, item)| (key.span(), At::Item(item))),
                (Seg::Key(k), At::Item(i)) => {
                    i.as_table_like().and_then(|t| t.get_key_value(k)).map(|(key, item)| (key.span(), At::Item(item)))
                }
                (Seg::Index(n), At::Item(i)) => match i.as_array_of_tables() {
                    Some(aot) => aot.get(*n).map(|t| (t.span(), At::Table(t))),
                    None => i.as_array().and_then(|a| a.get(*n)).map(|v| (v.span(), At::Item(i))),
                },
                (Seg::Index(_), At::Table(_)) => None,
            };
            let Some((s, a)) = next else { break };
            span = s.or(span);
            at = a;
        }
        span.map(|s| line_at(self.text, s.start))
    }
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.clone(),
                line: None,
                key: ".".into(),
                message: format!("cannot read: {e}"),
            }])
        })?;
        Config::parse(&file, &text)
    }

    /// Parses and validates `text`; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigErrors> {
        let de = toml::Deserializer::new(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let inner = e.inner();
            let line = inner.span().map(|s| line_at(text, s.start));
            // The path already ends with an unknown field's own name.
            let key = e.path().to_string();
            ConfigErrors(vec![ConfigError { file: file.into(), line, key, message: inner.message().to_owned() }])
        })?;
        let mut p = Problems::new(file, text);
        cfg.validate(&mut p);
        p.finish()?;
        Ok(cfg)
    }

    /// Checks values that the types alone cannot.
    pub fn validate(&self, p: &mut Problems<'_>) {
        let root = KeyPath::default();
        if self.node.name.trim().is_empty() {
            p.add(&root.key("node").key("name"), "must not be empty");
        }
        let ing = root.key("ingest");
        let i = &self.ingest;
        p.check_ranges(
            &ing,
            &[
                ("backoff_initial_secs", i.backoff_initial_secs, 0.0, 3600.0),
                ("backoff_max_secs", i.backoff_max_secs, 0.0, 86400.0),
                ("backoff_reset_secs", i.backoff_reset_secs, 0.0, 86400.0),
                ("backoff_jitter", i.backoff_jitter, 0.0, 1.0),
                ("stall_timeout_secs", i.stall_timeout_secs, 1.0, 3600.0),
                ("connect_timeout_secs", i.connect_timeout_secs, 1.0, 3600.0),
                ("activity_threshold", i.activity_threshold, 1.0, 1000.0),
                ("activity_quiet_secs", i.activity_quiet_secs, 0.0, 3600.0),
                ("idle_keyframe_secs", i.idle_keyframe_secs, 0.0, 3600.0),
            ],
        );
        if i.backoff_max_secs < i.backoff_initial_secs {
            p.add(&ing.key("backoff_max_secs"), "must not be less than backoff_initial_secs");
        }
        let h = &self.health;
        p.check_ranges(
            &root.key("health"),
            &[
                ("min_fps_ratio", h.min_fps_ratio, 0.0, 1.0),
                ("window_secs", h.window_secs, 1.0, 3600.0),
                ("frozen_secs", h.frozen_secs, 1.0, 86400.0),
                ("frozen_max_diff", h.frozen_max_diff, 0.0, 255.0),
                ("blackout_secs", h.blackout_secs, 1.0, 86400.0),
                ("blackout_max_luma", h.blackout_max_luma, 0.0, 255.0),
                ("blackout_max_stddev", h.blackout_max_stddev, 0.0, 255.0),
                ("main_probe_interval_secs", h.main_probe_interval_secs, 10.0, 86400.0),
                ("main_probe_secs", h.main_probe_secs, 1.0, 60.0),
            ],
        );
        let det = root.key("detect");
        if self.detect.intra_threads == 0 {
            p.add(&det.key("intra_threads"), "must be at least 1");
        }
        if self.detect.queue_per_camera == 0 {
            p.add(&det.key("queue_per_camera"), "must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.detect.track_iou) {
            p.add(&det.key("track_iou"), "must be between 0 and 1");
        }
        if self.detect.track_max_age_secs <= 0.0 {
            p.add(&det.key("track_max_age_secs"), "must be positive");
        }
        let d = &self.detect;
        p.check_ranges(
            &det,
            &[
                ("track_high_score", d.track_high_score as f64, 0.2, 1.0),
                ("max_idle_check_secs", d.max_idle_check_secs, 0.1, 3600.0),
                ("max_frame_age_ms", d.max_frame_age_ms as f64, 50.0, 60000.0),
                ("snapshot_quality", d.snapshot_quality as f64, 1.0, 100.0),
            ],
        );
        if self.store.batch_max == 0 {
            p.add(&root.key("store").key("batch_max"), "must be at least 1");
        }
        let st = &self.store;
        p.check_ranges(
            &root.key("store"),
            &[
                ("spool_max_mb", st.spool_max_mb as f64, 1.0, 1e7),
                ("partitions_ahead_days", st.partitions_ahead_days as f64, 1.0, 60.0),
                ("retention_interval_secs", st.retention_interval_secs as f64, 1.0, 86400.0),
            ],
        );
        let a = &self.api;
        p.check_ranges(
            &root.key("api"),
            &[
                ("body_limit_kb", a.body_limit_kb as f64, 1.0, 1e6),
                ("session_hours", a.session_hours, 0.01, 8760.0),
                ("login_max_failures", a.login_max_failures as f64, 1.0, 1000.0),
                ("login_window_secs", a.login_window_secs as f64, 1.0, 86400.0),
                ("header_timeout_secs", a.header_timeout_secs, 1.0, 600.0),
                ("max_connections", a.max_connections as f64, 16.0, 1e6),
                ("max_connections_per_address", a.max_connections_per_address as f64, 1.0, 1e6),
            ],
        );
        // Personal data in clear over a network is refused unless asked for.
        let plain = "sends personal data unencrypted: use TLS, or set [api] allow_plaintext = true";
        if a.tls_cert.is_none() && !a.allow_plaintext && !self.node.api_listen.ip().is_loopback() {
            p.add(&root.key("node").key("api_listen"), format!("listens off loopback without [api] tls_cert: {plain}"));
        }
        if a.tls_cert.is_some() != a.tls_key.is_some() {
            p.add(
                &root.key("api").key(if a.tls_cert.is_some() { "tls_key" } else { "tls_cert" }),
                "tls_cert and tls_key go together",
            );
        }
        for (i, o) in a.cors_origins.iter().enumerate() {
            let ok = url::Url::parse(o).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.path() == "/"
                    && !o.ends_with('/')
                    && u.username().is_empty()
            });
            if !ok {
                p.add(
                    &root.key("api").key("cors_origins").index(i),
                    format!("`{o}` is not an origin like https://host:port"),
                );
            }
        }
        let al = root.key("alerts");
        if let Some(u) = &self.alerts.mqtt_url {
            match url::Url::parse(u) {
                Ok(mu)
                    if matches!(mu.scheme(), "mqtt" | "mqtts") && mu.host().is_some() && mu.username().is_empty() =>
                {
                    if mu.scheme() == "mqtt" && !a.allow_plaintext && !is_loopback_host(mu.host_str().unwrap_or("")) {
                        p.add(&al.key("mqtt_url"), format!("mqtt:// off loopback {plain}"));
                    }
                }
                _ => p.add(
                    &al.key("mqtt_url"),
                    "must be mqtts://host:port or mqtt://host:port (credentials go in mqtt_credentials)",
                ),
            }
        }
        for (i, w) in self.alerts.webhooks.iter().enumerate() {
            match url::Url::parse(w) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    if u.scheme() == "http" && !a.allow_plaintext && !is_loopback_host(u.host_str().unwrap_or("")) {
                        p.add(
                            &al.key("webhooks").index(i),
                            format!("`{}`: http:// off loopback {plain}", crate::redact::redact_url(w)),
                        );
                    }
                }
                _ => p.add(
                    &al.key("webhooks").index(i),
                    format!("`{}` is not an http(s) URL", crate::redact::redact_url(w)),
                ),
            }
        }
        if self.alerts.webhook_attempts.is_some_and(|n| !(1..=100).contains(&n)) {
            p.add(&al.key("webhook_attempts"), "must be between 1 and 100");
        }
        let m = &self.maintenance;
        p.check_ranges(
            &root.key("maintenance"),
            &[
                ("offline_after_secs", m.offline_after_secs, 1.0, 30.0 * 86400.0),
                ("degraded_after_secs", m.degraded_after_secs, 1.0, 30.0 * 86400.0),
                ("check_interval_secs", m.check_interval_secs, 0.5, 3600.0),
            ],
        );
        let n = &self.node;
        p.check_ranges(
            &root.key("node"),
            &[
                ("capacity", n.capacity as f64, 1.0, 100000.0),
                ("lease_ttl_secs", n.lease_ttl_secs, 2.0, 3600.0),
                ("lease_renew_secs", n.lease_renew_secs, 0.5, 600.0),
            ],
        );
        if n.lease_renew_secs * 2.0 > n.lease_ttl_secs {
            p.add(&root.key("node").key("lease_renew_secs"), "must be at most half of lease_ttl_secs");
        }

        let mut site_ids = HashSet::new();
        for (i, s) in self.sites.iter().enumerate() {
            let at = root.key("sites").index(i);
            if !crate::ids::is_valid_slug(&s.id) {
                p.add(&at.key("id"), format!("`{}` is not a valid id (a-z, 0-9, '-', '_'; at most 64)", s.id));
            } else if !site_ids.insert(s.id.as_str()) {
                p.add(&at.key("id"), format!("site `{}` is defined twice", s.id));
            }
        }
        let mut cam_ids = HashSet::new();
        for (i, c) in self.cameras.iter().enumerate() {
            let at = root.key("cameras").index(i);
            if !crate::ids::is_valid_slug(&c.id) {
                p.add(&at.key("id"), format!("`{}` is not a valid id (a-z, 0-9, '-', '_'; at most 64)", c.id));
            } else if !cam_ids.insert(c.id.as_str()) {
                p.add(&at.key("id"), format!("camera `{}` is defined twice", c.id));
            }
            if !site_ids.contains(c.site.as_str()) {
                p.add(&at.key("site"), format!("no site with id `{}` in [[sites]]", c.site));
            }
            if let Err(msg) = check_stream_url(&c.url) {
                p.add(&at.key("url"), msg);
            }
            if let Some(Err(msg)) = c.main_url.as_deref().map(check_stream_url) {
                p.add(&at.key("main_url"), msg);
            }
            if c.expected_fps.is_some_and(|f| !(f > 0.0 && f <= 240.0)) {
                p.add(&at.key("expected_fps"), "must be greater than 0 and at most 240");
            }
            if let Some(name) = &c.credentials {
                if !crate::ids::is_valid_slug(name) {
                    p.add(&at.key("credentials"), "must be a credentials name (a-z, 0-9, '-', '_')");
                }
            }
            if !(c.analysis_fps > 0.0 && c.analysis_fps <= 60.0) {
                p.add(&at.key("analysis_fps"), "must be greater than 0 and at most 60");
            }
            if !(0.0..=1.0).contains(&c.min_score) {
                p.add(&at.key("min_score"), "must be between 0 and 1");
            }
            if c.classes.is_empty() {
                p.add(&at.key("classes"), "must name at least one class");
            }
            crate::zones::validate(p, &at, &c.zones, &c.lines, &c.rules);
        }
    }

    /// Cameras that are enabled.
    pub fn enabled_cameras(&self) -> impl Iterator<Item = &CameraConfig> {
        self.cameras.iter().filter(|c| c.enabled)
    }
}

/// Checks an RTSP stream URL. The message never repeats a password.
pub fn check_stream_url(s: &str) -> Result<(), String> {
    let u = url::Url::parse(s).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(u.scheme(), "rtsp" | "rtsps" | "rtspt") {
        return Err(format!("scheme must be rtsp, rtsps or rtspt, not `{}`", u.scheme()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("credentials must not be written in the URL; name them with `credentials` \
                    and put them in the environment or the secrets file"
            .into());
    }
    if let Some(k) = crate::redact::credential_param(s) {
        return Err(format!(
            "query parameter `{k}` looks like a credential: credentials must not be written in the URL; \
             name them with `credentials` and put them in the environment or the secrets file"
        ));
    }
    Ok(())
}

/// Whether `host` (of a URL) is a loopback name or address.
fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// A camera's user name and password. `Debug` does not print the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"***").finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsFile {
    #[serde(default)]
    credentials: std::collections::HashMap<String, SecretEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretEntry {
    username: String,
    password: String,
}

/// The environment variable that may hold the credentials called `name`:
/// `VARTA_CREDENTIALS_` + name upper-cased with `-` as `_`; its value is `user:password`.
pub fn credentials_env_var(name: &str) -> String {
    format!("VARTA_CREDENTIALS_{}", name.to_ascii_uppercase().replace('-', "_"))
}

/// Finds the credentials called `name`: first in the environment
/// ([`credentials_env_var`]), then in `secrets_file`.
pub fn resolve_credentials(name: &str, secrets_file: Option<&Path>) -> Result<Credentials, crate::Error> {
    let var = credentials_env_var(name);
    if let Ok(v) = std::env::var(&var) {
        let (u, p) = v.split_once(':').ok_or_else(|| crate::err!(InvalidArgument, "{var} must be `user:password`"))?;
        return Ok(Credentials { username: u.into(), password: p.into() });
    }
    let Some(path) = secrets_file else {
        return Err(crate::err!(
            NotFound,
            "credentials `{name}`: neither {var} is set nor node.secrets_file configured"
        ));
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        crate::Error::wrap(crate::ErrorKind::Unavailable, format!("secrets file {}", path.display()), e)
    })?;
    // Only the key path and line: a parse error message could quote a password.
    let secrets: SecretsFile = toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|s| line_at(&text, s.start));
        crate::err!(InvalidArgument, "secrets file {}: malformed near line {}", path.display(), line.unwrap_or(0))
    })?;
    let e = secrets
        .credentials
        .get(name)
        .ok_or_else(|| crate::err!(NotFound, "credentials `{name}` not in {}", path.display()))?;
    Ok(Credentials { username: e.username.clone(), password: e.password.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[node]
name = "n1"

[[sites]]
id = "site-01"
name = "Depot"

[[cameras]]
id = "cam-01"
site = "site-01"
url = "rtsp://127.0.0.1:8554/cam/1"
"#;

    #[test]
    fn parses_good_config_with_defaults() {
        let c = Config::parse("good.toml", GOOD).unwrap();
        assert_eq!(c.cameras[0].analysis_fps, 2.0);
        assert_eq!(c.cameras[0].display_name(), "cam-01");
        assert_eq!(c.detect.model, "yolox_nano_352x256");
        assert_eq!(c.node.api_listen.port(), 8080);
    }

    #[test]
    fn unknown_key_is_named_with_line() {
        let text = GOOD.replace("url = ", "colour = \"red\"\nurl = ");
        let e = Config::parse("bad.toml", &text).unwrap_err().0.remove(0);
        assert_eq!(e.key, "cameras[0].colour");
        assert_eq!(e.line, Some(12), "{e}");
        assert!(e.message.contains("unknown field `colour`"), "{e}");
        assert!(e.to_string().starts_with("bad.toml:12: key `cameras[0].colour`"), "{e}");
    }

    #[test]
    fn unknown_top_level_section_is_named() {
        let text = format!("{GOOD}\n[nodes]\nname = \"x\"\n");
        let e = Config::parse("bad.toml", &text).unwrap_err().0.remove(0);
        assert_eq!(e.key, "nodes");
    }

    #[test]
    fn bad_url_is_named_with_line() {
        let text = GOOD.replace("rtsp://127.0.0.1:8554/cam/1", "http//nope");
        let e = Config::parse("bad.toml", &text).unwrap_err().0.remove(0);
        assert_eq!(e.key, "cameras[0].url");
        assert_eq!(e.line, Some(12), "{e}");
    }

    #[test]
    fn inline_credentials_are_refused_without_echoing_them() {
        let text = GOOD.replace("rtsp://127.0.0.1", "rtsp://admin:hunter2@127.0.0.1");
        let e = Config::parse("bad.toml", &text).unwrap_err().to_string();
        assert!(e.contains("cameras[0].url"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn wrong_type_range_and_references() {
        let text = GOOD.replace("site = \"site-01\"", "site = \"site-99\"\nanalysis_fps = 0.0\nmin_score = 3");
        let keys: Vec<_> =
            Config::parse("bad.toml", &text).unwrap_err().0.into_iter().map(|e| (e.key, e.line)).collect();
        let want = [("cameras[0].site", 11), ("cameras[0].analysis_fps", 12), ("cameras[0].min_score", 13)];
        assert_eq!(keys, want.map(|(k, l)| (k.to_string(), Some(l))).to_vec());
        let text = GOOD.replace("site = \"site-01\"", "site = \"site-01\"\nanalysis_fps = \"fast\"");
        let e = Config::parse("bad.toml", &text).unwrap_err().0.remove(0);
        assert_eq!((e.key.as_str(), e.line), ("cameras[0].analysis_fps", Some(12)), "{e}");
    }

    #[test]
    fn ingest_and_health_ranges_are_checked() {
        let text = format!(
            "[ingest]\nbackoff_initial_secs = 10.0\nbackoff_max_secs = 5.0\nbackoff_jitter = nan\n\
             [health]\nframe_rate = 1\n{GOOD}"
        );
        let e = Config::parse("bad.toml", &text).unwrap_err().0.remove(0);
        assert_eq!(e.key, "health.frame_rate", "unknown keys in [health] are refused too");
        let text = text.replace("frame_rate = 1", "frozen_secs = 0.5");
        let keys: Vec<_> = Config::parse("bad.toml", &text).unwrap_err().0.into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["ingest.backoff_jitter", "ingest.backoff_max_secs", "health.frozen_secs"]);
        let ok = Config::parse("good.toml", GOOD).unwrap();
        assert_eq!(ok.cameras[0].decode, DecodePolicy::Adaptive);
        let alias = GOOD.replace("url = ", "detect_url = ");
        assert_eq!(Config::parse("alias.toml", &alias).unwrap().cameras[0].url, "rtsp://127.0.0.1:8554/cam/1");
    }

    #[test]
    fn credentials_from_env_and_file() {
        std::env::set_var("VARTA_CREDENTIALS_TEST_ENV_CAM", "u:p:w");
        let c = resolve_credentials("test-env-cam", None).unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p:w"));
        assert!(!format!("{c:?}").contains("p:w"));
        let dir = std::env::temp_dir().join(format!("varta-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("secrets.toml");
        std::fs::write(&f, "[credentials.site-a]\nusername = \"op\"\npassword = \"pw\"\n").unwrap();
        assert_eq!(resolve_credentials("site-a", Some(&f)).unwrap().password, "pw");
        assert_eq!(resolve_credentials("site-b", Some(&f)).unwrap_err().kind(), crate::ErrorKind::NotFound);
    }
}
