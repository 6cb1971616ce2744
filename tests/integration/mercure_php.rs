//! The real `symfony/mercure` PHP publisher (Debian's `php-cli` and
//! `php-symfony-mercure`, installed by `scripts/test`) publishing to the
//! gateway over TLS, public and private, read by real SSE subscribers.

use std::time::Duration;

use serde_json::json;

use crate::common::TestGateway;
use crate::mercure::{PUB_SECRET, SUB_SECRET, hub, q, sign, subscribe};

/// Publish with `tests/php/mercure_publish.php`; the id the hub answered.
async fn php_publish(gw: &TestGateway, topic: &str, data: &str, private: bool) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/php/mercure_publish.php");
    let mut cmd = tokio::process::Command::new("php");
    cmd.arg(script)
        .arg(gw.url("/.well-known/mercure"))
        .arg(gw.dir.join("gw.crt"))
        .arg(PUB_SECRET)
        .arg(topic)
        .arg(data)
        .kill_on_drop(true);
    if private {
        cmd.arg("private");
    }
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("php finished")
        .expect("php-cli is installed (scripts/test installs php-cli php-symfony-mercure)");
    assert!(
        out.status.success(),
        "the symfony/mercure publisher failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn the_symfony_mercure_php_publisher_publishes_public_and_private() {
    let gw = hub().await;
    let topic = "https://example.com/books/1";
    let reader = sign(json!({"mercure": {"subscribe": [topic]}}), SUB_SECRET);
    let sel = q(&[("topic", topic)]);
    let mut anonymous = subscribe(&gw, &sel, None, None).await;
    let mut allowed = subscribe(&gw, &sel, Some(&reader), None).await;

    let secret = php_publish(&gw, topic, "{\"title\":\"secret\"}", true).await;
    let public = php_publish(&gw, topic, "{\"title\":\"public\"}", false).await;
    assert!(
        secret.starts_with('#') && public.starts_with('#'),
        "{secret} {public}"
    );
    assert_ne!(secret, public);

    let ev = allowed.expect().await;
    assert_eq!(
        (ev.id.as_ref(), ev.data.as_str()),
        (Some(&secret), "{\"title\":\"secret\"}")
    );
    let ev = allowed.expect().await;
    assert_eq!(
        (ev.id.as_ref(), ev.data.as_str()),
        (Some(&public), "{\"title\":\"public\"}")
    );
    let ev = anonymous.expect().await;
    assert_eq!(
        (ev.id.as_ref(), ev.data.as_str()),
        (Some(&public), "{\"title\":\"public\"}"),
        "the private update never reached the anonymous subscriber"
    );
}
