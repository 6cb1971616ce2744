//! Who the application says a browser is, and what it lets it use, as the
//! transports ask it: at connect (`identify`), for a channel whose rule is a
//! `check` (`allow`), and again every `recheck` on a live connection
//! (`recheck`). The asking itself (cache, single flight, bounds) is
//! `session_auth`; here its answers become the documented refusals.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, StatusCode};

use super::Client;
use super::admission::{self, Refusal};
use super::session::Session;
use crate::auth::{AuthError, Identity};
use crate::rules::{ChannelRule, Verdict};
use crate::session_auth::{Access, Asker, CheckError, Credential};
use crate::state::{AppState, Settings};

/// Who a request is: its token's identity, else (with `auth.session`) the
/// application's answer for its credentials.
pub struct Identified {
    pub identity: Option<Identity>,
    /// The identity came from `auth.session` and is asked again at `recheck`.
    pub by_session: bool,
    /// The browser's credentials, for resource checks and rechecks.
    pub credential: Option<Credential>,
    /// The application was not asked yet, though it could be: nothing the
    /// request named needed an identity. A WebSocket asks when an op first
    /// does.
    pub login_deferred: bool,
}

/// A token wins when it verifies. Without one — or with one that is not a
/// token of ours at all (an application's own bearer value) — and with
/// `auth.session`, the application is asked, but only when `wanted`: a
/// request for public channels is served anonymously whatever cookies it
/// carries, so the application's login being down, slow or redirecting
/// never refuses it. A token of ours that fails (expired, bad signature)
/// is a 401 as always.
pub async fn identify(
    state: &AppState,
    settings: &Settings,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    wanted: bool,
    asker: Asker,
    before_asking: impl FnOnce() -> Result<(), Refusal>,
) -> Result<Identified, Refusal> {
    let asks = settings.checks.login.is_some() || settings.rules.has_checks();
    let credential = asks.then(|| Credential::of(headers)).flatten();
    let refused = |e: AuthError| {
        state.metrics.auth_failed(e.reason());
        admission::bad_token(&e)
    };
    match settings.auth.identify(headers, q) {
        Ok(Some(identity)) => {
            return Ok(Identified {
                identity: Some(identity),
                by_session: false,
                credential,
                login_deferred: false,
            });
        }
        Ok(None) => {}
        Err(AuthError::Unknown | AuthError::Malformed) if settings.checks.login.is_some() => {}
        Err(e) => return Err(refused(e)),
    }
    let anonymous = |credential, login_deferred| Identified {
        identity: None,
        by_session: false,
        credential,
        login_deferred,
    };
    let Some(c) = credential
        .as_ref()
        .filter(|_| settings.checks.login.is_some())
    else {
        return Ok(anonymous(credential, false));
    };
    if !wanted {
        return Ok(anonymous(credential, true));
    }
    before_asking()?;
    let identity = login(state, settings, c, asker).await?;
    Ok(Identified {
        by_session: identity.is_some(),
        identity,
        credential,
        login_deferred: false,
    })
}

/// Ask the application's login (`auth.session`) who `credential` is:
/// `Ok(None)` when it says nobody is logged in, or when there is no
/// `auth.session` (a reload took it out).
pub async fn login(
    state: &AppState,
    settings: &Settings,
    credential: &Credential,
    asker: Asker,
) -> Result<Option<Identity>, Refusal> {
    let Some(login) = &settings.checks.login else {
        return Ok(None);
    };
    let Some(upstream) = settings.upstreams.get(&settings.checks.terms.upstream) else {
        return Err(admission::app_unavailable(&CheckError::Unreachable));
    };
    state
        .app_checks
        .who(
            login,
            &settings.checks.terms,
            upstream,
            credential,
            asker,
            &state.metrics,
        )
        .await
        .map_err(|e| admission::app_unavailable(&e))
}

