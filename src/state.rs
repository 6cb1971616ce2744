//! The handles every request handler needs, each cheap to clone.
//!
//! Policy — what a reload may replace (rules, quotas, routes, certificates) —
//! lives together in [`Settings`] behind an `ArcSwap`, so a reload swaps it in
//! one step while requests in flight keep the snapshot they started with.
//! What clients have spent or hold (rate buckets and connection counts in
//! [`Limits`], sessions, presence, the hub) lives in [`Handles`] beside it and
//! outlasts every swap (the application's session answers in `app_checks`
//! too); a reload only hands the new quotas to [`Limits`], and
//! each upstream takes over the connections of the upstream of the same name
//! while it points at the same servers (routes are policy, swapped whole).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;

use crate::auth::{Authenticator, KeyError};
use crate::broker::{Broker, BrokerError, Publish};
use crate::config::Config;
use crate::hub::{Hub, Message};
use crate::ingest::tap::Taps;
use crate::ingest::webhook::{RuleError, Webhooks};
use crate::lifecycle::Lifecycle;
use crate::limits::Limits;
pub use crate::metrics::stats::{Gauge, Seat, Stats};
use crate::rules::ChannelRules;
use crate::session_auth::{CheckPolicy, Checks};
use crate::upstream::registry::Upstreams;

mod pusher_cache_misses;
mod pusher_counts;
mod pusher_occupancy;
mod pusher_webhooks;

pub use pusher_cache_misses::CacheMisses;
pub use pusher_counts::ClusterCounts;
pub use pusher_occupancy::Occupancy;

/// Everything derived from one version of the configuration.
pub struct Settings {
    pub config: Config,
    pub rules: ChannelRules,
    /// The application's upstreams by name and the routes between them;
    /// their connections carry over a reload.
    pub upstreams: Upstreams,
    pub auth: Authenticator,
    /// What the application is asked (`auth.session`, resource checks).
    pub checks: CheckPolicy,
    pub webhooks: Webhooks,
    pub taps: Taps,
    /// Certificates, re-read from disk on every reload.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The Pusher apps of `pusher:` (none when the section is absent).
    pub pusher: crate::pusher::Apps,
    /// The Mercure hub's token keys (none without `mercure:`).
    pub mercure: Option<crate::mercure::token::Keys>,
    /// `mercure.channels`, compiled.
    pub mercure_channels: crate::mercure::channels::ChannelMap,
}

