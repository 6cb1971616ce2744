//! Who a client is: token verification (JWT HS256/RS256/ES256 through a
//! maintained JWT crate, or static tokens from the YAML) and the admin key
//! check. Channel rules (`rules.rs`) then decide what an identity may do.
//!
//! Rules kept here: secrets are compared in constant time; a token is never
//! logged or echoed; an invalid token is an error (401), never silently
//! treated as "no token".

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::constant_time::verify_slices_are_equal;
use http::{HeaderMap, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::config;

mod jwt;

use jwt::JwtKeys;

/// A verified client identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Token subject (`sub`): the client key for limits and `owner` rules.
    pub subject: String,
    /// Channel patterns from the token's `channels` claim.
    pub channels: Vec<String>,
    /// When the token stops being valid.
    pub expires: Option<SystemTime>,
}

/// Why a presented token was refused. All map to 401.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token signature does not verify")]
    BadSignature,
    #[error("the token issuer does not match")]
    WrongIssuer,
    #[error("the token audience does not match")]
    WrongAudience,
    #[error("the token uses an algorithm this gateway has no key for")]
    Algorithm,
    #[error("the token is malformed")]
    Malformed,
    #[error("the token names a time (exp, nbf or iat) that is not plausible")]
    BadTime,
    #[error("the token has critical header parameters this gateway does not understand")]
    Critical,
    #[error("the token has no subject")]
    NoSubject,
    #[error("unknown token")]
    Unknown,
}

impl AuthError {
    /// Error code in refusals (`token_expired` lets clients refresh).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Expired => "token_expired",
            _ => "unauthorized",
        }
    }

    /// Short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::BadSignature => "bad_signature",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::Algorithm => "algorithm",
            AuthError::Malformed => "malformed",
            AuthError::BadTime => "bad_time",
            AuthError::Critical => "critical_header",
            AuthError::NoSubject => "no_subject",
            AuthError::Unknown => "unknown",
        }
    }
}

/// A key file in `auth.jwt` that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a usable {kind} public key in PEM")]
    Pem { path: String, kind: &'static str },
}

/// Why an admin request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminRefusal {
    /// Keys are configured and the request's bearer key matches none (401).
    BadKey,
    /// No keys configured and the peer is not on loopback (403).
    NotLoopback,
}

pub struct Authenticator {
    jwt: Option<JwtKeys>,
    statics: Vec<(String, Identity)>,
    admin_keys: Vec<String>,
    cookie: Option<String>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

impl Authenticator {
    pub fn new(cfg: &config::Auth) -> Result<Authenticator, KeyError> {
        let jwt = cfg.jwt.as_ref().map(JwtKeys::new).transpose()?;
        let statics = cfg
            .static_tokens
            .iter()
            .filter(|t| !t.token.is_empty())
            .map(|t| {
                let id = Identity {
                    subject: t.subject.clone(),
                    channels: t.channels.clone(),
                    expires: None,
                };
                (t.token.clone(), id)
            })
            .collect();
        Ok(Authenticator {
            jwt,
            statics,
            admin_keys: cfg
                .admin_keys
                .iter()
                .filter(|k| !k.is_empty())
                .cloned()
                .collect(),
            cookie: cfg.cookie.clone().filter(|c| !c.is_empty()),
        })
    }

    /// Verify a token: a static token, else a JWT.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let mut found = None;
        for (t, id) in &self.statics {
            // Compare against every entry so timing says nothing about which matched.
            if verify_slices_are_equal(t.as_bytes(), token.as_bytes()).is_ok() {
                found = Some(id);
            }
        }
        if let Some(id) = found {
            return Ok(id.clone());
        }
        let Some(jwt) = &self.jwt else {
            return Err(AuthError::Unknown);
        };
        jwt.verify(token)
    }

    /// The token a request carries: `Authorization: Bearer`, then `?token=`,
    /// then the configured cookie.
    pub fn token<'a>(
        &self,
        headers: &'a HeaderMap,
        query: &'a HashMap<String, String>,
    ) -> Option<String> {
        if let Some(t) = bearer(headers) {
            return Some(t.to_string());
        }
        if let Some(t) = query.get("token").filter(|t| !t.is_empty()) {
            return Some(t.clone());
        }
        let name = self.cookie.as_deref()?;
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
            .filter(|v| !v.is_empty())
    }

    /// Identify a request: `Ok(None)` when it carries no token at all.
    pub fn identify(
        &self,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
    ) -> Result<Option<Identity>, AuthError> {
        self.token(headers, query)
            .map(|t| self.verify(&t))
            .transpose()
    }

    /// Admin access: with keys configured, a matching bearer key; without,
    /// loopback peers only.
    pub fn check_admin(&self, headers: &HeaderMap, peer: SocketAddr) -> Result<(), AdminRefusal> {
        if self.admin_keys.is_empty() {
            return if peer.ip().is_loopback() {
                Ok(())
            } else {
                Err(AdminRefusal::NotLoopback)
            };
        }
        let given = bearer(headers).unwrap_or("");
        let mut ok = false;
        for k in &self.admin_keys {
            ok |= verify_slices_are_equal(k.as_bytes(), given.as_bytes()).is_ok();
        }
        if ok {
            Ok(())
        } else {
            Err(AdminRefusal::BadKey)
        }
    }

    /// No admin key is configured: the admin API trusts loopback peers.
    pub fn admin_keyless(&self) -> bool {
        self.admin_keys.is_empty()
    }

    /// The admin key a request used (the publish rate-limit key).
    pub fn admin_key_of(headers: &HeaderMap) -> &str {
        bearer(headers).unwrap_or("")
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[derive(Serialize)]
struct MintClaims<'a> {
    sub: &'a str,
    channels: &'a [String],
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// Mint an HS256 token (for `pushgate token` and tests).
pub fn mint_hs256(
    secret: &str,
    subject: &str,
    channels: &[String],
    ttl: Duration,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = MintClaims {
        sub: subject,
        channels,
        iat: now,
        exp: now + ttl.as_secs(),
        iss: issuer,
        aud: audience,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

#[cfg(test)]
mod tests;
