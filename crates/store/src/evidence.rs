//! Evidence that anyone can check (issue #22): each node's Ed25519 key, the
//! manifest it signs for every event, the export package and its verification.
//!
//! - **Hashes at write time.** Whoever writes an event's file hashes the bytes it
//!   wrote (SHA-256, lower-case hex): the snapshot thread its snapshot and crop
//!   (`StoreMsg::Snapshot`), the clip thread its MP4 (`StoreMsg::Clip`). The store's
//!   writer keeps them on the event's row.
//! - **Signed manifests.** Each node has an Ed25519 key ([`NodeKey`], generated on
//!   first start, private part mode 0600 in the spool folder, public part registered
//!   in `node_keys`). Whenever an ended event's evidence changes (it ends, a file is
//!   hashed), the writer builds the event's [`Manifest`] from its row and signs it:
//!   the exact JSON bytes, the signature and the key's id go on the row.
//! - **Export.** `GET /api/v1/events/{id}/export` packs the manifest, its signature,
//!   the files it names and the event as the API shows it into a ZIP
//!   ([`write_package`]); [`verify_package`] (`varta evidence verify FILE.zip`)
//!   checks the signature with the registered key and every file against its hash,
//!   and names what does not match.
//!
//! Ed25519 by `ed25519-dalek` 2 (BSD-3-Clause), ZIP by `zip` 2 (MIT, stored
//! entries: MP4 and JPEG do not compress).

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use varta_core::{Error, ErrorKind};

/// The `format` of the manifests this version writes.
pub const MANIFEST_FORMAT: &str = "varta-evidence-manifest/1";
/// The manifest's name in an export package (its exact signed bytes).
pub const MANIFEST_FILE: &str = "manifest.json";
/// The signature's name in an export package: base64 of the 64-byte Ed25519
/// signature of `manifest.json`'s bytes.
pub const SIGNATURE_FILE: &str = "manifest.sig";
/// The event as `GET /api/v1/events/{id}` shows it (not signed: the manifest is
/// what is; verify checks that the two agree on ids and times).
pub const EVENT_FILE: &str = "event.json";
/// The key file's name in the spool folder.
pub const KEY_FILE: &str = "node.ed25519";

/// SHA-256 of `bytes`, lower-case hex (the form stored on rows and in manifests).
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A node's Ed25519 signing key.
pub struct NodeKey {
    key: SigningKey,
    id: String,
}

impl std::fmt::Debug for NodeKey {
    /// The key id only: the private key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl NodeKey {
    /// Reads the key at `path` (base64 of the 32-byte Ed25519 seed, one line), or
    /// creates one there (mode 0600, from the operating system's random source) when
    /// there is no file. Errors: `Unavailable` when the file cannot be read or
    /// created, `InvalidArgument` when it is not a key or others may read it (mode
    /// wider than 0600: a key others could copy proves nothing).
    pub fn load_or_create(path: &Path) -> Result<NodeKey, Error> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let io = |what: &str, e: std::io::Error| {
            Error::wrap(ErrorKind::Unavailable, format!("{what} {}", path.display()), e)
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mode = std::fs::metadata(path).map_err(|e| io("reading", e))?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(varta_core::err!(
                        InvalidArgument,
                        "node key {} is readable by others (mode {:o}): chmod 600 it",
                        path.display(),
                        mode & 0o777
                    ));
                }
                let seed: [u8; 32] =
                    b64().decode(text.trim()).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| {
                        varta_core::err!(InvalidArgument, "node key {} is not an Ed25519 key", path.display())
                    })?;
                Ok(NodeKey::from_seed(seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::getrandom(&mut seed)
                    .map_err(|e| Error::wrap(ErrorKind::Unavailable, "the operating system's random source", e))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| io("creating the folder of", e))?;
                }
                // Written under a name of this process's own and linked into place
                // (link fails if the key exists): two processes starting at once never
                // overwrite each other's key; the loser reads the winner's.
                let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
                let _ = std::fs::remove_file(&tmp);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(|e| io("creating", e))?;
                f.write_all(format!("{}\n", b64().encode(seed)).as_bytes()).map_err(|e| io("writing", e))?;
                f.sync_all().map_err(|e| io("syncing", e))?;
                match std::fs::hard_link(&tmp, path) {
                    Ok(()) => {
                        let _ = std::fs::remove_file(&tmp);
                        tracing::info!(key = %path.display(), "created this node's evidence signing key");
                        Ok(NodeKey::from_seed(seed))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let _ = std::fs::remove_file(&tmp);
                        NodeKey::load_or_create(path)
                    }
                    Err(e) => Err(io("creating", e)),
                }
            }
            Err(e) => Err(io("reading", e)),
        }
    }

    /// The key of a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> NodeKey {
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(&key.verifying_key());
        NodeKey { key, id }
    }

    /// The key's id: `ed25519:` and the first 16 hex digits of the SHA-256 of the
    /// public key's 32 bytes.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The public key, base64 of its 32 bytes (as `node_keys.public_key` holds it).
    pub fn public_base64(&self) -> String {
        b64().encode(self.key.verifying_key().as_bytes())
    }

    /// The Ed25519 signature of `bytes`, base64 of its 64 bytes.
    pub fn sign(&self, bytes: &[u8]) -> String {
        b64().encode(self.key.sign(bytes).to_bytes())
    }
}

