//! The step of loading that reads the disk: once the file is valid and its
//! paths are resolved against its directory (`normalize.rs`), every file and
//! directory it names is checked, so a configuration that cannot work is
//! refused at load (as nginx refuses a `proxy_temp_path` it cannot use), not
//! at the first request that needs it.
//!
//! An upstream's `tls:` PEM files are read and parsed (`upstream_tls.rs`);
//! an `https://` server without `tls.ca` needs the system's roots; a `unix:`
//! socket may be missing (the application may start later) but its
//! directory must exist, and a path that exists must be a socket; and
//! `limits.buffers.temp_dir` must be an existing directory.

use std::path::Path;

use super::error::Violation;
use super::locate::KeyPath;
use super::schema::{Backend, Config};
use super::upstream_tls::read;

/// Every problem of `c` that needs the disk. `system_roots` tells whether
/// the system offers root certificates; it is asked at most once.
pub(crate) fn check(c: &Config, system_roots: &dyn Fn() -> bool) -> Vec<Violation> {
    let mut violations = upstreams(c, system_roots);
    violations.extend(temp_dir(c));
    violations
}

/// The checks that read the disk, for every upstream: `tls:` files, the
/// system's roots when an `https://` server has no `tls.ca`, `unix:`
/// sockets. `system_roots` is asked at most once.
fn upstreams(c: &Config, system_roots: &dyn Fn() -> bool) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut roots: Option<bool> = None;
    let mut has_roots = || *roots.get_or_insert_with(system_roots);
    let root = KeyPath::root();
    let upstreams = std::iter::once((root.key("backend"), &c.backend)).chain(
        c.upstreams
            .iter()
            .map(|(name, b)| (root.key("upstreams").key(name), b)),
    );
    for (key, b) in upstreams {
        check_upstream(b, &key, &mut has_roots, &mut out);
    }
    out
}

fn check_upstream(
    b: &Backend,
    key: &KeyPath,
    has_roots: &mut dyn FnMut() -> bool,
    out: &mut Vec<Violation>,
) {
    let mut add = |key: KeyPath, message: String| out.push(Violation { key, message });
    for (at, url) in b.server_keys(key) {
        if url.scheme() == "unix" {
            if let Err(message) = check_socket(Path::new(url.path())) {
                add(at, message);
            }
        }
    }
    let https = b.servers().iter().any(|u| u.scheme() == "https");
    if !https {
        return;
    }
    let tls = b.tls.clone().unwrap_or_default();
    if let Err(e) = read(&tls) {
        add(key.key("tls").key(e.key), e.message);
    }
    if tls.ca.is_none() && !has_roots() {
        let at = match &b.tls {
            Some(_) => key.key("tls"),
            None => b.server_keys(key).remove(0).0,
        };
        add(
            at,
            "an https:// server needs tls.ca: the system offers no root certificates".into(),
        );
    }
}

/// A `unix:` path: absent in a directory that exists, or a socket.
fn check_socket(path: &Path) -> Result<(), String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(meta) if is_socket(&meta) => Ok(()),
        Ok(_) => Err(format!("{shown} exists and is not a socket")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = path.parent().unwrap_or(Path::new("/"));
            if dir.is_dir() {
                Ok(())
            } else {
                Err(format!("the directory of {shown} does not exist"))
            }
        }
        Err(e) => Err(format!("cannot inspect {shown}: {e}")),
    }
}

#[cfg(unix)]
fn is_socket(meta: &std::fs::Metadata) -> bool {
    std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type())
}

#[cfg(not(unix))]
fn is_socket(_: &std::fs::Metadata) -> bool {
    false
}

/// The problems of `limits.buffers` that need the disk, once paths are
/// resolved: as nginx refuses a `proxy_temp_path` it cannot use, at load,
/// not at the first large body.
fn temp_dir(c: &Config) -> Vec<Violation> {
    match &c.limits.buffers.temp_dir {
        Some(dir) if !dir.is_dir() => vec![Violation {
            key: KeyPath::root().key("limits").key("buffers").key("temp_dir"),
            message: format!(
                "{} must be an existing directory (omit it for the system's)",
                dir.display()
            ),
        }],
        _ => Vec::new(),
    }
}
