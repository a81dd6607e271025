//! Event clips end to end (issue #22): `varta sim` → `varta serve` (adaptive decoding)
//! → an event's clip is written next to its snapshot, remuxed from the camera's own
//! stream: it starts on a keyframe whose picture is one of the source's keyframes,
//! pixel for pixel; it spans the pre-roll, the event and the post-roll (within one
//! GOP); every unit of it decodes; so does an idle camera's, though its gate kept
//! delta units from the decoder until people walked in; its SHA-256 is on the event's
//! row. The snapshot and crop are hashed as written, the node signs the event's
//! manifest, and an export package verifies with `varta evidence verify`, and fails
//! naming the file when one byte changes.

use sha2::Digest;
use std::collections::BTreeSet;
use std::time::Duration;
use varta_e2e::*;

const PRE: f64 = 2.0;
/// The region's key for fetching files between processes (`[node] peer_credentials`).
const PEER_KEY: &str = "any:the region's shared peer key";
const POST: f64 = 2.0;

fn config(sim_port: u16, idle_port: u16, api_port: u16, dir: &std::path::Path) -> String {
    format!(
        "[node]\nname = \"clips\"\napi_listen = \"127.0.0.1:{api_port}\"\npeer_credentials = \"peer\"\n\n\
         [detect]\nmodels = \"{}\"\nworkers = 1\nsnapshot_dir = \"{}\"\n\n\
         [clips]\npre_roll_secs = {PRE}\npost_roll_secs = {POST}\n\n\
         [ingest]\nbackoff_initial_secs = 0.5\n\n\
         [store]\nflush_ms = 100\nspool_dir = \"{}\"\n\n\
         [[sites]]\nid = \"site-a\"\nname = \"A\"\n\n\
         [[cameras]]\nid = \"cam-1\"\nsite = \"site-a\"\nurl = \"rtsp://127.0.0.1:{sim_port}/cam/1\"\n\
         analysis_fps = 2.0\nclasses = [\"person\"]\ndecode = \"adaptive\"\n\n\
         [[cameras]]\nid = \"cam-2\"\nsite = \"site-a\"\nurl = \"rtsp://127.0.0.1:{idle_port}/cam/1\"\n\
         analysis_fps = 2.0\nclasses = [\"person\"]\ndecode = \"adaptive\"\n",
        root().join("models/models.toml").display(),
        dir.join("snapshots").display(),
        dir.join("spool").display(),
    )
}

