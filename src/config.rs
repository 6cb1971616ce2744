//! TEMPORARY stub while the real config module is written.
#![allow(dead_code)]
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Config { pub listen: Listen, pub tls: Option<Tls>, pub backend: Backend, pub realtime: Realtime, pub auth: Auth, pub webhooks: Vec<Webhook>, pub channels: Vec<ChannelRule>, pub limits: Limits, pub broker: BrokerConfig, pub log: Log, pub source: PathBuf }
#[derive(Clone, Debug)]
pub struct Listen { pub public: SocketAddr, pub admin: SocketAddr }
#[derive(Clone, Debug)]
pub struct Tls { pub cert: PathBuf, pub key: PathBuf, pub self_signed_if_missing: bool, pub sni: Vec<SniCert> }
#[derive(Clone, Debug)]
pub struct SniCert { pub hosts: Vec<String>, pub cert: PathBuf, pub key: PathBuf }
#[derive(Clone, Debug)]
pub struct Backend { pub url: url::Url, pub connect_timeout: Duration, pub timeout: Duration }
#[derive(Clone, Debug)]
pub struct Realtime { pub path: String, pub heartbeat: Duration, pub poll_timeout: Duration, pub history: History, pub max_message: usize, pub client_queue: usize, pub allowed_origins: Vec<String> }
#[derive(Clone, Debug)]
pub struct History { pub size: usize, pub ttl: Duration }
#[derive(Clone, Debug)]
pub struct ChannelRule { pub pattern: String, pub subscribe: Subscribe, pub publish: PublishBy, pub presence: bool, pub history: Option<HistoryOverride>, pub slow_client: SlowClient }
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscribe { Anyone, Owner, Token }
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishBy { Server, Clients }
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowClient { Disconnect, DropOldest, Conflate }
#[derive(Clone, Debug)]
pub struct HistoryOverride { pub size: Option<usize>, pub ttl: Option<Duration> }
#[derive(Clone, Debug)]
pub struct Limits { pub per_client: PerClient, pub per_ip: PerIp, pub publish: RateLimit, pub max_connections: usize }
#[derive(Clone, Debug)]
pub struct RateLimit { pub rate: Rate, pub burst: NonZeroU32 }
#[derive(Clone, Debug)]
pub struct Rate { pub count: NonZeroU32, pub per: Duration }
#[derive(Clone, Debug)]
pub struct BrokerConfig { pub kind: BrokerKind }
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerKind { Memory, Redis }
#[derive(Clone, Debug)]
pub struct Log { pub format: LogFormat, pub level: String }
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat { Pretty, Json }
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);
impl std::fmt::Display for ConfigErrors { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{}", self.0.join("\n")) } }
pub fn load(_p: &std::path::Path) -> Result<Config, ConfigErrors> { Err(ConfigErrors(vec!["stub".into()])) }
impl Config { pub fn summary(&self) -> String { String::new() } }
#[derive(Clone, Debug, Default)]
pub struct Auth { pub jwt: Option<Jwt>, pub static_tokens: Vec<StaticToken>, pub admin_keys: Vec<String>, pub cookie: Option<String> }
#[derive(Clone, Debug)]
pub struct Jwt { pub hs256_secret: Option<String>, pub rs256_public_key: Option<PathBuf>, pub es256_public_key: Option<PathBuf>, pub issuer: Option<String>, pub audience: Option<String>, pub leeway: Duration }
#[derive(Clone, Debug)]
pub struct StaticToken { pub token: String, pub subject: String, pub channels: Vec<String> }
#[derive(Clone, Debug)]
pub struct PerClient { pub connections: u32, pub messages: RateLimit, pub subscribes: RateLimit }
#[derive(Clone, Debug)]
pub struct PerIp { pub connects: RateLimit }
#[derive(Clone, Debug)]
pub struct Webhook { pub name: String, pub matcher: WebhookMatch, pub verify: Option<Verify>, pub channel: String, pub event: Option<String>, pub data: Option<String> }
#[derive(Clone, Debug)]
pub struct WebhookMatch { pub method: String, pub path: String }
#[derive(Clone, Debug)]
pub struct Verify { pub hmac_sha256: HmacVerify }
#[derive(Clone, Debug)]
pub struct HmacVerify { pub header: String, pub secret: String }