/// The rule for `channel` once the application allowed it, when the rule
/// asks; with the id of the checks that allowed it (`rules::checks_id`; 0
/// when none did), which are asked again at `recheck`.
pub async fn allow<'r>(
    state: &AppState,
    settings: &Settings,
    credential: Option<&Credential>,
    asker: Asker,
    channel: &str,
    verdict: Verdict<'r>,
) -> Result<(&'r ChannelRule, u64), Refusal> {
    let (rule, checks) = match verdict {
        Verdict::Allowed(rule) => return Ok((rule, 0)),
        Verdict::Ask(rule, checks) => (rule, checks),
    };
    let Some(upstream) = settings.upstreams.get(&settings.checks.terms.upstream) else {
        return Err(admission::app_unavailable(&CheckError::Unreachable));
    };
    let captures = rule.pattern.captures(channel).unwrap_or_default();
    for check in &checks {
        let access = state
            .app_checks
            .may(
                check,
                &captures,
                (&settings.checks.terms, upstream),
                (credential, asker),
                &state.metrics,
            )
            .await;
        match access {
            Ok(Access::Allowed) => {}
            Ok(Access::Unauthorized) => return Err(admission::app_denied(channel, true)),
            Ok(Access::Forbidden) => return Err(admission::app_denied(channel, false)),
            Err(e) => return Err(admission::app_unavailable(&e)),
        }
    }
    Ok((rule, crate::rules::checks_id(&checks)))
}

/// What a recheck found.
#[derive(Debug, Default)]
pub struct Rechecked {
    /// The login is gone (logged out, or another user): the identity was
    /// dropped, as at a token's expiry.
    pub ended: bool,
    /// Subscriptions closed, each with its error code.
    pub revoked: Vec<(Arc<str>, &'static str)>,
    /// The application could not be asked (down, slow): nothing changed,
    /// and it should be asked again soon rather than at the next `recheck`.
    pub unconfirmed: bool,
}

/// Whether a connection has anything to ask again at `recheck`.
pub fn needs_recheck(client: &Client, session: &Session) -> bool {
    client.by_session || session.has_checked()
}

/// Ask the application again about a live connection: its login (when the
/// identity came from it) and each subscription it allowed. A login that
/// ended drops the identity and every subscription that needed it; a
/// resource now refused is closed. An application that cannot answer
/// changes nothing (`unconfirmed`): a connection the application allowed is
/// not cut for its outage, though nothing new is allowed meanwhile.
pub async fn recheck(
    state: &AppState,
    settings: &Settings,
    client: &mut Client,
    session: &mut Session,
) -> Rechecked {
    let mut out = Rechecked::default();
    let upstream = settings.upstreams.get(&settings.checks.terms.upstream);
    if client.by_session {
        let still = match (&settings.checks.login, &client.credential, upstream) {
            (Some(login), Some(c), Some(upstream)) => {
                let asker = Asker::recheck(client.addr);
                state
                    .app_checks
                    .who(
                        login,
                        &settings.checks.terms,
                        upstream,
                        c,
                        asker,
                        &state.metrics,
                    )
                    .await
            }
            // `auth.session` was taken out by a reload.
            _ => Ok(None),
        };
        let same = |id: &Identity| {
            client
                .identity
                .as_ref()
                .is_some_and(|was| was.subject == id.subject)
        };
        match still {
            Ok(Some(id)) if same(&id) => client.identity = Some(id),
            Err(_) => out.unconfirmed = true,
            Ok(_) => {
                client.identity = None;
                client.by_session = false;
                session.set_subject(None);
                out.ended = true;
            }
        }
    }
    for channel in session.revoke_forbidden(&settings.rules, client.identity.as_ref()) {
        out.revoked.push((
            channel,
            if out.ended {
                "token_expired"
            } else {
                "forbidden"
            },
        ));
    }
    // Every checked subscription at once.
    let channels = session.checked_channels();
    let verdicts: Vec<_> = channels
        .iter()
        .map(|c| settings.rules.check_subscribe(c, client.identity.as_ref()))
        .collect();
    let credential = client.credential.as_deref();
    let asker = Asker::recheck(client.addr);
    let answers = futures_util::future::join_all(channels.iter().zip(&verdicts).map(
        |(channel, verdict)| async move {
            match verdict {
                Ok(v) => Some(allow(state, settings, credential, asker, channel, v.clone()).await),
                // Closed by `revoke_forbidden` above.
                Err(_) => None,
            }
        },
    ))
    .await;
    for (channel, answer) in channels.into_iter().zip(answers) {
        match answer {
            // Not answered (down, slow, or our own share refused asking):
            // nothing changes.
            Some(Err(denied))
                if denied.status == StatusCode::SERVICE_UNAVAILABLE
                    || denied.status == StatusCode::TOO_MANY_REQUESTS =>
            {
                out.unconfirmed = true;
            }
            Some(Err(denied)) => {
                session.unsubscribe(&channel);
                if denied.status == StatusCode::UNAUTHORIZED {
                    out.ended = true;
                }
                out.revoked.push((channel, denied.code));
            }
            _ => {}
        }
    }
    out
}

/// When the first recheck of a connection is due: within the last half of
/// `every`, at random, so that connections opened together (a restart's
/// reconnects) are not all asked again at the same moment.
pub fn first_recheck(every: std::time::Duration) -> tokio::time::Instant {
    use rand::Rng;
    let half = every / 2;
    let jitter = half.mul_f64(rand::rng().random::<f64>());
    tokio::time::Instant::now() + half + jitter
}

/// A live connection's recheck timer, armed only when first waited on.
/// Most connections never need a recheck (nothing they follow asked the
/// application), and an armed interval keeps a timer entry on the heap
/// (~110 B) for the connection's whole life; until then this holds only
/// when the first recheck falls due. Armed late, it ticks as one armed at
/// the start would have: at once if that time has passed, then every
/// `every`, a late tick delaying the next.
pub enum RecheckTimer {
    Due {
        at: tokio::time::Instant,
        every: std::time::Duration,
    },
    Armed(tokio::time::Interval),
}

impl RecheckTimer {
    /// First due within the last half of `every` ([`first_recheck`]).
    pub fn new(every: std::time::Duration) -> RecheckTimer {
        RecheckTimer::Due {
            at: first_recheck(every),
            every,
        }
    }

