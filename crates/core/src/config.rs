//! What every stage's config shares: key paths and the problems found (located by
//! line), the one range check, sites and cameras (read by ingest, detection, store
//! and API alike), stream URL checks and credentials.
//!
//! Each stage crate owns its own section (`varta_ingest::config`,
//! `varta_detect::config`, `varta_store::config`, `varta_api::config`) with its
//! defaults, validation into [`Problems`] and the settings it builds; the whole file
//! is `varta_node::config::Config`. Every struct denies unknown fields, so a misspelt
//! key is an error rather than a silently ignored setting. Stream credentials are
//! never part of the file: a camera names its credentials, which come from the
//! environment or the secrets file (see [`resolve_credentials`]). Every key is
//! documented in `config/README.md`.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;

pub use crate::problems::{line_at, ConfigError, ConfigErrors, KeyPath, Problems, Range};
use std::path::Path;

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

/// `[[sites]]`: a place with cameras.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Slug id, e.g. `site-05`.
    pub id: String,
    /// Human name, e.g. "Central Station".
    pub name: String,
    /// Latitude, WGS 84 degrees (north positive), for the console's map; give both
    /// `lat` and `lon` or neither.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Longitude, WGS 84 degrees (east positive).
    #[serde(default)]
    pub lon: Option<f64>,
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

/// Checks `[[sites]]` and `[[cameras]]` (ids, references, URLs, ranges, zones and
/// rules) under `root`.
pub fn validate_sites_and_cameras(
    sites: &[SiteConfig],
    cameras: &[CameraConfig],
    root: &KeyPath,
    p: &mut Problems<'_>,
) {
    let mut site_ids = HashSet::new();
    for (i, s) in sites.iter().enumerate() {
        let at = root.key("sites").index(i);
        if !crate::ids::is_valid_slug(&s.id) {
            p.add(&at.key("id"), format!("`{}` is not a valid id (a-z, 0-9, '-', '_'; at most 64)", s.id));
        } else if !site_ids.insert(s.id.as_str()) {
            p.add(&at.key("id"), format!("site `{}` is defined twice", s.id));
        }
        match (s.lat, s.lon) {
            (Some(lat), Some(lon)) => {
                p.check_ranges(&at, &[Range::closed("lat", lat, -90.0, 90.0), Range::closed("lon", lon, -180.0, 180.0)])
            }
            (Some(_), None) => p.add(&at.key("lon"), "give `lon` with `lat` (the site's place on the map)"),
            (None, Some(_)) => p.add(&at.key("lat"), "give `lat` with `lon` (the site's place on the map)"),
            (None, None) => {}
        }
    }
    let mut cam_ids = HashSet::new();
    for (i, c) in cameras.iter().enumerate() {
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
        if let Some(name) = &c.credentials {
            if !crate::ids::is_valid_slug(name) {
                p.add(&at.key("credentials"), "must be a credentials name (a-z, 0-9, '-', '_')");
            }
        }
        let mut ranges = vec![
            Range::above("analysis_fps", c.analysis_fps, 0.0, 60.0),
            Range::closed("min_score", c.min_score as f64, 0.0, 1.0),
        ];
        ranges.extend(c.expected_fps.map(|f| Range::above("expected_fps", f, 0.0, 240.0)));
        p.check_ranges(&at, &ranges);
        if c.classes.is_empty() {
            p.add(&at.key("classes"), "must name at least one class");
        }
        crate::zones::validate(p, &at, &c.zones, &c.lines, &c.rules);
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
pub fn is_loopback_host(host: &str) -> bool {
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
