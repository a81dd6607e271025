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

    /// Checks each range under `table` (NaN is out of every range): the one range
    /// check of every section.
    pub fn check_ranges(&mut self, table: &KeyPath, ranges: &[Range<'_>]) {
        for r in ranges {
            let inside = if r.lo_open { r.value > r.lo && r.value <= r.hi } else { (r.lo..=r.hi).contains(&r.value) };
            if !inside {
                let message = match (r.lo_open, r.hi.is_finite()) {
                    (false, true) => format!("must be between {} and {}", r.lo, r.hi),
                    (false, false) => format!("must be at least {}", r.lo),
                    (true, true) => format!("must be greater than {} and at most {}", r.lo, r.hi),
                    (true, false) => format!("must be greater than {}", r.lo),
                };
                self.add(&table.key(r.key), message);
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

/// The 1-based line of byte `offset` in `text`.
pub fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The allowed range of one numeric key, for [`Problems::check_ranges`]; values of
/// any numeric type are given as `f64`.
#[derive(Clone, Copy, Debug)]
pub struct Range<'k> {
    key: &'k str,
    value: f64,
    lo: f64,
    hi: f64,
    lo_open: bool,
}

impl<'k> Range<'k> {
    /// `lo <= value <= hi`; an infinite `hi` reads "at least `lo`".
    pub fn closed(key: &'k str, value: f64, lo: f64, hi: f64) -> Self {
        Range { key, value, lo, hi, lo_open: false }
    }
    /// `lo < value <= hi`; an infinite `hi` reads "greater than `lo`".
    pub fn above(key: &'k str, value: f64, lo: f64, hi: f64) -> Self {
        Range { key, value, lo, hi, lo_open: true }
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
    fn one_range_check_says_which_range() {
        let mut p = Problems::new("t.toml", "[s]\na = 1\n");
        let at = KeyPath::default().key("s");
        p.check_ranges(
            &at,
            &[
                Range::closed("a", 5.0, 0.0, 1.0),
                Range::closed("b", 0.0, 1.0, f64::INFINITY),
                Range::above("c", 0.0, 0.0, 60.0),
                Range::above("d", f64::NAN, 0.0, f64::INFINITY),
                Range::closed("ok", 1.0, 1.0, 1.0),
            ],
        );
        let e = p.finish().unwrap_err().0;
        let got: Vec<(&str, &str, Option<usize>)> =
            e.iter().map(|e| (e.key.as_str(), e.message.as_str(), e.line)).collect();
        assert_eq!(
            got,
            [
                ("s.a", "must be between 0 and 1", Some(2)),
                ("s.b", "must be at least 1", Some(1)),
                ("s.c", "must be greater than 0 and at most 60", Some(1)),
                ("s.d", "must be greater than 0", Some(1)),
            ]
        );
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
