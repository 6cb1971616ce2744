//! Configuration: `gateway.yaml` read, `${ENV}`-interpolated, parsed into typed
//! sections, validated, and the files it names checked, in that order (`load` →
//! `parse` → `validate` → `files` → `Config`).
//! The rule it keeps: a bad file never half-loads. Every problem comes back as a
//! `ConfigError` naming the file, the 1-based line and the dotted key path, all
//! validation problems at once, and no message ever contains a secret or a value
//! that came from the environment. An empty file (or one of only comments) is an
//! error, never the all-defaults configuration: it is what a file caught
//! mid-write looks like. What a reload additionally requires is in `sections`.

mod access;
mod buffering;
mod error;
mod files;
mod interpolate;
mod lenient;
mod locate;
mod mercure;
mod normalize;
mod pusher;
mod queue;
mod routes;
mod rules;
mod schema;
mod sections;
mod session;
mod summary;
mod units;
pub use units::MAX_DURATION;
mod upstream_tls;
mod validate;

#[cfg(test)]
mod tests;

pub use access::{Auth, Jwt, Limits, PerClient, PerIp, StaticToken};
pub use buffering::{BufferLimits, Buffering, RouteBuffering};
pub use error::{ConfigError, ConfigErrors};
pub use mercure::{Discovery, Mercure, MercureKey, TopicChannel};
pub use pusher::{Pusher, PusherApp, PusherWebhook, USER_HUB_PREFIX, WEBHOOK_EVENTS};
pub use queue::{ConnLimit, Queue};
pub use routes::{DEFAULT_UPSTREAM, Route};
pub use rules::{
    ChannelRule, ClientMessages, HistoryOverride, HmacVerify, PublishBy, SlowClient, Subscribe,
    Tap, TapMatch, Verify, Webhook, WebhookMatch,
};
pub use schema::{
    Backend, Balance, BrokerConfig, BrokerKind, Compression, Config, Health, History, Listen, Log,
    LogFormat, Realtime, RedisConfig, SniCert, Tls,
};
pub use sections::Sections;
pub use session::{PerAddress, ResourceCheck, SessionAuth, check_placeholders, split_check};
pub use units::{Rate, RateLimit, format_duration, parse_duration, parse_size};
pub use upstream_tls::{
    TlsFileError, TlsMaterial, UpstreamTls, read as read_upstream_tls, system_roots_usable,
};

use interpolate::{Env, Problem, Substitution};
use locate::{KeyPath, line_of};
use serde_yaml::Value;
use std::path::Path;

/// Reads `path`, interpolates the environment, parses and validates.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_sections(path).map(|(config, _)| config)
}

/// [`load`], also telling which top-level sections the file wrote out (what a
/// reload checks before it lets a section fall back to defaults).
pub fn load_with_sections(path: &Path) -> Result<(Config, Sections), ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        file: path.display().to_string(),
        reason: e.to_string(),
    })?;
    parse_document(
        &text,
        path,
        &|name| std::env::var(name).ok(),
        &system_roots_usable,
    )
}

/// Like [`load`] from text already read; `file` names the source in messages and is
/// the base for relative paths in the config.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
    parse_with_env(text, file, &|name| std::env::var(name).ok())
}

/// [`parse`] with an explicit environment (tests must not mutate the process env).
pub(crate) fn parse_with_env(
    text: &str,
    file: &Path,
    env: Env<'_>,
) -> Result<Config, ConfigErrors> {
    parse_document(text, file, env, &system_roots_usable).map(|(config, _)| config)
}

/// [`parse_with_env`] on a system whose root certificates are `roots()`
/// (tests of the `https://` checks must not depend on the host's store).
#[cfg(test)]
pub(crate) fn parse_with_roots(
    text: &str,
    file: &Path,
    env: Env<'_>,
    roots: &dyn Fn() -> bool,
) -> Result<Config, ConfigErrors> {
    parse_document(text, file, env, roots).map(|(config, _)| config)
}

