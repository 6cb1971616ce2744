//! Which top-level sections a file wrote out, as opposed to left to their
//! defaults, and the reload rule built on it.
//!
//! A file caught half-written (truncated by `> file`, `scp`, an editor) parses
//! as a valid configuration with whole sections missing; applied, it would
//! drop every channel rule, the backend and the admin keys at once. So a
//! reload refuses to let a section that is in force fall back to defaults
//! because the new file merely lacks it: the operator must write the key out
//! (`channels: []`, `backend: {}`, `tls: ~`) to mean it. Admin keys are the
//! sharpest case: keys in force never disappear unless the new file says
//! `admin_keys: []` under `auth:`. A key left with no value at all
//! (`channels:` and nothing after it, as a cut right after a key leaves it)
//! counts as not written: `~` or `null` must be written to mean "none".

use std::collections::BTreeSet;
use std::path::Path;

use serde_yaml::Value;

use super::error::ConfigError;
use super::schema::Config;

/// The top-level keys a file wrote, plus whether it wrote `auth.admin_keys: []`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sections {
    keys: BTreeSet<String>,
    no_admin_keys: bool,
}

impl Sections {
    /// What the raw (not yet interpolated) YAML document, parsed from
    /// `text`, writes out.
    pub(crate) fn of(doc: &Value, text: &str) -> Sections {
        let Some(map) = doc.as_mapping() else {
            return Sections::default();
        };
        let keys = map
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?, v)))
            .filter(|(k, v)| !v.is_null() || !left_without_value(text, k))
            .map(|(k, _)| k.to_owned())
            .collect();
        let no_admin_keys = doc
            .get("auth")
            .and_then(|auth| auth.get("admin_keys"))
            .and_then(Value::as_sequence)
            .is_some_and(|keys| keys.is_empty());
        Sections {
            keys,
            no_admin_keys,
        }
    }

    /// Whether the file wrote the top-level key `name`.
    pub fn has(&self, name: &str) -> bool {
        self.keys.contains(name)
    }

    /// A file with neither `listen` nor `channels` configures nothing a
    /// gateway is for: at first start it runs on defaults with a warning, on
    /// reload it is refused as probably half-written.
    pub fn is_unconfigured(&self) -> bool {
        !self.has("listen") && !self.has("channels")
    }

    /// The problems that make `new` (read from `file`, which wrote `self`)
    /// unfit to replace `running`; empty when the reload may go ahead.
    pub fn refusals(&self, running: &Config, new: &Config, file: &Path) -> Vec<ConfigError> {
        let file_name = file.display().to_string();
        let refuse = |key: &str, message: String| ConfigError::Reload {
            file: file_name.clone(),
            key: key.to_owned(),
            message,
        };
        let mut out = Vec::new();
        if self.is_unconfigured() {
            out.push(refuse(
                "listen",
                "the new file sets neither `listen` nor `channels`; it looks half-written, so it is not applied".to_owned(),
            ));
        }
        for &(key, explicit) in SECTIONS {
            if !self.has(key) && in_force(running, key) {
                out.push(refuse(
                    key,
                    format!(
                        "this section is in force but missing from the new file; write `{key}: {explicit}` to drop it on purpose"
                    ),
                ));
            }
        }
        let had_keys = !running.auth.admin_keys.is_empty();
        if had_keys && new.auth.admin_keys.is_empty() && !self.no_admin_keys {
            out.push(refuse(
                "auth.admin_keys",
                "admin keys are in force and the new file has none (an unset variable?); write `admin_keys: []` under `auth:` to open the admin listener to loopback on purpose".to_owned(),
            ));
        }
        out
    }
}

/// Whether the top-level `key` stands in `text` with nothing after its
/// colon (no `~`, no `null`, no flow value): YAML reads that as null too, but
/// it is what a file cut right after the key looks like.
fn left_without_value(text: &str, key: &str) -> bool {
    text.lines().any(|line| {
        line.strip_prefix(key)
            .and_then(|rest| rest.trim_end().strip_prefix(':'))
            .is_some_and(|value| {
                let value = value.trim();
                value.is_empty() || value.starts_with('#')
            })
    })
}

/// Every top-level section, with how to write it out empty.
const SECTIONS: &[(&str, &str)] = &[
    ("listen", "{}"),
    ("tls", "~"),
    ("backend", "{}"),
    ("upstreams", "{}"),
    ("routes", "[]"),
    ("realtime", "{}"),
    ("auth", "{}"),
    ("channels", "[]"),
    ("limits", "{}"),
    ("webhooks", "[]"),
    ("taps", "[]"),
    ("client_messages", "~"),
    ("pusher", "~"),
    ("mercure", "~"),
    ("broker", "{}"),
    ("log", "{}"),
];

