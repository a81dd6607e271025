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