fn parse_document(
    text: &str,
    file: &Path,
    env: Env<'_>,
    system_roots: &dyn Fn() -> bool,
) -> Result<(Config, Sections), ConfigErrors> {
    let name = file.display().to_string();

    let mut value: Value = serde_yaml::from_str(text).map_err(|e| {
        let line = e.location().map_or(1, |l| l.line());
        ConfigError::Syntax {
            file: name.clone(),
            line,
            message: syntax_message(&e.to_string(), text, line),
        }
    })?;
    if value.is_null() {
        return Err(ConfigError::Empty { file: name }.into());
    }
    let sections = Sections::of(&value, text);

    let (subs, problems) = interpolate::interpolate(&mut value, env);
    if !problems.is_empty() {
        let errors = problems
            .into_iter()
            .map(|(key, problem)| {
                let (file, line, key_text) = (name.clone(), line_of(text, &key), key.to_string());
                match problem {
                    Problem::Unset { var } => ConfigError::UnsetVar {
                        file,
                        line,
                        key: key_text,
                        var,
                    },
                    Problem::Malformed { message } => ConfigError::Interpolation {
                        file,
                        line,
                        key: key_text,
                        message,
                    },
                }
            })
            .collect();
        return Err(ConfigErrors(sorted(errors)));
    }

    let mut config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
        let key = KeyPath::from_serde(e.path());
        let message = e.into_inner().to_string();
        ConfigError::Schema {
            file: name.clone(),
            line: line_of(text, &key),
            message: hide(message, &key, &subs),
            key: key.to_string(),
        }
    })?;

    let invalid = |violations: Vec<error::Violation>| {
        let errors = violations
            .into_iter()
            .map(|v| ConfigError::Invalid {
                file: name.clone(),
                line: line_of(text, &v.key),
                message: hide(v.message, &v.key, &subs),
                key: v.key.to_string(),
            })
            .collect();
        ConfigErrors(sorted(errors))
    };
    let violations = validate::validate(&config);
    if !violations.is_empty() {
        return Err(invalid(violations));
    }

    normalize::normalize(&mut config, file);
    // What needs the disk, with paths resolved: upstream certificates, sockets.
    let violations = files::check(&config, system_roots);
    if !violations.is_empty() {
        return Err(invalid(violations));
    }
    Ok((config, sections))
}

/// Keeps secrets and environment-provided values out of a message about `key`.
fn hide(message: String, key: &KeyPath, subs: &[Substitution]) -> String {
    let message = interpolate::redact(message, key, subs);
    if !is_secret(key) {
        return message;
    }
    match message.find("expected") {
        Some(at) => format!("invalid value (not shown), {}", &message[at..]),
        None => "invalid value (not shown)".to_owned(),
    }
}

/// Keys whose values are credentials.
fn is_secret(key: &KeyPath) -> bool {
    let under_admin_keys = key
        .0
        .iter()
        .any(|s| matches!(s, locate::Seg::Key(k) if k == "admin_keys"));
    under_admin_keys || matches!(key.last_key(), Some("hs256_secret" | "secret" | "token"))
}

fn sorted(mut errors: Vec<ConfigError>) -> Vec<ConfigError> {
    errors.sort_by_key(|e| e.line());
    errors
}

/// The parser's message without its positions, plus a hint for the classic mistake
/// of an unquoted `${...}` inside `[ ]` or `{ }` (where `{`/`}` are YAML syntax).
fn syntax_message(raw: &str, text: &str, line: usize) -> String {
    let mut message = strip_positions(raw);
    let near = text
        .lines()
        .skip(line.saturating_sub(2))
        .take(2)
        .any(|l| l.contains("${"));
    if near && message.contains("flow") {
        message.push_str(" (inside [ ] or { }, quote interpolations: \"${NAME}\")");
    }
    message
}

/// Drops the parser's own " at line L column C" / " at position N" notes: the line is
/// already in front of every message.
fn strip_positions(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" at ") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 4..];
        if let Some(after) = skip_position(tail) {
            rest = after;
        } else {
            out.push_str(" at ");
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// If `s` starts with `line N column M` or `position N`, what follows it.
fn skip_position(s: &str) -> Option<&str> {
    fn number(s: &str) -> Option<&str> {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        (digits > 0).then(|| &s[digits..])
    }
    if let Some(s) = s.strip_prefix("line ") {
        let s = number(s)?;
        return number(s.strip_prefix(" column ")?);
    }
    number(s.strip_prefix("position ")?)
}
