//! Issue #17: information protection tried as an attacker would, on real `varta
//! api` / `varta serve` processes and a real PostgreSQL: revocation that ends live
//! streams, an audit log the runtime role cannot rewrite and whose tampering is
//! found, a login flood that gets exactly `login_max_failures` password checks, an
//! edge that half-open connections cannot exhaust, and secrets in URL queries that
//! appear nowhere.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use varta_e2e::*;

const SITES: &str = "INSERT INTO sites (id, name) VALUES ('site-a', 'A');
INSERT INTO cameras (id, site_id, name, url, analysis_fps, classes, min_score, enabled) VALUES
  ('cam-1', 'site-a', 'Gate', 'rtsp://127.0.0.1:1/cam/1', 2, '{person}', 0.4, true);";

fn work_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("varta-prot-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("snapshots")).unwrap();
    d
}

/// A `varta api` config on `port`: one site, one camera, `api` and `rest` appended
/// to the `[api]` section and the end.
fn api_config(port: u16, dir: &Path, api: &str, rest: &str) -> String {
    format!(
        "[node]\nname = \"prot-{port}\"\napi_listen = \"127.0.0.1:{port}\"\n\n[detect]\nmodels = \"{}\"\nsnapshot_dir = \"{}\"\n\n\
         [api]\n{api}\n\n{rest}\n\n[[sites]]\nid = \"site-a\"\nname = \"A\"\n\n\
         [[cameras]]\nid = \"cam-1\"\nsite = \"site-a\"\nurl = \"rtsp://127.0.0.1:1/cam/1\"\n",
        root().join("models/models.toml").display(),
        dir.join("snapshots").display()
    )
}

/// Starts `varta api` with `cfg` (listening on `port`); returns it, its base URL and
/// its address.
fn start_api(db: &str, dir: &Path, port: u16, cfg: String) -> (Proc, String, SocketAddr) {
    let path = dir.join(format!("api-{port}.toml"));
    std::fs::write(&path, cfg).unwrap();
    let mut cmd = varta();
    cmd.arg("api").arg("--config").arg(&path).env("DATABASE_URL", db);
    let p = Proc::spawn(cmd, dir.join(format!("api-{port}.log")));
    let base = format!("http://127.0.0.1:{port}");
    wait_for("varta api ready", Duration::from_secs(30), || get_json(&format!("{base}/readyz")));
    (p, base, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A TCP connection to `dst` from source address `src` (any 127.x.y.z reaches the
/// loopback interface on Linux, so one machine plays many clients).
fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> TcpStream {
    // SAFETY: plain socket(2)/bind(2)/connect(2) on a descriptor we own; on success
    // it is handed to TcpStream, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let sa = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let local = sa(src, 0);
        assert_eq!(libc::bind(fd, &local as *const _ as *const libc::sockaddr, len), 0, "bind {src}");
        let SocketAddr::V4(d) = dst else { panic!("IPv4 only") };
        let remote = sa(*d.ip(), d.port());
        let r = libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len);
        assert_eq!(r, 0, "connect from {src}: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}

/// One HTTP/1.1 request from `src`; the status and the body as JSON (`Null` if not).
fn http_from(src: Ipv4Addr, dst: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut s = connect_from(src, dst);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {dst}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let json = text.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
    (code, json)
}

/// An SSE client: each alert it reads (its JSON) with the time it was read, then
/// `None` with the time the server ended the stream.
fn stream(base: &str, token: &str) -> mpsc::Receiver<(Instant, Option<Value>)> {
    let resp = sse_request(&format!("{base}/api/v1/alerts/stream"), token).call().expect("SSE connect");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut ev, mut data) = (String::new(), String::new());
        for line in BufReader::new(resp.into_reader()).lines() {
            // A read timeout is the client giving up, not the server ending the
            // stream: send nothing, and the receiver sees the channel close instead.
            let line = match line {
                Ok(l) => l,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut || e.kind() == std::io::ErrorKind::WouldBlock => {
                    return;
                }
                Err(_) => break,
            };
            if line.is_empty() {
                if ev == "alert" && tx.send((Instant::now(), Some(serde_json::from_str(&data).unwrap()))).is_err() {
                    return;
                }
                (ev, data) = (String::new(), String::new());
            } else if let Some(v) = line.strip_prefix("event:") {
                ev = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        let _ = tx.send((Instant::now(), None));
    });
    rx
}

/// Reads `rx` until the server ends the stream, waiting at most until `deadline`;
/// returns the alerts read and when the stream ended. Panics if it is still open.
fn until_closed(rx: &mpsc::Receiver<(Instant, Option<Value>)>, deadline: Instant, what: &str) -> (Vec<Value>, Instant) {
    let mut got = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((_, Some(v))) => got.push(v),
            Ok((at, None)) => return (got, at),
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: the stream was still open at its deadline"),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("{what}: the client timed out reading before the server ended the stream")
            }
        }
    }
}

