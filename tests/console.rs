//! The console in Debian's headless Chromium (driven through chromedriver's W3C
//! WebDriver HTTP API), against `varta sim` → `varta serve` → PostgreSQL:
//! an operator sees a live alert from the simulator and acknowledges it; a camera
//! that is offline longer than the threshold (15 s here) gets exactly one maintenance task,
//! which a contractor sees with the camera's red tile, and which records the
//! camera's recovery once it streams again. Screenshots of the operator, contractor
//! and admin views go to `target/e2e-artifacts/console/`.

use base64::Engine as _;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use varta_e2e::*;

fn config(sim_port: u16, dead_port: u16, api_port: u16, dir: &Path) -> String {
    format!(
        "[node]\nname = \"console\"\napi_listen = \"127.0.0.1:{api_port}\"\nsample_secs = 1.0\n\n\
         [detect]\nmodels = \"{}\"\nworkers = 1\nsnapshot_dir = \"{}\"\n\n\
         [ingest]\nbackoff_initial_secs = 0.5\nbackoff_max_secs = 2.0\n\n\
         [store]\nflush_ms = 100\nspool_dir = \"{}\"\n\n\
         [maintenance]\noffline_after_secs = 15.0\ncheck_interval_secs = 1.0\nsla_percent = 99.5\n\n\
         [[sites]]\nid = \"station\"\nname = \"Вокзал\"\nlat = 49.9897\nlon = 36.2058\n\n\
         [[sites]]\nid = \"depot\"\nname = \"Депо\"\nlat = 49.9420\nlon = 36.3010\n\n\
         [[cameras]]\nid = \"cam-1\"\nsite = \"station\"\nname = \"Платформа 1\"\n\
         url = \"rtsp://127.0.0.1:{sim_port}/cam/1\"\nanalysis_fps = 2.0\nclasses = [\"person\"]\n\n\
         [[cameras.rules]]\nname = \"person-on-platform\"\nkind = \"presence\"\n\n\
         [[cameras]]\nid = \"cam-2\"\nsite = \"depot\"\nname = \"Ворота\"\n\
         url = \"rtsp://127.0.0.1:{dead_port}/cam/1\"\nanalysis_fps = 1.0\nclasses = [\"person\"]\n",
        root().join("models/models.toml").display(),
        dir.join("snapshots").display(),
        dir.join("spool").display()
    )
}

/// A minimal W3C WebDriver client over chromedriver.
struct Browser {
    _driver: Proc,
    base: String,
    session: String,
}

