//! Live reload: SIGHUP or a change of the config file puts a new
//! configuration in force without dropping a connection.
//!
//! The new file goes through the same load → validate → build path as at
//! startup; any error refuses it whole (logged with file and line, counted,
//! and shown by `/readyz`) and the old settings stay. On success the settings
//! are swapped in one step and every live session re-checks its
//! subscriptions against the new channel rules, closing only those no longer
//! allowed. Certificates are re-read, so a renewed certificate serves the next
//! handshake. Listener addresses and the broker kind need a restart: a change
//! to them is logged, not half-applied.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::config;
use crate::metrics::ResultLabel;
use crate::state::{AppState, Settings, SettingsError};

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(config::ConfigErrors),
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

/// Load `path` and put it in force, or refuse it and keep the old settings.
pub fn reload(state: &AppState, path: &Path) -> Result<(), ReloadError> {
    let result = config::load(path)
        .map_err(ReloadError::Config)
        .and_then(|cfg| Settings::new(cfg).map_err(ReloadError::from));
    let label = |result| ResultLabel { result };
    match result {
        Err(e) => {
            for line in e.to_string().lines() {
                error!(error = %line, "configuration reload refused; the previous configuration stays in force");
            }
            state.metrics.reloads.get_or_create(&label("failed")).inc();
            state.stats.reload_failed.store(true, Ordering::Relaxed);
            Err(e)
        }
        Ok(new) => {
            let old = state.settings();
            if old.config.listen.public != new.config.listen.public
                || old.config.listen.admin != new.config.listen.admin
            {
                warn!(
                    "listen addresses changed: restart pushgate to apply them; everything else is applied now"
                );
            }
            if old.config.broker.kind != new.config.broker.kind {
                warn!(
                    "broker.kind changed: restart pushgate to apply it; everything else is applied now"
                );
            }
            state.replace_settings(new);
            state.reloaded.ring();
            state.metrics.reloads.get_or_create(&label("ok")).inc();
            state.stats.reload_failed.store(false, Ordering::Relaxed);
            info!(file = %path.display(), "configuration reloaded");
            Ok(())
        }
    }
}

/// Reload on SIGHUP and whenever the file changes (debounced), until shutdown.
pub fn spawn(state: AppState, path: PathBuf) {
    let (tx, mut rx) = mpsc::channel::<()>(8);
    let watcher = watch_file(&path, tx.clone());
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let tx = tx.clone();
        let shutdown = state.shutdown.clone();
        // Registered before returning, so a SIGHUP right after start reloads
        // instead of taking the default action (terminate).
        let hup = signal(SignalKind::hangup());
        if let Err(error) = &hup {
            warn!(%error, "cannot listen for SIGHUP; reload by editing the file");
        }
        tokio::spawn(async move {
            let Ok(mut hup) = hup else { return };
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = hup.recv() => if r.is_none() || tx.send(()).await.is_err() { return },
                }
            }
        });
    }
    tokio::spawn(async move {
        let _watcher = watcher; // dropping it stops the watch
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                r = rx.recv() => if r.is_none() { return },
            }
            // Editors write a file in several steps: wait for them to settle.
            tokio::time::sleep(Duration::from_millis(300)).await;
            while rx.try_recv().is_ok() {}
            let _ = reload(&state, &path);
        }
    });
}

/// Watch the file's directory (editors and certbot replace files by rename).
fn watch_file(path: &Path, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let name = path.file_name()?.to_os_string();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let relevant = matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_))
            && event
                .paths
                .iter()
                .any(|p| p.file_name() == Some(name.as_os_str()));
        if relevant {
            let _ = tx.try_send(());
        }
    })
    .map_err(|error| warn!(%error, "cannot watch the config file; reload with SIGHUP"))
    .ok()?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|error| warn!(%error, "cannot watch the config file; reload with SIGHUP"))
        .ok()?;
    Some(watcher)
}
