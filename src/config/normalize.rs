//! Turns a parsed, validated config into the form the rest of the gateway relies on:
//! file paths (TLS, JWT keys, upstream certificates) resolved against the config file's directory, realtime path without a
//! trailing `/`, HTTP methods uppercased, and "unset" spellings (empty strings from
//! `${X:-}`) removed so that no consumer can mistake an empty token or secret for a
//! real one.

use super::Config;
use super::schema::{BrokerKind, RedisConfig};
use std::path::{Path, PathBuf};

pub(crate) fn normalize(config: &mut Config, file: &Path) {
    let base = base_dir(file);
    if let Some(tls) = &mut config.tls {
        resolve(&base, &mut tls.cert);
        resolve(&base, &mut tls.key);
        for sni in &mut tls.sni {
            resolve(&base, &mut sni.cert);
            resolve(&base, &mut sni.key);
        }
    }
    let backends = std::iter::once(&mut config.backend).chain(config.upstreams.values_mut());
    for tls in backends.filter_map(|b| b.tls.as_mut()) {
        for path in [&mut tls.ca, &mut tls.client_cert, &mut tls.client_key]
            .into_iter()
            .flatten()
        {
            resolve(&base, path);
        }
        if tls.server_name.as_deref() == Some("") {
            tls.server_name = None;
        }
    }
    if let Some(jwt) = &mut config.auth.jwt {
        if let Some(p) = &mut jwt.rs256_public_key {
            resolve(&base, p);
        }
        if let Some(p) = &mut jwt.es256_public_key {
            resolve(&base, p);
        }
        if jwt.hs256_secret.as_deref() == Some("") {
            jwt.hs256_secret = None;
        }
    }
    if let Some(m) = &mut config.mercure {
        for key in [&mut m.publisher_jwt, &mut m.subscriber_jwt]
            .into_iter()
            .flatten()
        {
            for p in [&mut key.rs256_public_key, &mut key.es256_public_key]
                .into_iter()
                .flatten()
            {
                resolve(&base, p);
            }
            if key.hs256_secret.as_deref() == Some("") {
                key.hs256_secret = None;
            }
        }
    }
    // `temp_dir: ""` (an unset `${TMP:-}`, say) is the system's.
    let buffers = &mut config.limits.buffers;
    if buffers
        .temp_dir
        .as_ref()
        .is_some_and(|d| d.as_os_str().is_empty())
    {
        buffers.temp_dir = None;
    }
    if let Some(dir) = &mut buffers.temp_dir {
        resolve(&base, dir);
    }
    config.auth.static_tokens.retain(|t| !t.token.is_empty());
    config.auth.admin_keys.retain(|k| !k.is_empty());
    if config.auth.cookie.as_deref() == Some("") {
        config.auth.cookie = None;
    }

    let path = config.realtime.path.trim_end_matches('/').to_owned();
    config.realtime.path = path;

    for hook in &mut config.webhooks {
        hook.matcher.method = hook.matcher.method.to_ascii_uppercase();
    }
    for tap in &mut config.taps {
        if let Some(method) = &mut tap.matcher.method {
            *method = method.to_ascii_uppercase();
        }
        if let Some(status) = &mut tap.matcher.status {
            *status = status.to_ascii_lowercase();
        }
    }
    if config.broker.kind == BrokerKind::Redis && config.broker.redis.is_none() {
        config.broker.redis = Some(RedisConfig::default());
    }
    config.source = file.to_path_buf();
}

/// The directory relative paths are taken from: the config file's own directory,
/// made absolute against the current directory when possible.
fn base_dir(file: &Path) -> PathBuf {
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    file.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn resolve(base: &Path, path: &mut PathBuf) {
    if path.is_relative() {
        *path = base.join(&*path);
    }
}
