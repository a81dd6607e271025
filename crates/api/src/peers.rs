//! Snapshots, crops and clips from any API process (issue #23): the files of an
//! event lie on the disk of the node that made it; an API process that does not have
//! one asks that node for it, at the address the node registered (`nodes.api_addr`,
//! `[node] advertise_addr`), on `GET /internal/v1/files/{name}`.
//!
//! Node to node authentication: every process of a region shares one key
//! (`[node] peer_credentials`); a request carries `X-Varta-Peer: t=UNIX_SECONDS,v1=HEX`,
//! HMAC-SHA256 over `t`, `.` and `GET /internal/v1/files/NAME` (the webhook signature
//! of [`crate::sinks::signature`]), accepted within [`MAX_SKEW_SECS`] of the serving
//! node's clock. Without a key, the route answers 404 and a process serves only its
//! own files. The person's view is audited by the API process the person asked,
//! as for a local file; the fetch between processes is not a second view.
//!
//! Plain HTTP between processes (inside a cluster's namespace; a node with `[api]`
//! TLS cannot be fetched from, and says so).

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The request header that carries the signature.
pub const HEADER: &str = "x-varta-peer";
/// How far a request's time may be from the serving node's clock, in seconds.
pub const MAX_SKEW_SECS: i64 = 60;

/// The region's shared key.
#[derive(Clone)]
pub struct Peers {
    key: Arc<Vec<u8>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Peers { key: <redacted> }")
    }
}

impl Peers {
    /// Peers sharing `key` (the credentials' password; at least 16 bytes).
    pub fn new(key: Vec<u8>) -> Result<Peers, varta_core::Error> {
        if key.len() < 16 {
            return Err(varta_core::err!(InvalidArgument, "the peer key must be at least 16 characters"));
        }
        Ok(Peers { key: Arc::new(key) })
    }

    fn sign(&self, path: &str, t: i64) -> String {
        crate::sinks::signature(&self.key, t, format!("GET {path}").as_bytes())
    }

    /// Whether `header` signs `path` with this key, within the allowed skew of `now`.
    fn accepts(&self, header: &str, path: &str, now: i64) -> bool {
        use hmac::Mac;
        let mut t = None;
        let mut sig = None;
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", v)) => t = v.parse::<i64>().ok(),
                Some(("v1", v)) => sig = Some(v.to_owned()),
                _ => {}
            }
        }
        let (Some(t), Some(sig)) = (t, sig) else { return false };
        if (now - t).abs() > MAX_SKEW_SECS {
            return false;
        }
        let Ok(bytes) = hex::decode(&sig) else { return false };
        // Constant-time comparison.
        crate::sinks::signature_mac(&self.key, t, format!("GET {path}").as_bytes()).verify_slice(&bytes).is_ok()
    }
}

/// Whether `name` is one of the files an event can have (`<uuid>.jpg`,
/// `<uuid>.crop.jpg`, `<uuid>.plate.jpg`, `<uuid>.mp4`): nothing else is served.
pub fn is_event_file(name: &str) -> bool {
    let Some((id, ext)) = name.split_once('.') else { return false };
    uuid::Uuid::parse_str(id).is_ok() && id.len() == 36 && matches!(ext, "jpg" | "crop.jpg" | "plate.jpg" | "mp4")
}

/// A file's bytes as fetched, with what the response needs of the serving node's
/// answer (range requests pass through).
#[derive(Debug)]
pub struct Fetched {
    /// 200, or 206 for a range.
    pub status: StatusCode,
    /// `Content-Range` of a 206.
    pub content_range: Option<String>,
    /// The bytes.
    pub body: Vec<u8>,
}

impl Fetched {
    /// As a response of `content_type`.
    pub fn into_response(self, content_type: &'static str) -> Response {
        let mut r = (self.status, [(axum::http::header::CONTENT_TYPE, content_type)], self.body).into_response();
        r.headers_mut().insert(axum::http::header::ACCEPT_RANGES, axum::http::HeaderValue::from_static("bytes"));
        if let Some(cr) = self.content_range.and_then(|v| axum::http::HeaderValue::from_str(&v).ok()) {
            r.headers_mut().insert(axum::http::header::CONTENT_RANGE, cr);
        }
        r
    }
}