fn key_id(k: &VerifyingKey) -> String {
    format!("ed25519:{}", &sha256_hex(k.as_bytes())[..16])
}

/// Checks `signature` (base64, 64 bytes) of `bytes` with `public_key` (base64, 32
/// bytes); the error says which of the three is wrong.
pub fn verify_signature(public_key: &str, bytes: &[u8], signature: &str) -> Result<(), String> {
    let key: [u8; 32] = b64()
        .decode(public_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the public key is not 32 bytes of base64")?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| "the public key is not an Ed25519 key")?;
    let sig: [u8; 64] = b64()
        .decode(signature.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the signature is not 64 bytes of base64")?;
    key.verify(bytes, &ed25519_dalek::Signature::from_bytes(&sig)).map_err(|_| {
        "the signature does not match (the manifest was changed after it was signed, or another key signed it)".into()
    })
}

/// One file of an event's evidence.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ManifestFile {
    /// `snapshot` (the whole picture, box drawn), `crop` (the object) or `clip` (MP4).
    pub role: String,
    /// Its name in the snapshot folder and in an export package.
    pub name: String,
    /// SHA-256 of its bytes as written, lower-case hex.
    pub sha256: String,
}

/// What a node signs for one event: who and what it is, when, and the hash of each
/// of its files. Serialised as pretty JSON; the signature covers those exact bytes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// The event.
    pub event_id: uuid::Uuid,
    /// Its camera and the camera's site (none when the camera has no site).
    pub camera: String,
    pub site: Option<String>,
    /// The node that made the event and signed this.
    pub node: String,
    /// The rule that fired, the object's class and its track on the camera.
    pub rule: String,
    pub class: String,
    pub track_id: i64,
    /// First and last frame of the event (camera capture times, UTC).
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Its files, in the order snapshot, crop, clip (those that exist).
    pub files: Vec<ManifestFile>,
    /// The signing key's id ([`NodeKey::id`]).
    pub key_id: String,
}

impl Manifest {
    /// The bytes that are signed and exported.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a manifest serialises");
        v.push(b'\n');
        v
    }
}

/// Where a package's parts come from when it is written.
#[derive(Debug)]
pub struct Package<'a> {
    /// The manifest's exact signed bytes.
    pub manifest: &'a [u8],
    /// Its signature, base64.
    pub signature: &'a str,
    /// The event as the API shows it, JSON.
    pub event_json: &'a [u8],
    /// The manifest's files by name (read from the node's disk, or fetched from it).
    pub files: &'a std::collections::HashMap<String, Vec<u8>>,
}

/// Writes an export package (a ZIP of stored entries) to `out`: `manifest.json`,
/// `manifest.sig`, `event.json`, each file the manifest names, and `README.txt`.
/// Errors: `InvalidArgument` when the manifest does not parse, `NotFound` when one of
/// its files is not in `files` (retention removed it), `Unavailable` on I/O.
pub fn write_package<W: Write + std::io::Seek>(p: &Package<'_>, out: W) -> Result<W, Error> {
    let m: Manifest = serde_json::from_slice(p.manifest)
        .map_err(|e| Error::wrap(ErrorKind::InvalidArgument, "the event's manifest", e))?;
    let zerr = |e: zip::result::ZipError| Error::wrap(ErrorKind::Unavailable, "writing the export package", e);
    let mut z = zip::ZipWriter::new(out);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(false);
    let mut put = |name: &str, bytes: &[u8]| -> Result<(), Error> {
        z.start_file(name, opts).map_err(zerr)?;
        z.write_all(bytes).map_err(|e| Error::wrap(ErrorKind::Unavailable, "writing the export package", e))
    };
    put(MANIFEST_FILE, p.manifest)?;
    put(SIGNATURE_FILE, format!("{}\n", p.signature).as_bytes())?;
    put(EVENT_FILE, p.event_json)?;
    put("README.txt", readme(&m).as_bytes())?;
    for f in &m.files {
        let bytes = p.files.get(&f.name).ok_or_else(|| {
            varta_core::err!(NotFound, "the event's {} {} is gone (retention removed it)", f.role, f.name)
        })?;
        put(&f.name, bytes)?;
    }
    z.finish().map_err(zerr)
}

