//! Which upstream a proxied request goes to (`routes:`), judged from its
//! host and path alone, so that both HTTP engines (hyper and the HTTP/1
//! relay) route a request the same way.
//!
//! A route's `host` is exact (ASCII case-insensitive, the request's port
//! ignored) or `*.example.com` (any subdomain, never the bare domain). Its
//! `path` is a plain prefix, as nginx's `location /v2/`: `/v2/` matches
//! `/v2/` and `/v2/users` but not `/v2`, and `/v2` also matches `/v2beta`.
//! Both given, both must match. The first route that matches wins; none
//! matching, the request goes to `default` (`backend:`).

use crate::config;

/// Where a request goes: an upstream (by its index in the registry) and how
/// its path is rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    pub upstream: usize,
    pub rewrite: Rewrite,
    /// The route's switches over its upstream's buffering.
    pub buffering: config::RouteBuffering,
}

/// How a routed request's path changes on its way: `strip` bytes taken off
/// its front (a route's `strip_prefix`), a leading `/` kept. The upstream
/// URL's own base path goes in front afterwards, as for any request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    strip: usize,
}

impl Rewrite {
    /// The bytes of the path a route strips (0: the path goes as it is).
    pub fn strip(&self) -> usize {
        self.strip
    }

    /// `target` (a path with its query) as the upstream gets it, before
    /// the base path: `/assets/app.js?v=1` with `/assets/` stripped is
    /// `/app.js?v=1`, and `/assets/` alone is `/`.
    pub fn apply<'t>(&self, target: &'t str) -> std::borrow::Cow<'t, str> {
        let Some(rest) = target.get(self.strip..).filter(|_| self.strip > 0) else {
            return target.into();
        };
        if rest.starts_with('/') {
            rest.into()
        } else {
            format!("/{rest}").into()
        }
    }
}

/// One route, compiled.
#[derive(Debug)]
pub struct Route {
    host: Option<HostPattern>,
    path: Option<String>,
    strip_prefix: bool,
    upstream: usize,
    buffering: config::RouteBuffering,
}

#[derive(Debug)]
enum HostPattern {
    /// Lowercased.
    Exact(String),
    /// `*.example.com`: lowercased, with its dot (`.example.com`).
    Subdomains(String),
}

impl HostPattern {
    fn new(pattern: &str) -> HostPattern {
        let lower = pattern.to_ascii_lowercase();
        match lower.strip_prefix('*') {
            Some(suffix) => HostPattern::Subdomains(suffix.to_owned()),
            None => HostPattern::Exact(lower),
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => host.eq_ignore_ascii_case(name),
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len()
                    && host
                        .get(host.len() - suffix.len()..)
                        .is_some_and(|end| end.eq_ignore_ascii_case(suffix))
            }
        }
    }
}

impl Route {
    /// Whether a request for `host` (a `Host` value or an authority, port
    /// and all; `None` when the request named none) and `path` (no query)
    /// takes this route.
    pub fn matches(&self, host: Option<&str>, path: &str) -> bool {
        if let Some(pattern) = &self.host {
            match host.map(host_name) {
                Some(name) if pattern.matches(name) => {}
                _ => return false,
            }
        }
        self.path.as_deref().is_none_or(|p| path.starts_with(p))
    }

    fn rewrite(&self) -> Rewrite {
        match (&self.path, self.strip_prefix) {
            (Some(p), true) => Rewrite { strip: p.len() },
            _ => Rewrite::default(),
        }
    }
}

/// The routes of one configuration, in order.
#[derive(Debug, Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// Compile `routes`; `index` gives an upstream name's place in the
    /// registry (a name it does not know, which validation refuses, routes
    /// to the default upstream at 0).
    pub fn new(routes: &[config::Route], index: impl Fn(&str) -> Option<usize>) -> Routes {
        let routes = routes
            .iter()
            .map(|r| Route {
                host: r.host.as_deref().map(HostPattern::new),
                path: r.path.clone(),
                strip_prefix: r.strip_prefix,
                upstream: index(&r.upstream).unwrap_or(0),
                buffering: r.buffering,
            })
            .collect();
        Routes { routes }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The first route `host` and `path` match, if any.
    pub fn choose(&self, host: Option<&str>, path: &str) -> Option<Choice> {
        self.routes
            .iter()
            .find(|r| r.matches(host, path))
            .map(|r| Choice {
                upstream: r.upstream,
                rewrite: r.rewrite(),
                buffering: r.buffering,
            })
    }
}

/// Whether `path` could mean another path to the upstream than the one its
/// prefix was matched on: a dot segment (`/./`, `/../`, at the end too), or
/// a dot, slash or backslash written percent-encoded or as `\`. An
/// application resolves `/api/public/../admin` to `/api/admin`, so a route
/// for `/api/public/` would pass a request for `/api/admin` to its
/// upstream; nginx normalises before matching. Browsers never send these
/// (they resolve dot segments themselves), so such a request is refused
/// rather than normalised into a guess.
///
/// A segment is a dot segment also with path parameters after it (`..;`,
/// `.;x=y`): Tomcat, Jetty and Spring strip `;…` from each segment before
/// resolving, so `/public/..;/admin` reaches `/admin` there.
pub fn ambiguous(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.contains(&b'\\') {
        return true;
    }
    // Encoded dots, slashes and backslashes; the same encoded twice (an
    // application that decodes again: `%252e`); and overlong UTF-8 forms
    // (`%c0%ae` is `.` to a lax decoder; `%c0` and `%c1` start no valid
    // UTF-8 sequence at all). Compared in place: this runs for every
    // proxied request, and most paths have no `%` at all.
    const ENCODED: [&[u8]; 8] = [
        b"%2e", b"%2f", b"%5c", b"%252e", b"%252f", b"%255c", b"%c0", b"%c1",
    ];
    if bytes.contains(&b'%') && ENCODED.iter().any(|e| find_ignore_case(bytes, e).is_some()) {
        return true;
    }
    bytes.split(|&b| b == b'/').any(|segment| {
        // Path parameters go before resolving, written `;` or `%3b`.
        let name = segment.split(|&b| b == b';').next().unwrap_or(segment);
        let name = find_ignore_case(name, b"%3b").map_or(name, |at| &name[..at]);
        name == b"." || name == b".."
    })
}

