//! JWT verification: signature and the registered claims through the
//! `jsonwebtoken` crate, then the checks it leaves to us.
//!
//! The rule kept here: every time in a token is untrusted input. `exp`, `nbf`
//! and `iat` must be plausible NumericDates (not after 9999-12-31), and every
//! instant derived from them is computed with checked arithmetic, so a validly
//! signed token can never overflow a clock; it is refused (401) instead. A
//! `crit` header names extensions the signer requires us to understand; we
//! understand none, so such a token is refused (RFC 7515 §4.1.11). A token
//! must name a non-empty subject: it is the client's key for limits and
//! `owner` rules.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Deserializer};

use super::{AuthError, Identity, KeyError, non_empty};
use crate::config;

/// 9999-12-31T23:59:59Z: later times in a token are refused as absurd.
pub(crate) const LATEST_TIME: u64 = 253_402_300_799;

/// The keys and checks from `auth.jwt`.
pub(super) struct JwtKeys {
    pub(super) hs256: Option<DecodingKey>,
    pub(super) rs256: Option<DecodingKey>,
    pub(super) es256: Option<DecodingKey>,
    pub(super) issuer: Option<String>,
    pub(super) audience: Option<String>,
    pub(super) leeway: Duration,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default, deserialize_with = "one_or_many")]
    channels: Vec<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    exp: Option<u64>,
    #[serde(default, deserialize_with = "numeric_date")]
    nbf: Option<u64>,
    #[serde(default, deserialize_with = "numeric_date")]
    iat: Option<u64>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split_whitespace().map(str::to_string).collect(),
        OneOrMany::Many(v) => v,
    })
}

/// A NumericDate (seconds since the epoch, integer or not). A value beyond
/// `u64` saturates to `u64::MAX`, which the plausibility check then refuses.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(u) = n.as_u64() {
        return Ok(Some(u));
    }
    match n.as_f64() {
        // `as` saturates: 1e30 becomes u64::MAX.
        Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f as u64)),
        _ => Err(serde::de::Error::custom("not a NumericDate")),
    }
}

impl JwtKeys {
    pub(super) fn new(j: &config::Jwt) -> Result<JwtKeys, KeyError> {
        let read = |p: &std::path::Path, kind: &'static str| -> Result<DecodingKey, KeyError> {
            let path = p.display().to_string();
            let pem = std::fs::read(p).map_err(|source| KeyError::Read {
                path: path.clone(),
                source,
            })?;
            let key = if kind == "RSA" {
                DecodingKey::from_rsa_pem(&pem)
            } else {
                DecodingKey::from_ec_pem(&pem)
            };
            key.map_err(|_| KeyError::Pem { path, kind })
        };
        Ok(JwtKeys {
            hs256: non_empty(&j.hs256_secret).map(|s| DecodingKey::from_secret(s.as_bytes())),
            rs256: j
                .rs256_public_key
                .as_deref()
                .map(|p| read(p, "RSA"))
                .transpose()?,
            es256: j
                .es256_public_key
                .as_deref()
                .map(|p| read(p, "EC P-256"))
                .transpose()?,
            issuer: non_empty(&j.issuer).map(str::to_string),
            audience: non_empty(&j.audience).map(str::to_string),
            leeway: j.leeway,
        })
    }

    pub(super) fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.crit.is_some() {
            return Err(AuthError::Critical);
        }
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            Algorithm::ES256 => self.es256.as_ref(),
            _ => None,
        }
        .ok_or(AuthError::Algorithm)?;
        let mut v = Validation::new(header.alg);
        // Bounded by config validation, so the crate's `now ± leeway` cannot overflow.
        v.leeway = self.leeway.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "sub"]);
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
        }
        match &self.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        let claims = jsonwebtoken::decode::<Claims>(token, key, &v)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidAlgorithm => AuthError::Algorithm,
                _ => AuthError::Malformed,
            })?
            .claims;
        self.check(claims, SystemTime::now())
    }

    /// What the crate does not check: plausible times, `iat` not in the
    /// future, a subject; then the expiry as a `SystemTime`, checked.
    fn check(&self, claims: Claims, now: SystemTime) -> Result<Identity, AuthError> {
        let times = [claims.exp, claims.nbf, claims.iat];
        if times.iter().flatten().any(|&t| t > LATEST_TIME) {
            return Err(AuthError::BadTime);
        }
        let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        if claims
            .iat
            .is_some_and(|iat| iat > now_secs.saturating_add(self.leeway.as_secs()))
        {
            return Err(AuthError::NotYetValid);
        }
        if claims.sub.trim().is_empty() {
            return Err(AuthError::NoSubject);
        }
        let expires = match claims.exp {
            None => None,
            Some(exp) => Some(
                UNIX_EPOCH
                    .checked_add(Duration::from_secs(exp))
                    .and_then(|t| t.checked_add(self.leeway))
                    .ok_or(AuthError::BadTime)?,
            ),
        };
        Ok(Identity {
            subject: claims.sub,
            channels: claims.channels,
            expires,
        })
    }
}
