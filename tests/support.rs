//! Helpers for the end-to-end tests: the built `varta` binary, child processes
//! that die with the test, free ports, fresh databases, HTTP polling.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// The `varta` binary of this build (`cargo build` puts it beside `deps/`).
pub fn varta_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("varta");
    assert!(p.exists(), "{} not built: run `cargo build -p varta` first (./scripts/test does)", p.display());
    p
}

/// A `varta` command with the runtime environment the setup provides.
pub fn varta() -> Command {
    let mut c = Command::new(varta_bin());
    c.current_dir(root());
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        c.env("ORT_DYLIB_PATH", root().join(".cache/onnxruntime/lib/libonnxruntime.so.1.32.0"));
    }
    c
}

/// `varta` with its wall clock moved by `offset` (libfaketime preloaded into the one
/// process, e.g. `+600s`); the machine's clock and the process's monotonic clock are
/// left alone.
pub fn varta_with_clock(offset: &str) -> Command {
    let lib = Path::new("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1");
    assert!(lib.exists(), "{} is missing: run ./scripts/setup (Debian package faketime)", lib.display());
    let mut c = varta();
    c.env("LD_PRELOAD", lib).env("FAKETIME", offset).env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    c
}

/// Where `scripts/setup` put the test media (`VARTA_MEDIA_DIR` overrides).
pub fn media_dir() -> PathBuf {
    std::env::var_os("VARTA_MEDIA_DIR").map(PathBuf::from).unwrap_or_else(|| root().join(".cache/media"))
}

/// The clip the simulator serves.
pub fn clip() -> PathBuf {
    let p = media_dir().join("vtest.mp4");
    assert!(p.exists(), "{} is missing: run ./scripts/setup", p.display());
    p
}

/// A free TCP port on loopback (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process that is stopped when dropped.
pub struct Proc {
    /// The child.
    pub child: Child,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd`, its stdout and stderr going to `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let f = std::fs::File::create(&log).unwrap();
        cmd.stdout(Stdio::from(f.try_clone().unwrap())).stderr(Stdio::from(f));
        Proc { child: cmd.spawn().expect("spawning child"), log }
    }

    /// Sends SIGTERM and waits up to `timeout`; returns the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Its output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `DATABASE_URL`, which the test command provides (a local cluster when unset).
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL must be set: run the tests with ./scripts/test")
}

/// Creates a fresh database on the `DATABASE_URL` server and applies the migrations
/// as `DATABASE_URL`'s role (the schema owner); returns the URL the processes
/// under test use: the runtime role `VARTA_TEST_RUNTIME_USER` when set (the local
/// cluster of `./scripts/test`), else the same role.
pub async fn fresh_database(prefix: &str) -> String {
    let owner = owner_database(prefix).await;
    let store = varta_store::Store::connect(&owner).await.expect("connecting to the new database");
    store.migrate().await.expect("migrating the new database as its owner");
    store.pool().close().await;
    runtime_url(&owner)
}

