//! Number plates end to end (issue #20): `varta plate-scene` draws vehicles carrying
//! Ukrainian plates → `varta sim` serves the clip as two cameras → `varta serve`
//! detects the cars, reads their plates and votes per track → PostgreSQL → a
//! watchlist plate raises one alert per passage over SSE, within 2 s of the read;
//! `GET /plates/{plate}/track` lists the sightings on both cameras in time order;
//! contractors are refused every plate route; every search is audited.

use std::collections::{HashMap, HashSet};
use std::time::Duration;
use varta_e2e::*;

const WANTED: &str = "AX1234BI";
const SCENE: [&str; 3] = [WANTED, "BI0001AA", "KA7702CT"];

fn config(sim_port: u16, api_port: u16, dir: &std::path::Path) -> String {
    let mut s = format!(
        "[node]\nname = \"plates\"\napi_listen = \"127.0.0.1:{api_port}\"\n\n\
         [detect]\nmodels = \"{}\"\nworkers = 1\nsnapshot_dir = \"{}\"\n\n\
         [detect.plates]\nenabled = true\nmodels = \"{}\"\n\n\
         [ingest]\nbackoff_initial_secs = 0.5\n\n\
         [store]\nflush_ms = 100\nspool_dir = \"{}\"\n\n\
         [[sites]]\nid = \"site-a\"\nname = \"Entry road\"\n\n[[sites]]\nid = \"site-b\"\nname = \"Bridge\"\n",
        root().join("models/models.toml").display(),
        dir.join("snapshots").display(),
        root().join(".cache/models/ppocrv6_tiny").display(),
        dir.join("spool").display(),
    );
    for (i, site) in [(1, "site-a"), (2, "site-b")] {
        s += &format!(
            "\n[[cameras]]\nid = \"cam-{i}\"\nsite = \"{site}\"\nurl = \"rtsp://127.0.0.1:{sim_port}/cam/{i}\"\n\
             analysis_fps = 5.0\nclasses = [\"car\"]\nmin_score = 0.4\n"
        );
    }
    s
}

