//! `[api]` and `[alerts]`: the API's sections of the node config (TLS, CORS, limits,
//! sessions; alert sinks), their defaults and validation.

use serde::Deserialize;
use std::path::PathBuf;
use varta_core::config::{KeyPath, Problems, Range};

/// What every refusal of clear text says.
pub const PLAINTEXT: &str = "sends personal data unencrypted: use TLS, or set [api] allow_plaintext = true";

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

impl ApiConfig {
    /// Checks the values the types alone cannot, under `at` (`api`). Whether
    /// `[node] api_listen` may speak clear text is the node's check.
    pub fn validate(&self, at: &KeyPath, p: &mut Problems<'_>) {
        let a = self;
        p.check_ranges(
            at,
            &[
                Range::closed("body_limit_kb", a.body_limit_kb as f64, 1.0, 1e6),
                Range::closed("session_hours", a.session_hours, 0.01, 8760.0),
                Range::closed("login_max_failures", a.login_max_failures as f64, 1.0, 1000.0),
                Range::closed("login_window_secs", a.login_window_secs as f64, 1.0, 86400.0),
                Range::closed("header_timeout_secs", a.header_timeout_secs, 1.0, 600.0),
                Range::closed("max_connections", a.max_connections as f64, 16.0, 1e6),
                Range::closed("max_connections_per_address", a.max_connections_per_address as f64, 1.0, 1e6),
            ],
        );
        if a.tls_cert.is_some() != a.tls_key.is_some() {
            p.add(
                &at.key(if a.tls_cert.is_some() { "tls_key" } else { "tls_cert" }),
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
                p.add(&at.key("cors_origins").index(i), format!("`{o}` is not an origin like https://host:port"));
            }
        }
    }
}

impl AlertsConfig {
    /// Checks the sinks under `at` (`alerts`): URLs, and no clear text off loopback
    /// unless `allow_plaintext` (`[api] allow_plaintext`).
    pub fn validate(&self, at: &KeyPath, allow_plaintext: bool, p: &mut Problems<'_>) {
        if let Some(u) = &self.mqtt_url {
            match url::Url::parse(u) {
                Ok(mu)
                    if matches!(mu.scheme(), "mqtt" | "mqtts") && mu.host().is_some() && mu.username().is_empty() =>
                {
                    if mu.scheme() == "mqtt"
                        && !allow_plaintext
                        && !varta_core::config::is_loopback_host(mu.host_str().unwrap_or(""))
                    {
                        p.add(&at.key("mqtt_url"), format!("mqtt:// off loopback {PLAINTEXT}"));
                    }
                }
                _ => p.add(
                    &at.key("mqtt_url"),
                    "must be mqtts://host:port or mqtt://host:port (credentials go in mqtt_credentials)",
                ),
            }
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            match url::Url::parse(w) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    if u.scheme() == "http"
                        && !allow_plaintext
                        && !varta_core::config::is_loopback_host(u.host_str().unwrap_or(""))
                    {
                        p.add(
                            &at.key("webhooks").index(i),
                            format!("`{}`: http:// off loopback {PLAINTEXT}", varta_core::redact::redact_url(w)),
                        );
                    }
                }
                _ => p.add(
                    &at.key("webhooks").index(i),
                    format!("`{}` is not an http(s) URL", varta_core::redact::redact_url(w)),
                ),
            }
        }
        let attempts = self.webhook_attempts.map(|n| Range::closed("webhook_attempts", n as f64, 1.0, 100.0));
        p.check_ranges(at, &Vec::from_iter(attempts));
    }
}
