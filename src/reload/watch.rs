//! Noticing that the config file changed, and waiting until it is done
//! changing.
//!
//! The directory is watched, not the file: editors and config tools save by
//! writing a temporary file and renaming it into place, which a watch on the
//! old inode would miss. A change event only starts the wait: the file is read
//! once its size and mtime hold still across one interval and it is non-empty,
//! because `> file`, `scp` and slow writers leave it empty or partial for a
//! while. An empty or missing file is not loaded at all; its writer's next
//! write is another event.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tracing::warn;

use super::Trigger;

/// How long a file must hold still before it is read.
pub(super) const SETTLE_INTERVAL: Duration = Duration::from_millis(250);

/// How a wait for the file to settle ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Settled {
    /// Non-empty and unchanged across an interval: read it.
    Ready,
    /// Unchanged across an interval but empty or missing: do not read it.
    Unreadable,
    /// A SIGHUP arrived meanwhile: the operator says it is ready.
    Signal,
}

/// What identifies one state of the file: size, mtime and (on Unix) inode.
#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode,
    })
}

/// Wait until `path` holds still for `interval`, swallowing the change events
/// that arrive meanwhile on `rx`.
pub(super) async fn settle(
    path: &Path,
    interval: Duration,
    rx: &mut mpsc::Receiver<Trigger>,
) -> Settled {
    loop {
        let before = stamp(path);
        let wait = tokio::time::sleep(interval);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                t = rx.recv() => match t {
                    Some(Trigger::Signal) => return Settled::Signal,
                    Some(Trigger::FileChanged) => {}
                    None => {
                        (&mut wait).await;
                        break;
                    }
                },
            }
        }
        let after = stamp(path);
        if before == after {
            return match after {
                Some(s) if s.len > 0 => Settled::Ready,
                _ => Settled::Unreadable,
            };
        }
    }
}

/// Watch the file's directory and send `trigger` when an entry named like the
/// file is created, written, closed after writing or renamed into place.
pub(super) fn watch_file<T: Clone + Send + 'static>(
    path: &Path,
    tx: mpsc::Sender<T>,
    trigger: T,
) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let name = path.file_name()?.to_os_string();
    // What a symlinked config points at: its own name and directory change.
    let target = std::fs::canonicalize(path).ok();
    let target_name = target
        .as_ref()
        .and_then(|t| t.file_name())
        .map(|n| n.to_os_string());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let relevant = matches!(
            event.kind,
            EventKind::Create(_)
                | EventKind::Modify(_)
                | EventKind::Access(notify::event::AccessKind::Close(
                    notify::event::AccessMode::Write
                ))
        ) && event.paths.iter().any(|p| {
            // `..data`: Kubernetes swaps a mounted ConfigMap by renaming a
            // fresh `..data` symlink into place; the file itself never
            // changes name.
            p.file_name() == Some(name.as_os_str())
                || p.file_name() == Some(std::ffi::OsStr::new("..data"))
                || (p.file_name().is_some() && p.file_name() == target_name.as_deref())
        });
        if relevant {
            let _ = tx.try_send(trigger.clone());
        }
    })
    .map_err(|error| warn!(%error, "cannot watch the config file; reload with SIGHUP"))
    .ok()?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|error| warn!(%error, "cannot watch the config file; reload with SIGHUP"))
        .ok()?;
    // A config that is a symlink into another directory changes there: watch
    // that directory too (best effort; the file's own directory still counts).
    if let Some(target_dir) = target
        .as_ref()
        .and_then(|t| t.parent().map(Path::to_path_buf))
        .filter(|t| std::fs::canonicalize(&dir).ok().as_ref() != Some(t))
    {
        if let Err(error) = watcher.watch(&target_dir, RecursiveMode::NonRecursive) {
            warn!(%error, dir = %target_dir.display(), "cannot watch the config file's target directory");
        }
    }
    Some(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::time::Instant;

    /// A `gateway.yaml` holding `text` in a fresh directory, removed when
    /// the guard drops.
    fn temp_file(tag: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix(&format!("pushgate-watch-{tag}-"))
            .tempdir()
            .unwrap();
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[tokio::test(start_paused = true)]
    async fn a_still_file_is_ready_after_one_interval() {
        let (_dir, path) = temp_file("still", "listen: {}\n");
        let (_tx, mut rx) = mpsc::channel(8);
        let start = Instant::now();
        assert_eq!(
            settle(&path, SETTLE_INTERVAL, &mut rx).await,
            Settled::Ready
        );
        assert_eq!(start.elapsed(), SETTLE_INTERVAL);
    }

    #[tokio::test(start_paused = true)]
    async fn a_growing_file_is_waited_for() {
        let (_dir, path) = temp_file("growing", "listen: {}\n");
        let (_tx, mut rx) = mpsc::channel(8);
        let start = Instant::now();
        let task = {
            let path = path.clone();
            tokio::spawn(async move { settle(&path, SETTLE_INTERVAL, &mut rx).await })
        };
        tokio::task::yield_now().await; // the first look at the file is taken
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"channels: []\n").unwrap();
        drop(f);
        assert_eq!(task.await.unwrap(), Settled::Ready);
        assert_eq!(start.elapsed(), 2 * SETTLE_INTERVAL, "one more interval");
    }

    #[tokio::test(start_paused = true)]
    async fn empty_or_missing_files_are_not_read_and_sighup_cuts_the_wait() {
        let (tx, mut rx) = mpsc::channel(8);
        let (_dir, empty) = temp_file("empty", "");
        assert_eq!(
            settle(&empty, SETTLE_INTERVAL, &mut rx).await,
            Settled::Unreadable
        );
        let missing = empty.with_file_name("absent.yaml");
        assert_eq!(
            settle(&missing, SETTLE_INTERVAL, &mut rx).await,
            Settled::Unreadable
        );
        tx.send(Trigger::FileChanged).await.unwrap();
        tx.send(Trigger::Signal).await.unwrap();
        let start = Instant::now();
        assert_eq!(
            settle(&empty, SETTLE_INTERVAL, &mut rx).await,
            Settled::Signal
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
