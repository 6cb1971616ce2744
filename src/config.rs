//! TEMPORARY stub while the real config module is written.
#![allow(dead_code)]
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Config { pub listen: Listen, pub tls: Option<Tls>, pub backend: Backend, pub realtime: Realtime, pub channels: Vec<ChannelRule>, pub limits: Limits, pub broker: BrokerConfig, pub log: Log, pub source: PathBuf }
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
pub struct Limits { pub max_connections: usize }
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
