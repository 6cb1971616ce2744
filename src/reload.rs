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
//!
//! A file caught mid-write is never applied: the watcher waits until the file
//! is non-empty and its size and mtime hold still (`watch.rs`), an empty file
//! is a load error, and a file that lacks a section the running configuration
//! has (or its admin keys) is refused unless it writes the key out
//! (`config::Sections`). SIGHUP loads at once: the operator says it is ready.

mod watch;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

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
    let running = state.settings();
    let result = config::load_with_sections(path)
        .and_then(|(cfg, sections)| {
            let refusals = sections.refusals(&running.config, &cfg, path);
            if refusals.is_empty() {
                Ok(cfg)
            } else {
                Err(config::ConfigErrors(refusals))
            }
        })
        .map_err(ReloadError::Config)
        .and_then(|cfg| Settings::new(cfg, &state.lifecycle).map_err(ReloadError::from));
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
            let old = running;
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
            // The first app with a webhook may have come with this reload.
            state.start_pusher_webhooks();
            state.reloaded.ring();
            state.metrics.reloads.get_or_create(&label("ok")).inc();
            state.stats.reload_failed.store(false, Ordering::Relaxed);
            info!(file = %path.display(), "configuration reloaded");
            Ok(())
        }
    }
}

/// What asked for a reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    /// SIGHUP: the operator says the file is ready; load it now.
    Signal,
    /// The file or its directory entry changed: wait for it to settle first.
    FileChanged,
}

/// Reload on SIGHUP and whenever the file changes (once it has settled), until
/// the gateway drains. The watch is registered before this returns.
pub fn spawn(state: AppState, path: PathBuf) {
    let (tx, mut rx) = mpsc::channel::<Trigger>(8);
    let watcher = watch::watch_file(&path, tx.clone(), Trigger::FileChanged);
    let lifecycle = state.lifecycle.clone();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let tx = tx.clone();
        // Registered before returning, so a SIGHUP right after start reloads
        // instead of taking the default action (terminate).
        let hup = signal(SignalKind::hangup());
        if let Err(error) = &hup {
            warn!(%error, "cannot listen for SIGHUP; reload by editing the file");
        }
        lifecycle.spawn_until_drain(async move {
            let Ok(mut hup) = hup else { return };
            while hup.recv().await.is_some() {
                if tx.send(Trigger::Signal).await.is_err() {
                    return;
                }
            }
        });
    }
    lifecycle.spawn_until_drain(async move {
        let _watcher = watcher; // dropping it stops the watch
        while let Some(trigger) = rx.recv().await {
            if trigger == Trigger::FileChanged {
                let settled = watch::settle(&path, watch::SETTLE_INTERVAL, &mut rx).await;
                if settled == watch::Settled::Unreadable {
                    // Empty or gone: a writer is mid-way (truncate, then
                    // write); its next write is another change event.
                    info!(file = %path.display(), "config file is empty or missing; waiting for it to be written before reloading");
                    state
                        .metrics
                        .reloads
                        .get_or_create(&ResultLabel { result: "deferred" })
                        .inc();
                    continue;
                }
            }
            let _ = reload(&state, &path);
        }
    });
}
