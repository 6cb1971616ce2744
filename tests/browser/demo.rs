//! `pushgate demo` as a newcomer meets it: run the command, open the printed
//! URL, see agents moving on all three transports.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::Locator;

use crate::harness::Browser;

/// Kills the demo process however the test ends.
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn demo_page_shows_live_agents_on_every_transport() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .args(["demo", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("pushgate demo starts");
    let stdout = child.stdout.take().unwrap();
    let _demo = Demo(child);
    // Read the banner for the URL, and keep draining stdout after that.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("demo page:") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        }
    });
    let url = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .expect("the demo prints its page URL within 30 s")
        .expect("the demo prints its page URL");

    let b = Browser::start().await;
    let opened = tokio::time::Instant::now();
    b.client.goto(&url).await.unwrap();
    // Something moves within 10 seconds: agent cards, and a latency on each transport.
    b.until(
        10,
        "agents and a latency on each transport",
        "return document.querySelectorAll('#agents .agent').length === 6 && \
         ['websocket', 'sse', 'poll'].every((k) => /ms$/.test(document.getElementById('lat-' + k).textContent))",
    )
    .await;
    assert!(opened.elapsed() < Duration::from_secs(10));
    // The switcher changes which feed draws; the answer of send() comes back.
    b.client
        .find(Locator::Css("#switcher button[data-kind=poll]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.client
        .find(Locator::Id("send"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.until(
        10,
        "the application's answer",
        "return document.getElementById('answer').textContent.includes('hello from the demo page')",
    )
    .await;
    b.until(
        10,
        "live metrics",
        "return document.getElementById('m-done').textContent !== '–'",
    )
    .await;
    let path = b.screenshot("demo.png").await;
    eprintln!("demo screenshot: {}", path.display());
    b.finish().await;
}
