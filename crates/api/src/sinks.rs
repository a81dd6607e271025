//! Optional alert sinks: MQTT and HTTP webhooks (`[alerts]`).
//!
//! Every API process hears every alert (see [`crate::alerts::AlertHub`]); before
//! delivering, a process claims the (alert, sink) row in `alert_deliveries`, so each
//! sink gets each alert from one process only. A webhook is retried with backoff
//! (1, 2, 4 … s) up to `webhook_attempts`; MQTT publishes at QoS 1 through a client
//! that reconnects by itself. The outcome of each delivery is kept in the table,
//! its error redacted like every URL ([`varta_core::redact`]). With
//! `webhook_secret`, each body carries an HMAC-SHA256 signature ([`signature`]).

use crate::alerts::{AlertHub, HubMsg};
use crate::config::AlertsConfig;
use crate::wire::Alert;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use varta_core::redact::redact_url;
use varta_store::Store;

/// MQTT connection settings, resolved from config and credentials.
#[derive(Clone, Debug)]
pub struct MqttSettings {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Topic prefix.
    pub topic: String,
    /// User name and password, if the broker wants them.
    pub credentials: Option<(String, String)>,
    /// `mqtts://`: TLS (rustls, ring), with the CAs of this PEM file or the system's.
    pub tls: Option<Option<std::path::PathBuf>>,
}

impl MqttSettings {
    /// From `[alerts]`; `None` when `mqtt_url` is unset.
    pub fn from_config(c: &AlertsConfig, credentials: Option<(String, String)>) -> Option<MqttSettings> {
        let u = url::Url::parse(c.mqtt_url.as_deref()?).ok()?;
        let tls = u.scheme() == "mqtts";
        Some(MqttSettings {
            host: u.host_str()?.to_owned(),
            port: u.port().unwrap_or(if tls { 8883 } else { 1883 }),
            topic: c.mqtt_topic.clone().unwrap_or_else(|| "varta/alerts".into()),
            credentials,
            tls: tls.then(|| c.mqtt_ca.clone()),
        })
    }

