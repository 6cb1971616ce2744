//! The application's upstreams by name — `default` (`backend:`) and the
//! entries of `upstreams:` — with the routes that choose between them.
//!
//! One registry is built per configuration and swapped with the rest of the
//! policy on reload. The connections stay live state all the same: an
//! upstream whose name a reload keeps, pointed at the same servers, takes
//! over the old one's connections (`keep_connections_of`); a removed one
//! lives on in the old settings until the requests holding them finish.

use super::Upstream;
use super::routes::{Choice, Rewrite, Routes, ambiguous};
use crate::config::{self, DEFAULT_UPSTREAM};
use crate::lifecycle::Lifecycle;

struct Entry {
    name: String,
    config: config::Backend,
    upstream: Upstream,
}

impl Entry {
    fn new(
        name: &str,
        config: &config::Backend,
        lifecycle: &Lifecycle,
    ) -> Result<Entry, UpstreamError> {
        let upstream = Upstream::new(config, lifecycle).map_err(|source| UpstreamError {
            name: name.to_owned(),
            source,
        })?;
        Ok(Entry {
            name: name.to_owned(),
            config: config.clone(),
            upstream,
        })
    }
}

/// An upstream that cannot be put in force (its TLS files).
#[derive(Debug, thiserror::Error)]
#[error("upstream {name}: {source}")]
pub struct UpstreamError {
    name: String,
    source: super::tls::UpstreamTlsError,
}

/// Every upstream of one configuration, and its routes.
pub struct Upstreams {
    default: Entry,
    /// In name order.
    named: Vec<Entry>,
    routes: Routes,
}

/// A path refused rather than routed: it could mean another path to the
/// application than the one it was judged by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmbiguousPath;

/// Where a routed request goes.
#[derive(Clone, Copy)]
pub struct Routed<'a> {
    pub upstream: &'a Upstream,
    /// The upstream's name (`default` for `backend:`).
    pub name: &'a str,
    pub rewrite: Rewrite,
    /// The upstream's `buffering:` with the route's switches applied.
    pub buffering: config::Buffering,
}

impl Upstreams {
    /// The upstreams `c` names; their tasks belong to `lifecycle`.
    pub fn new(c: &config::Config, lifecycle: &Lifecycle) -> Result<Upstreams, UpstreamError> {
        let named: Vec<Entry> = c
            .upstreams
            .iter()
            .filter(|(name, _)| name.as_str() != DEFAULT_UPSTREAM)
            .map(|(name, backend)| Entry::new(name, backend, lifecycle))
            .collect::<Result<_, _>>()?;
        let index = |name: &str| {
            if name == DEFAULT_UPSTREAM {
                return Some(0);
            }
            named.iter().position(|e| e.name == name).map(|i| i + 1)
        };
        let routes = Routes::new(&c.routes, index);
        Ok(Upstreams {
            default: Entry::new(DEFAULT_UPSTREAM, &c.backend, lifecycle)?,
            named,
            routes,
        })
    }

    /// The upstream called `name` (`default` is `backend:`).
    pub fn get(&self, name: &str) -> Option<&Upstream> {
        self.entry(name).map(|e| &e.upstream)
    }

    /// `backend:`: where requests no route takes go.
    pub fn default(&self) -> &Upstream {
        &self.default.upstream
    }

    /// Whether any route is configured (without, every request goes to
    /// `default` as it is).
    pub fn has_routes(&self) -> bool {
        !self.routes.is_empty()
    }