impl Browser {
    fn start(dir: &Path) -> Browser {
        let port = free_port();
        let mut cmd = Command::new("chromedriver");
        cmd.arg(format!("--port={port}"));
        let driver = Proc::spawn(cmd, dir.join("chromedriver.log"));
        let base = format!("http://127.0.0.1:{port}");
        wait_for("chromedriver", Duration::from_secs(20), || get_json(&format!("{base}/status")));
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--lang=uk-UA"]
        }}}});
        let (code, v) = call("POST", &format!("{base}/session"), None, Some(caps));
        assert_eq!(code, 200, "new session: {v}");
        let session = v["value"]["sessionId"].as_str().unwrap().to_owned();
        Browser { _driver: driver, base, session }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (code, v) = call(method, &format!("{}/session/{}{path}", self.base, self.session), None, body);
        assert_eq!(code, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})));
    }

    /// Runs `script` (a function body) in the page and returns its value.
    fn js(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    fn element(&self, css: &str) -> String {
        let v = self.cmd("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        v.as_object().and_then(|o| o.values().next()).and_then(|x| x.as_str()).unwrap().to_owned()
    }

    fn click(&self, css: &str) {
        let e = self.element(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.cmd("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.cmd("POST", &format!("/element/{e}/value"), Some(json!({"text": text})));
    }

    /// Polls `script` until it returns a truthy value.
    fn wait(&self, what: &str, secs: u64, script: &str) -> Value {
        wait_for(what, Duration::from_secs(secs), || {
            let v = self.js(script);
            (!(v.is_null() || v == false || v == 0 || v == "")).then_some(v)
        })
    }

    /// Sets the window's size in CSS pixels (390 × 844: a phone).
    fn size(&self, width: u32, height: u32) {
        self.cmd("POST", "/window/rect", Some(json!({"width": width, "height": height})));
    }

    /// Codes the Ukrainian console must not show as they are (classes, rule kinds,
    /// task kinds, states, roles, audit actions), found in the visible text of `main`.
    fn untranslated(&self) -> Value {
        self.js(
            "const codes = new Set(['person', 'car', 'bicycle', 'presence', 'enter', 'offline', 'frozen', 'other', \
             'operator', 'contractor', 'admin', 'snapshot_view', 'streaming', 'backing_off', 'stopped', 'starting']); \
             const words = [...document.querySelectorAll('main *, header *')].filter((e) => e.children.length === 0 && e.offsetParent !== null) \
               .flatMap((e) => e.textContent.split(/[\\s·,:()\\/]+/)); \
             return words.filter((w) => codes.has(w));",
        )
    }

    /// Whether the page is wider than the window (a horizontal scroll).
    fn overflows(&self) -> bool {
        self.js("return document.documentElement.scrollWidth > window.innerWidth + 1") == true
    }

    fn screenshot(&self, path: &Path) {
        let v = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    fn login(&self, api: &str, user: &str) {
        self.goto(&format!("{api}/"));
        self.js("sessionStorage.clear(); return true;");
        self.goto(&format!("{api}/"));
        self.wait("login form", 10, "return document.querySelector('#login-submit') !== null");
        self.type_into("#username", user);
        self.type_into("#password", TEST_PASSWORD);
        self.click("#login-submit");
        self.wait("signed in", 10, "return !document.querySelector('#logout').hidden");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
    }
}

fn artifacts() -> PathBuf {
    let d = root().join("target/e2e-artifacts/console");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn operator_acknowledges_a_live_alert_and_contractor_sees_the_offline_camera_task() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(fresh_database("varta_console"));
    let dir = std::env::temp_dir().join(format!("varta-console-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (u, r) in [("olena", "operator"), ("petro", "contractor"), ("ivan", "admin"), ("stepan", "operator")] {
        add_user(&db, u, r);
    }

    let sim_port = free_port();
    let mut sim_cmd = varta();
    sim_cmd.args(["sim", "--cameras", "1", "--listen", &format!("127.0.0.1:{sim_port}"), "--clip"]).arg(clip());
    let _sim = Proc::spawn(sim_cmd, dir.join("sim.log"));
    // The camera is up before the node first sees it, so that it streams from its
    // creation (its uptime is checked below).
    wait_for("the simulator listening", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", sim_port)).ok()
    });
    let dead_port = free_port();
    let api_port = free_port();
    let cfg = dir.join("console.toml");
    std::fs::write(&cfg, config(sim_port, dead_port, api_port, &dir)).unwrap();
    let mut serve_cmd = varta();
    serve_cmd.arg("serve").arg("--config").arg(&cfg).env("DATABASE_URL", &db);
    let _serve = Proc::spawn(serve_cmd, dir.join("serve.log"));
    let api = format!("http://127.0.0.1:{api_port}");
    wait_for("readyz", Duration::from_secs(60), || get_json(&format!("{api}/readyz")));
    let out = artifacts();

    // ---- operator: a live alert arrives, one click acknowledges it ----
    let b = Browser::start(&dir);
    b.login(&api, "olena");
    b.wait("operator's alert view", 10, "return document.querySelector('#alert-list') !== null");
    assert_eq!(b.js("return document.documentElement.lang"), "uk");
    assert_eq!(b.js("return document.querySelector('[data-view=alerts]').textContent"), "Тривоги");
    let id = b.wait(
        "an alert from the simulator in the console",
        90,
        "const a = document.querySelector('.alert:not(.acked)'); return a ? a.dataset.alert : null",
    );
    b.wait(
        "its snapshot loaded",
        20,
        &format!(
            "const i = document.querySelector('[data-alert=\"{}\"] img'); return i && i.complete && i.naturalWidth > 0",
            id.as_str().unwrap()
        ),
    );
    b.screenshot(&out.join("operator-alerts.png"));
    // The event detail from the alert: the whole picture, where and when.
    b.click(&format!("[data-alert=\"{}\"] button.open-event", id.as_str().unwrap()));
    let detail = b.wait(
        "the event detail with its full picture (or its clip, when the event has ended by now)",
        10,
        "const d = document.querySelector('dialog#event-detail[open]'); const m = d && d.querySelector('.full'); \
         return m && (m.tagName === 'VIDEO' ? m.readyState >= 1 : m.complete && m.naturalWidth > 0) && d.textContent",
    );
    assert!(
        detail.as_str().unwrap().contains("Платформа 1") && detail.as_str().unwrap().contains("Вокзал"),
        "{detail}"
    );
    // With the object's crop and the camera's site on the map.
    b.wait(
        "the crop and the site on the detail's map",
        15,
        "const d = document.querySelector('dialog#event-detail'); const c = d && d.querySelector('img.crop'); \
         return c && c.complete && c.naturalWidth > 0 && d.querySelector('#event-map [data-site=station]') !== null",
    );
    b.screenshot(&out.join("operator-event-detail.png"));
    b.click("dialog#event-detail button.close");
    b.wait("the detail closed", 5, "return document.querySelector('dialog#event-detail') === null");
    b.type_into(&format!("[data-alert=\"{}\"] .ack-comment", id.as_str().unwrap()), "перевірено камерою");
    b.click(&format!("[data-alert=\"{}\"] button.ack[data-outcome=false_alarm]", id.as_str().unwrap()));
    let acked = b.wait(
        "the alert marked acknowledged",
        10,
        &format!(
            "const a = document.querySelector('[data-alert=\"{}\"].acked .ackd'); return a ? a.textContent : null",
            id.as_str().unwrap()
        ),
    );
    assert!(acked.as_str().unwrap().contains("olena"), "{acked}");
    assert!(
        acked.as_str().unwrap().contains("Хибна тривога — перевірено камерою"),
        "outcome and comment shown: {acked}"
    );
    // English on one click.
    b.click("#lang");
    assert_eq!(b.js("return document.querySelector('[data-view=alerts]').textContent"), "Alerts");
    b.click("#lang");
    // In the database too, by name.
    let by: (String, String, String) = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
        sqlx::query_as(&format!(
            "SELECT acked_by, ack_outcome, ack_comment FROM alerts WHERE id = {}",
            id.as_str().unwrap()
        ))
        .fetch_one(&mut c)
        .await
        .unwrap()
    });
    assert_eq!(by, ("olena".into(), "false_alarm".into(), "перевірено камерою".into()));

    // ---- operator: a plate's sightings, and the watchlist ----
    let (ev, read) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    rt.block_on(sql(
        &db,
        &format!(
            "SELECT varta_event_partition(current_date);
             INSERT INTO events (id, camera_id, track_id, class, score, bbox, started_at, last_seen_at, frames, node, rule)
             VALUES ('{ev}', 'cam-1', 77, 'car', 0.9, '{{1,2,3,4}}', now(), now(), 1, 't', 'presence');
             INSERT INTO plate_reads (id, event_id, event_started_at, camera_id, site_id, track_id, read_at, text, plate,
                                      format, confidence, reads, bbox, node)
             SELECT '{read}', e.id, e.started_at, e.camera_id, c.site_id, 77, now(), 'AX1234BI', 'AX1234BI', 'ua_civil',
                    0.95, 3, '{{1,2,3,4}}', 't'
               FROM events e JOIN cameras c ON c.id = e.camera_id WHERE e.id = '{ev}';"
        ),
    ));
    b.click("[data-view=plates]");
    b.wait("the plate search form", 10, "return document.querySelector('#plate-search') !== null");
    b.type_into("#plate-search input[name=q]", "ах 12");
    b.click("#plate-search button[type=submit]");
    let row = b.wait(
        "the plate found by a Cyrillic partial query",
        10,
        "const r = document.querySelector('#plate-results tr[data-plate=\"AX1234BI\"]'); return r ? r.textContent : null",
    );
    assert!(row.as_str().unwrap().contains("АХ 1234 ВІ"), "shown in Cyrillic: {row}");
    b.click("#plate-results tr[data-plate=\"AX1234BI\"]");
    b.wait(
        "its sightings",
        10,
        &format!("return document.querySelector('#plate-track li[data-sighting=\"{read}\"]') !== null"),
    );
    b.screenshot(&out.join("operator-plates.png"));
    b.click("[data-view=watchlist]");
    b.wait("the watchlist form", 10, "return document.querySelector('#watchlist-add') !== null");
    b.type_into("#watchlist-add input[name=plate]", "BI0001AA");
    b.type_into("#watchlist-add input[name=reason]", "викрадено");
    b.click("#watchlist-add button[type=submit]");
    b.wait(
        "the wanted plate listed",
        10,
        "const t = document.querySelector('#watchlist'); return t && t.textContent.includes('ВІ 0001 АА') && t.textContent.includes('викрадено')",
    );
    b.screenshot(&out.join("operator-watchlist.png"));
    // Removed with a reason typed in the row (no browser dialog).
    b.type_into("#watchlist tr[data-entry] input[name=remove-reason]", "знайдено");
    b.click("#watchlist tr[data-entry] form.remove-entry button[type=submit]");
    wait_for("the entry removed with its reason", Duration::from_secs(10), || {
        let n = rt.block_on(scalar(
            &db,
            "SELECT count(*) FROM watchlist_entries WHERE plate = 'BI0001AA' AND removed_by = 'olena' AND removed_at IS NOT NULL",
        ));
        (n == 1).then_some(())
    });
    b.wait("the list without it", 10, "return document.querySelector('#watchlist tr[data-entry]') === null");

    // ---- operator: the queue stays still while read; new alerts wait in a banner ----
    b.click("[data-view=alerts]");
    b.wait("the alert list", 10, "return document.querySelectorAll('#alert-list .alert').length > 0");
    let order_js = "return [...document.querySelectorAll('#alert-list .alert')].map((a) => a.dataset.alert).join(',')";
    let order = b.js(order_js);
    b.wait(
        "a new alert counted in the banner",
        90,
        "const n = document.querySelector('#new-alerts'); return n && !n.hidden",
    );
    assert_eq!(b.js(order_js), order, "the cards did not move when an alert arrived");
    let title = b.js("return document.title");
    assert!(title.as_str().unwrap().starts_with('('), "unacknowledged count in the tab title: {title}");
    b.screenshot(&out.join("operator-new-alerts.png"));
    b.click("#new-alerts");
    let shown = b.js(order_js);
    assert!(
        shown.as_str().unwrap().ends_with(order.as_str().unwrap()) && shown != order,
        "new alerts on top when asked: {order} -> {shown}"
    );
    // Thumbnails write no audit row each; the list's row names the alerts shown.
    let views = rt.block_on(scalar(&db, "SELECT count(*) FROM audit_log WHERE action = 'snapshot_view'"));
    assert_eq!(views, 1, "only the whole picture opened in the event detail is audited, not the thumbnails");
    assert_eq!(rt.block_on(scalar(&db, "SELECT count(*) FROM audit_log WHERE action = 'event_view'")), 1);
    let listed = rt.block_on(scalar(
        &db,
        "SELECT count(*) FROM audit_log WHERE action = 'alert_list' AND jsonb_array_length(detail->'alerts') > 0",
    ));
    assert!(listed >= 1, "the alert list's audit row names the alerts shown");

    // ---- a burst from one camera and rule folds under its newest alert; sound on ----
    b.click("#alert-filters input[name=sound]");
    for _ in 0..3 {
        rt.block_on(alerting_event(&db, "cam-2"));
    }
    b.wait(
        "the burst's three alerts in the list",
        20,
        "const n = document.querySelector('#new-alerts'); if (n && !n.hidden) n.click(); \
         return document.querySelectorAll('#alert-list .alert[data-camera=\"cam-2\"]').length === 3",
    );
    let folded = b.js("const c = [...document.querySelectorAll('#alert-list .alert[data-camera=\"cam-2\"]')]; \
         return [c.filter((x) => x.hidden && x.classList.contains('in-burst')).length, \
                 c[0].querySelector('.burst-toggle').textContent, Number(document.body.dataset.beeps || 0)]");
    assert_eq!(folded[0], 2, "two alerts folded under the newest: {folded}");
    assert!(folded[1].as_str().unwrap().starts_with("+2 "), "{folded}");
    assert!(folded[2].as_i64().unwrap() >= 1, "a tone for the new alerts: {folded}");
    b.screenshot(&out.join("operator-burst.png"));
    // The map: both sites placed by their coordinates, coloured by their cameras; the
    // depot, whose camera is down, pulses with its unacknowledged alerts.
    b.click("[data-view=map]");
    let dots = b.wait(
        "the sites on the map",
        20,
        "const d = [...document.querySelectorAll('#site-map .site-dot')]; \
         return d.length === 2 && document.querySelectorAll('#site-map path.region').length > 20 && \
                d.map((x) => `${x.dataset.site}:${x.dataset.state}`).sort().join(' ')",
    );
    assert_eq!(dots, "depot:down station:up", "state colours: {dots}");
    // A new alert on the depot's camera pulses its site through the stream, however
    // long the steps above took (the burst's own pulse lasts a minute from its
    // arrival). (The station pulses too, or not, with the simulator's own alerts.)
    let extra = rt.block_on(alerting_event(&db, "cam-2"));
    b.wait(
        "the depot pulsing with its new alert",
        15,
        "return document.querySelector('#site-map [data-site=depot]').classList.contains('pulse')",
    );
    // Someone else acknowledges it, so the burst below is the three alerts above.
    let extra_id = rt.block_on(scalar(&db, &format!("SELECT id FROM alerts WHERE event_id = '{extra}'")));
    let other = token_for(&db, "map-ack", "operator");
    let (code, v) = call("POST", &format!("{api}/api/v1/alerts/{extra_id}/ack"), Some(&other), None);
    assert_eq!(code, 200, "{v}");
    b.click("#site-map [data-site=depot]");
    let listed = b.wait(
        "the depot's cameras beside the map",
        5,
        "const d = document.querySelector('#map-site'); return d && d.textContent",
    );
    assert!(listed.as_str().unwrap().contains("Ворота"), "{listed}");
    b.screenshot(&out.join("operator-map.png"));
    b.click("[data-view=alerts]");
    b.wait(
        "the burst folded again",
        10,
        "return document.querySelector('#alert-list .alert[data-camera=\"cam-2\"]:not(.in-burst) .burst-ack') !== null",
    );
    b.click("#alert-list .alert[data-camera=\"cam-2\"]:not(.in-burst) .burst-ack");
    wait_for("the whole burst acknowledged", Duration::from_secs(15), || {
        let n = rt.block_on(scalar(
            &db,
            "SELECT count(*) FROM alerts WHERE camera_id = 'cam-2' AND acked_by = 'olena' AND ack_outcome = 'false_alarm'",
        ));
        (n == 3).then_some(())
    });

    // ---- Ukrainian throughout, and a phone's width, on every operator view ----
    for v in ["alerts", "map", "events", "plates", "watchlist"] {
        b.click(&format!("[data-view={v}]"));
        b.wait(
            &format!("the {v} view"),
            10,
            &format!("return document.querySelector('[data-view-box={v}] h2') !== null"),
        );
        let codes = b.untranslated();
        assert_eq!(codes, json!([]), "untranslated codes in the {v} view");
        b.screenshot(&out.join(format!("operator-{v}-1400.png")));
        b.size(390, 844);
        assert!(!b.overflows(), "the {v} view scrolls sideways at 390 px");
        b.screenshot(&out.join(format!("operator-{v}-390.png")));
        b.size(1400, 1000);
    }
    // Keyboard: the view's heading has the focus after a change.
    assert_eq!(b.js("return document.activeElement && document.activeElement.tagName"), "H2");

    // ---- a session revoked elsewhere ends here, and says so ----
    let session = b.js("return sessionStorage.getItem('varta.token')");
    b.click("[data-view=alerts]");
    b.wait(
        "the alert stream live",
        15,
        "const s = document.querySelector('#stream-status'); return s && s.textContent === 'Наживо'",
    );
    let (code, _) = call("POST", &format!("{api}/api/v1/auth/logout"), Some(session.as_str().unwrap()), None);
    assert_eq!(code, 204);
    let said = b.wait(
        "the console says the session ended",
        20,
        "const e = document.querySelector('#login-error'); return e && e.textContent",
    );
    assert_eq!(said, "Сеанс завершено. Увійдіть знову.");
    b.screenshot(&out.join("session-ended.png"));
    b.login(&api, "olena");

    // ---- maintenance: exactly one task for the offline camera ----
    let count = |sql: &str| -> i64 { rt.block_on(scalar(&db, sql)) };
    let count_tasks = || count("SELECT count(*) FROM maintenance_tasks WHERE camera_id = 'cam-2'");
    wait_for("a task for the offline camera", Duration::from_secs(60), || (count_tasks() > 0).then_some(()));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(count_tasks(), 1, "one open task per camera and reason, however often the node checks");
    // The streaming camera has no task waiting for it: one opened while it was
    // starting on a loaded machine is marked recovered by the node's next check.
    wait_for("no unrecovered task for the streaming camera", Duration::from_secs(30), || {
        let open = count("SELECT count(*) FROM maintenance_tasks WHERE camera_id = 'cam-1' AND recovered_at IS NULL");
        (open == 0).then_some(())
    });

    // ---- contractor: the red tile and the task ----
    b.login(&api, "petro");
    b.wait("contractor's site view", 15, "return document.querySelector('[data-camera=\"cam-2\"]') !== null");
    let state = b.js("return document.querySelector('.tile[data-camera=\"cam-2\"]').dataset.state");
    assert!(matches!(state.as_str(), Some("backing_off" | "starting" | "stalled")), "offline tile state {state}");
    // GStreamer's English error in words, the recorded text kept as the tooltip.
    let why = b.js("const r = document.querySelector('.tile[data-camera=\"cam-2\"] .reason'); return r && [r.textContent, r.title]");
    assert!(
        !why[0].as_str().unwrap().split(|c: char| !c.is_ascii_alphabetic()).any(|w| w.len() >= 4)
            && !why[1].as_str().unwrap().is_empty(),
        "the camera's error in Ukrainian: {why}"
    );
    assert_eq!(b.js("return document.querySelector('.tile[data-camera=\"cam-1\"]').dataset.state"), "streaming");
    assert_eq!(
        b.js("return document.querySelector('[data-view=events]') === null"),
        true,
        "no event search for contractors"
    );
    // Streaming since it was configured: 100%, not the share of the month since the 1st.
    let tile = b.js("return document.querySelector('.tile[data-camera=\"cam-1\"]').textContent");
    assert!(tile.as_str().unwrap().contains("100.00%"), "uptime of a camera streaming since its creation: {tile}");
    // Planned maintenance, recorded by the contractor: listed, and left out of uptime.
    // An hour that has passed this month, in the browser's local time.
    let start = b.js("const d = new Date(Date.now() - 7200e3); d.setMinutes(0, 0, 0); \
                      const p = (n) => String(n).padStart(2, '0'); \
                      return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:00`;");
    let end = b.js("const d = new Date(Date.now() - 3600e3); d.setMinutes(0, 0, 0); \
                    const p = (n) => String(n).padStart(2, '0'); \
                    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:00`;");
    b.js(&format!(
        "const f = document.querySelector('#window-add'); f.site.value = 'depot'; \
         f.starts_at.value = '{}'; f.ends_at.value = '{}'; return true;",
        start.as_str().unwrap(),
        end.as_str().unwrap()
    ));
    b.type_into("#window-add input[name=reason]", "заміна блока живлення");
    b.click("#window-add button[type=submit]");
    let listed = wait_for("the window recorded", Duration::from_secs(10), || {
        let n = rt.block_on(scalar(
            &db,
            "SELECT count(*) FROM maintenance_windows WHERE reason = 'заміна блока живлення' AND created_by = 'petro'",
        ));
        (n == 1).then_some(n)
    });
    assert_eq!(listed, 1);
    b.wait(
        "the window listed on the page",
        10,
        "const t = document.querySelector('#windows'); return t && t.textContent.includes('заміна блока живлення')",
    );
    assert_eq!(
        rt.block_on(scalar(
            &db,
            "SELECT count(*) FROM audit_log WHERE action = 'maintenance_window_add' AND actor = 'petro'"
        )),
        1
    );
    // Uptime per day against the SLA target: the offline camera's today is below it,
    // the streaming one's is not.
    b.wait(
        "the daily uptime chart",
        20,
        "return document.querySelector('#uptime-chart canvas') !== null && \
                document.querySelector('#uptime-summary').dataset.sla === '99.5'",
    );
    for (camera, below) in [("cam-2", true), ("cam-1", false)] {
        b.js(&format!(
            "const s = document.querySelector('#uptime-scope'); s.value = 'camera:{camera}'; \
             document.querySelector('#uptime-summary').dataset.below = ''; s.dispatchEvent(new Event('change')); return true;"
        ));
        let n = b.wait(
            &format!("{camera}'s daily uptime"),
            10,
            "const b = document.querySelector('#uptime-summary').dataset.below; return b === '' ? null : `n${b}`",
        );
        assert_eq!(n != "n0", below, "{camera}: days below the SLA {n}");
    }
    b.js("document.querySelector('#daily').scrollIntoView(); return true;");
    b.screenshot(&out.join("contractor-uptime-chart.png"));
    b.js("window.scrollTo(0, 0); return true;");
    b.screenshot(&out.join("contractor-sites.png"));
    for v in ["sites", "map", "tasks"] {
        b.click(&format!("[data-view={v}]"));
        b.wait(
            &format!("the {v} view"),
            10,
            &format!("return document.querySelector('[data-view-box={v}] h2') !== null"),
        );
        assert_eq!(b.untranslated(), json!([]), "untranslated codes in the contractor's {v} view");
        b.screenshot(&out.join(format!("contractor-{v}-1400.png")));
        b.size(390, 844);
        assert!(!b.overflows(), "the contractor's {v} view scrolls sideways at 390 px");
        b.screenshot(&out.join(format!("contractor-{v}-390.png")));
        b.size(1400, 1000);
    }
    b.click("[data-view=sites]");
    b.click("[data-view=tasks]");
    b.wait(
        "the offline camera's task on the board",
        10,
        "return document.querySelector('.col[data-col=open] .task[data-camera=\"cam-2\"]') !== null",
    );
    b.screenshot(&out.join("contractor-tasks.png"));

    // ---- the camera comes back: its recovery shows on the task ----
    let mut sim2_cmd = varta();
    sim2_cmd.args(["sim", "--cameras", "1", "--listen", &format!("127.0.0.1:{dead_port}"), "--clip"]).arg(clip());
    let _sim2 = Proc::spawn(sim2_cmd, dir.join("sim2.log"));
    let tok = token_for(&db, "check", "contractor");
    let task = wait_for("the task records the recovery", Duration::from_secs(60), || {
        let v = get_json_as(&format!("{api}/api/v1/maintenance/tasks?camera=cam-2"), &tok)?;
        let t = v["items"].as_array()?.first()?.clone();
        (!t["recovered_at"].is_null()).then_some(t)
    });
    assert_eq!(task["state"], "open");
    assert_eq!(task["kind"], "offline");
    b.click("[data-view=sites]");
    b.click("[data-view=tasks]");
    b.wait(
        "recovery on the board",
        10,
        "const t = document.querySelector('.task[data-camera=\"cam-2\"] .good'); return t !== null",
    );

    // ---- contractor: a task opened by hand, assigned from the list, notes, history ----
    b.js("document.querySelector('details.add').open = true; const f = document.querySelector('#task-add'); \
          f.camera.value = 'cam-1'; f.camera.dispatchEvent(new Event('change')); f.kind.value = 'other'; return true;");
    b.type_into("#task-add input[name=reason]", "тріснув кожух");
    b.click("#task-add button[type=submit]");
    let tid = wait_for("the task opened by hand", Duration::from_secs(10), || {
        let n = rt.block_on(scalar(
            &db,
            "SELECT coalesce(max(id), 0) FROM maintenance_tasks WHERE reason = 'тріснув кожух' AND opened_by = 'petro' \
             AND site_id = 'station' AND camera_id = 'cam-1' AND kind = 'other'",
        ));
        (n > 0).then_some(n)
    });
    let open_detail = || {
        b.wait(
            "the task on the board",
            10,
            &format!("return document.querySelector('.task[data-task=\"{tid}\"] button.title') !== null"),
        );
        b.click(&format!(".task[data-task=\"{tid}\"] button.title"));
        b.wait("the task's detail", 10, "return document.querySelector('dialog#task-detail[open] ol.history') !== null")
    };
    open_detail();
    let people =
        b.js("return [...document.querySelectorAll('#task-detail select[name=assignee] option')].map((o) => o.value)");
    let people: Vec<&str> = people.as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert!(
        people.contains(&"ivan")
            && people.contains(&"petro")
            && !people.contains(&"olena")
            && !people.contains(&"stepan"),
        "contractors and administrators, not operators: {people:?}"
    );
    b.js("document.querySelector('#task-detail select[name=assignee]').value = 'petro'; return true;");
    b.click("#task-detail button[data-move=assigned]");
    wait_for("the task assigned from the list", Duration::from_secs(10), || {
        let n = rt.block_on(scalar(
            &db,
            &format!(
                "SELECT count(*) FROM maintenance_tasks WHERE id = {tid} AND state = 'assigned' AND assignee = 'petro'"
            ),
        ));
        (n == 1).then_some(())
    });
    b.wait("the detail closed", 10, "return document.querySelector('dialog#task-detail') === null");
    open_detail();
    b.type_into("#task-detail textarea[name=notes]", "потрібна автовишка");
    b.click("#task-detail button.save-notes");
    wait_for("the notes saved", Duration::from_secs(10), || {
        let n = rt.block_on(scalar(
            &db,
            &format!("SELECT count(*) FROM maintenance_tasks WHERE id = {tid} AND notes = 'потрібна автовишка'"),
        ));
        (n == 1).then_some(())
    });
    let history = b.js("return [...document.querySelectorAll('#task-detail ol.history li')].map((l) => l.textContent)");
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 2, "opened, assigned: {history:?}");
    assert!(
        history[0].as_str().unwrap().contains("petro") && history[1].as_str().unwrap().contains("призначена"),
        "{history:?}"
    );
    assert!(history[1].as_str().unwrap().contains("Виконавець: petro"), "{history:?}");
    b.screenshot(&out.join("contractor-task-detail.png"));
    b.click("#task-detail button.close");

    // ---- admin: nodes, users, audit ----
    let (code, s) = call(
        "POST",
        &format!("{api}/api/v1/auth/login"),
        None,
        Some(json!({"username": "stepan", "password": TEST_PASSWORD})),
    );
    assert_eq!(code, 200, "{s}");
    let stepan = s["token"].as_str().unwrap().to_owned();
    b.login(&api, "ivan");
    b.click("[data-view=nodes]");
    b.wait(
        "the node with its cameras",
        10,
        "const t = document.querySelector('#nodes'); return t && t.textContent.includes('cam-1')",
    );
    assert_eq!(
        b.js("return document.querySelector('#nodes tr[data-stale]') === null"),
        true,
        "a live node is not stale"
    );
    // Health over time: the node's day and each camera's last hour, from its samples.
    b.wait(
        "the node's chart and the cameras' sparklines",
        10,
        "return document.querySelector('#node-history .node-chart[data-node=console] canvas') !== null && \
                document.querySelectorAll('#camera-health tr[data-camera=\"cam-1\"] .spark canvas').length === 3",
    );
    // The mean over the samples (each a 1 s interval here, so a burst of late packets
    // on a busy machine moves one sample, not the mean).
    let fps = b.js(
        "const v = document.querySelector('#camera-health tr[data-camera=\"cam-1\"] .spark[data-series=fps]').title \
           .split(': ')[1].split(' ').map(Number); return v.reduce((a, b) => a + b, 0) / v.length",
    );
    assert!(fps.as_f64().unwrap() > 5.0, "cam-1 streams at 10 fps: mean {fps}");
    b.screenshot(&out.join("admin-nodes.png"));
    b.click("#camera-health tr[data-camera=\"cam-1\"] button.restart");
    b.click("#config-reload");
    for action in ["camera_restart", "config_reload"] {
        wait_for(&format!("{action} audited"), Duration::from_secs(20), || {
            let n = rt.block_on(scalar(
                &db,
                &format!("SELECT count(*) FROM audit_log WHERE action = '{action}' AND actor = 'ivan'"),
            ));
            (n == 1).then_some(())
        });
    }
    // Users: end a session, change a role, reset a password, disable and enable.
    b.click("[data-view=users]");
    b.wait("stepan's row", 10, "return document.querySelector('#users tr[data-user=stepan] .end-sessions') !== null");
    assert_eq!(
        b.js("return document.querySelector('#users tr[data-user=ivan] .disable').disabled"),
        true,
        "an administrator cannot disable themselves"
    );
    b.click("#users tr[data-user=stepan] .end-sessions");
    wait_for("stepan's session ended", Duration::from_secs(10), || {
        (call("GET", &format!("{api}/api/v1/auth/me"), Some(&stepan), None).0 == 401).then_some(())
    });
    b.wait(
        "the users reloaded",
        10,
        "return document.querySelector('#users tr[data-user=stepan] .end-sessions:disabled') !== null",
    );
    b.js("const s = document.querySelector('#users tr[data-user=stepan] select.role'); s.value = 'contractor'; \
          s.dispatchEvent(new Event('change')); return true;");
    wait_for("stepan a contractor", Duration::from_secs(10), || {
        let n = rt.block_on(scalar(&db, "SELECT count(*) FROM users WHERE name = 'stepan' AND role = 'contractor'"));
        (n == 1).then_some(())
    });
    b.wait("the users reloaded", 10, "const s = document.querySelector('#users tr[data-user=stepan] select.role'); return s && s.value === 'contractor'");
    b.type_into("#users tr[data-user=stepan] .new-password", "a-new-password-42");
    b.click("#users tr[data-user=stepan] .reset-password");
    wait_for("stepan's new password", Duration::from_secs(15), || {
        let (code, _) = call(
            "POST",
            &format!("{api}/api/v1/auth/login"),
            None,
            Some(json!({"username": "stepan", "password": "a-new-password-42"})),
        );
        (code == 200).then_some(())
    });
    b.wait("the users reloaded", 10, "return document.querySelector('#users tr[data-user=stepan] .disable') !== null");
    b.click("#users tr[data-user=stepan] .disable");
    b.wait(
        "stepan disabled",
        10,
        "return document.querySelector('#users tr[data-user=stepan].muted .enable') !== null",
    );
    b.click("#users tr[data-user=stepan] .enable");
    b.wait(
        "stepan enabled",
        10,
        "return document.querySelector('#users tr[data-user=stepan]:not(.muted) .disable') !== null",
    );
    b.screenshot(&out.join("admin-users.png"));
    // An ended event plays its clip in the detail: the browser fetches it by range
    // with the session cookie; the view is one audit row.
    wait_for("an event with its clip", Duration::from_secs(60), || {
        (rt.block_on(scalar(&db, "SELECT count(*) FROM events WHERE clip IS NOT NULL")) > 0).then_some(())
    });
    b.click("[data-view=events]");
    b.wait("an event with a clip listed", 15, "return document.querySelector('#event-search tr, tr[data-clip]') !== null && document.querySelector('tr[data-clip]') !== null");
    // (The note of the last user change may still cover the bottom of the page.)
    b.js("document.querySelector('#note')?.remove(); document.querySelector('tr[data-clip]').scrollIntoView(); return true;");
    b.click("tr[data-clip]");
    b.wait(
        "the clip playable in the detail",
        20,
        "const v = document.querySelector('dialog#event-detail video.clip'); return v && v.readyState >= 1 && v.duration > 0",
    );
    b.screenshot(&out.join("admin-event-clip.png"));
    // The signed event's evidence package downloads with the session cookie (a plain
    // link; fetched here, since a headless download has nowhere to go).
    b.js("const a = document.querySelector('dialog#event-detail a.export'); window.__export = null; \
          fetch(a.href).then((r) => { window.__export = r.status + ' ' + r.headers.get('content-type'); }); return true;");
    let export = b.wait("the export downloaded", 20, "return window.__export");
    assert_eq!(export, "200 application/zip", "the export link serves the package");
    b.click("dialog#event-detail button.close");
    // A live alert's card plays its event's clip (here, one whose clip is written).
    let with_clips: Vec<i64> = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
        sqlx::query_scalar(
            "SELECT a.id FROM alerts a JOIN events e ON e.id = a.event_id AND e.started_at = a.event_started_at
              WHERE e.clip IS NOT NULL",
        )
        .fetch_all(&mut c)
        .await
        .unwrap()
    });
    b.click("[data-view=alerts]");
    b.wait("the alerts shown", 10, "return document.querySelector('.alert') !== null");
    let card = b.wait(
        "an alert card with a written clip",
        10,
        &format!(
            "const ids = {with_clips:?}; const c = [...document.querySelectorAll('.alert')] \
               .find((c) => c.offsetParent !== null && ids.includes(Number(c.dataset.alert))); \
             if (!c) return null; c.scrollIntoView(); c.querySelector('.play-clip').click(); return c.dataset.alert;"
        ),
    );
    b.wait(
        "the clip playing in the alert card",
        20,
        &format!(
            "const v = document.querySelector('[data-alert=\"{}\"] video.card-clip'); return v && v.readyState >= 1 && v.duration > 0",
            card.as_str().unwrap()
        ),
    );
    b.screenshot(&out.join("admin-alert-clip.png"));
    wait_for("the clip view audited", Duration::from_secs(10), || {
        let n =
            rt.block_on(scalar(&db, "SELECT count(*) FROM audit_log WHERE action = 'clip_view' AND actor = 'ivan'"));
        (n >= 1).then_some(n)
    });
    // The audit log: in words, narrowed to one action, with each row's details.
    b.click("[data-view=audit]");
    b.wait(
        "the audit log with the acknowledgement",
        10,
        "return document.querySelector('#audit tr[data-action=alert_ack]') !== null",
    );
    b.js("const f = document.querySelector('#audit-filter'); f.action.value = 'user_change'; f.target.value = 'stepan'; \
          f.requestSubmit(); return true;");
    let actions = b.wait(
        "the audit narrowed to stepan's changes",
        10,
        "const r = [...document.querySelectorAll('#audit tr[data-action]')].map((r) => r.dataset.action); \
         return r.length === 3 && r.every((a) => a === 'user_change') && r",
    );
    assert_eq!(actions.as_array().unwrap().len(), 3, "role, password, enable");
    b.click("#audit tr[data-action=user_change] button.link");
    let detail = b.wait(
        "a row's details",
        5,
        "const d = document.querySelector('#audit tr.audit-detail:not([hidden]) pre'); return d && d.textContent",
    );
    assert!(detail.as_str().unwrap().contains("\"enabled\": true"), "{detail}");
    let href = b.js("return document.querySelector('#audit-csv').getAttribute('href')");
    let admin = token_for(&db, "csv-reader", "admin");
    let csv = ureq::get(&format!("{api}{}", href.as_str().unwrap()))
        .set("Authorization", &format!("Bearer {admin}"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert_eq!(csv.lines().count(), 4, "the CSV link carries the filters: {csv}");
    b.screenshot(&out.join("admin-audit.png"));
    // Ukrainian throughout, and a phone's width, on every admin view.
    for v in ["nodes", "users", "audit"] {
        b.click(&format!("[data-view={v}]"));
        b.wait(
            &format!("the {v} view"),
            10,
            &format!("return document.querySelector('[data-view-box={v}] table tbody tr') !== null"),
        );
        assert_eq!(b.untranslated(), json!([]), "untranslated codes in the admin's {v} view");
        b.screenshot(&out.join(format!("admin-{v}-1400.png")));
        b.size(390, 844);
        assert!(!b.overflows(), "the admin's {v} view scrolls sideways at 390 px");
        b.screenshot(&out.join(format!("admin-{v}-390.png")));
        b.size(1400, 1000);
    }
}