/// A config that parsed but cannot be put in force.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("auth.jwt: {0}")]
    Key(#[from] KeyError),
    #[error(transparent)]
    Webhook(#[from] RuleError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("auth.session: {0}")]
    Session(#[from] crate::model::template::TemplateError),
    #[error("mercure: {0}")]
    Mercure(#[from] crate::mercure::KeyFileError),
    #[error(transparent)]
    Upstream(#[from] crate::upstream::registry::UpstreamError),
}

impl Settings {
    /// Build everything a config implies; fails on unusable key files.
    /// The tasks its parts spawn (a backend connection's) belong to
    /// `lifecycle`.
    pub fn new(config: Config, lifecycle: &Lifecycle) -> Result<Settings, SettingsError> {
        let rules = ChannelRules::new(&config.channels, &config.realtime.history);
        let upstreams = Upstreams::new(&config, lifecycle)?;
        let auth = Authenticator::new(&config.auth)?;
        let checks = CheckPolicy::new(&config.auth)?;
        let taps = Taps::new(&config.taps)?;
        let webhooks = Webhooks::new(&config.webhooks)?;
        let tls = config
            .tls
            .as_ref()
            .map(crate::tls::server_config)
            .transpose()?;
        Ok(Settings {
            mercure: crate::mercure::token::Keys::new(config.mercure.as_ref())?,
            mercure_channels: crate::mercure::channels::ChannelMap::new(
                config.mercure.as_ref().map_or(&[], |m| &m.channels),
            ),
            pusher: crate::pusher::Apps::new(config.pusher.as_ref()),
            tls,
            webhooks,
            taps,
            config,
            rules,
            upstreams,
            auth,
            checks,
        })
    }
}

/// What every connection and request shares, behind one `Arc`: handlers
/// clone it per request and sessions hold it for their whole life, so a
/// clone is one reference count and a session carries one pointer (as a
/// struct of `Arc`s it was eleven counts to bump and 104 bytes to hold).
#[derive(Clone)]
pub struct AppState(Arc<Handles>);

impl std::ops::Deref for AppState {
    type Target = Handles;

    fn deref(&self) -> &Handles {
        &self.0
    }
}

pub struct Handles {
    settings: ArcSwap<Settings>,
    pub hub: Hub,
    pub broker: Arc<dyn Broker>,
    /// The gateway's stages (draining, drained tasks, stopped) and every
    /// task it spawns; `Lifecycle::drain` ends them in order.
    pub lifecycle: Lifecycle,
    pub stats: Arc<Stats>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Rung on every successful reload; live sessions re-check their
    /// subscriptions when they hear it.
    pub reloaded: Arc<crate::alarm::Alarm>,
    pub connections: Arc<crate::connections::Connections>,
    /// Buckets and connection counts; quotas come from the settings in force.
    pub limits: Arc<Limits>,
    pub presence: Arc<crate::broker::presence::Presence>,
    /// The application's answers to session and resource checks, kept for
    /// `auth.session.cache` across reloads.
    pub app_checks: Checks,
    /// Pusher socket ids, unique across instances.
    pub socket_ids: crate::pusher::SocketIds,
    /// What Pusher connections report for the apps' webhooks.
    pub app_events: crate::pusher::AppEvents,
    /// This instance's Pusher subscriptions per channel: when a channel is
    /// occupied or vacated.
    pub pusher_occupancy: Occupancy,
    /// pusher-js's HTTP fallback sessions of this instance.
    pub pusher_http: crate::pusher::http_session::HttpSessions,
    /// The slots for telling Pusher clients over `max_connections` 4100.
    pub pusher_refusals: crate::pusher::refusal_reserve::RefusalReserve,
    /// When each cache channel last reported an empty cache.
    pub pusher_cache_misses: CacheMisses,
    /// The other instances' subscription counts of the channels counted here.
    pub pusher_counts: ClusterCounts,
    /// The Mercure hub's active subscriptions on this instance.
    pub mercure_subscriptions: crate::mercure::subscriptions::Registry,
}

impl AppState {
    /// `lifecycle` is the one the broker was started under, so that its
    /// tasks end with the gateway's.
    pub fn new(
        settings: Settings,
        hub: Hub,
        broker: Arc<dyn Broker>,
        lifecycle: Lifecycle,
    ) -> AppState {
        let presence_broker = broker.clone();
        let limits = Limits::new(&settings.config.limits);
        if tokio::runtime::Handle::try_current().is_ok() {
            settings.upstreams.watch_health(&lifecycle);
        }
        let state = AppState(Arc::new(Handles {
            limits,
            settings: ArcSwap::from_pointee(settings),
            hub,
            broker,
            presence: crate::broker::presence::Presence::new(presence_broker, lifecycle.clone()),
            lifecycle,
            stats: Arc::new(Stats::default()),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            reloaded: crate::alarm::Alarm::new(),
            connections: Arc::default(),
            app_checks: Checks::default(),
            socket_ids: Default::default(),
            app_events: Default::default(),
            pusher_occupancy: Default::default(),
            pusher_http: Default::default(),
            pusher_refusals: Default::default(),
            pusher_cache_misses: Default::default(),
            pusher_counts: Default::default(),
            mercure_subscriptions: Default::default(),
        }));
        // Members of Pusher apps' presence channels reach their webhooks.
        let weak = Arc::downgrade(&state.0);
        state
            .presence
            .observe(Box::new(move |channel, subject, joined| {
                if let Some(handles) = weak.upgrade() {
                    let settings = handles.settings();
                    for (app, event) in
                        crate::pusher::member_events(&settings.pusher, channel, subject, joined)
                    {
                        // Queued only for a webhook that takes it.
                        let name = if joined {
                            "member_added"
                        } else {
                            "member_removed"
                        };
                        let wanted = settings.pusher.by_id(&app).is_some_and(|a| {
                            a.config
                                .webhook
                                .as_ref()
                                .is_some_and(|hook| hook.events.iter().any(|e| e == name))
                        });
                        if wanted {
                            handles.app_events.send(&app, event);
                        }
                    }
                }
            }));
        state
    }
}

impl Handles {
    /// The settings in force now.
    /// One more connection's place under `max_connections` (as in force
    /// now), or `None` at the cap: checked and counted in one step.
    pub fn reserve_connection(&self) -> Option<Seat> {
        Seat::reserve(&self.stats, self.limits.max_connections())
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// The reload listener of a connection that opened under `settings`: a
    /// reload that swapped them before this call (between the handshake
    /// and the connection's first turn) is heard at once, as a ring would
    /// be; later ones ring as usual. Listening before comparing leaves no
    /// window: a reload swaps the settings first, then rings.
    pub(crate) fn reload_listener(&self, settings: &Arc<Settings>) -> crate::alarm::Listener {
        let mut listener = self.reloaded.listen();
        if !Arc::ptr_eq(settings, &self.settings()) {
            listener.owe_one();
        }
        listener
    }

    /// Publish one message through the broker and count it (stats and
    /// metrics alike): every road a message comes in by — the publish API,
    /// webhooks, response taps, a client's own publish — takes this one, so
    /// none can publish without counting.
    pub async fn publish(&self, msg: Publish) -> Result<Arc<Message>, BrokerError> {
        let m = self.broker.publish(msg).await?;
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        self.metrics.published.inc();
        Ok(m)
    }

    /// Count messages written to subscribers (stats and metrics alike):
    /// every transport counts its deliveries here and nowhere else.
    pub fn count_delivered(&self, n: u64) {
        self.stats.delivered.fetch_add(n, Ordering::Relaxed);
        self.metrics.delivered.inc_by(n);
    }

    /// Put new settings in force for everything that starts from now on;
    /// live state stays, and the limits take the new quotas.
    pub fn replace_settings(&self, mut settings: Settings) {
        let old = self.settings();
        settings
            .upstreams
            .keep_connections_of(&old.upstreams, |was, now| {
                was.connect_timeout == now.connect_timeout && was.tls == now.tls
            });
        drop(old);
        settings.upstreams.watch_health(&self.lifecycle);
        self.limits.set_policy(&settings.config.limits);
        self.settings.store(Arc::new(settings));
    }
}