#[test]
fn an_event_has_a_clip_of_the_cameras_own_frames_around_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(fresh_database("varta_clips"));
    let dir = std::env::temp_dir().join(format!("varta-clips-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sim_port = free_port();
    let mut sim_cmd = varta();
    sim_cmd.args(["sim", "--cameras", "1", "--listen", &format!("127.0.0.1:{sim_port}"), "--clip"]).arg(clip());
    let _sim = Proc::spawn(sim_cmd, dir.join("sim.log"));
    // A camera idle most of the time (a still scene, 12 s of every 24), where the
    // adaptive gate decodes keyframes only, until people walk in.
    let idle_port = free_port();
    let scenes = dir.join("scenes.jsonl");
    let mut idle_cmd = varta();
    idle_cmd
        .args(["sim", "--cameras", "1", "--listen", &format!("127.0.0.1:{idle_port}"), "--scene", "mixed"])
        .args(["--scene-period", "24", "--active-share", "0.5", "--gop", "2", "--scene-log"])
        .arg(&scenes)
        .arg("--clip")
        .arg(clip());
    let _idle_sim = Proc::spawn(idle_cmd, dir.join("sim-idle.log"));
    let api_port = free_port();
    let cfg = dir.join("clips.toml");
    std::fs::write(&cfg, config(sim_port, idle_port, api_port, &dir)).unwrap();
    let mut serve_cmd = varta();
    serve_cmd.arg("serve").arg("--config").arg(&cfg).env("DATABASE_URL", &db).env("VARTA_CREDENTIALS_PEER", PEER_KEY);
    let serve_started_ms = chrono::Utc::now().timestamp_millis();
    let _serve = Proc::spawn(serve_cmd, dir.join("serve.log"));
    wait_for("readyz", Duration::from_secs(60), || get_json(&format!("http://127.0.0.1:{api_port}/readyz")));

    // The first event that has ended and has its clip recorded.
    type Row = (String, String, i64, f64, f64);
    let (file, sha, bytes, secs, event_secs): Row =
        wait_for("an event with its clip", Duration::from_secs(180), || {
            rt.block_on(async {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&db).await.ok()?;
                sqlx::query_as::<_, Row>(
                    "SELECT clip, clip_sha256, clip_bytes, clip_secs,
                        extract(epoch FROM ended_at - started_at)::float8
                   FROM events WHERE camera_id = 'cam-1' AND clip IS NOT NULL AND ended_at IS NOT NULL
                  ORDER BY started_at LIMIT 1",
                )
                .fetch_optional(&mut c)
                .await
                .ok()?
            })
        });
    let path = dir.join("snapshots").join(&file);
    let data = std::fs::read(&path).unwrap();
    assert_eq!(data.len() as i64, bytes);
    let on_disk: String = sha2::Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(on_disk, sha, "the recorded SHA-256 is the file's");
    // Pre-roll (from the keyframe at or before it) + the event + post-roll, within one
    // GOP (2 s in the simulator's clip) either way, as the issue asks: the clip is cut
    // by the units' arrival at the decoder, the event stamped at its frames' capture
    // after decoding, so a loaded machine's decoding delay shortens it (seen 0.3 s).
    let want = PRE + event_secs + POST;
    eprintln!("clip {file}: {bytes} bytes, {secs:.2} s for an event of {event_secs:.2} s (+{PRE} s +{POST} s)");
    assert!(secs >= want - 2.0 && secs <= want + 2.0 + 1.0, "clip of {secs:.2} s for {want:.2} s wanted");

    // Every unit decodes (delta units the adaptive gate dropped included), and the
    // first picture is one of the source's keyframes, pixel for pixel.
    let cam = varta_core::CameraId::from("cam-1");
    let t0 = chrono::Utc::now();
    let mut frames = Vec::new();
    varta_ingest::file::decode_file(&path, &cam, 1000.0, t0, |f| frames.push(f)).unwrap();
    let fps = frames.len() as f64 / secs.max(0.1);
    // Keyframes alone would be 0.5 fps; every unit, the stream's 10 (give or take the
    // simulator's pacing on a busy machine).
    assert!(fps > 5.0, "{} frames in {secs:.2} s: every unit decoded", frames.len());
    let first = match &frames[0].pixels {
        varta_core::frame::Pixels::I420(p) => p.clone(),
        _ => panic!("I420"),
    };
    // Against every frame of the source (its keyframes come every 2 s at most).
    let keys: BTreeSet<usize> = (0..5000).collect();
    let mut found = None;
    varta_ingest::file::decode_frames(&clip(), &cam, &keys, t0, |i, f| {
        if let varta_core::frame::Pixels::I420(p) = &f.pixels {
            if found.is_none() && p[..] == first[..] {
                found = Some(i);
            }
        }
    })
    .unwrap();
    assert!(found.is_some(), "the clip's first frame is none of the source's frames");

    // Through the API: the event lists its clip and hash; operators get the file,
    // whole or by range (as a video element asks), contractors are refused, and one
    // view is one audit row.
    let api = format!("http://127.0.0.1:{api_port}");
    let ops = token_for(&db, "c-operator", "operator");
    let ctr = token_for(&db, "c-contractor", "contractor");
    let id = file.trim_end_matches(".mp4");
    let ev = get_json_as(&format!("{api}/api/v1/events/{id}"), &ops).unwrap();
    assert_eq!(ev["clip"], format!("/api/v1/events/{id}/clip"));
    assert_eq!(ev["clip_sha256"], sha);
    let get = |token: &str, range: Option<&str>| {
        let mut r =
            ureq::get(&format!("{api}/api/v1/events/{id}/clip")).set("Authorization", &format!("Bearer {token}"));
        if let Some(range) = range {
            r = r.set("Range", range);
        }
        match r.call() {
            Ok(res) => {
                let (status, ty) = (res.status(), res.content_type().to_owned());
                let mut body = Vec::new();
                std::io::Read::read_to_end(&mut res.into_reader(), &mut body).unwrap();
                (status, ty, body)
            }
            Err(ureq::Error::Status(code, _)) => (code, String::new(), Vec::new()),
            Err(e) => panic!("{e}"),
        }
    };
    let (status, ty, body) = get(&ops, None);
    assert_eq!((status, ty.as_str()), (200, "video/mp4"));
    assert!(body == data, "the whole clip, byte for byte");
    let (status, _, part) = get(&ops, Some("bytes=100-199"));
    assert_eq!(status, 206);
    assert!(part[..] == data[100..200], "the range asked for");
    assert_eq!(get(&ctr, None).0, 403, "contractors never see clips");
    let views = rt.block_on(scalar(
        &db,
        &format!("SELECT count(*) FROM audit_log WHERE action = 'clip_view' AND target = '{id}'"),
    ));
    assert_eq!(views, 1, "one view, one audit row (the range request that follows is the same view)");

    // Integrity (issue #22): the snapshot and crop were hashed as written, the node
    // signed the event's manifest, and an export verifies, but not once one byte of
    // the clip or of the manifest is changed; exports are audited, contractors 403.
    let (snap_sha, crop_sha, key): (String, String, String) = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
        sqlx::query_as("SELECT snapshot_sha256, crop_sha256, manifest_key FROM events WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&mut c)
            .await
            .unwrap()
    });
    let file_sha =
        |name: &str| format!("{:x}", sha2::Sha256::digest(std::fs::read(dir.join("snapshots").join(name)).unwrap()));
    assert_eq!(snap_sha, file_sha(&format!("{id}.jpg")), "the snapshot's recorded SHA-256 is the file's");
    assert_eq!(crop_sha, file_sha(&format!("{id}.crop.jpg")), "the crop's recorded SHA-256 is the file's");
    assert!(key.starts_with("ed25519:"), "{key}");
    let registered =
        rt.block_on(scalar(&db, &format!("SELECT count(*) FROM node_keys WHERE key_id = '{key}' AND node = 'clips'")));
    assert_eq!(registered, 1, "the node's public key is registered");
    let export = |token: &str| match ureq::get(&format!("{api}/api/v1/events/{id}/export"))
        .set("Authorization", &format!("Bearer {token}"))
        .call()
    {
        Ok(res) => {
            assert_eq!(res.content_type(), "application/zip");
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut res.into_reader(), &mut body).unwrap();
            (200, body)
        }
        Err(ureq::Error::Status(code, _)) => (code, Vec::new()),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(export(&ctr).0, 403, "contractors never export");
    let (status, zip) = export(&ops);
    assert_eq!(status, 200);
    let verify = |bytes: &[u8], name: &str| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        let out = varta().args(["evidence", "verify"]).arg(&p).env("DATABASE_URL", &db).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("varta evidence verify {name}:\n{text}{}", String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    };
    let (code, text) = verify(&zip, "export.zip");
    assert_eq!(code, Some(0), "{text}");
    for f in [format!("{id}.jpg"), format!("{id}.crop.jpg"), format!("{id}.mp4")] {
        assert!(text.contains(&format!("ok      {f}: SHA-256 matches")), "{f} checked: {text}");
    }
    assert!(text.contains("signature by ed25519:"), "{text}");
    // One byte of the clip (entries are stored: the clip's bytes lie in the ZIP as is).
    let at = zip.windows(64).position(|w| w == &data[..64]).expect("the clip in the package") + data.len() / 2;
    let mut bad = zip.clone();
    bad[at] ^= 0x01;
    let (code, text) = verify(&bad, "clip-changed.zip");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains(&format!("FAILED  {id}.mp4: SHA-256")), "names the clip: {text}");
    assert!(!text.contains("FAILED  manifest.json"), "only the clip: {text}");
    // One byte of the manifest.
    let at = zip.windows(17).position(|w| w == b"\"camera\": \"cam-1\"").expect("the manifest's camera") + 15;
    let mut bad = zip.clone();
    bad[at] = b'2';
    let (code, text) = verify(&bad, "manifest-changed.zip");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("FAILED  manifest.json: the signature does not match"), "names the manifest: {text}");
    let exports = rt.block_on(scalar(
        &db,
        &format!("SELECT count(*) FROM audit_log WHERE action = 'event_export' AND target = '{id}' AND actor = 'c-operator' AND address IS NOT NULL"),
    ));
    assert_eq!(exports, 1, "one export, one audit row with who and from where");

    // Issue #23: an API process of its own (`varta api`, another snapshot folder,
    // empty) serves the node's snapshot, crop, clip (by range too) and export,
    // fetched from the node's disk through the node's API with the region's key,
    // audited by itself; the node's file route refuses requests not signed with it.
    let api2_port = free_port();
    let api_cfg = dir.join("api.toml");
    let text = config(sim_port, idle_port, api2_port, &dir)
        .replace(&format!("127.0.0.1:{api_port}"), &format!("127.0.0.1:{api2_port}"))
        .replace(&dir.join("snapshots").display().to_string(), &dir.join("api-snapshots").display().to_string());
    std::fs::write(&api_cfg, text).unwrap();
    let mut api_cmd = varta();
    api_cmd.arg("api").arg("--config").arg(&api_cfg).env("DATABASE_URL", &db).env("VARTA_CREDENTIALS_PEER", PEER_KEY);
    let _api2 = Proc::spawn(api_cmd, dir.join("api.log"));
    let api2 = format!("http://127.0.0.1:{api2_port}");
    wait_for("the API process ready", Duration::from_secs(30), || get_json(&format!("{api2}/readyz")));
    let fetch = |path: &str, range: Option<&str>| {
        let mut r = ureq::get(&format!("{api2}{path}")).set("Authorization", &format!("Bearer {ops}"));
        if let Some(range) = range {
            r = r.set("Range", range);
        }
        let res = r.call().unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = res.status();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut res.into_reader(), &mut body).unwrap();
        (status, body)
    };
    let on_node = |name: &str| std::fs::read(dir.join("snapshots").join(name)).unwrap();
    assert_eq!(fetch(&format!("/api/v1/events/{id}/snapshot"), None), (200, on_node(&format!("{id}.jpg"))));
    assert_eq!(
        fetch(&format!("/api/v1/events/{id}/snapshot?crop=true"), None),
        (200, on_node(&format!("{id}.crop.jpg")))
    );
    assert_eq!(fetch(&format!("/api/v1/events/{id}/clip"), None), (200, data.clone()));
    assert_eq!(fetch(&format!("/api/v1/events/{id}/clip"), Some("bytes=100-199")), (206, data[100..200].to_vec()));
    let (status, zip2) = fetch(&format!("/api/v1/events/{id}/export"), None);
    assert_eq!(status, 200);
    let (code, text) = verify(&zip2, "export-from-api.zip");
    assert_eq!(code, Some(0), "the export made by the API process verifies: {text}");
    assert!(!dir.join("api-snapshots").join(format!("{id}.mp4")).exists(), "fetched, not copied");
    let audited = rt.block_on(scalar(
        &db,
        &format!("SELECT count(*) FROM audit_log WHERE target = '{id}' AND action IN ('snapshot_view', 'clip_view', 'event_export')"),
    ));
    assert_eq!(
        audited,
        1 + 1 + 1 + 1 + 1,
        "node: one clip view, one export; API process: one picture, one clip view, one export"
    );
    let file = format!("{api}/internal/v1/files/{id}.mp4");
    for header in [None, Some("t=1,v1=00"), Some("t=99999999999,v1=abcd")] {
        let mut r = ureq::get(&file);
        if let Some(h) = header {
            r = r.set("X-Varta-Peer", h);
        }
        match r.call() {
            Err(ureq::Error::Status(401, _)) => {}
            other => panic!("{header:?}: {:?}", other.map(|r| r.status())),
        }
    }

    // An idle camera under the adaptive policy: while its scene was still the gate
    // decoded keyframes only, yet the clip of the event that began when people walked
    // in holds every unit, the idle pre-roll included. The event: one of cam-2's that
    // began within PRE − 0.5 s of a switch from the still scene to people, after a
    // still scene the node saw whole (12 s: the gate goes to keyframes after 5 s of
    // quiet), so its clip starts at least half a second before the switch, while the
    // camera was idle.
    let idle_to_active = || -> Vec<i64> {
        // A line being written may be torn: it is skipped.
        let log: Vec<(i64, String)> = std::fs::read_to_string(&scenes)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| Some((v["at_ms"].as_i64()?, v["scene"].as_str()?.to_owned())))
            .collect();
        log.windows(2)
            .filter(|w| w[0].1 == "idle" && w[1].1 == "active" && w[0].0 >= serve_started_ms)
            .map(|w| w[1].0)
            .collect()
    };
    type IdleRow = (String, f64, chrono::DateTime<chrono::Utc>);
    let (idle_file, idle_secs, started) =
        wait_for("an idle camera's event with its clip", Duration::from_secs(180), || {
            let rows: Vec<IdleRow> = rt.block_on(async {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&db).await.ok()?;
                sqlx::query_as(
                    "SELECT clip, clip_secs, started_at FROM events
                  WHERE camera_id = 'cam-2' AND clip IS NOT NULL AND ended_at IS NOT NULL ORDER BY started_at",
                )
                .fetch_all(&mut c)
                .await
                .ok()
            })?;
            let switches = idle_to_active();
            rows.into_iter().find(|(_, _, st)| {
                switches.iter().any(|&at| (0..((PRE - 0.5) * 1000.0) as i64).contains(&(st.timestamp_millis() - at)))
            })
        });
    let mut frames = Vec::new();
    varta_ingest::file::decode_file(&dir.join("snapshots").join(&idle_file), &cam, 1000.0, t0, |f| {
        frames.push(f.captured_at)
    })
    .unwrap();
    let gap = frames.windows(2).map(|w| (w[1] - w[0]).num_milliseconds()).max().unwrap_or(i64::MAX);
    eprintln!(
        "idle camera's clip {idle_file}: {} frames in {idle_secs:.2} s, largest gap {gap} ms (event at {started})",
        frames.len()
    );
    assert!(frames.len() as f64 / idle_secs > 5.0, "{} frames in {idle_secs:.2} s: every unit", frames.len());
    assert!(gap <= 300, "a gap of {gap} ms between two frames of the clip: units missing");
    // And the gate did switch this camera to keyframes and back.
    let m = metrics_text(&api, &token_for(&db, "c-admin", "admin"));
    let switched = metric(&m, "varta_decode_mode_switches_total{camera=\"cam-2\"}");
    assert!(switched >= 2, "cam-2's decode mode switched {switched} times: it was idle, then active");
    let _ = std::fs::remove_dir_all(&dir);
}
