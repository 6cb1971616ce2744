//! The short human summary `pushgate check` prints: what will listen where, whether
//! TLS is on, where traffic goes, which channel rules and limits apply. It shows counts and
//! names, never secrets (URL passwords are masked, tokens and keys are only counted).

use super::Config;
use super::rules::SlowClient;
use super::schema::BrokerKind;
use super::units::format_duration;
use std::fmt::Write;

impl Config {
    /// A few lines describing this configuration, for `pushgate check`.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_summary(&mut out);
        out
    }

    fn write_summary(&self, out: &mut String) -> std::fmt::Result {
        self.summarize_listen(out)?;
        self.summarize_tls(out)?;
        self.summarize_upstreams(out)?;
        self.summarize_realtime(out)?;
        self.summarize_auth(out)?;
        self.summarize_channels(out)?;
        self.summarize_pusher(out)?;
        self.summarize_limits(out)?;
        self.summarize_broker(out)?;
        Ok(())
    }

    /// Where it listens and who fronts it.
    fn summarize_listen(&self, out: &mut String) -> std::fmt::Result {
        let tls_mode = if self.tls.is_some() {
            "TLS"
        } else {
            "plain HTTP"
        };
        let front = match (
            self.listen.proxy_protocol,
            self.listen.trusted_proxies.is_empty(),
        ) {
            (false, _) => "",
            (true, false) => ", PROXY protocol required",
            (true, true) => {
                ", PROXY protocol required from ANY peer: list your fronts in listen.trusted_proxies"
            }
        };
        writeln!(
            out,
            "listen: public {} ({tls_mode}{front}), admin {} (plain HTTP)",
            self.listen.public, self.listen.admin
        )?;
        if !self.listen.trusted_proxies.is_empty() {
            writeln!(
                out,
                "trusted proxies: {} (their {} names the client)",
                self.listen.trusted_proxies,
                self.listen.real_ip_header.name()
            )?;
        }
        Ok(())
    }

    /// Certificates.
    fn summarize_tls(&self, out: &mut String) -> std::fmt::Result {
        match &self.tls {
            None => writeln!(out, "tls: off")?,
            Some(tls) => {
                write!(
                    out,
                    "tls: on, cert {}, key {}",
                    tls.cert.display(),
                    tls.key.display()
                )?;
                if tls.self_signed_if_missing {
                    write!(out, " (self-signed if missing)")?;
                }
                for sni in &tls.sni {
                    write!(
                        out,
                        "; sni {} -> {}",
                        sni.hosts.join(","),
                        sni.cert.display()
                    )?;
                }
                writeln!(out)?;
            }
        }
        Ok(())
    }

    /// The backend, named upstreams, their buffering and the routes.
    fn summarize_upstreams(&self, out: &mut String) -> std::fmt::Result {
        let b = &self.backend;
        let limit = b.conn_limit().map_or(String::new(), |l| {
            format!(
                ", max connections {} per server, queue {} for up to {}",
                l.max_connections,
                l.queue.size,
                format_duration(l.queue.timeout)
            )
        });
        writeln!(
            out,
            "backend: {} (connect timeout {}, timeout {}{limit})",
            masked(b.url.as_str()),
            format_duration(b.connect_timeout),
            format_duration(b.timeout)
        )?;
        let on = |yes: bool| if yes { "on" } else { "off" };
        let buffering = |b: &super::Buffering| {
            format!(
                "buffering request {}, response {}, {} in memory per body, bodies up to {}",
                on(b.request),
                on(b.response),
                size(b.memory),
                size(b.max_body)
            )
        };
        writeln!(out, "backend {}", buffering(&b.buffering))?;
        for (name, u) in &self.upstreams {
            writeln!(
                out,
                "upstream {name}: {} ({})",
                masked(u.url.as_str()),
                buffering(&u.buffering)
            )?;
        }
        for r in &self.routes {
            let switches: Vec<String> = [
                ("request", r.buffering.request),
                ("response", r.buffering.response),
            ]
            .into_iter()
            .filter_map(|(way, set)| Some(format!("{way} buffering {}", on(set?))))
            .collect();
            writeln!(
                out,
                "route: host {} path {} -> {}{}{}",
                r.host.as_deref().unwrap_or("*"),
                r.path.as_deref().unwrap_or("/"),
                r.upstream,
                if r.strip_prefix {
                    " (prefix stripped)"
                } else {
                    ""
                },
                if switches.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", switches.join(", "))
                }
            )?;
        }
        Ok(())
    }

    /// The realtime endpoints.
    fn summarize_realtime(&self, out: &mut String) -> std::fmt::Result {
        let rt = &self.realtime;
        let p = &rt.path;
        writeln!(
            out,
            "realtime: {p}/ws {p}/sse {p}/poll (heartbeat {}, poll timeout {}, history {} / {}, \
             max message {} bytes, client queue {})",
            format_duration(rt.heartbeat),
            format_duration(rt.poll_timeout),
            rt.history.size,
            format_duration(rt.history.ttl),
            rt.max_message,
            rt.client_queue
        )?;
        let z = &rt.compression;
        if z.enabled {
            writeln!(
                out,
                "websocket compression: permessage-deflate from {} bytes, level {}",
                z.threshold, z.level
            )?;
        } else {
            writeln!(out, "websocket compression: off")?;
        }
        Ok(())
    }

    /// Tokens, admin keys and the application's session check.
    fn summarize_auth(&self, out: &mut String) -> std::fmt::Result {
        let jwt = match &self.auth.jwt {
            None => "off".to_owned(),
            Some(j) => {
                let mut algs = Vec::new();
                if j.hs256_secret.is_some() {
                    algs.push("HS256");
                }
                if j.rs256_public_key.is_some() {
                    algs.push("RS256");
                }
                if j.es256_public_key.is_some() {
                    algs.push("ES256");
                }
                algs.join("+")
            }
        };
        writeln!(
            out,
            "auth: jwt {jwt}, {} static token(s), {} admin key(s){}",
            self.auth.static_tokens.len(),
            self.auth.admin_keys.len(),
            if self.auth.admin_keys.is_empty() {
                " (admin open)"
            } else {
                ""
            }
        )?;
        if let Some(s) = &self.auth.session {
            writeln!(
                out,
                "auth.session: {} on upstream {}, subject {}, cache {}, recheck {}, timeout {}, {} at once ({} per address, {} per IPv6 /48, {} more waiting)",
                s.check,
                s.upstream.as_deref().unwrap_or(super::DEFAULT_UPSTREAM),
                s.subject,
                format_duration(s.cache),
                format_duration(s.recheck),
                format_duration(s.timeout),
                s.concurrency,
                s.per_address.share_of(s.concurrency),
                s.per_address.network_share_of(s.concurrency),
                s.per_address.queue
            )?;
        }
        Ok(())
    }

    /// Channel rules, in order.
    fn summarize_channels(&self, out: &mut String) -> std::fmt::Result {
        writeln!(
            out,
            "channels: {} rule(s), first match wins",
            self.channels.len()
        )?;
        for rule in &self.channels {
            let subscribe = match rule.subscribe.check() {
                Some(c) => format!("if {} allows", c.check),
                None => format!("{:?}", rule.subscribe).to_ascii_lowercase(),
            };
            let publish = match rule.publish.check() {
                Some(c) => format!("if {} allows", c.check),
                None => format!("{:?}", rule.publish).to_ascii_lowercase(),
            };
            write!(
                out,
                "  {:<20} subscribe {subscribe}, publish {publish}",
                rule.pattern
            )?;
            if rule.presence {
                write!(out, ", presence")?;
            }
            if let Some(h) = &rule.history {
                if let Some(size) = h.size {
                    write!(out, ", history size {size}")?;
                }
                if let Some(ttl) = h.ttl {
                    write!(out, ", history ttl {}", format_duration(ttl))?;
                }
            }
            let slow = match rule.slow_client {
                SlowClient::Disconnect => "disconnect",
                SlowClient::DropOldest => "drop_oldest",
                SlowClient::Conflate => "conflate",
            };
            writeln!(out, ", slow clients: {slow}")?;
        }
        Ok(())
    }

    /// Rate and connection limits, webhooks and taps.
    fn summarize_limits(&self, out: &mut String) -> std::fmt::Result {
        let l = &self.limits;
        let rate = |r: &super::RateLimit| format!("{} burst {}", r.rate, r.burst);
        writeln!(
            out,
            "limits: per client (subject) {} connections, messages {}, subscribes {}; \
             per ip (anonymous) {} connections, connects {}, subscribes {}; \
             publish {}; max connections {}",
            l.per_client.connections,
            rate(&l.per_client.messages),
            rate(&l.per_client.subscribes),
            l.per_ip.connections,
            rate(&l.per_ip.connects),
            rate(&l.per_ip.subscribes),
            rate(&l.publish),
            l.max_connections
        )?;
        writeln!(
            out,
            "webhooks: {}, taps: {}",
            self.webhooks.len(),
            self.taps.len()
        )?;
        Ok(())
    }

    /// Which broker carries messages.
    fn summarize_broker(&self, out: &mut String) -> std::fmt::Result {
        match (&self.broker.kind, &self.broker.redis) {
            (BrokerKind::Redis, Some(redis)) => writeln!(
                out,
                "broker: redis {} (prefix {})",
                masked(&redis.url),
                redis.prefix
            )?,
            (BrokerKind::Redis, None) => writeln!(out, "broker: redis")?,
            (BrokerKind::Memory, _) => writeln!(out, "broker: memory")?,
        }
        Ok(())
    }

    /// The Pusher apps, by id and key (never their secrets).
    fn summarize_pusher(&self, out: &mut String) -> std::fmt::Result {
        let Some(p) = &self.pusher else {
            return Ok(());
        };
        writeln!(
            out,
            "pusher: {}/{{key}}, {} app(s), activity timeout {}",
            p.path.trim_end_matches('/'),
            p.apps.len(),
            format_duration(p.activity_timeout)
        )?;
        for app in &p.apps {
            write!(out, "  app {} key {}", app.id, app.key)?;
            if !app.channel_prefix.is_empty() {
                write!(out, ", channels prefixed {:?}", app.channel_prefix)?;
            }
            if app.client_events {
                write!(out, ", client events {}/s", app.client_event_rate)?;
            }
            if let Some(hook) = &app.webhook {
                write!(out, ", webhook {} ({})", hook.url, hook.events.join(","))?;
            }
            writeln!(out, ", max message {} bytes", app.max_message)?;
        }
        Ok(())
    }
}

/// A URL with any password replaced by `***`.
fn masked(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => "(invalid url)".to_owned(),
    }
}

/// A byte size as it is usually written: `64KiB`, `1MiB`, or bytes.
fn size(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}
