//! The one way a test describes its gateway: a builder that writes the
//! YAML file (TLS with a generated certificate, permissive channel rules,
//! the test's own backend, listeners and sections) and starts the real
//! gateway on port 0 from it. Each part of the file is set by name, so a
//! test never edits the text of another helper's config by search and
//! replace.

use std::path::{Path, PathBuf};

use super::{TestGateway, temp_dir};

/// The channel rules a test gateway has unless it sets its own.
const CHANNELS: &str = r#"channels:
  - { pattern: "public.*", subscribe: anyone }
  - { pattern: "small.*", subscribe: anyone, history: { size: 2 } }
  - { pattern: "chat.*", subscribe: anyone, publish: clients }
  - { pattern: "room.*", subscribe: anyone, presence: true }
  - { pattern: "orders.*", subscribe: token }
  - { pattern: "user.{sub}", subscribe: owner }
  - { pattern: "lossy.*", subscribe: anyone, slow_client: drop_oldest, history: { size: 10 } }
  - { pattern: "latest.*", subscribe: anyone, slow_client: conflate, history: { size: 10 } }"#;

/// A gateway config, part by part; [`GatewayBuilder::start`] runs it.
#[derive(Clone)]
pub struct GatewayBuilder {
    listen_keys: String,
    backend_url: String,
    backend_keys: String,
    backend_line: Option<String>,
    realtime: String,
    auth: String,
    channels: String,
    limits: Option<String>,
    admin_key: Option<String>,
    sections: String,
    tag: &'static str,
}

impl Default for GatewayBuilder {
    fn default() -> Self {
        GatewayBuilder {
            listen_keys: String::new(),
            // Nothing listens on port 9.
            backend_url: "http://127.0.0.1:9".into(),
            backend_keys: "connect_timeout: 500ms, timeout: 2s".into(),
            backend_line: None,
            realtime: "  heartbeat: 15s".into(),
            auth: String::new(),
            channels: CHANNELS.into(),
            limits: None,
            admin_key: None,
            sections: String::new(),
            tag: "gw",
        }
    }
}

impl GatewayBuilder {
    /// The application's URL (`backend.url`); by default nothing listens.
    pub fn backend(mut self, url: &str) -> Self {
        self.backend_url = url.to_owned();
        self
    }

    /// More `backend:` keys after the timeouts, as `, key: value…`.
    pub fn backend_keys(mut self, keys: &str) -> Self {
        self.backend_keys.push_str(keys);
        self
    }

    /// The backend's timeouts, in place of 500 ms to connect and 2 s in all.
    pub fn backend_timeouts(mut self, connect: &str, total: &str) -> Self {
        self.backend_keys = format!("connect_timeout: {connect}, timeout: {total}");
        self
    }

    /// The whole `backend:` section, for one the other setters cannot
    /// write (several `urls`, `tls`).
    pub fn backend_yaml(mut self, line: &str) -> Self {
        self.backend_line = Some(line.to_owned());
        self
    }

    /// More `listen:` keys after the two addresses, as `, key: value…`.
    pub fn listen_keys(mut self, keys: &str) -> Self {
        self.listen_keys = keys.to_owned();
        self
    }

    /// The lines of the `realtime:` section after `path`, indented two
    /// spaces (`"  heartbeat: 15s"` unless set).
    pub fn realtime(mut self, lines: &str) -> Self {
        self.realtime = lines.to_owned();
        self
    }

    /// Client tokens are HS256 JWTs signed with `secret` (`auth.jwt`).
    pub fn jwt_secret(mut self, secret: &str) -> Self {
        self.auth
            .push_str(&format!("  jwt: {{ hs256_secret: \"{secret}\" }}\n"));
        self
    }

    /// The admin API wants `key` (`auth.admin_keys`); the gateway's
    /// [`admin_key`](TestGateway::admin_key) is it.
    pub fn admin_key(mut self, key: &str) -> Self {
        self.auth.push_str(&format!("  admin_keys: [\"{key}\"]\n"));
        self.admin_key = Some(key.to_owned());
        self
    }

    /// More lines of the `auth:` section, indented two spaces.
    pub fn auth(mut self, lines: &str) -> Self {
        self.auth.push_str(lines);
        if !lines.ends_with('\n') {
            self.auth.push('\n');
        }
        self
    }

    /// The whole `channels:` section, in place of the permissive rules
    /// every other test has.
    pub fn channels(mut self, section: &str) -> Self {
        self.channels = section.to_owned();
        self
    }

    /// The lines of the `limits:` section, indented two spaces.
    pub fn limits(mut self, lines: &str) -> Self {
        self.limits = Some(lines.to_owned());
        self
    }

    /// Top-level sections appended to the file (`auth:`, `limits:`, …).
    pub fn section(mut self, text: &str) -> Self {
        self.sections.push('\n');
        self.sections.push_str(text);
        self
    }

    /// The temp directory's name tag, to tell the test's files apart.
    pub fn tag(mut self, tag: &'static str) -> Self {
        self.tag = tag;
        self
    }

    /// The config text, certificate and key in `dir`.
    pub fn yaml(&self, dir: &Path) -> String {
        let backend = self.backend_line.clone().unwrap_or_else(|| {
            format!(
                r#"backend: {{ url: "{}", {} }}"#,
                self.backend_url, self.backend_keys
            )
        });
        let mut sections = String::new();
        if !self.auth.is_empty() {
            sections.push_str(&format!("auth:\n{}", self.auth));
        }
        if let Some(limits) = &self.limits {
            sections.push_str(&format!("limits:\n{limits}\n"));
        }
        sections.push_str(&self.sections);
        format!(
            r#"
listen: {{ public: "127.0.0.1:0", admin: "127.0.0.1:0"{listen} }}
tls:
  cert: {dir}/gw.crt
  key: {dir}/gw.key
  self_signed_if_missing: true
{backend}
realtime:
  path: /realtime
{realtime}
{channels}
{sections}
"#,
            listen = self.listen_keys,
            dir = dir.display(),
            realtime = self.realtime,
            channels = self.channels,
        )
    }

    /// Write the config to a fresh temp directory and start the gateway.
    pub async fn start(self) -> TestGateway {
        let dir = temp_dir(self.tag);
        self.start_in(dir).await
    }

    /// [`start`](Self::start) in `dir` (created if missing), for a test
    /// that puts its own files (certificates, sockets) beside the config.
    pub async fn start_in(self, dir: PathBuf) -> TestGateway {
        std::fs::create_dir_all(&dir).unwrap();
        let mut gw = TestGateway::start_yaml(&self.yaml(&dir), dir).await;
        gw.admin_key = self.admin_key;
        gw
    }
}
