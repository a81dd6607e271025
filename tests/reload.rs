//! Run-time config reload of a real `varta serve` process, by API and by SIGHUP:
//! added cameras start, removed ones stop, changed ones restart, and the unchanged
//! one keeps streaming without a gap.

use std::time::Duration;
use varta_e2e::*;

fn config(sim_port: u16, api_port: u16, cameras: &[(u32, f64)]) -> String {
    let mut s = format!(
        "[node]\nname = \"reload\"\napi_listen = \"127.0.0.1:{api_port}\"\n\n\
         [detect]\nmodels = \"{}\"\nworkers = 1\n\n\
         [ingest]\nbackoff_initial_secs = 0.5\n\n\
         [store]\nspool_dir = \"{}\"\n\n\
         [[sites]]\nid = \"site-a\"\nname = \"A\"\n",
        root().join("models/models.toml").display(),
        std::env::temp_dir().join(format!("varta-reload-{}/spool", std::process::id())).display()
    );
    for (i, fps) in cameras {
        s += &format!(
            "\n[[cameras]]\nid = \"cam-{i}\"\nsite = \"site-a\"\nurl = \"rtsp://127.0.0.1:{sim_port}/cam/{i}\"\n\
             analysis_fps = {fps:.1}\n"
        );
    }
    s
}

static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn camera(api: &str, id: &str) -> Option<serde_json::Value> {
    get_json_as(&format!("{api}/api/v1/cameras/{id}"), TOKEN.get().unwrap()).filter(|v| v.get("id").is_some())
}

fn streaming(api: &str, id: &str) -> Option<serde_json::Value> {
    camera(api, id).filter(|v| v["status"] == "streaming")
}

fn post(url: &str) -> (u16, serde_json::Value) {
    call("POST", url, TOKEN.get().map(String::as_str), None)
}

#[test]
fn cameras_are_added_changed_and_removed_at_run_time() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(fresh_database("varta_reload"));
    assert!(varta().args(["migrate"]).env("DATABASE_URL", &db).status().unwrap().success());
    TOKEN.set(token_for(&db, "reload-admin", "admin")).unwrap();
    let dir = std::env::temp_dir().join(format!("varta-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sim_port = free_port();
    let mut sim_cmd = varta();
    sim_cmd.args(["sim", "--cameras", "5", "--listen", &format!("127.0.0.1:{sim_port}"), "--clip"]).arg(clip());
    let _sim = Proc::spawn(sim_cmd, dir.join("sim.log"));

    let api_port = free_port();
    let cfg = dir.join("reload.toml");
    std::fs::write(&cfg, config(sim_port, api_port, &[(1, 2.0), (2, 2.0), (3, 2.0)])).unwrap();
    let mut serve_cmd = varta();
    serve_cmd.arg("serve").arg("--config").arg(&cfg).env("DATABASE_URL", &db);
    let mut serve = Proc::spawn(serve_cmd, dir.join("serve.log"));
    let api = format!("http://127.0.0.1:{api_port}");
    for id in ["cam-1", "cam-2", "cam-3"] {
        wait_for(id, Duration::from_secs(60), || streaming(&api, id));
    }
    let before = camera(&api, "cam-1").unwrap();

    // By API: cam-2 changes, cam-3 goes, cam-4 comes.
    std::fs::write(&cfg, config(sim_port, api_port, &[(1, 2.0), (2, 1.0), (4, 2.0)])).unwrap();
    let (code, report) = post(&format!("{api}/api/v1/config/reload"));
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["added"], serde_json::json!(["cam-4"]), "{report}");
    assert_eq!(report["removed"], serde_json::json!(["cam-3"]), "{report}");
    assert_eq!(report["changed"], serde_json::json!(["cam-2"]), "{report}");
    assert_eq!(report["unchanged"], 1, "{report}");
    wait_for("cam-4 streaming", Duration::from_secs(30), || streaming(&api, "cam-4"));
    assert!(camera(&api, "cam-3").is_none(), "removed camera is gone from the API");
    assert_eq!(camera(&api, "cam-2").unwrap()["analysis_fps"], 1.0);

    // A broken file is refused with key and line; nothing changes.
    std::fs::write(&cfg, config(sim_port, api_port, &[(1, 2.0)]).replace("analysis_fps = 2.0", "analysis_fps = -1.0"))
        .unwrap();
    let (code, err) = post(&format!("{api}/api/v1/config/reload"));
    assert_eq!(code, 400, "{err}");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(msg.contains("cameras[0].analysis_fps") && msg.contains("reload.toml:"), "{msg}");
    assert!(camera(&api, "cam-4").is_some());

    // By SIGHUP: cam-5 comes.
    std::fs::write(&cfg, config(sim_port, api_port, &[(1, 2.0), (2, 1.0), (4, 2.0), (5, 2.0)])).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(serve.child.id() as i32, libc::SIGHUP) };
    wait_for("cam-5 streaming after SIGHUP", Duration::from_secs(30), || streaming(&api, "cam-5"));

    // The unchanged camera was never touched: same state since, no restart, frames on.
    let after = camera(&api, "cam-1").unwrap();
    assert_eq!(after["status"], "streaming");
    assert_eq!(after["status_since"], before["status_since"], "cam-1 was not restarted");
    assert_eq!(after["restarts"], before["restarts"], "cam-1 was not restarted");
    let (f0, f1) = (before["frames_received"].as_u64().unwrap(), after["frames_received"].as_u64().unwrap());
    assert!(f1 > f0 + 5, "cam-1 kept receiving: {f0} -> {f1}");

    // An administrator restarts one camera's pipeline through the API.
    let (code, v) = post(&format!("{api}/api/v1/cameras/cam-1/restart"));
    assert_eq!(code, 204, "{v}");
    wait_for("cam-1 streaming after its restart", Duration::from_secs(30), || {
        streaming(&api, "cam-1").filter(|c| c["status_since"] != after["status_since"])
    });
    assert_eq!(post(&format!("{api}/api/v1/cameras/cam-3/restart")).0, 404, "a removed camera");

    // Every reload (two by API, one by SIGHUP) and the restart are in the audit log.
    let audited: Vec<(String, Option<String>)> = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
        sqlx::query_as(
            "SELECT action, actor FROM audit_log WHERE action IN ('config_reload', 'camera_restart') ORDER BY id",
        )
        .fetch_all(&mut c)
        .await
        .unwrap()
    });
    let admin = Some("reload-admin".to_owned());
    assert_eq!(
        audited,
        vec![
            ("config_reload".into(), admin.clone()),
            ("config_reload".into(), admin.clone()),
            ("config_reload".into(), Some("signal:SIGHUP".into())),
            ("camera_restart".into(), admin),
        ]
    );

    assert_eq!(serve.terminate(Duration::from_secs(30)), Some(0), "{}", serve.output());
    let log = serve.output();
    assert!(log.contains("config reloaded"), "{log}");
}