/// Where `needle` (lowercase) starts in `hay`, in any case.
fn find_ignore_case(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// The name in a `Host` value or authority: without its port, its IPv6
/// brackets kept, and without a trailing dot (`example.com.` is the same
/// name).
fn host_name(host: &str) -> &str {
    let name = if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.strip_suffix('.').unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, path: Option<&str>, strip: bool, upstream: &str) -> config::Route {
        config::Route {
            host: host.map(str::to_owned),
            path: path.map(str::to_owned),
            upstream: upstream.to_owned(),
            strip_prefix: strip,
            buffering: config::RouteBuffering::default(),
        }
    }

    fn routes(list: &[config::Route]) -> Routes {
        let names = ["default", "api", "static", "tenant"];
        Routes::new(list, |n| names.iter().position(|x| *x == n))
    }

    fn to(r: &Routes, host: &str, path: &str) -> Option<usize> {
        r.choose(Some(host), path).map(|c| c.upstream)
    }

    #[test]
    fn paths_that_could_resolve_elsewhere_are_ambiguous() {
        for p in [
            "/api/../admin",
            "/api/..",
            "/./api/",
            "/api/%2e%2e/admin",
            "/api/%2E./admin",
            "/api%2fadmin",
            "/api/..%5cadmin",
            "/api\\..\\admin",
            "/api/..;/admin",
            "/api/..;jsessionid=x/admin",
            "/api/.;/x",
            "/api/..;",
            "/api/..%3b/admin",
            "/api/..%3B/admin",
            "/api/%252e%252e/admin",
            "/api/%c0%ae%c0%ae/admin",
        ] {
            assert!(ambiguous(p), "{p}");
        }
        for p in [
            "/",
            "/api/v1",
            "/a..b/c",
            "/.well-known/x",
            "/file.tar.gz",
            "/a/.b",
            "/a;b/..c;d",
            "/matrix;a=1/x",
        ] {
            assert!(!ambiguous(p), "{p}");
        }
    }

    #[test]
    fn exact_hosts_ignore_case_and_port() {
        let r = routes(&[route(Some("API.example.com"), None, false, "api")]);
        assert_eq!(to(&r, "api.example.com", "/"), Some(1));
        assert_eq!(to(&r, "Api.Example.COM:8443", "/x"), Some(1));
        assert_eq!(to(&r, "api.example.com.", "/x"), Some(1));
        assert_eq!(to(&r, "www.example.com", "/"), None);
        assert_eq!(to(&r, "xapi.example.com", "/"), None);
        assert_eq!(r.choose(None, "/"), None, "no host, no host route");
    }

    #[test]
    fn wildcards_take_subdomains_not_the_bare_domain() {
        let r = routes(&[route(Some("*.example.com"), None, false, "tenant")]);
        assert_eq!(to(&r, "a.example.com", "/"), Some(3));
        assert_eq!(to(&r, "a.b.EXAMPLE.com:443", "/"), Some(3));
        assert_eq!(to(&r, "example.com", "/"), None);
        assert_eq!(to(&r, "badexample.com", "/"), None);
        assert_eq!(to(&r, ".example.com", "/"), None);
    }

    #[test]
    fn paths_are_plain_prefixes_and_the_first_match_wins() {
        let r = routes(&[
            route(Some("api.example.com"), Some("/v2/"), false, "api"),
            route(None, Some("/v2/"), false, "static"),
            route(None, Some("/v"), false, "tenant"),
        ]);
        assert_eq!(to(&r, "api.example.com", "/v2/users"), Some(1));
        assert_eq!(to(&r, "other.example", "/v2/users"), Some(2));
        assert_eq!(to(&r, "api.example.com", "/v2"), Some(3), "/v2/ is not /v2");
        assert_eq!(to(&r, "x", "/vintage"), Some(3), "a plain prefix");
        assert_eq!(to(&r, "x", "/other"), None);
    }

    #[test]
    fn ipv6_hosts_keep_their_brackets() {
        assert_eq!(host_name("[::1]:8443"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("example.com:80"), "example.com");
    }

    #[test]
    fn strip_prefix_keeps_a_leading_slash_and_the_query() {
        let r = routes(&[route(None, Some("/assets/"), true, "static")]);
        let rw = r.choose(Some("h"), "/assets/app.js").unwrap().rewrite;
        assert_eq!(rw.apply("/assets/app.js?v=1"), "/app.js?v=1");
        assert_eq!(rw.apply("/assets/"), "/");
        assert_eq!(rw.apply("/assets/?q"), "/?q");
        let r = routes(&[route(None, Some("/assets"), true, "static")]);
        let rw = r.choose(Some("h"), "/assets").unwrap().rewrite;
        assert_eq!(rw.apply("/assets"), "/");
        assert_eq!(rw.apply("/assets/x"), "/x");
        assert_eq!(rw.apply("/assets?x=1"), "/?x=1");
        let kept = routes(&[route(None, Some("/assets/"), false, "static")]);
        let rw = kept.choose(Some("h"), "/assets/a").unwrap().rewrite;
        assert_eq!(rw, Rewrite::default());
        assert_eq!(rw.apply("/assets/a"), "/assets/a");
    }
}