/// Microseconds since the epoch of an RFC 3339 time.
fn micros(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp_micros()
}

/// The database's clock now, in microseconds since the epoch.
async fn db_now(db: &str) -> i64 {
    scalar(db, "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint").await
}

fn login(base: &str, user: &str, password: &str) -> (u16, Value) {
    call("POST", &format!("{base}/api/v1/auth/login"), None, Some(json!({"username": user, "password": password})))
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_expired_and_reset_sessions_lose_their_alert_stream_at_once() {
    let db = fresh_database("prot_sessions").await;
    let dir = work_dir("sessions");
    sql(&db, SITES).await;
    let (api, base, _) = {
        let (db, dir) = (db.clone(), dir.clone());
        tokio::task::spawn_blocking(move || {
            let admin = token_for(&db, "boss", "admin");
            for u in ["op-disable", "op-logout", "op-expire", "op-reset"] {
                add_user(&db, u, "operator");
            }
            let port = free_port();
            let (p, base, addr) = start_api(&db, &dir, port, api_config(port, &dir, "", ""));
            ((p, admin), base, addr)
        })
        .await
        .unwrap()
    };
    let (_proc, admin) = api;
    let sessions: Vec<String> = {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            ["op-disable", "op-logout", "op-expire", "op-reset"]
                .map(|u| {
                    let (code, s) = login(&base, u, TEST_PASSWORD);
                    assert_eq!(code, 200, "{s}");
                    s["token"].as_str().unwrap().to_owned()
                })
                .to_vec()
        })
        .await
        .unwrap()
    };
    // A machine token of op-reset too: a password reset ends it as well.
    let machine = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            let out = varta().args(["user", "token", "op-reset"]).env("DATABASE_URL", &db).output().unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        })
        .await
        .unwrap()
    };
    // op-expire's session ends in 6 s.
    sql(
        &db,
        "UPDATE api_tokens SET expires_at = now() + interval '6 seconds'
               WHERE user_id = (SELECT id FROM users WHERE name = 'op-expire')",
    )
    .await;
    let expires_at = scalar(
        &db,
        "SELECT (extract(epoch FROM expires_at) * 1000000)::bigint FROM api_tokens
          WHERE user_id = (SELECT id FROM users WHERE name = 'op-expire')",
    )
    .await;

    let open = |t: String| {
        let base = base.clone();
        async move { tokio::task::spawn_blocking(move || stream(&base, &t)).await.unwrap() }
    };
    let mut rxs = Vec::new();
    for t in sessions.iter().chain([&machine, &admin]) {
        rxs.push(open(t.clone()).await);
    }
    // At most four streams per token.
    let extra: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(open(admin.clone()).await);
        }
        v
    };
    let (code, v) = {
        let (base, admin) = (base.clone(), admin.clone());
        tokio::task::spawn_blocking(move || call("GET", &format!("{base}/api/v1/alerts/stream"), Some(&admin), None))
            .await
            .unwrap()
    };
    assert_eq!(code, 429, "a fifth stream of one token: {v}");
    drop(extra);

    // Alerts keep coming, one every 200 ms, for the whole test.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let generator = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mut every = tokio::time::interval(Duration::from_millis(200));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    every.tick().await;
                    alerting_event(&db, "cam-1").await;
                }
            })
        })
    };
    // Every stream is live.
    for (i, rx) in rxs.iter().enumerate() {
        let first = tokio::task::block_in_place(|| rx.recv_timeout(Duration::from_secs(10)));
        assert!(first.is_ok_and(|(_, a)| a.is_some()), "stream {i} got no alert");
    }

    // The cuts. Each time is read from the database after the change committed.
    let (b2, a2, s1) = (base.clone(), admin.clone(), sessions[1].clone());
    let cut_disable_at = Instant::now();
    tokio::task::spawn_blocking(move || {
        assert_eq!(call("DELETE", &format!("{b2}/api/v1/users/op-disable"), Some(&a2), None).0, 204);
    })
    .await
    .unwrap();
    let cut_disable = db_now(&db).await;
    let b2 = base.clone();
    let cut_logout_at = Instant::now();
    tokio::task::spawn_blocking(move || {
        assert_eq!(call("POST", &format!("{b2}/api/v1/auth/logout"), Some(&s1), None).0, 204);
    })
    .await
    .unwrap();
    let cut_logout = db_now(&db).await;
    let db2 = db.clone();
    let cut_reset_at = Instant::now();
    tokio::task::spawn_blocking(move || {
        let out = varta()
            .args(["user", "add", "op-reset", "--role", "operator", "--replace"])
            .env("DATABASE_URL", &db2)
            .env("VARTA_PASSWORD", "a-new-password-456")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    })
    .await
    .unwrap();
    let cut_reset = db_now(&db).await;

    let mut streams = rxs.into_iter();
    // op-expire's token ends 6 s after it was set, by the database's clock.
    let expiry_at = Instant::now() + Duration::from_micros((expires_at - db_now(&db).await).max(0) as u64);
    let cuts = [
        ("disabled user", cut_disable, cut_disable_at),
        ("logout", cut_logout, cut_logout_at),
        ("expired session", expires_at, expiry_at),
        ("password reset (session)", cut_reset, cut_reset_at),
        ("password reset (machine token)", cut_reset, cut_reset_at),
    ];
    for (what, cut, at) in cuts {
        let rx = streams.next().unwrap();
        let (got, ended) =
            tokio::task::block_in_place(|| until_closed(&rx, at.max(Instant::now()) + Duration::from_secs(15), what));
        let late: Vec<_> = got.iter().filter(|a| micros(a["created_at"].as_str().unwrap()) > cut).collect();
        assert!(late.is_empty(), "{what}: {} alert(s) raised after the cut reached the stream: {late:?}", late.len());
        let after = ended.saturating_duration_since(at);
        eprintln!("{what}: stream ended {after:?} after the cut");
        assert!(after < Duration::from_secs(15), "{what}: ended {after:?} after the cut");
    }
    // The administrator's stream goes on.
    let admin_rx = streams.next().unwrap();
    let after = tokio::task::block_in_place(|| admin_rx.recv_timeout(Duration::from_secs(10)));
    assert!(after.is_ok_and(|(_, a)| a.is_some()), "a live token's stream stops with the others");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    generator.join().unwrap();

    // And every revoked token is refused from now on.
    let base2 = base.clone();
    tokio::task::spawn_blocking(move || {
        for (what, t) in [
            ("disabled", &sessions[0]),
            ("logged out", &sessions[1]),
            ("expired", &sessions[2]),
            ("reset session", &sessions[3]),
            ("reset machine token", &machine),
        ] {
            assert_eq!(call("GET", &format!("{base2}/api/v1/auth/me"), Some(t), None).0, 401, "{what} token");
        }
        assert_eq!(login(&base2, "op-reset", "a-new-password-456").0, 200, "the new password works");
    })
    .await
    .unwrap();
    // `varta user tokens` lists them revoked; `varta user revoke` revokes one.
    let db2 = db.clone();
    tokio::task::spawn_blocking(move || {
        let out = varta().args(["user", "tokens", "op-reset"]).env("DATABASE_URL", &db2).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let rows: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(rows.len(), 3, "two old tokens and the new session: {text}");
        let live: Vec<&str> = rows.iter().filter(|r| r.split('\t').nth(5) == Some("-")).copied().collect();
        assert_eq!(live.len(), 1, "{text}");
        let id = live[0].split('\t').next().unwrap();
        let out = varta().args(["user", "revoke", id]).env("DATABASE_URL", &db2).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = varta().args(["user", "revoke", id]).env("DATABASE_URL", &db2).output().unwrap();
        assert!(!out.status.success(), "a token is revoked once");
    })
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runtime_role_cannot_rewrite_the_audit_log_and_tampering_is_found() {
    use sqlx::Connection;
    assert!(
        std::env::var("VARTA_TEST_RUNTIME_USER").is_ok_and(|u| !u.is_empty()),
        "VARTA_TEST_RUNTIME_USER must name the runtime role: run the tests with ./scripts/test"
    );
    let db = fresh_database("prot_audit").await;
    let owner = owner_url_of(&db);
    assert_ne!(db, owner);
    for (i, action) in ["login", "alert_ack", "user_add", "logout"].iter().enumerate() {
        sql(&db, &format!("INSERT INTO audit_log (actor, action, target) VALUES ('u{i}', '{action}', 't{i}')")).await;
    }
    let verify = |db: String| async move {
        tokio::task::spawn_blocking(move || {
            varta().args(["audit", "verify"]).env("DATABASE_URL", &db).output().unwrap()
        })
        .await
        .unwrap()
    };
    let out = verify(db.clone()).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && text.contains("intact: 4 rows"), "{text}");

    // As the runtime role: only INSERT and SELECT.
    let mut rt = sqlx::PgConnection::connect(&db).await.unwrap();
    for q in [
        "TRUNCATE audit_log",
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
        "ALTER TABLE audit_log DISABLE TRIGGER ALL",
        "DROP TABLE audit_log",
        "UPDATE audit_log SET actor = 'x'",
        "DELETE FROM audit_log",
        "UPDATE audit_log SET hash = NULL",
    ] {
        let e = sqlx::query(q).execute(&mut rt).await.expect_err(q);
        eprintln!("runtime role, {q}: {e}");
    }
    assert_eq!(scalar(&db, "SELECT count(*) FROM audit_log").await, 4);

    // The owner's TRUNCATE meets the second line.
    let mut own = sqlx::PgConnection::connect(&owner).await.unwrap();
    assert!(sqlx::query("TRUNCATE audit_log").execute(&mut own).await.is_err(), "TRUNCATE by the owner");

    // The owner can switch the triggers off; the chain still tells.
    let third: i64 = scalar(&db, "SELECT id FROM audit_log ORDER BY id OFFSET 2 LIMIT 1").await;
    sqlx::raw_sql(&format!(
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only;
         UPDATE audit_log SET detail = '{{\"role\": \"admin\"}}' WHERE id = {third};
         ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only;"
    ))
    .execute(&mut own)
    .await
    .unwrap();
    let out = verify(db.clone()).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "verify must fail: {text}");
    assert!(text.contains(&format!("BROKEN at row {third}")) && text.contains("changed"), "{text}");

    // A removed row is found at the row after it.
    let db2 = fresh_database("prot_audit2").await;
    for i in 0..3 {
        sql(&db2, &format!("INSERT INTO audit_log (actor, action) VALUES ('u{i}', 'login')")).await;
    }
    let ids: Vec<i64> = {
        let mut c = sqlx::PgConnection::connect(&db2).await.unwrap();
        sqlx::query_scalar("SELECT id FROM audit_log ORDER BY id").fetch_all(&mut c).await.unwrap()
    };
    let mut own2 = sqlx::PgConnection::connect(&owner_url_of(&db2)).await.unwrap();
    sqlx::raw_sql(&format!(
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only;
         DELETE FROM audit_log WHERE id = {};
         ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only;",
        ids[1]
    ))
    .execute(&mut own2)
    .await
    .unwrap();
    let out = verify(db2.clone()).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success() && text.contains(&format!("BROKEN at row {}", ids[2])), "{text}");
}

