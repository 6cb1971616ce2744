//! A config file caught mid-write is never applied: an empty file, a file that
//! lost a section the running configuration has, or admin keys that vanished
//! are refused with the old configuration left in force; the file watcher
//! waits out a truncate-then-write and applies the finished file. Writing a
//! section out empty (`channels: []`) is a choice and is applied.

use serde_json::{Value, json};

use crate::common::*;

const KEY: &str = "reload-admin-key";

async fn gateway() -> TestGateway {
    TestGateway::builder().admin_key(KEY).start().await
}

/// The running file with its `channels:` section (and every rule under it) cut out.
fn without_channels(text: &str) -> String {
    let mut out = String::new();
    let mut in_channels = false;
    for line in text.lines() {
        if line == "channels:" {
            in_channels = true;
            continue;
        }
        if in_channels && line.starts_with("  - ") {
            continue;
        }
        in_channels = false;
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `pushgate_reloads_total{result="…"}`, 0 when not yet counted.
async fn reloads(gw: &TestGateway, result: &str) -> u64 {
    let prefix = format!("pushgate_reloads_total{{result=\"{result}\"}} ");
    gw.http
        .get(gw.admin_url("/metrics"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0)
}

async fn publish(gw: &TestGateway, channel: &str, data: Value) {
    let r = gw
        .http
        .post(gw.admin_url("/publish"))
        .bearer_auth(KEY)
        .json(&json!({"channel": channel, "data": data}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Status of an admin request made without the key.
async fn keyless_admin_status(gw: &TestGateway) -> u16 {
    let r = gw.http.get(gw.admin_url("/stats")).send().await.unwrap();
    r.status().as_u16()
}

#[tokio::test]
async fn an_empty_file_is_refused_and_the_admin_key_stays_required() {
    let gw = gateway().await;
    let mut sse = gw.sse("/realtime/sse?channels=public.keep", None).await;
    let good = std::fs::read_to_string(gw.config_path()).unwrap();
    for empty in ["", "\n  \n", "# being written\n"] {
        std::fs::write(gw.config_path(), empty).unwrap();
        let err = gw.reload().unwrap_err();
        assert!(
            err.to_string().contains("gateway.yaml: the file is empty"),
            "{err}"
        );
    }
    // Keys that vanish through an unset variable are refused too.
    let unset = good.replace(&format!("\"{KEY}\""), "\"${PUSHGATE_TEST_UNSET_KEY:-}\"");
    std::fs::write(gw.config_path(), unset).unwrap();
    let err = gw.reload().unwrap_err();
    assert!(err.to_string().contains("auth.admin_keys"), "{err}");

    assert_eq!(
        keyless_admin_status(&gw).await,
        401,
        "the key is still required"
    );
    publish(&gw, "public.keep", json!("still subscribed")).await;
    assert_eq!(sse.expect().await.json()["data"], "still subscribed");

    // Opening the admin listener is possible, but only when written out.
    std::fs::write(gw.config_path(), good.replace(&format!("\"{KEY}\""), "")).unwrap();
    gw.reload().unwrap();
    assert_eq!(keyless_admin_status(&gw).await, 200);
}

#[tokio::test]
async fn a_lost_channels_section_is_refused_and_an_explicit_empty_list_applies() {
    let gw = gateway().await;
    let mut sse = gw.sse("/realtime/sse?channels=public.keep", None).await;
    let good = std::fs::read_to_string(gw.config_path()).unwrap();
    let lost = without_channels(&good);
    assert!(!lost.contains("channels:") && !lost.contains("public.*"));
    std::fs::write(gw.config_path(), &lost).unwrap();
    let err = gw.reload().unwrap_err();
    assert!(err.to_string().contains("gateway.yaml: channels:"), "{err}");
    assert!(
        err.to_string().contains("channels: []"),
        "says how to mean it: {err}"
    );
    let ready: Value = gw.admin_get("/readyz").await;
    assert_eq!(ready["last_reload_failed"], true);
    publish(&gw, "public.keep", json!("kept")).await;
    assert_eq!(sse.expect().await.json()["data"], "kept");

    std::fs::write(gw.config_path(), format!("{lost}channels: []\n")).unwrap();
    gw.reload().unwrap();
    let ev = sse.expect().await;
    assert_eq!(ev.event, "error", "the operator removed every rule: {ev:?}");
    let r = gw
        .http
        .get(gw.url("/realtime/poll?channels=public.new&timeout=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn truncate_then_write_keeps_subscriptions_and_applies_the_finished_file() {
    let gw = gateway().await;
    pushgate::reload::spawn(gw.state().clone(), gw.config_path());
    let mut sse = gw.sse("/realtime/sse?channels=public.keep", None).await;
    let good = std::fs::read_to_string(gw.config_path()).unwrap();

    // `> gateway.yaml`: the file is empty until its writer comes back.
    std::fs::File::create(gw.config_path()).unwrap();
    // The watcher waits ("deferred"); a SIGHUP meanwhile (the signal test in
    // this process sends them) loads at once and is refused ("failed").
    // Either way nothing is applied.
    eventually(10, "the watcher sees the empty file and waits", || async {
        reloads(&gw, "deferred").await + reloads(&gw, "failed").await >= 1
    })
    .await;
    assert_eq!(reloads(&gw, "ok").await, 0, "nothing was applied");
    assert_eq!(keyless_admin_status(&gw).await, 401);
    publish(&gw, "public.keep", json!("survived")).await;
    assert_eq!(sse.expect().await.json()["data"], "survived");

    // The writer finishes, with one new rule.
    let finished = good.replace(
        "channels:\n",
        r#"channels:
  - { pattern: "news.*", subscribe: anyone }
"#,
    );
    std::fs::write(gw.config_path(), finished).unwrap();
    eventually(10, "the finished file is applied", || async {
        gw.poll_status("channels=news.a").await == 200
    })
    .await;
    publish(&gw, "public.keep", json!("after")).await;
    assert_eq!(sse.expect().await.json()["data"], "after");
}
