//! `varta check-config` as an operator runs it: exit code 2, key path and line.

use varta_e2e::*;

fn check(fixture: &str) -> (Option<i32>, String, String) {
    let out = varta().arg("check-config").arg(root().join("tests/fixtures").join(fixture)).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn unknown_key_is_rejected_naming_key_and_line() {
    let (code, _, err) = check("unknown_key.toml");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unknown_key.toml:12: key `cameras[0].analysis_fsp`"), "{err}");
    assert!(err.contains("unknown field `analysis_fsp`"), "{err}");
}

#[test]
fn bad_url_is_rejected_naming_key_and_line() {
    let (code, _, err) = check("bad_url.toml");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("bad_url.toml:16: key `cameras[1].url`"), "{err}");
}

#[test]
fn inline_credentials_are_rejected_and_not_echoed() {
    let (code, _, err) = check("inline_password.toml");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("key `cameras[0].url`"), "{err}");
    assert!(!err.contains("Secr3t-Pw"), "{err}");
}

#[test]
fn shipped_configs_are_valid() {
    for f in ["config/demo.toml", "config/site-template.toml"] {
        let out = varta().arg("check-config").arg(root().join(f)).output().unwrap();
        assert!(out.status.success(), "{f}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn plaintext_off_loopback_and_query_credentials_are_rejected() {
    let (code, _, err) = check("plaintext.toml");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("key `node.api_listen`") && err.contains("allow_plaintext"), "{err}");
    assert!(err.contains("key `alerts.mqtt_url`"), "{err}");
    assert!(err.contains("key `alerts.webhooks[0]`") && !err.contains("webhooks[1]"), "loopback is fine: {err}");
    assert!(err.contains("key `cameras[0].url`") && err.contains("`pwd` looks like a credential"), "{err}");
    assert!(!err.contains("Secr3t"), "{err}");
    // Asked for, the plaintext is allowed; the camera's query credential never is.
    let text = std::fs::read_to_string(root().join("tests/fixtures/plaintext.toml")).unwrap();
    let dir = std::env::temp_dir().join(format!("varta-plain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("allowed.toml");
    std::fs::write(&f, text.replace("[alerts]", "[api]\nallow_plaintext = true\n\n[alerts]")).unwrap();
    let out = varta().arg("check-config").arg(&f).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(!err.contains("allow_plaintext") && err.contains("cameras[0].url"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_site_off_the_map_is_rejected_naming_key_and_line() {
    let (code, _, err) = check("bad_site_place.toml");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("bad_site_place.toml:7: key `sites[0].lat`"), "latitude beyond 90: {err}");
    assert!(err.contains("key `sites[1].lon`"), "lat without lon: {err}");
}

#[test]
fn the_node_name_comes_from_varta_node_name_and_is_checked() {
    // One file for every replica of a StatefulSet: the pod's name names the node.
    let demo = root().join("config/demo.toml");
    let out = varta().arg("check-config").arg(&demo).env("VARTA_NODE_NAME", "varta-node-2").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = varta().arg("check-config").arg(&demo).env("VARTA_NODE_NAME", "node 2; drop").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("node.name") && err.contains("VARTA_NODE_NAME"), "{err}");
}
