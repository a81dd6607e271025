//! The walking skeleton end to end, each part a real process or server:
//! `varta sim` (gst-rtsp-server, 4 cameras) → `varta serve` (GStreamer, ONNX
//! Runtime) → PostgreSQL → `GET /api/v1/…`.

use std::time::Duration;
use varta_e2e::*;

fn config(sim_port: u16, api_port: u16, snapshots: &std::path::Path) -> String {
    let mut s = format!(
        "[node]\nname = \"e2e\"\napi_listen = \"127.0.0.1:{api_port}\"\n\n\
         [detect]\nmodels = \"{}\"\nworkers = 2\nsnapshot_dir = \"{}\"\n\n\
         [ingest]\nbackoff_initial_secs = 0.5\n\n\
         [store]\nflush_ms = 100\nspool_dir = \"{}\"\n\n\
         [[sites]]\nid = \"site-a\"\nname = \"A\"\n\n[[sites]]\nid = \"site-b\"\nname = \"B\"\n",
        root().join("models/models.toml").display(),
        snapshots.display(),
        snapshots.with_file_name("spool").display()
    );
    for i in 1..=4 {
        let site = if i <= 2 { "site-a" } else { "site-b" };
        s += &format!(
            "\n[[cameras]]\nid = \"cam-{i}\"\nsite = \"{site}\"\nurl = \"rtsp://127.0.0.1:{sim_port}/cam/{i}\"\n\
             analysis_fps = 2.0\nclasses = [\"person\", \"car\"]\nmin_score = 0.4\n"
        );
    }
    // cam-4 reports people entering the lower half of the picture instead.
    s += "\n[[cameras.zones]]\nname = \"lower-half\"\npolygon = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]\n\
          \n[[cameras.rules]]\nname = \"enter-lower\"\nkind = \"enter\"\nzone = \"lower-half\"\n";
    s
}