#[test]
fn watchlist_plate_alerts_once_per_passage_and_is_tracked_across_cameras() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(fresh_database("varta_plates"));
    let dir = std::env::temp_dir().join(format!("varta-plates-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // The scene: three vehicles, one carrying the wanted plate, 24 s in all.
    let clip = dir.join("plates.mp4");
    let out = varta()
        .args(["plate-scene", "--plates", &SCENE.join(","), "--images"])
        .arg(media_dir().join("images"))
        .arg("--out")
        .arg(&clip)
        .output()
        .unwrap();
    assert!(out.status.success(), "varta plate-scene: {}", String::from_utf8_lossy(&out.stderr));

    // The wanted plate is listed before any camera reads.
    assert!(varta().arg("migrate").env("DATABASE_URL", &db).status().unwrap().success());
    rt.block_on(sql(
        &db,
        &format!("INSERT INTO watchlist_entries (plate, reason, added_by) VALUES ('{WANTED}', 'stolen, case 12/345', 'test')"),
    ));

    let sim_port = free_port();
    let mut sim_cmd = varta();
    sim_cmd.args(["sim", "--cameras", "2", "--listen", &format!("127.0.0.1:{sim_port}"), "--clip"]).arg(&clip);
    let _sim = Proc::spawn(sim_cmd, dir.join("sim.log"));
    let api_port = free_port();
    let cfg = dir.join("plates.toml");
    std::fs::write(&cfg, config(sim_port, api_port, &dir)).unwrap();
    let mut serve_cmd = varta();
    serve_cmd.arg("serve").arg("--config").arg(&cfg).env("DATABASE_URL", &db);
    let mut serve = Proc::spawn(serve_cmd, dir.join("serve.log"));
    let api = format!("http://127.0.0.1:{api_port}");
    wait_for("healthz", Duration::from_secs(30), || get_json(&format!("{api}/healthz")));
    let ops = token_for(&db, "p-operator", "operator");
    let ctr = token_for(&db, "p-contractor", "contractor");

    // Every alert as it arrives, with the time it arrived.
    let rx = sse(&format!("{api}/api/v1/alerts/stream"), &ops, None);
    let mut alerts: Vec<(chrono::DateTime<chrono::Utc>, serde_json::Value)> = Vec::new();
    let drain = |alerts: &mut Vec<_>| {
        while let Ok(e) = rx.try_recv() {
            if e.kind == "alert" {
                alerts.push((e.arrived, e.data));
            }
        }
    };

    // The wanted vehicle seen on both cameras.
    // The clip loops every 24 s: ten passages per camera at most.
    let sightings = wait_for("the wanted plate on two cameras", Duration::from_secs(240), || {
        drain(&mut alerts);
        let v = get_json_as(&format!("{api}/api/v1/plates/{WANTED}/track"), &ops)?;
        let cams: HashSet<&str> = v.as_array()?.iter().filter_map(|s| s["camera"].as_str()).collect();
        (cams.len() >= 2).then(|| v.clone())
    });
    let sightings = sightings.as_array().unwrap();
    let times: Vec<&str> = sightings.iter().map(|s| s["read_at"].as_str().unwrap()).collect();
    let parsed: Vec<chrono::DateTime<chrono::Utc>> = times.iter().map(|t| t.parse().unwrap()).collect();
    assert!(parsed.windows(2).all(|w| w[0] <= w[1]), "in time order: {times:?}");
    for s in sightings {
        assert_eq!(s["plate"], WANTED);
        assert_eq!(s["display"], "АХ 1234 ВІ");
        assert_eq!(s["class"], "car");
        assert!(s["confidence"].as_f64().unwrap() >= 0.8, "{s}");
        assert!(["Entry road", "Bridge"].contains(&s["site_name"].as_str().unwrap()), "{s}");
        assert_eq!(s["has_crop"], true, "{s}");
    }
    // The crop of a sighting is a JPEG.
    let crop = ureq::get(&format!("{api}/api/v1/plates/reads/{}/crop", sightings[0]["id"].as_str().unwrap()))
        .set("Authorization", &format!("Bearer {ops}"))
        .call()
        .unwrap();
    assert_eq!(crop.content_type(), "image/jpeg");

    // One alert per passage of the wanted plate (each passage is one event), over
    // SSE within 2 s of the read that decided the plate; none for the other plates.
    let reads: Vec<(String, String, String)> = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
        sqlx::query_as("SELECT event_id::text, plate, to_char(read_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM plate_reads WHERE plate = $1")
            .bind(WANTED)
            .fetch_all(&mut c)
            .await
            .unwrap()
    });
    let wanted: HashMap<String, chrono::DateTime<chrono::Utc>> =
        reads.iter().map(|(e, _, t)| (e.clone(), t.parse().unwrap())).collect();
    wait_for("an SSE alert for every passage of the wanted plate", Duration::from_secs(10), || {
        drain(&mut alerts);
        wanted.keys().all(|e| alerts.iter().any(|(_, a)| a["event_id"] == e.as_str())).then_some(())
    });
    for (event, read_at) in &wanted {
        let got: Vec<_> = alerts.iter().filter(|(_, a)| a["event_id"] == event.as_str()).collect();
        assert_eq!(got.len(), 1, "one alert for passage {event}: {got:?}");
        let (arrived, a) = got[0];
        assert_eq!(a["rule"], "watchlist");
        assert_eq!(a["plate"], WANTED);
        assert_eq!(a["plate_display"], "АХ 1234 ВІ");
        assert_eq!(a["watchlist_reason"], "stolen, case 12/345");
        assert!(a["plate_read_id"].is_string(), "{a}");
        let latency = *arrived - *read_at;
        eprintln!("plate read → SSE: {} ms", latency.num_milliseconds());
        assert!(latency < chrono::Duration::seconds(2), "alert {} ms after the read", latency.num_milliseconds());
    }
    assert!(
        alerts.iter().all(|(_, a)| a["plate"] == WANTED),
        "alerts only for the listed plate: {:?}",
        alerts.iter().map(|(_, a)| a["plate"].clone()).collect::<Vec<_>>()
    );

    // Every plate read is one of the scene's plates (no misread stored).
    let all: Vec<(String,)> = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
        sqlx::query_as("SELECT plate FROM plate_reads").fetch_all(&mut c).await.unwrap()
    });
    eprintln!("plates read: {all:?}");
    assert!(all.iter().all(|(p,)| SCENE.contains(&p.as_str())), "{all:?}");

    // Search: partial, Cyrillic, and one OCR confusion away; each search audited.
    let before = rt.block_on(scalar(&db, "SELECT count(*) FROM audit_log WHERE action = 'plate_search'"));
    for q in ["AX12", "ах 1234", "AX1Z34BI"] {
        let (code, v) = call("GET", &format!("{api}/api/v1/plates?q={}", q.replace(' ', "%20")), Some(&ops), None);
        assert_eq!(code, 200, "{q}: {v}");
        assert_eq!(v[0]["plate"], WANTED, "{q}: {v}");
    }
    let (code, v) = call("GET", &format!("{api}/api/v1/plates?q=A"), Some(&ops), None);
    assert_eq!((code, v["error"]["code"].as_str()), (400, Some("invalid_argument")));
    let after = rt
        .block_on(scalar(&db, "SELECT count(*) FROM audit_log WHERE action = 'plate_search' AND actor = 'p-operator'"));
    assert_eq!(after - before, 3, "every plate search leaves an audit row");

    // Contractors never reach plates.
    for path in [
        "/api/v1/plates?q=AX12".to_owned(),
        format!("/api/v1/plates/{WANTED}/track"),
        format!("/api/v1/plates/reads/{}/crop", sightings[0]["id"].as_str().unwrap()),
        "/api/v1/watchlist".to_owned(),
    ] {
        assert_eq!(call("GET", &format!("{api}{path}"), Some(&ctr), None).0, 403, "{path}");
    }
    assert_eq!(
        call(
            "POST",
            &format!("{api}/api/v1/watchlist"),
            Some(&ctr),
            Some(serde_json::json!({"plate": "BI0001AA", "reason": "x"}))
        )
        .0,
        403
    );

    // The watchlist through the API: add (audited, with reason), list, remove.
    let (code, e) = call(
        "POST",
        &format!("{api}/api/v1/watchlist"),
        Some(&ops),
        Some(serde_json::json!({"plate": "ві 0001 аа", "reason": "wanted for questioning"})),
    );
    assert_eq!(code, 201, "{e}");
    assert_eq!((e["plate"].as_str(), e["added_by"].as_str()), (Some("BI0001AA"), Some("p-operator")));
    let (code, _) = call(
        "POST",
        &format!("{api}/api/v1/watchlist"),
        Some(&ops),
        Some(serde_json::json!({"plate": "BI0001AA", "reason": "again"})),
    );
    assert_eq!(code, 409, "already listed");
    let (code, r) = call(
        "DELETE",
        &format!("{api}/api/v1/watchlist/{}", e["id"]),
        Some(&ops),
        Some(serde_json::json!({"reason": "found"})),
    );
    assert_eq!((code, r["removed_reason"].as_str()), (200, Some("found")), "{r}");
    let audited = rt.block_on(scalar(
        &db,
        "SELECT count(*) FROM audit_log WHERE action IN ('watchlist_add', 'watchlist_remove') AND actor = 'p-operator'",
    ));
    assert_eq!(audited, 2);

    assert_eq!(serve.terminate(Duration::from_secs(30)), Some(0), "serve log:\n{}", serve.output());
}