fn readme(m: &Manifest) -> String {
    format!(
        "Varta evidence package\n\
         ======================\n\
         Event {} on camera {} ({}), {} to {}.\n\n\
         manifest.json  what node {} recorded: ids, times and the SHA-256 of each file\n\
         manifest.sig   its Ed25519 signature (base64) by key {}\n\
         event.json     the event as the system shows it\n\n\
         To check it: varta evidence verify THIS.zip\n\
         (with DATABASE_URL set, or --public-key KEY as registered in node_keys).\n\
         It checks the signature with the node's registered public key and each\n\
         file against its hash, and names any file that does not match.\n",
        m.event_id,
        m.camera,
        m.site.as_deref().unwrap_or("no site"),
        m.started_at.to_rfc3339(),
        m.ended_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "(open)".into()),
        m.node,
        m.key_id,
    )
}

/// A registered public key, as `node_keys` holds it.
#[derive(Clone, Debug)]
pub struct RegisteredKey {
    /// The node that registered it.
    pub node: String,
    /// Base64 of its 32 bytes.
    pub public_key: String,
    /// When it was registered (database time); `None` for a key given by hand.
    pub registered_at: Option<DateTime<Utc>>,
}

/// What [`verify_package`] found.
#[derive(Debug, Default)]
pub struct Verdict {
    /// The manifest, when it parsed.
    pub manifest: Option<Manifest>,
    /// One line per check that passed.
    pub passed: Vec<String>,
    /// `(file, why)` for each check that failed: empty means the package is intact.
    pub failed: Vec<(String, String)>,
}

impl Verdict {
    fn fail(&mut self, file: &str, why: impl Into<String>) {
        self.failed.push((file.to_owned(), why.into()));
    }
}

/// The manifest of an export package (its key id says which key to fetch before
/// [`verify_package`]); `None` when it has none or it does not parse (verify says
/// so). Errors only when `zip` is not a ZIP (`InvalidArgument`).
pub fn package_manifest<R: Read + std::io::Seek>(zip: R) -> Result<Option<Manifest>, Error> {
    let mut z = zip::ZipArchive::new(zip)
        .map_err(|e| Error::wrap(ErrorKind::InvalidArgument, "not a ZIP export package", e))?;
    Ok(read_entry(&mut z, MANIFEST_FILE).and_then(|b| serde_json::from_slice(&b).ok()))
}

/// An entry's bytes. A stored entry is read as it lies (the ZIP's CRC unchecked), so
/// a changed byte is reported against the manifest's hash or signature, naming the
/// file, not as a damaged archive; a compressed entry (repacked by someone) is
/// inflated.
fn read_entry<R: Read + std::io::Seek>(z: &mut zip::ZipArchive<R>, name: &str) -> Option<Vec<u8>> {
    let i = z.index_for_name(name)?;
    let stored = z.by_index_raw(i).ok()?.compression() == zip::CompressionMethod::Stored;
    let mut f = if stored { z.by_index_raw(i).ok()? } else { z.by_index(i).ok()? };
    let mut buf = Vec::with_capacity(f.size().min(1 << 30) as usize);
    f.read_to_end(&mut buf).ok().map(|_| buf)
}

