//! The node's configuration file: every stage's section (each owned by its stage
//! crate, with its own validation), `[node]`, `[maintenance]`, sites and cameras.
//! Errors name the key path (`cameras[2].url`) and the line in the file; every key
//! is documented in `config/README.md`.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use varta_core::config::{
    line_at, validate_sites_and_cameras, CameraConfig, ConfigError, ConfigErrors, KeyPath, Problems, Range, SiteConfig,
};

/// A whole config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Settings of this node.
    #[serde(default)]
    pub node: NodeConfig,
    /// Ingest (RTSP, decoding) settings shared by all cameras.
    #[serde(default)]
    pub ingest: varta_ingest::config::IngestConfig,
    /// Detection (model, workers, tracker) settings.
    #[serde(default)]
    pub detect: varta_detect::config::DetectConfig,
    /// Event store settings.
    #[serde(default)]
    pub store: varta_store::config::StoreConfig,
    /// Camera health checks (beyond up/down).
    #[serde(default)]
    pub health: varta_ingest::config::HealthConfig,
    /// A video clip with every event.
    #[serde(default)]
    pub clips: varta_ingest::config::ClipsConfig,
    /// The control API and console: TLS, CORS, limits, sessions.
    #[serde(default)]
    pub api: varta_api::config::ApiConfig,
    /// Where alerts go besides the console: MQTT, webhooks.
    #[serde(default)]
    pub alerts: varta_api::config::AlertsConfig,
    /// When maintenance tasks open by themselves.
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
    /// The NATS JetStream feed for another system (a situation centre).
    #[serde(default)]
    pub feed: crate::feed::FeedConfig,
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
    /// `host:port` where the other processes reach this node's API (for snapshots
    /// and clips on its disk); `VARTA_ADVERTISE_ADDR` replaces it. Unset: the
    /// `api_listen` address, unless that is a wildcard (0.0.0.0, ::).
    pub advertise_addr: Option<String>,
    /// Credentials whose password is the key the processes of one region share to
    /// fetch each other's snapshots and clips (HMAC-SHA256 on each request). Unset:
    /// a process serves only the files on its own disk.
    pub peer_credentials: Option<String>,
    /// Most cameras this node holds leases on at once.
    pub capacity: u32,
    /// How long a camera lease lasts without renewal: a dead node's cameras pass to
    /// the others within this time.
    pub lease_ttl_secs: f64,
    /// How often leases are renewed and free cameras claimed.
    pub lease_renew_secs: f64,
    /// How often the node writes its health samples (itself and each camera it
    /// holds) for the console's charts, in seconds.
    pub sample_secs: f64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "node-1".into(),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            secrets_file: None,
            advertise_addr: None,
            peer_credentials: None,
            capacity: 256,
            lease_ttl_secs: 15.0,
            lease_renew_secs: 3.0,
            sample_secs: 60.0,
        }
    }
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
    /// The contract's monthly uptime target per camera, in percent: the line the
    /// console's uptime charts draw, and what a day below it is flagged against.
    pub sla_percent: f64,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            offline_after_secs: 300.0,
            degraded_after_secs: 900.0,
            check_interval_secs: 10.0,
            sla_percent: 99.0,
        }
    }
}

impl Config {
    /// Reads and validates `path`. `VARTA_NODE_NAME`, when set, replaces `[node] name`
    /// (so that one file serves every replica of a StatefulSet, each named after its
    /// pod); it must be 1–63 letters, digits, `.`, `_` or `-` (error on key
    /// `node.name`).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let error = |key: &str, message: String| {
            ConfigErrors(vec![ConfigError { file: file.clone(), line: None, key: key.into(), message }])
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(".", format!("cannot read: {e}")))?;
        let mut cfg = Config::parse(&file, &text)?;
        if let Some(name) = std::env::var("VARTA_NODE_NAME").ok().filter(|n| !n.is_empty()) {
            let ok = name.len() <= 63 && name.chars().all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c));
            if !ok {
                return Err(error(
                    "node.name",
                    format!("VARTA_NODE_NAME {name:?}: 1–63 letters, digits, '.', '_' or '-'"),
                ));
            }
            cfg.node.name = name;
        }
        Ok(cfg)
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

    /// Checks values that the types alone cannot: each section by its stage, then
    /// what spans sections, then sites and cameras.
    pub fn validate(&self, p: &mut Problems<'_>) {
        let root = KeyPath::default();
        if self.node.name.trim().is_empty() {
            p.add(&root.key("node").key("name"), "must not be empty");
        }
        self.ingest.validate(&root.key("ingest"), p);
        self.health.validate(&root.key("health"), p);
        self.clips.validate(&root.key("clips"), p);
        self.detect.validate(&root.key("detect"), p);
        self.store.validate(&root.key("store"), p);
        self.api.validate(&root.key("api"), p);
        // Personal data in clear over a network is refused unless asked for.
        if self.api.tls_cert.is_none() && !self.api.allow_plaintext && !self.node.api_listen.ip().is_loopback() {
            p.add(
                &root.key("node").key("api_listen"),
                format!("listens off loopback without [api] tls_cert: {}", varta_api::config::PLAINTEXT),
            );
        }
        self.alerts.validate(&root.key("alerts"), self.api.allow_plaintext, p);
        self.feed.validate(&root.key("feed"), self.api.allow_plaintext, p);
        let m = &self.maintenance;
        p.check_ranges(
            &root.key("maintenance"),
            &[
                Range::closed("offline_after_secs", m.offline_after_secs, 1.0, 30.0 * 86400.0),
                Range::closed("degraded_after_secs", m.degraded_after_secs, 1.0, 30.0 * 86400.0),
                Range::closed("check_interval_secs", m.check_interval_secs, 0.5, 3600.0),
                Range::closed("sla_percent", m.sla_percent, 0.0, 100.0),
            ],
        );
        let n = &self.node;
        p.check_ranges(
            &root.key("node"),
            &[
                Range::closed("capacity", n.capacity as f64, 1.0, 100000.0),
                Range::closed("lease_ttl_secs", n.lease_ttl_secs, 2.0, 3600.0),
                Range::closed("lease_renew_secs", n.lease_renew_secs, 0.5, 600.0),
                Range::closed("sample_secs", n.sample_secs, 1.0, 3600.0),
            ],
        );
        if n.lease_renew_secs * 2.0 > n.lease_ttl_secs {
            p.add(&root.key("node").key("lease_renew_secs"), "must be at most half of lease_ttl_secs");
        }

        validate_sites_and_cameras(&self.sites, &self.cameras, &root, p);
    }

    /// Cameras that are enabled.
    pub fn enabled_cameras(&self) -> impl Iterator<Item = &CameraConfig> {
        self.cameras.iter().filter(|c| c.enabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use varta_core::config::DecodePolicy;

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
}
