//! The binary itself: `check`, `--version`, `--help`.

use std::process::Command;

use crate::common::temp_dir;

fn pushgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn check_accepts_the_shipped_config() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.yaml");
    let out = pushgate(&["check", "-c", shipped]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("configuration OK"));
    assert!(
        stdout.contains("/realtime"),
        "summary names the realtime endpoints: {stdout}"
    );
    assert!(
        stdout.contains("websocket compression: permessage-deflate from 256 bytes, level 3"),
        "{stdout}"
    );
}

#[test]
fn check_names_file_line_and_key() {
    let dir = temp_dir("cli");
    let path = dir.join("bad.yaml");
    std::fs::write(
        &path,
        r#"realtime:
  path: /rt
  histroy: { size: 1 }
"#,
    )
    .unwrap();
    let out = pushgate(&["check", "-c", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.yaml:3"), "{stderr}");
    assert!(stderr.contains("realtime.histroy"), "{stderr}");
}

#[test]
fn version_and_help() {
    let out = pushgate(&["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = pushgate(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("check") && help.contains("Examples"),
        "{help}"
    );
}

#[test]
fn token_mints_a_verifiable_token() {
    let dir = temp_dir("cli-token");
    let path = dir.join("gw.yaml");
    std::fs::write(
        &path,
        "auth: { jwt: { hs256_secret: cli-secret, issuer: app } }\n",
    )
    .unwrap();
    let out = pushgate(&[
        "token",
        "-c",
        path.to_str().unwrap(),
        "--sub",
        "alice",
        "--channels",
        "orders.*,user.alice",
        "--ttl",
        "1h",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let cfg = pushgate::config::load(&path).unwrap();
    let id = pushgate::auth::Authenticator::new(&cfg.auth)
        .unwrap()
        .verify(&token)
        .unwrap();
    assert_eq!(id.subject, "alice");
    assert_eq!(
        id.channels,
        vec!["orders.*".to_string(), "user.alice".to_string()]
    );
    let left = id
        .expires
        .unwrap()
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(
        left > std::time::Duration::from_secs(3500) && left <= std::time::Duration::from_secs(3700)
    );

    let out = pushgate(&[
        "token",
        "-c",
        path.to_str().unwrap(),
        "--sub",
        "a",
        "--ttl",
        "soon",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ttl"));
}

#[test]
fn check_refuses_an_empty_file() {
    let dir = temp_dir("cli-empty");
    let path = dir.join("empty.yaml");
    for text in ["", "# nothing yet\n"] {
        std::fs::write(&path, text).unwrap();
        let out = pushgate(&["check", "-c", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("empty.yaml: the file is empty"), "{stderr}");
    }
}
