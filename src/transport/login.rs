//! Who the application says a browser is, and what it lets it use, as the
//! transports ask it: at connect (`identify`), for a channel whose rule is a
//! `check` (`allow`), and again every `recheck` on a live connection
//! (`recheck`). The asking itself (cache, single flight, bounds) is
//! `session_auth`; here its answers become the documented refusals.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, Response, StatusCode};

use super::Client;
use super::session::Session;
use crate::auth::{AuthError, Identity};
use crate::reply::{self, Body};
use crate::rules::{ChannelRule, Verdict};
use crate::session_auth::{Access, CheckError, Credential};
use crate::state::{AppState, Settings};

/// A refusal of a channel: status, code and message, for an HTTP answer or
/// a WebSocket error frame alike.
#[derive(Debug)]
pub struct Denied {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Denied {
    pub fn response(&self) -> Response<Body> {
        reply::error(self.status, self.code, &self.message)
    }

    fn unavailable(e: &CheckError) -> Denied {
        Denied {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "auth_unavailable",
            message: format!("{e}; try again shortly"),
        }
    }
}

/// Who a request is: its token's identity, else (with `auth.session`) the
/// application's answer for its credentials.
pub struct Identified {
    pub identity: Option<Identity>,
    /// The identity came from `auth.session` and is asked again at `recheck`.
    pub by_session: bool,
    /// The browser's credentials, for resource checks and rechecks.
    pub credential: Option<Credential>,
}

/// A token wins when it verifies. Without one — or with one that is not a
/// token of ours at all (an application's own bearer value) — and with
/// `auth.session`, the application is asked. A token of ours that fails
/// (expired, bad signature) is a 401 as always.
pub async fn identify(
    state: &AppState,
    settings: &Settings,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<Identified, Response<Body>> {
    let asks = settings.checks.login.is_some() || settings.rules.has_checks();
    let credential = asks.then(|| Credential::of(headers)).flatten();
    let refused = |e: AuthError| {
        state.metrics.auth_failed(e.reason());
        reply::error(StatusCode::UNAUTHORIZED, e.code(), &e)
    };
    match settings.auth.identify(headers, q) {
        Ok(Some(identity)) => {
            return Ok(Identified {
                identity: Some(identity),
                by_session: false,
                credential,
            });
        }
        Ok(None) => {}
        Err(AuthError::Unknown | AuthError::Malformed) if settings.checks.login.is_some() => {}
        Err(e) => return Err(refused(e)),
    }
    let (Some(login), Some(c)) = (&settings.checks.login, &credential) else {
        return Ok(Identified {
            identity: None,
            by_session: false,
            credential,
        });
    };
    let Some(upstream) = settings.upstreams.get(&settings.checks.terms.upstream) else {
        return Err(Denied::unavailable(&CheckError::Unreachable).response());
    };
    match state
        .app_checks
        .who(login, &settings.checks.terms, upstream, c, &state.metrics)
        .await
    {
        Ok(identity) => Ok(Identified {
            by_session: identity.is_some(),
            identity,
            credential,
        }),
        Err(e) => Err(Denied::unavailable(&e).response()),
    }
}

/// The rule for `channel` once the application allowed it, when the rule
/// asks; `checked` says the subscription was allowed by the application
/// (and is asked again at `recheck`).
pub async fn allow<'r>(
    state: &AppState,
    settings: &Settings,
    credential: Option<&Credential>,
    channel: &str,
    verdict: Verdict<'r>,
) -> Result<(&'r ChannelRule, bool), Denied> {
    let (rule, checks) = match verdict {
        Verdict::Allowed(rule) => return Ok((rule, false)),
        Verdict::Ask(rule, checks) => (rule, checks),
    };
    let Some(upstream) = settings.upstreams.get(&settings.checks.terms.upstream) else {
        return Err(Denied::unavailable(&CheckError::Unreachable));
    };
    let captures = rule.pattern.captures(channel).unwrap_or_default();
    for check in checks {
        let access = state
            .app_checks
            .may(
                check,
                &captures,
                &settings.checks.terms,
                upstream,
                credential,
                &state.metrics,
            )
            .await;
        match access {
            Ok(Access::Allowed) => {}
            Ok(Access::Unauthorized) => {
                return Err(Denied {
                    status: StatusCode::UNAUTHORIZED,
                    code: "unauthorized",
                    message: format!("channel `{channel}` needs a login"),
                });
            }
            Ok(Access::Forbidden) => {
                return Err(Denied {
                    status: StatusCode::FORBIDDEN,
                    code: "forbidden",
                    message: format!("the application does not allow channel `{channel}`"),
                });
            }
            Err(e) => return Err(Denied::unavailable(&e)),
        }
    }
    Ok((rule, true))
}

/// What a recheck found.
#[derive(Debug, Default)]
pub struct Rechecked {
    /// The login is gone (logged out, another user, or not confirmed): the
    /// identity was dropped, as at a token's expiry.
    pub ended: bool,
    /// Subscriptions closed, each with its error code.
    pub revoked: Vec<(Arc<str>, &'static str)>,
}

/// Whether a connection has anything to ask again at `recheck`.
pub fn needs_recheck(client: &Client, session: &Session) -> bool {
    client.by_session || session.has_checked()
}

/// Ask the application again about a live connection: its login (when the
/// identity came from it) and each subscription it allowed. A login that
/// ended drops the identity and every subscription that needed it; a
/// resource now refused, or that cannot be confirmed, is closed.
pub async fn recheck(
    state: &AppState,
    settings: &Settings,
    client: &mut Client,
    session: &mut Session,
) -> Rechecked {
    let mut out = Rechecked::default();
    if client.by_session {
        let still = match (&settings.checks.login, &client.credential) {
            (Some(login), Some(c)) => match settings.upstreams.get(&settings.checks.terms.upstream)
            {
                Some(upstream) => state
                    .app_checks
                    .who(login, &settings.checks.terms, upstream, c, &state.metrics)
                    .await
                    .ok()
                    .flatten(),
                None => None,
            },
            // `auth.session` was taken out by a reload.
            _ => None,
        };
        let same = |id: &Identity| {
            client
                .identity
                .as_ref()
                .is_some_and(|was| was.subject == id.subject)
        };
        match still {
            Some(id) if same(&id) => client.identity = Some(id),
            _ => {
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
    for channel in session.checked_channels() {
        let Ok(verdict) = settings
            .rules
            .check_subscribe(&channel, client.identity.as_ref())
        else {
            continue;
        };
        if let Err(denied) = allow(
            state,
            settings,
            client.credential.as_ref(),
            &channel,
            verdict,
        )
        .await
        {
            session.unsubscribe(&channel);
            if denied.status == StatusCode::UNAUTHORIZED {
                out.ended = true;
            }
            out.revoked.push((channel, denied.code));
        }
    }
    out
}