    /// Wait for the next recheck.
    pub async fn tick(&mut self) {
        loop {
            match self {
                RecheckTimer::Armed(interval) => {
                    interval.tick().await;
                    return;
                }
                RecheckTimer::Due { at, every } => {
                    let mut interval = tokio::time::interval_at(*at, *every);
                    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    *self = RecheckTimer::Armed(interval);
                }
            }
        }
    }

    /// Ask again `after` from now (an application that could not answer),
    /// then every `every` again.
    pub fn reset_after(&mut self, after: std::time::Duration) {
        match self {
            RecheckTimer::Armed(interval) => interval.reset_after(after),
            RecheckTimer::Due { at, .. } => *at = tokio::time::Instant::now() + after,
        }
    }
}

/// How soon to ask again when the application could not answer.
pub fn retry_after(every: std::time::Duration) -> std::time::Duration {
    every.min(std::time::Duration::from_secs(15))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::Instant;

    /// Now is `at`, to the timer's millisecond.
    fn now_is(at: Instant) {
        let now = Instant::now();
        assert!(
            now >= at && now <= at + Duration::from_millis(1),
            "now {now:?}, expected {at:?}"
        );
    }

    /// Unarmed, the timer holds no timer entry; armed late, it ticks as
    /// one armed at the start: at once when its first time has passed,
    /// then a period after each tick.
    #[tokio::test(start_paused = true)]
    async fn the_recheck_timer_is_armed_on_first_use_and_keeps_its_times() {
        let every = Duration::from_secs(60);
        let start = Instant::now();
        let mut timer = RecheckTimer::new(every);
        let RecheckTimer::Due { at, .. } = timer else {
            panic!("armed before it was waited on");
        };
        assert!(at >= start + every / 2 && at <= start + every);
        // Nothing needed a recheck until long after the first was due.
        tokio::time::advance(Duration::from_secs(200)).await;
        timer.tick().await;
        assert!(matches!(timer, RecheckTimer::Armed(_)));
        assert_eq!(
            Instant::now(),
            start + Duration::from_secs(200),
            "due already: at once"
        );
        timer.tick().await;
        now_is(start + Duration::from_secs(260));
        timer.reset_after(Duration::from_secs(15));
        timer.tick().await;
        now_is(start + Duration::from_secs(275));
    }

    /// Waited on in time, the first tick comes when it was due.
    #[tokio::test(start_paused = true)]
    async fn an_unarmed_recheck_timer_ticks_when_due() {
        let every = Duration::from_secs(60);
        let mut timer = RecheckTimer::new(every);
        let RecheckTimer::Due { at, .. } = timer else {
            panic!("armed before it was waited on");
        };
        timer.tick().await;
        now_is(at);
        let mut fresh = RecheckTimer::new(every);
        fresh.reset_after(Duration::from_secs(5));
        let due = Instant::now() + Duration::from_secs(5);
        fresh.tick().await;
        now_is(due);
    }
}