/// The watchlist trigger matches in SQL (`varta_plate_match`) what the Rust code
/// matches (`varta_core::plate::matches`), pair for pair; and a day's plates go with
/// that day's events when retention drops the day.
#[tokio::test(flavor = "multi_thread")]
async fn sql_matching_agrees_with_rust_and_retention_drops_plates_with_events() {
    use sqlx::Connection;
    use varta_core::plate;
    let db = fresh_database("varta_plate_sql").await;
    let d = db.clone();
    tokio::task::spawn_blocking(move || {
        assert!(varta().arg("migrate").env("DATABASE_URL", &d).status().unwrap().success())
    })
    .await
    .unwrap();
    let mut c = sqlx::PgConnection::connect(&owner_url_of(&db)).await.unwrap();
    let mut words: Vec<String> = vec!["AX1234BI".into(), "AX1234B".into(), "".into(), "12345AA".into()];
    // Every single-character change of AX1234BI by each confusion pair, both ways,
    // some double changes and some non-confusions.
    for (a, b) in plate::CONFUSIONS {
        for (from, to) in [(a, b), (b, a)] {
            words.push("AX1234BI".replacen(from, &to.to_string(), 1));
            words.push("AX1234BI".replace(from, &to.to_string()));
        }
    }
    words.extend(["AX1234BY", "BX1234BI", "AX1Z3ABI", "OX1234BI", "0X1234BI", "DX1234BI"].map(String::from));
    for r in &words {
        for l in &words {
            let sql: Option<String> =
                sqlx::query_scalar("SELECT varta_plate_match($1, $2)").bind(r).bind(l).fetch_one(&mut c).await.unwrap();
            let rust = plate::matches(r, l).map(|m| match m {
                plate::Match::Exact => "exact",
                plate::Match::Confusion => "confusion",
            });
            assert_eq!(sql.as_deref(), rust, "read {r:?}, listed {l:?}");
        }
    }
    sqlx::query("SELECT varta_event_partition('2020-01-02')").execute(&mut c).await.unwrap();
    let plates: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('plate_reads_20200102')::text").fetch_one(&mut c).await.unwrap();
    assert_eq!(plates.as_deref(), Some("plate_reads_20200102"), "a day of events comes with its day of plates");
    let dropped: bool =
        sqlx::query_scalar("SELECT varta_drop_event_partition('events_20200102')").fetch_one(&mut c).await.unwrap();
    assert!(dropped);
    let left: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('plate_reads_20200102')::text").fetch_one(&mut c).await.unwrap();
    assert_eq!(left, None, "the day's plates went with its events");
}