/// Checks an export package: the manifest's signature with the key `key_for`
/// returns for its key id, that the key was registered no later than the event
/// began, each file the manifest names against its SHA-256, no file in the package
/// that the manifest does not account for, and that `event.json` names the same
/// event and times. `key_for` returning `None`: the key is unknown (a failure).
/// Errors only when `zip` is not a ZIP (`InvalidArgument`) or cannot be read.
pub fn verify_package<R: Read + std::io::Seek>(
    zip: R,
    key_for: impl FnOnce(&str) -> Option<RegisteredKey>,
) -> Result<Verdict, Error> {
    let mut z = zip::ZipArchive::new(zip)
        .map_err(|e| Error::wrap(ErrorKind::InvalidArgument, "not a ZIP export package", e))?;
    let mut v = Verdict::default();
    let Some(manifest_bytes) = read_entry(&mut z, MANIFEST_FILE) else {
        v.fail(MANIFEST_FILE, "missing from the package");
        return Ok(v);
    };
    let manifest: Option<Manifest> = serde_json::from_slice(&manifest_bytes).ok();
    let Some(m) = manifest else {
        v.fail(MANIFEST_FILE, "not a manifest (changed or damaged)");
        return Ok(v);
    };
    match read_entry(&mut z, SIGNATURE_FILE).map(|s| String::from_utf8_lossy(&s).into_owned()) {
        None => v.fail(SIGNATURE_FILE, "missing from the package"),
        Some(sig) => match key_for(&m.key_id) {
            None => v.fail(MANIFEST_FILE, format!("signed by key {}, which is not registered", m.key_id)),
            Some(k) => match verify_signature(&k.public_key, &manifest_bytes, &sig) {
                Err(why) => v.fail(MANIFEST_FILE, why),
                Ok(()) => {
                    v.passed.push(format!("{MANIFEST_FILE}: signature by {} (node {}) is valid", m.key_id, k.node));
                    if k.node != m.node {
                        v.fail(
                            MANIFEST_FILE,
                            format!("says node {}, but key {} is node {}'s", m.node, m.key_id, k.node),
                        );
                    }
                    if let Some(at) = k.registered_at.filter(|at| *at > m.started_at) {
                        v.fail(
                            MANIFEST_FILE,
                            format!(
                                "key {} was registered at {at}, after the event began ({})",
                                m.key_id, m.started_at
                            ),
                        );
                    }
                }
            },
        },
    }
    for f in &m.files {
        match read_entry(&mut z, &f.name) {
            None => v.fail(&f.name, format!("the {} is missing from the package", f.role)),
            Some(bytes) => {
                let got = sha256_hex(&bytes);
                if got == f.sha256 {
                    v.passed.push(format!("{}: SHA-256 matches ({} bytes)", f.name, bytes.len()));
                } else {
                    v.fail(&f.name, format!("SHA-256 is {got}, the manifest says {}: the file was changed", f.sha256));
                }
            }
        }
    }
    match read_entry(&mut z, EVENT_FILE).and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()) {
        None => v.fail(EVENT_FILE, "missing or not JSON"),
        Some(e) => {
            let same_time = |key: &str, t: Option<DateTime<Utc>>| {
                let got = e.get(key).and_then(|s| s.as_str()).and_then(|s| DateTime::parse_from_rfc3339(s).ok());
                got.map(|g| g.with_timezone(&Utc)) == t
            };
            let differs: Vec<&str> = [
                ("id", e.get("id").and_then(|s| s.as_str()) == Some(m.event_id.to_string().as_str())),
                ("camera", e.get("camera").and_then(|s| s.as_str()) == Some(m.camera.as_str())),
                ("started_at", same_time("started_at", Some(m.started_at))),
                ("ended_at", same_time("ended_at", m.ended_at)),
            ]
            .into_iter()
            .filter(|(_, same)| !same)
            .map(|(k, _)| k)
            .collect();
            if differs.is_empty() {
                v.passed.push(format!("{EVENT_FILE}: same event, camera and times as the manifest"));
            } else {
                let verb = if differs.len() == 1 { "differs" } else { "differ" };
                v.fail(EVENT_FILE, format!("its {} {verb} from the manifest's", differs.join(", ")));
            }
        }
    }
    let known: Vec<&str> = [MANIFEST_FILE, SIGNATURE_FILE, EVENT_FILE, "README.txt"]
        .into_iter()
        .chain(m.files.iter().map(|f| f.name.as_str()))
        .collect();
    let extra: Vec<String> = z.file_names().filter(|n| !known.contains(n)).map(str::to_owned).collect();
    for name in extra {
        v.fail(&name, "in the package but not in the manifest");
    }
    v.manifest = Some(m);
    Ok(v)
}