#[test]
fn simulated_cameras_to_person_events_in_postgres_and_api() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(fresh_database("varta_e2e"));
    let dir = std::env::temp_dir().join(format!("varta-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let sim_port = free_port();
    let mut sim_cmd = varta();
    sim_cmd.args(["sim", "--cameras", "4", "--listen", &format!("127.0.0.1:{sim_port}"), "--clip"]).arg(clip());
    let sim = Proc::spawn(sim_cmd, dir.join("sim.log"));

    let api_port = free_port();
    let cfg = dir.join("e2e.toml");
    let snapshots = dir.join("snapshots");
    std::fs::write(&cfg, config(sim_port, api_port, &snapshots)).unwrap();
    let mut serve_cmd = varta();
    serve_cmd.arg("serve").arg("--config").arg(&cfg).env("DATABASE_URL", &db);
    let mut serve = Proc::spawn(serve_cmd, dir.join("serve.log"));
    let api = format!("http://127.0.0.1:{api_port}");

    wait_for("healthz", Duration::from_secs(30), || get_json(&format!("{api}/healthz")));
    let tok = token_for(&db, "e2e-operator", "operator");

    // Person events within 60 s, through the API…
    let events = wait_for("person events in the API", Duration::from_secs(60), || {
        let v = get_json_as(&format!("{api}/api/v1/events?class=person&limit=50"), &tok)?;
        (!v["items"].as_array()?.is_empty()).then_some(v)
    });
    let events = events["items"].as_array().unwrap();
    for e in events {
        assert_eq!(e["class"], "person");
        assert!(e["score"].as_f64().unwrap() >= 0.4, "{e}");
        let b: Vec<f64> = e["bbox"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        // Boxes are in the camera's 768x576 pixels.
        assert!(b[0] < b[2] && b[1] < b[3] && b[2] <= 800.0 && b[3] <= 600.0, "{e}");
    }
    // Each event has its snapshot, on disk and through the API.
    for e in events.iter().take(5) {
        let id = e["id"].as_str().unwrap();
        assert_eq!(e["snapshot"].as_str(), Some(format!("{id}.jpg").as_str()), "{e}");
        assert!(snapshots.join(format!("{id}.jpg")).exists());
        // Pictures of people are the node's user's alone (issue #17), and so is the
        // event log.
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: std::path::PathBuf| std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(snapshots.join(format!("{id}.jpg"))), 0o600);
        assert_eq!(mode(snapshots.clone()), 0o700);
        assert_eq!(mode(snapshots.with_file_name("spool")), 0o700);
        for q in ["", "?crop=true"] {
            let r = ureq::get(&format!("{api}/api/v1/events/{id}/snapshot{q}"))
                .set("Authorization", &format!("Bearer {tok}"))
                .call()
                .unwrap();
            assert_eq!(r.content_type(), "image/jpeg");
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut r.into_reader(), &mut body).unwrap();
            assert!(body.starts_with(&[0xFF, 0xD8]), "not a JPEG");
        }
    }
    let missing = ureq::get(&format!("{api}/api/v1/events/0190b3a0-0000-7000-8000-000000000000/snapshot"))
        .set("Authorization", &format!("Bearer {tok}"))
        .call();
    assert!(matches!(missing, Err(ureq::Error::Status(404, _))));
    // The zone rule of cam-4.
    let zoned = wait_for("cam-4 zone events", Duration::from_secs(60), || {
        let v = get_json_as(&format!("{api}/api/v1/events?camera=cam-4&limit=50"), &tok)?;
        (!v["items"].as_array()?.is_empty()).then_some(v)
    });
    for e in zoned["items"].as_array().unwrap() {
        assert_eq!((e["rule"].as_str(), e["zone"].as_str()), (Some("enter-lower"), Some("lower-half")), "{e}");
    }
    let times: Vec<&str> = events.iter().map(|e| e["started_at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");

    // …and in PostgreSQL itself.
    let in_db: i64 = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
        sqlx::query_scalar("SELECT count(*) FROM events WHERE class = 'person'").fetch_one(&mut c).await.unwrap()
    });
    assert!(in_db >= events.len() as i64);

    // Filters.
    let one = get_json_as(&format!("{api}/api/v1/events?camera=cam-3&limit=5"), &tok).unwrap();
    assert!(one["items"].as_array().unwrap().iter().all(|e| e["camera"] == "cam-3" && e["site"] == "site-b"));
    let bad = ureq::get(&format!("{api}/api/v1/events?since=yesterday"))
        .set("Authorization", &format!("Bearer {tok}"))
        .call()
        .unwrap_err();
    let ureq::Error::Status(400, resp) = bad else { panic!("expected 400, got {bad:?}") };
    let body: serde_json::Value = resp.into_json().unwrap();
    assert_eq!(body["error"]["code"], "invalid_argument");

    // Every camera receives frames and is analysed.
    let cams = wait_for("all 4 cameras streaming and analysed", Duration::from_secs(30), || {
        let v = get_json_as(&format!("{api}/api/v1/cameras"), &tok)?;
        let ok = v.as_array()?.len() == 4
            && v.as_array()?.iter().all(|c| {
                c["status"] == "streaming"
                    && c["frames_received"].as_u64().unwrap_or(0) > 0
                    && c["frames_analysed"].as_u64().unwrap_or(0) > 0
                    && c["analysis"]["frames_offered"].as_u64().unwrap_or(0) > 0
                    && c["last_frame_at"].is_string()
            });
        ok.then_some(v)
    });
    for c in cams.as_array().unwrap() {
        assert!(["cam-1", "cam-2", "cam-3", "cam-4"].contains(&c["id"].as_str().unwrap()));
    }

    let ready = get_json(&format!("{api}/readyz")).unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(
        ureq::get(&format!("{api}/metrics")).call().err().and_then(|e| e.into_response()).map(|r| r.status()),
        Some(401)
    );
    let metrics = metrics_text(&api, &token_for(&db, "e2e-admin", "admin"));
    for i in 1..=4 {
        assert!(metrics.contains(&format!("varta_frames_received_total{{camera=\"cam-{i}\"}}")), "{metrics}");
    }
    assert!(metrics.contains("varta_inference_seconds_count"));

    // A clean stop ends every open track, so no event is left without an end.
    assert_eq!(serve.terminate(Duration::from_secs(30)), Some(0), "serve log:\n{}", serve.output());
    let open: i64 = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
        sqlx::query_scalar("SELECT count(*) FROM events WHERE ended_at IS NULL").fetch_one(&mut c).await.unwrap()
    });
    assert_eq!(open, 0, "events left open after a clean stop");
    let statuses: i64 = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
        sqlx::query_scalar("SELECT count(*) FROM camera_status WHERE state = 'streaming'")
            .fetch_one(&mut c)
            .await
            .unwrap()
    });
    assert!(statuses >= 4, "each camera's transition to streaming is recorded");
    drop(sim);
}
