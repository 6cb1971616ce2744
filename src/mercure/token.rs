//! Verifying a Mercure token (publisher's or subscriber's) with the key
//! `mercure.publisher_jwt` / `subscriber_jwt` names, through the same
//! `jsonwebtoken` crate as `auth.jwt`, and reading its rights.
//!
//! Unlike the gateway's own tokens a Mercure token needs no `sub` and no
//! `exp`: the tokens Symfony apps were given for years carry neither.
//! When present, `exp` and `nbf` are enforced, as are `iss` and `aud` when
//! the configuration names them. The algorithm is the key's: HS256 for a
//! secret, RS256 or ES256 for a public key, never what the token says
//! alone, and never `none`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use url::Url;

use super::claims::{self, Rights};
use crate::config::MercureKey;

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY: Duration = Duration::from_secs(30);

/// Why a token was refused: always a 401.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum TokenError {
    #[error("the token is malformed or its signature does not verify")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error(transparent)]
    Claims(#[from] claims::ClaimsError),
}

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: not a {kind} public key in PEM form")]
pub struct KeyFileError {
    path: String,
    kind: &'static str,
}

/// One kind of token's key and the checks shared by both kinds.
pub(crate) struct Verifier {
    key: DecodingKey,
    alg: Algorithm,
    issuer: Option<String>,
    audience: Option<String>,
}

impl Verifier {
    pub(crate) fn new(
        key: &MercureKey,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<Verifier, KeyFileError> {
        let read = |p: &std::path::Path, kind: &'static str| {
            let err = || KeyFileError {
                path: p.display().to_string(),
                kind,
            };
            let pem = std::fs::read(p).map_err(|_| err())?;
            if kind == "RSA" {
                DecodingKey::from_rsa_pem(&pem).map_err(|_| err())
            } else {
                DecodingKey::from_ec_pem(&pem).map_err(|_| err())
            }
        };
        let (key, alg) = if let Some(p) = &key.rs256_public_key {
            (read(p, "RSA")?, Algorithm::RS256)
        } else if let Some(p) = &key.es256_public_key {
            (read(p, "EC P-256")?, Algorithm::ES256)
        } else {
            let secret = key.hs256_secret.as_deref().unwrap_or_default();
            (
                DecodingKey::from_secret(secret.as_bytes()),
                Algorithm::HS256,
            )
        };
        let nonempty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
        Ok(Verifier {
            key,
            alg,
            issuer: nonempty(issuer),
            audience: nonempty(audience),
        })
    }

    /// Verify `token` and read its rights; `base` resolves relative URL
    /// Patterns. Also returns when the token expires, for the subscriber
    /// whose stream must end then.
    pub(crate) fn verify(
        &self,
        token: &str,
        base: &Url,
    ) -> Result<(Rights, Option<SystemTime>), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != self.alg || header.crit.is_some() {
            return Err(TokenError::Invalid);
        }
        let mut v = Validation::new(self.alg);
        v.leeway = LEEWAY.as_secs();
        v.validate_nbf = true;
        v.required_spec_claims.clear();
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            v.required_spec_claims.insert("iss".into());
        }
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                v.required_spec_claims.insert("aud".into());
            }
            None => v.validate_aud = false,
        }
        let data =
            jsonwebtoken::decode::<serde_json::Value>(token, &self.key, &v).map_err(|e| match e
                .kind()
            {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let claims = data.claims;
        if !claims.is_object() {
            return Err(TokenError::Invalid);
        }
        let expires = match claims.get("exp") {
            None => None,
            Some(exp) => {
                // Integer or not (some JWT libraries write fractions).
                let secs = exp
                    .as_u64()
                    .or_else(|| {
                        exp.as_f64()
                            .filter(|f| f.is_finite() && *f >= 0.0)
                            .map(|f| f as u64)
                    })
                    .ok_or(TokenError::Invalid)?;
                // The stream ends at `exp` itself, as the specification
                // asks (the leeway is for clocks at the verification only).
                Some(
                    UNIX_EPOCH
                        .checked_add(Duration::from_secs(secs))
                        .ok_or(TokenError::Invalid)?,
                )
            }
        };
        Ok((claims::rights(&claims, base)?, expires))
    }
}

/// The hub's two verifiers, built from `mercure:` with the settings.
pub struct Keys {
    pub(crate) publisher: Verifier,
    /// None: subscribers are anonymous.
    pub(crate) subscriber: Option<Verifier>,
}

impl Keys {
    /// The verifiers of `mercure:`, when it is present.
    pub fn new(config: Option<&crate::config::Mercure>) -> Result<Option<Keys>, KeyFileError> {
        let Some(m) = config else {
            return Ok(None);
        };
        let (iss, aud) = (m.issuer.as_deref(), m.audience.as_deref());
        let default = MercureKey::default();
        Ok(Some(Keys {
            publisher: Verifier::new(m.publisher_jwt.as_ref().unwrap_or(&default), iss, aud)?,
            subscriber: m
                .subscriber_jwt
                .as_ref()
                .map(|k| Verifier::new(k, iss, aud))
                .transpose()?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn base() -> Url {
        Url::parse("https://example.com/.well-known/mercure").unwrap()
    }

    fn verifier(issuer: Option<&str>) -> Verifier {
        let key = MercureKey {
            hs256_secret: Some("s3cret".into()),
            ..MercureKey::default()
        };
        Verifier::new(&key, issuer, None).unwrap()
    }

    fn sign(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn a_symfony_style_token_without_exp_or_sub_verifies() {
        let t = sign(json!({"mercure": {"publish": ["*"]}}), "s3cret");
        let (rights, expires) = verifier(None).verify(&t, &base()).unwrap();
        assert!(rights.publish.matches("x", &base()));
        assert_eq!(expires, None);
    }

    #[test]
    fn refusals() {
        let v = verifier(Some("app"));
        let good = json!({"iss": "app", "mercure": {"publish": ["*"]}});
        assert!(v.verify(&sign(good.clone(), "s3cret"), &base()).is_ok());
        assert_eq!(
            v.verify(&sign(good.clone(), "other"), &base()).err(),
            Some(TokenError::Invalid)
        );
        let no_iss = json!({"mercure": {"publish": ["*"]}});
        assert!(v.verify(&sign(no_iss, "s3cret"), &base()).is_err());
        let expired = json!({"iss": "app", "exp": 1000, "mercure": {}});
        assert_eq!(
            v.verify(&sign(expired, "s3cret"), &base()).err(),
            Some(TokenError::Expired)
        );
        assert!(v.verify("not.a.token", &base()).is_err());
        let none = "eyJhbGciOiJub25lIn0.eyJtZXJjdXJlIjp7InB1Ymxpc2giOlsiKiJdfX0.";
        assert!(v.verify(none, &base()).is_err());
        let bad_claims = json!({"iss": "app", "mercure": {"publish": "*"}});
        assert!(matches!(
            v.verify(&sign(bad_claims, "s3cret"), &base()),
            Err(TokenError::Claims(_))
        ));
    }
}