    /// The rustls client config of an `mqtts://` broker: TLS 1.2/1.3 with ring, the
    /// broker's certificate checked against `ca` (PEM) or the system's CAs.
    fn tls_config(ca: Option<&std::path::Path>) -> anyhow::Result<tokio_rustls::rustls::ClientConfig> {
        use anyhow::Context;
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::CertificateDer;
        let mut roots = rustls::RootCertStore::empty();
        match ca {
            Some(path) => {
                for c in CertificateDer::pem_file_iter(path)
                    .with_context(|| format!("[alerts] mqtt_ca: cannot read {}", path.display()))?
                {
                    roots.add(c.with_context(|| format!("[alerts] mqtt_ca: {} is not PEM", path.display()))?)?;
                }
            }
            None => {
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
            }
        }
        if roots.is_empty() {
            anyhow::bail!("[alerts] mqtts: no certificate authority to check the broker against (set mqtt_ca)");
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

/// Starts the configured sinks (nothing when none is configured). `webhook_key`
/// signs every webhook body ([`signature`]). Fails when an `mqtts://` broker's CA
/// file cannot be read.
pub fn start(
    store: Store,
    hub: &AlertHub,
    node: String,
    c: &AlertsConfig,
    mqtt: Option<MqttSettings>,
    webhook_key: Option<Vec<u8>>,
) -> anyhow::Result<()> {
    let webhooks = c.webhooks.clone();
    if webhooks.is_empty() && mqtt.is_none() {
        return Ok(());
    }
    let attempts = c.webhook_attempts.unwrap_or(5);
    let rx = hub.subscribe();
    let mqtt = mqtt.map(|m| -> anyhow::Result<_> {
        let mut opts = rumqttc::MqttOptions::new(format!("varta-{node}-{}", std::process::id()), &m.host, m.port);
        opts.set_keep_alive(Duration::from_secs(15));
        if let Some((u, p)) = &m.credentials {
            opts.set_credentials(u, p);
        }
        if let Some(ca) = &m.tls {
            let tls = rumqttc::TlsConfiguration::Rustls(Arc::new(MqttSettings::tls_config(ca.as_deref())?));
            opts.set_transport(rumqttc::Transport::tls_with_config(tls));
        }
        let (client, mut events) = rumqttc::AsyncClient::new(opts, 256);
        let host = format!("{}:{}", m.host, m.port);
        tokio::spawn(async move {
            loop {
                if let Err(e) = events.poll().await {
                    tracing::warn!(broker = %host, error = %e, "MQTT: connection trouble; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
        Ok((client, m.topic))
    });
    let mqtt = mqtt.transpose()?;
    tokio::spawn(run(store, rx, node, webhooks, attempts, mqtt, webhook_key.map(Arc::new)));
    Ok(())
}

/// The `X-Varta-Signature` header of a webhook body: `t=UNIX_SECONDS,v1=HEX`, where
/// HEX is HMAC-SHA256 with `key` over the decimal `t`, a `.`, and the body bytes,
/// as Stripe and GitHub sign theirs. A receiver recomputes it and refuses a
/// mismatch or a `t` far from its clock (a replay).
pub fn signature(key: &[u8], t: i64, body: &[u8]) -> String {
    use hmac::Mac;
    format!("t={t},v1={}", hex::encode(signature_mac(key, t, body).finalize().into_bytes()))
}

/// The HMAC of [`signature`], before it is written out (a receiver verifies with it).
pub(crate) fn signature_mac(key: &[u8], t: i64, body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

async fn run(
    store: Store,
    mut rx: broadcast::Receiver<HubMsg>,
    node: String,
    webhooks: Vec<String>,
    attempts: u32,
    mqtt: Option<(rumqttc::AsyncClient, String)>,
    key: Option<Arc<Vec<u8>>>,
) {
    loop {
        let a = match rx.recv().await {
            Ok(HubMsg::Alert(a)) => a,
            Ok(HubMsg::Ack(_) | HubMsg::Revoked) => continue,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(skipped = n, "alert sinks lagged; those alerts are not forwarded");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if let Some((client, topic)) = &mqtt {
            if claim(&store, &a, "mqtt", &node).await {
                let topic = format!("{topic}/{}/{}", a.site, a.camera);
                let payload = serde_json::to_vec(&*a).unwrap_or_default();
                let r = client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload).await;
                let err = r.err().map(|e| e.to_string());
                if let Some(e) = &err {
                    tracing::warn!(alert = a.id, error = %e, "MQTT: alert not published");
                }
                let _ = store.finish_delivery(a.id, "mqtt", 1, err.as_deref()).await;
            }
        }
        for (i, url) in webhooks.iter().enumerate() {
            let sink = format!("webhook:{i}");
            if claim(&store, &a, &sink, &node).await {
                tokio::spawn(webhook(store.clone(), a.clone(), sink, url.clone(), attempts, key.clone()));
            }
        }
    }
}

async fn claim(store: &Store, a: &Alert, sink: &str, node: &str) -> bool {
    match store.claim_delivery(a.id, sink, node).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(alert = a.id, sink, error = %e, "cannot claim an alert delivery");
            false
        }
    }
}

/// POSTs the alert as JSON (signed when a key is set), retrying with backoff.
async fn webhook(store: Store, a: Arc<Alert>, sink: String, url: String, attempts: u32, key: Option<Arc<Vec<u8>>>) {
    let body = serde_json::to_vec(&*a).unwrap_or_default();
    let mut last = String::new();
    for n in 1..=attempts {
        let (u, b) = (url.clone(), body.clone());
        let sig = key.as_ref().map(|k| signature(k, chrono::Utc::now().timestamp(), &body));
        // ureq's errors name the URL: its user info and query (`?token=`) stay out
        // of logs and the table.
        let r = tokio::task::spawn_blocking(move || {
            let mut req = ureq::post(&u)
                .timeout(Duration::from_secs(5))
                .set("User-Agent", "varta")
                .set("Content-Type", "application/json");
            if let Some(s) = &sig {
                req = req.set("X-Varta-Signature", s);
            }
            req.send_bytes(&b).map(drop).map_err(|e| varta_core::redact::redact_text(&e.to_string()))
        })
        .await;
        match r {
            Ok(Ok(())) => {
                let _ = store.finish_delivery(a.id, &sink, n, None).await;
                return;
            }
            Ok(Err(e)) => last = e,
            Err(e) => last = varta_core::redact::redact_text(&e.to_string()),
        }
        tracing::warn!(alert = a.id, url = %redact_url(&url), attempt = n, error = %last, "webhook failed");
        if n < attempts {
            tokio::time::sleep(Duration::from_secs(1 << (n - 1).min(6))).await;
        }
    }
    tracing::error!(alert = a.id, url = %redact_url(&url), "webhook given up after {attempts} attempts");
    let _ = store.finish_delivery(a.id, &sink, attempts, Some(&last)).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_hmac_sha256_over_time_dot_body() {
        // Expected value from Python: hmac.new(b"Jefe", b"1.what do ya want for
        // nothing?", hashlib.sha256).hexdigest() (RFC 4231 case 2's key and text).
        let s = super::signature(b"Jefe", 1, b"what do ya want for nothing?");
        assert_eq!(s, "t=1,v1=a9049465ce89cfb8e9aac62333abda66f80e3403f51f57f6bae3c3a4485eca38");
    }
}