    /// The upstream a proxied request for `host` (its `Host` or authority,
    /// when it named one) and `path` (no query) goes to, and how its path
    /// is rewritten; or the refusal (400) of a path that could resolve to
    /// another one than the one it was routed by (`routes::ambiguous`):
    /// as the client sent it, and as the upstream would get it once a
    /// route's prefix is stripped (`/assets../admin` less `/assets` is
    /// `/../admin`). Refused with or without routes: an upstream with a
    /// base path (`http://app:8080/app`) would otherwise be asked for
    /// `/app/../admin`, outside the part of the application the operator
    /// exposed.
    pub fn route(&self, host: Option<&str>, path: &str) -> Result<Routed<'_>, AmbiguousPath> {
        if ambiguous(path) {
            return Err(AmbiguousPath);
        }
        let routed = match self.routes.choose(host, path) {
            None => self.routed(&self.default, Rewrite::default(), Default::default()),
            Some(Choice {
                upstream,
                rewrite,
                buffering,
            }) => {
                let entry = upstream
                    .checked_sub(1)
                    .and_then(|i| self.named.get(i))
                    .unwrap_or(&self.default);
                self.routed(entry, rewrite, buffering)
            }
        };
        if routed.rewrite.strip() > 0 && ambiguous(&routed.rewrite.apply(path)) {
            return Err(AmbiguousPath);
        }
        Ok(routed)
    }

    fn routed<'a>(
        &'a self,
        entry: &'a Entry,
        rewrite: Rewrite,
        route: config::RouteBuffering,
    ) -> Routed<'a> {
        Routed {
            upstream: &entry.upstream,
            name: &entry.name,
            rewrite,
            buffering: entry.config.buffering.with(route),
        }
    }

    fn entry(&self, name: &str) -> Option<&Entry> {
        if name == DEFAULT_UPSTREAM {
            return Some(&self.default);
        }
        self.named.iter().find(|e| e.name == name)
    }

    /// Start the health checks no task runs yet (at start, after a reload).
    pub fn watch_health(&self, lifecycle: &Lifecycle) {
        for entry in std::iter::once(&self.default).chain(self.named.iter()) {
            entry.upstream.watch_health(&entry.name, lifecycle);
        }
    }

    /// Each upstream's servers as `/stats` shows them: health, whether a
    /// failed connect has them skipped, requests in flight and waiting in
    /// its queue, idle connections in its pool.
    pub fn snapshot(&self) -> serde_json::Value {
        let upstreams: Vec<serde_json::Value> = std::iter::once(&self.default)
            .chain(self.named.iter())
            .map(|entry| {
                let servers: Vec<serde_json::Value> = entry
                    .upstream
                    .servers()
                    .list
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "server": s.name,
                            "healthy": s.health.is_healthy(),
                            "up": !s.is_down(),
                            "in_flight": s.in_flight(),
                            "queued": s.limit.queued(),
                            "idle": s.pool.idle_count(),
                        })
                    })
                    .collect();
                serde_json::json!({
                    "name": entry.name,
                    "balance": format!("{:?}", entry.config.balance).to_ascii_lowercase(),
                    "servers": servers,
                })
            })
            .collect();
        serde_json::Value::Array(upstreams)
    }

    /// Prometheus text for every upstream's servers (`exposition.rs`).
    pub fn encode_metrics(&self) -> String {
        super::exposition::encode(
            std::iter::once(&self.default)
                .chain(self.named.iter())
                .map(|e| (e.name.as_str(), e.upstream.servers().list.as_slice())),
        )
    }

    /// Take over `old`'s connections, upstream by upstream, where a name
    /// stays and `same(was, now)` judges its configuration the same servers
    /// reached the same way.
    pub fn keep_connections_of(
        &mut self,
        old: &Upstreams,
        same: impl Fn(&config::Backend, &config::Backend) -> bool,
    ) {
        for entry in std::iter::once(&mut self.default).chain(self.named.iter_mut()) {
            if let Some(was) = old.entry(&entry.name) {
                let keep = same(&was.config, &entry.config);
                entry.upstream.keep_connections_of(&was.upstream, keep);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(yaml: &str) -> Upstreams {
        let c = config::parse(yaml, std::path::Path::new("gateway.yaml")).unwrap();
        Upstreams::new(&c, &Lifecycle::new()).unwrap()
    }

    #[test]
    fn routes_name_upstreams_and_the_rest_goes_to_default() {
        let u = registry(
            "backend: { url: http://127.0.0.1:1/base }\n\
             upstreams:\n  api: { url: http://127.0.0.1:2/ }\n  web: { url: http://127.0.0.1:3/w }\n\
             routes:\n  - { host: api.example.com, upstream: api }\n  - { path: /w/, upstream: web, strip_prefix: true }\n",
        );
        let r = u.route(Some("api.example.com:443"), "/w/x").unwrap();
        assert_eq!(r.name, "api");
        assert_eq!(r.rewrite, Rewrite::default());
        let r = u.route(Some("other"), "/w/x").unwrap();
        assert_eq!((r.name, r.upstream.base_path()), ("web", "/w"));
        assert_eq!(r.rewrite.apply("/w/x"), "/x");
        let r = u.route(None, "/x").unwrap();
        assert_eq!((r.name, r.upstream.base_path()), ("default", "/base"));
        assert!(u.get("web").is_some() && u.get("default").is_some());
        assert!(u.get("nope").is_none());
        assert_eq!(u.default().base_path(), "/base");
        assert!(u.has_routes());
    }

    #[test]
    fn a_path_is_refused_as_sent_and_as_stripped() {
        let u = registry(
            "backend: { url: http://127.0.0.1:1/base }\n\
             upstreams:\n  web: { url: http://127.0.0.1:3/static }\n\
             routes:\n  - { path: /assets, upstream: web, strip_prefix: true }\n",
        );
        assert!(u.route(None, "/assets/app.js").is_ok());
        assert!(u.route(None, "/assetsx/app.js").is_ok());
        // Without routes in the way, and under a route.
        assert_eq!(u.route(None, "/x/../admin").err(), Some(AmbiguousPath));
        assert_eq!(u.route(None, "/assets/../admin").err(), Some(AmbiguousPath));
        // Stripping `/assets` makes a dot segment of what followed it.
        for path in [
            "/assets../admin",
            "/assets..;/admin",
            "/assets./x",
            "/assets..",
        ] {
            assert_eq!(u.route(None, path).err(), Some(AmbiguousPath), "{path}");
        }
    }
}