/// VmRSS or VmHWM of `pid`, in kB.
fn vm(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_flood_gets_exactly_the_allowed_password_checks_and_locks_nobody_out() {
    let db = fresh_database("prot_login").await;
    let dir = work_dir("login");
    sql(&db, SITES).await;
    let (db2, dir2) = (db.clone(), dir.clone());
    let (mut api, refused_expected) = tokio::task::spawn_blocking(move || {
        let admin = token_for(&db2, "boss", "admin");
        add_user(&db2, "victim", "operator");
        // 100 parallel clients from one address: the per-address connection cap is
        // the edge test's subject, not this one's.
        let port = free_port();
        let api = "login_max_failures = 5\nlogin_window_secs = 20\nmax_connections_per_address = 256";
        let (p, base, addr) = start_api(&db2, &dir2, port, api_config(port, &dir2, api, ""));
        let pid = p.child.id();
        let checks = |base: &str| metric(&metrics_text(base, &admin), "varta_password_checks_total");
        let checks0 = checks(&base);
        let rss0 = vm(pid, "VmRSS:");

        // 100 wrong passwords at once, for one account from one address.
        let codes: Vec<u16> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..100).map(|_| s.spawn(|| login(&base, "victim", "wrong-password").0)).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let n = |c: u16| codes.iter().filter(|&&x| x == c).count();
        assert_eq!((n(401), n(429)), (5, 95), "codes: {codes:?}");
        assert_eq!(checks(&base) - checks0, 5, "password checks");
        eprintln!("after the first flood: RSS {} kB, peak {} kB", vm(pid, "VmRSS:"), vm(pid, "VmHWM:"));

        // The owner, from another address, is not locked out; from the flooded
        // address the right password is refused unchecked.
        let (code, v) = http_from(
            Ipv4Addr::new(127, 0, 0, 2),
            addr,
            "POST",
            "/api/v1/auth/login",
            Some(json!({"username": "victim", "password": TEST_PASSWORD})),
        );
        assert_eq!(code, 200, "the owner from another address: {v}");
        assert_eq!(login(&base, "victim", TEST_PASSWORD).0, 429);

        // 100 logins of 100 unknown accounts: each may be checked, but the hashing
        // pool runs a bounded number at once and refuses the rest (503).
        let before = checks(&base);
        let codes: Vec<u16> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..100)
                .map(|i| {
                    let base = &base;
                    s.spawn(move || login(base, &format!("ghost-{i}"), "x").0)
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(codes.iter().all(|c| *c == 401 || *c == 503), "{codes:?}");
        let n401 = codes.iter().filter(|&&c| c == 401).count() as u64;
        assert_eq!(checks(&base) - before, n401, "one check per 401, none per 503");
        let grown = vm(pid, "VmHWM:").saturating_sub(rss0);
        eprintln!("RSS {rss0} kB before, peak grew {grown} kB; 503s: {}", 100 - n401);
        assert!(grown < 100 * 1024, "peak RSS grew {grown} kB");
        (p, 96)
    })
    .await
    .unwrap();

    // The refusals are one audit row for (victim, 127.0.0.1) once the window closes.
    let q = "SELECT count(*) FROM audit_log WHERE action = 'login_throttled' AND target = 'victim'";
    let deadline = Instant::now() + Duration::from_secs(90);
    while scalar(&db, q).await == 0 {
        assert!(Instant::now() < deadline, "no login_throttled row after the window closed");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(scalar(&db, q).await, 1);
    let refused = scalar(
        &db,
        "SELECT (detail->>'refused')::bigint FROM audit_log WHERE action = 'login_throttled' AND target = 'victim'
            AND address = '127.0.0.1'",
    )
    .await;
    assert_eq!(refused, refused_expected, "refusals counted in the row");
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM audit_log WHERE action = 'login_failed' AND target = 'victim'").await,
        5
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM login_attempts WHERE account = 'victim'").await,
        0,
        "closed window kept"
    );
    api.terminate(Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

fn serve_config(sim_port: u16, api_port: u16, dir: &Path) -> String {
    let mut s = format!(
        "[node]\nname = \"prot-edge\"\napi_listen = \"127.0.0.1:{api_port}\"\n\n\
         [detect]\nmodels = \"{}\"\nworkers = 1\nsnapshot_dir = \"{}\"\n\n\
         [ingest]\nbackoff_initial_secs = 0.5\n\n[store]\nspool_dir = \"{}\"\n\n\
         [[sites]]\nid = \"site-a\"\nname = \"A\"\n",
        root().join("models/models.toml").display(),
        dir.join("snapshots").display(),
        dir.join("spool").display()
    );
    for i in 1..=2 {
        s += &format!(
            "\n[[cameras]]\nid = \"cam-{i}\"\nsite = \"site-a\"\nurl = \"rtsp://127.0.0.1:{sim_port}/cam/{i}\"\n\
             analysis_fps = 1.0\n"
        );
    }
    s
}

#[test]
fn half_open_connections_are_cut_while_health_and_cameras_go_on() {
    use std::os::unix::process::CommandExt;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(fresh_database("prot_edge"));
    let dir = work_dir("edge");
    let sim_port = free_port();
    let mut sim = varta();
    sim.args(["sim", "--cameras", "2", "--listen", &format!("127.0.0.1:{sim_port}"), "--clip"]).arg(clip());
    let _sim = Proc::spawn(sim, dir.join("sim.log"));
    let api_port = free_port();
    let cfg = dir.join("serve.toml");
    std::fs::write(&cfg, serve_config(sim_port, api_port, &dir)).unwrap();
    let mut cmd = varta();
    cmd.arg("serve").arg("--config").arg(&cfg).env("DATABASE_URL", &db);
    // The default limit of a process started by hand: 1024 open files, soft and hard.
    // SAFETY: setrlimit(2) between fork and exec touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            let r = libc::rlimit { rlim_cur: 1024, rlim_max: 1024 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let serve = Proc::spawn(cmd, dir.join("serve.log"));
    let base = format!("http://127.0.0.1:{api_port}");
    let addr = SocketAddr::from(([127, 0, 0, 1], api_port));
    let admin = token_for(&db, "boss", "admin");
    let received = |cam: &str| -> Option<u64> {
        get_json_as(&format!("{base}/api/v1/cameras/{cam}"), &admin)?["frames_received"].as_u64()
    };
    wait_for("both cameras streaming", Duration::from_secs(60), || {
        (received("cam-1")? > 0 && received("cam-2")? > 0).then_some(())
    });

    // 400 connections from five other addresses, each sending half a request head
    // and then nothing; and 20 that send nothing at all.
    let start = Instant::now();
    let mut socks = Vec::new();
    for i in 0..400 {
        let mut s = connect_from(Ipv4Addr::new(127, 0, 1, 2 + (i % 5) as u8), addr);
        let _ = s.write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        socks.push(s);
    }
    for _ in 0..20 {
        socks.push(connect_from(Ipv4Addr::new(127, 0, 2, 1), addr));
    }
    let before = (received("cam-1").unwrap(), received("cam-2").unwrap());
    // Meanwhile health answers, from this address, every time.
    for _ in 0..10 {
        let h = get_json(&format!("{base}/healthz"));
        assert_eq!(h.map(|h| h["status"].clone()), Some(json!("ok")), "healthz during the attack");
    }
    // Every attacking connection is closed by the server within 15 s.
    for (i, s) in socks.iter_mut().enumerate() {
        let left = Duration::from_secs(15).saturating_sub(start.elapsed()).max(Duration::from_millis(1));
        s.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 512];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue, // a 408 or 503 before the close is fine
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("connection {i} still open {:?} after it was made: {e}", start.elapsed()),
            }
        }
    }
    eprintln!("420 half-open connections closed within {:?}", start.elapsed());
    // The cameras kept streaming, and nothing ran out of descriptors.
    wait_for("both cameras still receiving", Duration::from_secs(20), || {
        (received("cam-1")? > before.0 && received("cam-2")? > before.1).then_some(())
    });
    let m = metrics_text(&base, &admin);
    assert!(metric(&m, "varta_api_connections_refused_total") > 0, "the per-address cap refused some");
    assert!(metric(&m, "varta_api_header_timeouts_total") > 0, "{m}");
    let log = serve.output();
    assert!(!log.contains("Too many open files"), "descriptors ran out:\n{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Everything in database `db` as text (`pg_dump --data-only`, as the owner).
fn dump(owner: &str) -> String {
    let out = std::process::Command::new("pg_dump").args(["--data-only", owner]).output().expect("pg_dump");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_in_url_queries_and_odd_passwords_appear_nowhere() {
    const X: &str = "XwebhookSECRET41";
    const Y: &str = "YdatabaseSECRET42";
    const Z: &str = "ZcameraSECRET43";
    let db = fresh_database("prot_secrets").await;
    let dir = work_dir("secrets");
    sql(&db, SITES).await;
    // A receiver that takes the signed webhook of one sink and fails the other.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = hook.local_addr().unwrap().port();
    let (hook_tx, hook_rx) = mpsc::channel::<(String, Vec<u8>)>();
    std::thread::spawn(move || {
        for s in hook.incoming() {
            let Ok(mut s) = s else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let (mut sig, mut len) = (String::new(), 0usize);
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let failing = line.contains("/fail");
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(": ") {
                    match k.to_ascii_lowercase().as_str() {
                        "x-varta-signature" => sig = v.to_owned(),
                        "content-length" => len = v.parse().unwrap(),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let status = if failing { "500 Internal Server Error" } else { "204 No Content" };
            let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if !failing {
                let _ = hook_tx.send((sig, body));
            }
        }
    });
    let port = free_port();
    let webhooks = format!(
        "[alerts]\nwebhooks = [\"http://127.0.0.1:{hook_port}/fail?token={X}\", \"http://127.0.0.1:{hook_port}/ok\"]\n\
         webhook_attempts = 2\nwebhook_secret = \"hook\""
    );
    let cfg = api_config(port, &dir, "", &webhooks);
    // DATABASE_URL carries the password in its query (trust authentication ignores it).
    let db_q = format!("{db}?password={Y}");
    let (db2, dir2, cfg2) = (db_q.clone(), dir.clone(), cfg.clone());
    let (api, base) = tokio::task::spawn_blocking(move || {
        let path = dir2.join("api.toml");
        std::fs::write(&path, cfg2).unwrap();
        let mut cmd = varta();
        cmd.arg("api")
            .arg("--config")
            .arg(&path)
            .env("DATABASE_URL", &db2)
            .env("VARTA_LOG", "debug")
            .env("VARTA_CREDENTIALS_HOOK", "hook:the-signing-key");
        let p = Proc::spawn(cmd, dir2.join("api.log"));
        let base = format!("http://127.0.0.1:{port}");
        wait_for("varta api ready", Duration::from_secs(30), || get_json(&format!("{base}/readyz")));
        (p, base)
    })
    .await
    .unwrap();
    let ev = alerting_event(&db, "cam-1").await;
    // The working sink gets the alert signed with the key.
    let (sig, body) = tokio::task::block_in_place(|| hook_rx.recv_timeout(Duration::from_secs(20))).expect("webhook");
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent["event_id"], ev.to_string());
    let t: i64 = sig.split(',').next().and_then(|p| p.strip_prefix("t=")).unwrap().parse().unwrap();
    assert_eq!(sig, varta_api::sinks::signature(b"the-signing-key", t, &body), "HMAC-SHA256 over t.body");
    // The failing one gives up after its attempts, its error kept.
    let q = "SELECT count(*) FROM alert_deliveries WHERE sink = 'webhook:0' AND last_error IS NOT NULL";
    let deadline = Instant::now() + Duration::from_secs(30);
    while scalar(&db, q).await == 0 {
        assert!(Instant::now() < deadline, "the failing webhook was not given up");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Bad URLs, refused with the key named and the secret not repeated.
    let (dir3, db3) = (dir.clone(), db.clone());
    let refusals = tokio::task::spawn_blocking(move || {
        let cam = api_config(free_port(), &dir3, "", "").replace(
            "url = \"rtsp://127.0.0.1:1/cam/1\"",
            &format!("url = \"rtsp://127.0.0.1:1/cam/1?channel=1&user=admin&password={Z}\""),
        );
        let path = dir3.join("cam.toml");
        std::fs::write(&path, cam).unwrap();
        let check = varta().arg("check-config").arg(&path).output().unwrap();
        assert_eq!(check.status.code(), Some(2));
        let run = varta().arg("api").arg("--config").arg(&path).env("DATABASE_URL", &db3).output().unwrap();
        assert!(!run.status.success());
        let check_text = String::from_utf8_lossy(&check.stderr).into_owned();
        assert!(
            check_text.contains("cameras[0].url") && check_text.contains("looks like a credential"),
            "{check_text}"
        );
        // A database that cannot be reached, with the password in the query or
        // holding a '/': the error names the host, never the password.
        let mut out = String::new();
        for url in [
            format!("postgres://varta_app@127.0.0.1:1/x?password={Y}"),
            format!("postgres://varta:pa/{Y}@127.0.0.1:1/x"),
        ] {
            let r = varta().args(["user", "list"]).env("DATABASE_URL", &url).output().unwrap();
            assert!(!r.status.success());
            out += &String::from_utf8_lossy(&r.stderr);
        }
        assert!(out.contains("127.0.0.1:1"), "{out}");
        check_text + &String::from_utf8_lossy(&run.stdout) + &String::from_utf8_lossy(&run.stderr) + &out
    })
    .await
    .unwrap();

    // Nowhere: the logs, the API's answers, the database.
    let admin = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || token_for(&db, "boss", "admin")).await.unwrap()
    };
    let base2 = base.clone();
    let answers = tokio::task::spawn_blocking(move || {
        let mut all = String::new();
        for p in
            ["/api/v1/cameras", "/api/v1/cameras/cam-1", "/api/v1/alerts", "/api/v1/audit", "/api/v1/nodes", "/metrics"]
        {
            let r = ureq::get(&format!("{base2}{p}")).set("Authorization", &format!("Bearer {admin}")).call().unwrap();
            all += &r.into_string().unwrap();
        }
        all
    })
    .await
    .unwrap();
    let dumped = dump(&owner_url_of(&db));
    assert!(dumped.contains("webhook:0"), "the dump has the deliveries");
    let log = api.output();
    assert!(log.contains("webhook failed"), "the failure is logged: {log}");
    for (what, text) in [("log", &log), ("refusals", &refusals), ("API answers", &answers), ("database", &dumped)] {
        for secret in [X, Y, Z] {
            assert!(!text.contains(secret), "{secret} in the {what}:\n{text}");
        }
    }
    drop(api);
    let _ = std::fs::remove_dir_all(&dir);
}