/// Creates a fresh, empty database on the `DATABASE_URL` server; returns the owner
/// role's URL of it.
pub async fn owner_database(prefix: &str) -> String {
    use sqlx::Connection;
    let base = database_url();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let name = format!("{prefix}_{}_{nanos}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&base).await.expect("connecting to DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    let (head, _) = base.rsplit_once('/').expect("DATABASE_URL has a database name");
    format!("{head}/{name}")
}

/// `owner_url` with the runtime role's name (`VARTA_TEST_RUNTIME_USER`) instead of
/// the owner's; unchanged when that is unset.
pub fn runtime_url(owner_url: &str) -> String {
    match std::env::var("VARTA_TEST_RUNTIME_USER") {
        Ok(user) if !user.is_empty() => {
            let (scheme, rest) = owner_url.split_once("://").expect("a URL");
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("{scheme}://{user}@{host}")
        }
        _ => owner_url.to_owned(),
    }
}

/// The owner role's URL of a database whose runtime URL is `runtime` (made by
/// [`fresh_database`]).
pub fn owner_url_of(runtime: &str) -> String {
    let base = database_url();
    let (scheme, rest) = base.split_once("://").expect("a URL");
    let userinfo = rest.rsplit_once('@').map(|(u, _)| u);
    let (_, host) = runtime.split_once("://").expect("a URL");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    match userinfo {
        Some(u) => format!("{scheme}://{u}@{host}"),
        None => format!("{scheme}://{host}"),
    }
}

/// GETs `url` and parses JSON; `None` on any failure.
pub fn get_json(url: &str) -> Option<serde_json::Value> {
    ureq::get(url).timeout(Duration::from_secs(5)).call().ok()?.into_json().ok()
}

/// Polls `f` every 500 ms until it returns `Some`, or panics after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Polls the future `f` makes every 200 ms until it yields true, or panics after
/// `timeout`: [`wait_for`] for async conditions (a database read).
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < end, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Password the test accounts get.
pub const TEST_PASSWORD: &str = "test-password-123";

/// Creates account `name` with `role` on database `db` through `varta user add`.
pub fn add_user(db: &str, name: &str, role: &str) {
    let out = varta()
        .args(["user", "add", name, "--role", role, "--replace"])
        .env("DATABASE_URL", db)
        .env("VARTA_PASSWORD", TEST_PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "varta user add: {}", String::from_utf8_lossy(&out.stderr));
}

/// A machine token of a new account `name` with `role` (through `varta user token`).
pub fn token_for(db: &str, name: &str, role: &str) -> String {
    add_user(db, name, role);
    let out = varta().args(["user", "token", name]).env("DATABASE_URL", db).output().unwrap();
    assert!(out.status.success(), "varta user token: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `/metrics` of the API at `base`, read with an administrator's `token` (it needs
/// one: per-camera counters say when a scene is busy).
pub fn metrics_text(base: &str, token: &str) -> String {
    ureq::get(&format!("{base}/metrics"))
        .set("Authorization", &format!("Bearer {token}"))
        .call()
        .expect("GET /metrics")
        .into_string()
        .unwrap()
}

/// The value of one series in Prometheus text: `name` is the metric's name with its
/// labels as rendered (`varta_frames_decoded_total{camera="cam-1"}`), or alone.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// GETs `url` with a bearer token and parses JSON; `None` on any failure.
pub fn get_json_as(url: &str, token: &str) -> Option<serde_json::Value> {
    ureq::get(url)
        .set("Authorization", &format!("Bearer {token}"))
        .timeout(Duration::from_secs(5))
        .call()
        .ok()?
        .into_json()
        .ok()
}

/// Sends `method url` with an optional bearer token and JSON body; returns the status
/// and the parsed body (`Null` when it is not JSON).
pub fn call(method: &str, url: &str, token: Option<&str>, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
    let mut r = ureq::request(method, url).timeout(Duration::from_secs(30));
    if let Some(t) = token {
        r = r.set("Authorization", &format!("Bearer {t}"));
    }
    let res = match body {
        Some(b) => r.send_json(b),
        None => r.call(),
    };
    let resp = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let code = resp.status();
    let text = resp.into_string().unwrap_or_default();
    (code, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// Runs SQL `q` (several statements allowed) on `db`.
pub async fn sql(db: &str, q: &str) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(db).await.unwrap();
    sqlx::raw_sql(q).execute(&mut c).await.unwrap();
}

/// The one `bigint` that query `q` returns on `db`.
pub async fn scalar(db: &str, q: &str) -> i64 {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(db).await.unwrap();
    sqlx::query_scalar(q).fetch_one(&mut c).await.unwrap()
}

/// Inserts an alerting event on `camera` (as the writer would) and returns its id.
pub async fn alerting_event(db: &str, camera: &str) -> uuid::Uuid {
    let id = uuid::Uuid::now_v7();
    sql(
        db,
        &format!(
            "SELECT varta_event_partition(current_date);
             INSERT INTO events (id, camera_id, track_id, class, score, bbox, started_at, last_seen_at, frames, node,
                                 rule, snapshot, alert)
             VALUES ('{id}', '{camera}', 1, 'person', 0.9, '{{1,2,3,4}}', now(), now(), 1, 't', 'intrusion',
                     '{id}.jpg', true)"
        ),
    )
    .await;
    id
}

/// The complete lines of a file another process appends to and may be killed while
/// writing: a last line without its newline is left out (a SIGKILL can cut a
/// `write` at a page boundary), and so is anything that is not UTF-8.
pub fn complete_lines(bytes: &[u8]) -> impl Iterator<Item = &str> {
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    bytes[..end].split(|&b| b == b'\n').filter(|l| !l.is_empty()).filter_map(|l| std::str::from_utf8(l).ok())
}

/// One server-sent event as [`sse`] read it.
#[derive(Debug)]
pub struct SseEvent {
    /// `id:`, if the event had one.
    pub id: Option<i64>,
    /// `event:` (the kind).
    pub kind: String,
    /// `data:`, parsed as JSON.
    pub data: serde_json::Value,
    /// When the client thread read it (not when the test looked at it).
    pub arrived: chrono::DateTime<chrono::Utc>,
}

/// A GET of the SSE stream at `url` as `token`'s holder, with connect and read
/// timeouts: not a request timeout, which would cut the stream after that long
/// however lively it is (a test that watched for over two minutes lost the alerts
/// after it). The server's keep-alives come every 15 s; a read timeout is an
/// `io::ErrorKind::TimedOut` from the reader.
pub fn sse_request(url: &str, token: &str) -> ureq::Request {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(60))
        .build()
        .get(url)
        .set("Authorization", &format!("Bearer {token}"))
}

/// An SSE client in a thread: sends each event it reads, stamped when read.
pub fn sse(url: &str, token: &str, last_id: Option<i64>) -> std::sync::mpsc::Receiver<SseEvent> {
    let mut req = sse_request(url, token);
    if let Some(l) = last_id {
        req = req.set("Last-Event-ID", &l.to_string());
    }
    let resp = req.call().expect("SSE connect");
    assert_eq!(resp.content_type(), "text/event-stream");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let r = std::io::BufReader::new(resp.into_reader());
        let (mut id, mut ev, mut data) = (None, String::new(), String::new());
        for line in r.lines() {
            let Ok(line) = line else { return };
            if line.is_empty() {
                if !data.is_empty() {
                    let e = SseEvent {
                        id: id.take(),
                        kind: std::mem::take(&mut ev),
                        data: serde_json::from_str(&data).unwrap(),
                        arrived: chrono::Utc::now(),
                    };
                    if tx.send(e).is_err() {
                        return;
                    }
                }
                data.clear();
            } else if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                ev = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
    });
    rx
}

/// Live camera leases per node name (`camera_leases` joined to `nodes`).
pub async fn lease_holders(db: &str) -> std::collections::BTreeMap<String, usize> {
    use sqlx::{Connection, Row};
    let mut c = sqlx::PgConnection::connect(db).await.unwrap();
    sqlx::query(
        "SELECT n.name, count(*) FROM camera_leases l JOIN nodes n ON n.id = l.node_id
         WHERE l.expires_at > now() GROUP BY n.name",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1) as usize))
    .collect()
}

/// Cameras streaming in the API of the process on `api_port` (0 when it does not
/// answer).
pub fn streaming_cameras(api_port: u16, token: &str) -> usize {
    get_json_as(&format!("http://127.0.0.1:{api_port}/api/v1/cameras"), token)
        .and_then(|v| v.as_array().map(|a| a.iter().filter(|c| c["status"] == "streaming").count()))
        .unwrap_or(0)
}

/// A private CA and a server certificate it signed for 127.0.0.1 (openssl): the
/// paths of (ca.pem, cert.pem, key.pem) in `dir`.
pub fn private_ca(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let p = |f: &str| dir.join(f);
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let run = |c: &mut Command| assert!(c.stderr(std::process::Stdio::null()).status().unwrap().success(), "{c:?}");
    run(std::process::Command::new("openssl")
        .args(["req", "-x509", "-days", "1", "-subj", "/CN=varta-test-ca"])
        .args(ec)
        .arg("-keyout")
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem")));
    run(std::process::Command::new("openssl")
        .args(["req", "-subj", "/CN=localhost"])
        .args(ec)
        .arg("-keyout")
        .arg(p("key.pem"))
        .arg("-out")
        .arg(p("server.csr")));
    std::fs::write(p("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    run(std::process::Command::new("openssl")
        .args(["x509", "-req", "-days", "1", "-CAcreateserial"])
        .arg("-in")
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-extfile")
        .arg(p("ext.cnf"))
        .arg("-out")
        .arg(p("cert.pem")));
    (p("ca.pem"), p("cert.pem"), p("key.pem"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_torn_last_line_is_left_out() {
        let lines: Vec<_> = super::complete_lines(b"one\ntwo\nthr").collect();
        assert_eq!(lines, ["one", "two"]);
        assert_eq!(super::complete_lines(b"").count(), 0);
        assert_eq!(super::complete_lines(b"partial").count(), 0);
    }
}