impl crate::Store {
    /// Registers `key` as `node`'s (once: a key already registered is left as it
    /// was, its first registration time kept). Errors: `InvalidArgument` when the
    /// key's id is registered for another node or with another key.
    pub async fn register_node_key(&self, node: &str, key: &NodeKey) -> Result<(), Error> {
        sqlx::query("INSERT INTO node_keys (key_id, node, public_key) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(key.id())
            .bind(node)
            .bind(key.public_base64())
            .execute(self.pool())
            .await
            .map_err(|e| crate::db_error("registering the node's key", e))?;
        match self.node_key(key.id()).await? {
            Some(k) if k.node == node && k.public_key == key.public_base64() => Ok(()),
            _ => Err(varta_core::err!(
                InvalidArgument,
                "key {} is registered for another node or with another public key",
                key.id()
            )),
        }
    }

    /// The registered key with id `key_id`, if any.
    pub async fn node_key(&self, key_id: &str) -> Result<Option<RegisteredKey>, Error> {
        let row: Option<(String, String, DateTime<Utc>)> =
            sqlx::query_as("SELECT node, public_key, registered_at FROM node_keys WHERE key_id = $1")
                .bind(key_id)
                .fetch_optional(self.pool())
                .await
                .map_err(|e| crate::db_error("reading node keys", e))?;
        Ok(row.map(|(node, public_key, at)| RegisteredKey { node, public_key, registered_at: Some(at) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(files: Vec<ManifestFile>, key: &NodeKey) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT.into(),
            event_id: uuid::Uuid::now_v7(),
            camera: "cam-1".into(),
            site: Some("site-1".into()),
            node: "node-1".into(),
            rule: "presence".into(),
            class: "person".into(),
            track_id: 7,
            started_at: "2026-12-01T10:00:00.123456Z".parse().unwrap(),
            ended_at: Some("2026-12-01T10:00:05Z".parse().unwrap()),
            files,
            key_id: key.id().into(),
        }
    }

    #[test]
    fn a_package_verifies_and_any_changed_byte_is_named() {
        let dir = std::env::temp_dir().join(format!("varta-evidence-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = NodeKey::load_or_create(&dir.join(KEY_FILE)).unwrap();
        // The key is kept: a second start signs with the same key.
        assert_eq!(NodeKey::load_or_create(&dir.join(KEY_FILE)).unwrap().id(), key.id());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.join(KEY_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(dir.join("e.jpg"), b"jpeg bytes").unwrap();
        std::fs::write(dir.join("e.mp4"), b"mp4 bytes").unwrap();
        let files = vec![
            ManifestFile { role: "snapshot".into(), name: "e.jpg".into(), sha256: sha256_hex(b"jpeg bytes") },
            ManifestFile { role: "clip".into(), name: "e.mp4".into(), sha256: sha256_hex(b"mp4 bytes") },
        ];
        let m = manifest(files, &key);
        let bytes = m.to_bytes();
        let sig = key.sign(&bytes);
        let event = serde_json::json!({"id": m.event_id, "camera": "cam-1",
            "started_at": m.started_at, "ended_at": m.ended_at});
        let event = serde_json::to_vec(&event).unwrap();
        let files = ["e.jpg", "e.mp4"].map(|n| (n.to_owned(), std::fs::read(dir.join(n)).unwrap())).into();
        let pkg = Package { manifest: &bytes, signature: &sig, event_json: &event, files: &files };
        let zip = write_package(&pkg, std::io::Cursor::new(Vec::new())).unwrap().into_inner();
        let registered = RegisteredKey {
            node: "node-1".into(),
            public_key: key.public_base64(),
            registered_at: Some("2026-12-01T09:00:00Z".parse().unwrap()),
        };
        let check = |zip: &[u8]| verify_package(std::io::Cursor::new(zip), |_| Some(registered.clone())).unwrap();
        let v = check(&zip);
        assert!(v.failed.is_empty(), "{:?}", v.failed);
        assert_eq!(v.passed.len(), 4, "{:?}", v.passed);
        // One byte of the clip changed (stored entries: the bytes are in the ZIP as is).
        let at = find(&zip, b"mp4 bytes");
        let mut bad = zip.clone();
        bad[at] ^= 1;
        let v = check(&bad);
        assert_eq!(v.failed.len(), 1, "{:?}", v.failed);
        assert_eq!(v.failed[0].0, "e.mp4");
        // One byte of the manifest.
        let mut bad = zip.clone();
        let at = find(&zip, b"\"node-1\"") + 1;
        bad[at] = b'N';
        let v = check(&bad);
        assert_eq!(v.failed[0].0, MANIFEST_FILE, "{:?}", v.failed);
        assert!(v.failed[0].1.contains("signature does not match"), "{:?}", v.failed);
        // A key registered after the event began.
        let late = RegisteredKey { registered_at: Some("2026-12-01T11:00:00Z".parse().unwrap()), ..registered.clone() };
        let v = verify_package(std::io::Cursor::new(&zip), |_| Some(late)).unwrap();
        assert!(v.failed[0].1.contains("after the event began"), "{:?}", v.failed);
        // An unknown key.
        let v = verify_package(std::io::Cursor::new(&zip), |_| None).unwrap();
        assert!(v.failed[0].1.contains("not registered"), "{:?}", v.failed);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("varta-key-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        NodeKey::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = NodeKey::load_or_create(&path).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("chmod 600"), "{e}");
        let _ = std::fs::remove_file(path);
    }

    fn find(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).position(|w| w == needle).expect("in the package")
    }
}