/// Whether `config`'s section `key` holds something other than its default,
/// so that leaving it out of a new file would change what is in force.
fn in_force(config: &Config, key: &str) -> bool {
    let mut d = Config::default();
    super::normalize::normalize(&mut d, &config.source);
    match key {
        "listen" => config.listen != d.listen,
        "tls" => config.tls.is_some(),
        "backend" => config.backend != d.backend,
        "upstreams" => !config.upstreams.is_empty(),
        "routes" => !config.routes.is_empty(),
        "realtime" => config.realtime != d.realtime,
        "auth" => config.auth != d.auth,
        "channels" => !config.channels.is_empty(),
        "limits" => config.limits != d.limits,
        "webhooks" => !config.webhooks.is_empty(),
        "taps" => !config.taps.is_empty(),
        "client_messages" => config.client_messages.is_some(),
        "pusher" => config.pusher.is_some(),
        "mercure" => config.mercure.is_some(),
        "broker" => config.broker != d.broker,
        "log" => config.log != d.log,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_with_env;

    fn load(text: &str) -> (Config, Sections) {
        let file = Path::new("/etc/pushgate/gateway.yaml");
        let c = parse_with_env(text, file, &|_| None).unwrap();
        let doc: Value = serde_yaml::from_str(text).unwrap();
        (c, Sections::of(&doc, text))
    }

    fn refused_keys(running: &str, new: &str) -> Vec<String> {
        let (old, _) = load(running);
        let (cfg, sections) = load(new);
        sections
            .refusals(&old, &cfg, &cfg.source)
            .iter()
            .filter_map(|e| e.key().map(str::to_owned))
            .collect()
    }

    const RUNNING: &str = "listen: { public: 127.0.0.1:8443 }\n\
        backend: { url: http://127.0.0.1:3000 }\n\
        auth: { admin_keys: [k1] }\n\
        channels: [{ pattern: \"a.*\", subscribe: anyone }]\n\
        webhooks: [{ name: w, match: { path: /h }, channel: a.b, data: \"{body}\" }]\n";

    #[test]
    fn routes_and_upstreams_in_force_must_be_dropped_in_writing() {
        let routed = "listen: {}\nchannels: []\n\
            upstreams: { api: { url: http://127.0.0.1:3001 } }\n\
            routes: [{ path: /v2/, upstream: api }]\n";
        assert_eq!(
            refused_keys(routed, "listen: {}\nchannels: []\n"),
            ["upstreams", "routes"]
        );
        let dropped = "listen: {}\nchannels: []\nupstreams: {}\nroutes: []\n";
        assert!(refused_keys(routed, dropped).is_empty());
    }

    #[test]
    fn a_section_in_force_cannot_vanish_silently() {
        let without_channels =
            RUNNING.replace("channels: [{ pattern: \"a.*\", subscribe: anyone }]\n", "");
        assert_eq!(refused_keys(RUNNING, &without_channels), ["channels"]);
        let without_webhooks = RUNNING.lines().take(4).collect::<Vec<_>>().join("\n");
        assert_eq!(refused_keys(RUNNING, &without_webhooks), ["webhooks"]);
        let without_backend = RUNNING.replace("backend: { url: http://127.0.0.1:3000 }\n", "");
        assert_eq!(refused_keys(RUNNING, &without_backend), ["backend"]);
    }

    #[test]
    fn writing_a_section_out_empty_is_a_choice() {
        let explicit = RUNNING
            .replace(
                "channels: [{ pattern: \"a.*\", subscribe: anyone }]",
                "channels: []",
            )
            .replace(
                "webhooks: [{ name: w, match: { path: /h }, channel: a.b, data: \"{body}\" }]",
                "webhooks: []",
            );
        assert!(refused_keys(RUNNING, &explicit).is_empty());
        // A section at its defaults may come and go.
        assert!(refused_keys(RUNNING, &format!("{RUNNING}log: {{}}\n")).is_empty());
        assert!(refused_keys(&format!("{RUNNING}log: {{}}\n"), RUNNING).is_empty());
    }

    #[test]
    fn admin_keys_need_an_explicit_empty_list_to_go() {
        let unset = RUNNING.replace("admin_keys: [k1]", "admin_keys: [\"${UNSET_KEY:-}\"]");
        assert_eq!(refused_keys(RUNNING, &unset), ["auth.admin_keys"]);
        let other = RUNNING.replace("auth: { admin_keys: [k1] }", "auth: { cookie: pg }");
        assert_eq!(refused_keys(RUNNING, &other), ["auth.admin_keys"]);
        let open = RUNNING.replace("admin_keys: [k1]", "admin_keys: []");
        assert!(refused_keys(RUNNING, &open).is_empty());
        let rotated = RUNNING.replace("admin_keys: [k1]", "admin_keys: [k2]");
        assert!(refused_keys(RUNNING, &rotated).is_empty());
    }

    #[test]
    fn a_file_with_neither_listen_nor_channels_is_refused_on_reload() {
        let keys = refused_keys("log: { level: info }\n", "log: { level: debug }\n");
        assert_eq!(keys, ["listen"]);
        let (_, sections) = load("auth: { cookie: pg }\n");
        assert!(sections.is_unconfigured());
        let (_, sections) = load("channels: []\n");
        assert!(!sections.is_unconfigured());
    }

    #[test]
    fn a_key_cut_off_before_its_value_is_not_a_choice() {
        // A file cut after `limits:` and `channels:`: both parse as null.
        let cut = "listen: { public: 127.0.0.1:8443 }\n\
            backend: { url: http://127.0.0.1:3000 }\n\
            auth: { admin_keys: [k1] }\n\
            webhooks: [{ name: w, match: { path: /h }, channel: a.b, data: \"{body}\" }]\n\
            channels:\n";
        assert_eq!(refused_keys(RUNNING, cut), ["channels"]);
        let commented = cut.replace("channels:\n", "channels:   # to do\n");
        assert_eq!(refused_keys(RUNNING, &commented), ["channels"]);
        // Written out as null, it is the operator's choice.
        let chosen = cut.replace("channels:\n", "channels: ~\n");
        assert!(refused_keys(RUNNING, &chosen).is_empty());
    }
}
