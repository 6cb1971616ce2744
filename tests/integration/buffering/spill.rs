//! Temporary files go with their request: when the client leaves (during
//! its upload or its answer), when the upstream dies half way, and at
//! shutdown; counted as the gateway's open files under a temp directory of
//! the test's own (`limits.buffers.temp_dir`), which never holds a named
//! file.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::worker::{BIG, one_worker};
use super::{gateway, read_head, send_get};
use crate::common::*;

/// Open temporary files of the gateway under `dir`.
fn temp_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

pub(super) fn buffered_bytes(metrics: &str, store: &str) -> u64 {
    let name = format!("pushgate_proxy_buffered_bytes{{store=\"{store}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

#[tokio::test]
async fn temporary_files_are_gone_when_the_client_or_the_upstream_leaves() {
    let worker = one_worker().await;
    let spill = temp_dir("spill");
    let extra = format!(
        "limits:\n  buffers: {{ memory: 64KiB, temp_dir: \"{}\" }}\n",
        spill.display()
    );
    let gw = gateway(&worker, ", buffering: { memory: 16KiB }", "", &extra).await;
    // A client that leaves half way, on either engine: the answer was
    // spilled to a file, which goes with it.
    let io = send_get(&gw, "/big").await;
    eventually(10, "the answer spilled to a file", || async {
        temp_files(&spill) == 1 && worker.finished() == 1
    })
    .await;
    let metrics = gw.metrics_text().await;
    assert!(buffered_bytes(&metrics, "disk") > 0, "{metrics}");
    assert!(buffered_bytes(&metrics, "memory") <= 64 * 1024, "{metrics}");
    drop(io);
    eventually(5, "the file is gone with the client", || async {
        temp_files(&spill) == 0
    })
    .await;
    let resp = gw.http.get(gw.url("/big")).send().await.unwrap();
    eventually(10, "the answer spilled to a file", || async {
        temp_files(&spill) == 1 && worker.finished() == 2
    })
    .await;
    drop(resp);
    eventually(5, "the file is gone with the client", || async {
        temp_files(&spill) == 0
    })
    .await;
    // A client that leaves half way through its upload: the part that
    // spilled goes with it, and the application never saw it.
    let mut io = gw.tls_stream().await;
    io.write_all(
        b"POST /upload?left HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\n\r\n",
    )
    .await
    .unwrap();
    io.write_all(&vec![b'u'; 256 * 1024]).await.unwrap();
    io.flush().await.unwrap();
    eventually(10, "the upload spilled to a file", || async {
        temp_files(&spill) == 1
    })
    .await;
    drop(io);
    eventually(5, "the file is gone with the client", || async {
        temp_files(&spill) == 0
    })
    .await;
    assert!(!worker.has_seen("/upload?left"));
    // An upstream that dies half way: the client's answer is cut, and the
    // file goes.
    let mut io = send_get(&gw, "/die").await;
    let (status, _, got) = read_head(&mut io).await;
    assert_eq!(status, 200);
    eventually(10, "the answer's start spilled to a file", || async {
        temp_files(&spill) == 1
    })
    .await;
    worker.release.add_permits(1);
    let mut got = got.len();
    let cut = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let mut chunk = vec![0u8; 64 * 1024];
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(
        cut.is_ok(),
        "the gateway ends the answer, not the test's patience"
    );
    assert!(got < BIG, "the answer is cut short, never passed for whole");
    eventually(5, "no file left", || async { temp_files(&spill) == 0 }).await;
    // The same on hyper's engine.
    let resp = gw.http.get(gw.url("/die")).send().await.unwrap();
    eventually(10, "the answer's start spilled to a file", || async {
        temp_files(&spill) == 1
    })
    .await;
    worker.release.add_permits(1);
    assert!(resp.bytes().await.is_err(), "the answer is cut short");
    eventually(5, "no file left", || async { temp_files(&spill) == 0 }).await;
    let metrics = gw.metrics_text().await;
    assert_eq!(buffered_bytes(&metrics, "disk"), 0, "{metrics}");
    assert_eq!(buffered_bytes(&metrics, "memory"), 0, "{metrics}");
    let named = std::fs::read_dir(&spill).unwrap().count();
    assert_eq!(named, 0, "no file was ever left with a name");
}

#[tokio::test]
async fn a_shutdown_leaves_no_temporary_file() {
    let worker = one_worker().await;
    let spill = temp_dir("spill");
    let extra = format!(
        "limits:\n  buffers: {{ memory: 64KiB, temp_dir: \"{}\" }}\n",
        spill.display()
    );
    let mut gw = gateway(&worker, ", buffering: { memory: 16KiB }", "", &extra).await;
    // A reader that pauses past the grace period: its answer is on disk.
    let io = send_get(&gw, "/big").await;
    eventually(10, "the answer spilled to a file", || async {
        temp_files(&spill) == 1
    })
    .await;
    let handle = gw.handle.take().unwrap();
    assert!(
        !handle.shutdown(Duration::from_millis(300)).await,
        "the reader outlived the grace"
    );
    eventually(
        5,
        "the file is gone with the gateway's connections",
        || async { temp_files(&spill) == 0 },
    )
    .await;
    assert_eq!(
        std::fs::read_dir(&spill).unwrap().count(),
        0,
        "no named file left"
    );
    drop(io);
}
