//! Serving the API: plain HTTP, or HTTPS with rustls when `[api] tls_cert` and
//! `tls_key` are set; either way with each connection's peer address ([`Peer`]),
//! and within the edge's limits ([`Edge`]): our own accept loop over hyper, since
//! `axum::serve` has no header timeout and no connection cap, and one client
//! holding half-sent requests could otherwise take every file descriptor.

use crate::auth::Peer;
use anyhow::Context;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use varta_core::metrics::Registry;

/// What the edge allows: how long a request head may take, and how many
/// connections may be open in all and per client address.
#[derive(Clone, Debug)]
pub struct Edge {
    /// From accepting a connection (or finishing a response on it) to having the
    /// next request's head, TLS handshake included; the connection is closed after.
    pub header_timeout: Duration,
    /// Connections open at once, in all. Beyond it, new ones are closed at once.
    pub max_connections: usize,
    /// Connections open at once from one address.
    pub max_per_address: usize,
}

impl Edge {
    /// The edge of `[api]`, its total cap lowered so that `reserved_fds` file
    /// descriptors stay free for what the node must not lose (camera sockets,
    /// snapshot and event-log files, database connections) whatever clients do.
    pub fn new(cfg: &crate::config::ApiConfig, reserved_fds: usize) -> Edge {
        let room = nofile_limit().saturating_sub(reserved_fds as u64) as usize;
        Edge {
            header_timeout: Duration::from_secs_f64(cfg.header_timeout_secs),
            max_connections: cfg.max_connections.min(room).max(16),
            max_per_address: cfg.max_connections_per_address,
        }
    }
}

/// The soft limit on open files of this process.
pub fn nofile_limit() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
        r.rlim_cur
    } else {
        1024
    }
}

/// Raises the soft limit on open files to the hard limit (at most 65 536), as
/// servers do at start: the default soft limit of 1024 is a historical
/// `select(2)` bound, not the system's. Returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit(2) on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        let want = r.rlim_max.min(65_536);
        if want > r.rlim_cur {
            let n = libc::rlimit { rlim_cur: want, rlim_max: r.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &n) == 0 {
                return want;
            }
        }
    }
    r.rlim_cur
}

/// Open connections, in all and per address.
struct Conns {
    per: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
    max_per: usize,
    metrics: Arc<Registry>,
}

/// One admitted connection; its place is given back when it drops.
struct Slot {
    conns: Arc<Conns>,
    ip: IpAddr,
    _total: tokio::sync::OwnedSemaphorePermit,
}

impl Conns {
    fn admit(conns: &Arc<Conns>, ip: IpAddr, total: &Arc<tokio::sync::Semaphore>) -> Option<Slot> {
        let permit = total.clone().try_acquire_owned().ok()?;
        let mut per = conns.per.lock().unwrap();
        let n = per.entry(ip).or_insert(0);
        if *n >= conns.max_per {
            return None;
        }
        *n += 1;
        conns.metrics.api.connections_open.add(1);
        Some(Slot { conns: conns.clone(), ip, _total: permit })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns.metrics.api.connections_open.add(-1);
        let mut per = self.conns.per.lock().unwrap();
        if let Some(n) = per.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, HTTPS only when `[api]
/// tls_cert` is set, with each request's peer address known ([`Peer`]: audit log,
/// login throttling), within `edge`: a connection over a cap is closed as soon as
/// it is accepted, and one whose request head (or TLS handshake) does not arrive
/// within the header timeout is closed then, idle keep-alive connections too.
/// Serving HTTP/1.1 only. On `shutdown`, connections finish their request and
/// close; open ones are waited for up to 10 s.
pub async fn serve(
    cfg: &crate::config::ApiConfig,
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    edge: Edge,
    metrics: Arc<Registry>,
) -> anyhow::Result<()> {
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(tokio_rustls::TlsAcceptor::from(tls_config(cert, key)?)),
        _ => None,
    };
    tracing::info!(
        max_connections = edge.max_connections,
        max_per_address = edge.max_per_address,
        header_timeout_s = edge.header_timeout.as_secs_f64(),
        "API edge limits"
    );
    let total = Arc::new(tokio::sync::Semaphore::new(edge.max_connections));
    let conns = Arc::new(Conns { per: Default::default(), max_per: edge.max_per_address, metrics: metrics.clone() });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (sock, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and the like: the listener stays; try again shortly.
                    tracing::warn!(error = %e, "API accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(slot) = Conns::admit(&conns, peer.ip(), &total) else {
            metrics.api.connections_refused.inc();
            drop(sock);
            continue;
        };
        let (router, tls, stop, metrics) = (router.clone(), tls.clone(), stop_rx.clone(), metrics.clone());
        let timeout = edge.header_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let _ = sock.set_nodelay(true);
            match tls {
                Some(acceptor) => match tokio::time::timeout(timeout, acceptor.accept(sock)).await {
                    Ok(Ok(s)) => connection(s, peer, router, timeout, stop, metrics).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => {
                        metrics.api.header_timeouts.inc();
                        tracing::debug!(%peer, "TLS handshake timed out");
                    }
                },
                None => connection(sock, peer, router, timeout, stop, metrics).await,
            }
        });
    }
    let _ = stop_tx.send(true);
    let all = edge.max_connections as u32;
    let _ = tokio::time::timeout(Duration::from_secs(10), total.acquire_many(all)).await;
    Ok(())
}

/// Serves HTTP/1.1 on one connection.
async fn connection<I>(
    io: I,
    peer: SocketAddr,
    router: axum::Router,
    header_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    metrics: Arc<Registry>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(axum::extract::ConnectInfo(Peer(peer)));
        router.clone().oneshot(req)
    });
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
    let conn = b.serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    tokio::pin!(conn);
    let stopping = tokio::select! {
        r = conn.as_mut() => Err(r),
        _ = stop.wait_for(|s| *s) => Ok(()),
    };
    let r = match stopping {
        Err(r) => r,
        Ok(()) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = r {
        if e.is_timeout() {
            metrics.api.header_timeouts.inc();
        }
        tracing::debug!(%peer, error = %e, "API connection ended");
    }
}

/// A rustls server config from PEM files (ring provider; TLS 1.2 and 1.3; HTTP/1.1).
fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<Arc<tokio_rustls::rustls::ServerConfig>> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("[api] tls_cert: cannot read {}", cert.display()))?
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("[api] tls_cert: {} is not a PEM certificate chain", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("[api] tls_cert: no certificate in {}", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("[api] tls_key: no PEM private key in {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("[api] tls_cert/tls_key: the key does not fit the certificate")?;
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}