/// Fetches `name` (an event file) from the node called `node`, passing `range`
/// through. Errors: `NotFound` when this process has no peer key, the node is not
/// running or registered no address, or the node has no such file (retention);
/// `Unavailable` when the node does not answer.
pub async fn fetch(st: &AppState, node: &str, name: &str, range: Option<String>) -> Result<Fetched, ApiError> {
    // (An API process may share its node's name and folder: no shortcut on the name.)
    let not_here = || {
        varta_core::err!(
            NotFound,
            "{name} is not on this process's disk (node {node} made it; retention may have removed it), and this \
             process has no peer key to ask node {node}"
        )
    };
    let peers = st.peers.clone().ok_or_else(not_here)?;
    if !is_event_file(name) {
        return Err(varta_core::err!(Internal, "{name:?} is not an event file").into());
    }
    let addr =
        st.store.node_api_addr(node).await?.ok_or_else(|| {
            varta_core::err!(NotFound, "{name} is on node {node}'s disk, and node {node} is not running")
        })?;
    let path = format!("/internal/v1/files/{name}");
    let url = format!("http://{addr}{path}");
    let header = peers.sign(&path, chrono::Utc::now().timestamp());
    let what = format!("fetching {name}");
    let (node, name) = (node.to_owned(), name.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut req = ureq::get(&url).set(HEADER, &header).timeout(std::time::Duration::from_secs(30));
        if let Some(r) = &range {
            req = req.set("Range", r);
        }
        match req.call() {
            Ok(res) => {
                let status = StatusCode::from_u16(res.status()).unwrap_or(StatusCode::OK);
                let content_range = res.header("Content-Range").map(str::to_owned);
                let mut body = Vec::new();
                std::io::Read::read_to_end(&mut std::io::Read::take(res.into_reader(), 1 << 30), &mut body)
                    .map_err(|e| varta_core::err!(Unavailable, "reading {name} from node {node}: {e}"))?;
                Ok(Fetched { status, content_range, body })
            }
            Err(ureq::Error::Status(404, _)) => {
                Err(varta_core::err!(NotFound, "node {node} no longer has {name} (retention removed it)").into())
            }
            Err(ureq::Error::Status(416, _)) => Err(varta_core::err!(InvalidArgument, "range not satisfiable").into()),
            Err(ureq::Error::Status(code, _)) => {
                Err(varta_core::err!(Unavailable, "node {node} answered {code} for {name}").into())
            }
            Err(e) => Err(varta_core::err!(Unavailable, "node {node} does not answer: {e}").into()),
        }
    })
    .await
    .map_err(|e| varta_core::err!(Internal, "{what}: {e}"))?
}

/// `GET /internal/v1/files/{name}`: one of this node's event files, for another
/// process of the region (signed with the shared key; range requests served). Not
/// for people: 404 without a peer key, 401 on a bad or stale signature.
pub async fn serve(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    use tower::ServiceExt;
    let Some(peers) = &st.peers else {
        return Err(varta_core::err!(NotFound, "no such route").into());
    };
    let path = format!("/internal/v1/files/{name}");
    let signed = headers.get(HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !peers.accepts(signed, &path, chrono::Utc::now().timestamp()) {
        return Err(varta_core::err!(Unauthenticated, "not signed with this region's peer key").into());
    }
    if !is_event_file(&name) {
        return Err(varta_core::err!(NotFound, "no such file").into());
    }
    let file = st.snapshot_dir.join(&name);
    if !tokio::fs::try_exists(&file).await.unwrap_or(false) {
        return Err(varta_core::err!(NotFound, "no such file").into());
    }
    let mime = if name.ends_with(".mp4") { "video/mp4" } else { "image/jpeg" };
    let res = tower_http::services::ServeFile::new_with_mime(&file, &mime.parse().expect("a MIME type"))
        .oneshot(req)
        .await
        .map_err(|e| varta_core::err!(Unavailable, "reading {name}: {e}"))?;
    Ok(res.map(axum::body::Body::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_accepted_only_for_its_path_key_and_time() {
        let p = Peers::new(b"a region's shared key".to_vec()).unwrap();
        let path = "/internal/v1/files/01a2329a-56d3-77fa-aaa2-ebcbcc9d1639.mp4";
        let h = p.sign(path, 1_000_000);
        assert!(p.accepts(&h, path, 1_000_030));
        assert!(!p.accepts(&h, path, 1_000_061), "stale");
        assert!(!p.accepts(&h, "/internal/v1/files/01a2329a-56d3-77fa-aaa2-ebcbcc9d1639.jpg", 1_000_000));
        let other = Peers::new(b"another region's key!".to_vec()).unwrap();
        assert!(!other.accepts(&h, path, 1_000_000));
        assert!(!p.accepts("t=1000000,v1=zz", path, 1_000_000));
        assert!(Peers::new(b"short".to_vec()).is_err());
    }

    #[test]
    fn only_event_files_are_served() {
        assert!(is_event_file("01a2329a-56d3-77fa-aaa2-ebcbcc9d1639.crop.jpg"));
        assert!(is_event_file("01a2329a-56d3-77fa-aaa2-ebcbcc9d1639.mp4"));
        for bad in ["../etc/passwd", "node.ed25519", "x.jpg", "01a2329a-56d3-77fa-aaa2-ebcbcc9d1639.mp4/..", ""] {
            assert!(!is_event_file(bad), "{bad}");
        }
    }
}
