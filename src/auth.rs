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
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};

use crate::config;

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

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default, deserialize_with = "one_or_many")]
    channels: Vec<String>,
    exp: Option<u64>,
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

struct JwtKeys {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    es256: Option<DecodingKey>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
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
        let jwt = match &cfg.jwt {
            None => None,
            Some(j) => {
                let read =
                    |p: &std::path::Path, kind: &'static str| -> Result<DecodingKey, KeyError> {
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
                Some(JwtKeys {
                    hs256: non_empty(&j.hs256_secret)
                        .map(|s| DecodingKey::from_secret(s.as_bytes())),
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
        };
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
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let key = match header.alg {
            Algorithm::HS256 => jwt.hs256.as_ref(),
            Algorithm::RS256 => jwt.rs256.as_ref(),
            Algorithm::ES256 => jwt.es256.as_ref(),
            _ => None,
        }
        .ok_or(AuthError::Algorithm)?;
        let mut v = Validation::new(header.alg);
        v.leeway = jwt.leeway.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "sub"]);
        if let Some(iss) = &jwt.issuer {
            v.set_issuer(&[iss]);
        }
        match &jwt.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &v).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::InvalidAlgorithm => AuthError::Algorithm,
            _ => AuthError::Malformed,
        })?;
        Ok(Identity {
            subject: data.claims.sub,
            channels: data.claims.channels,
            expires: data
                .claims
                .exp
                .map(|e| UNIX_EPOCH + Duration::from_secs(e) + jwt.leeway),
        })
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
mod tests {
    use super::*;

    fn auth(issuer: Option<&str>, audience: Option<&str>) -> Authenticator {
        Authenticator {
            jwt: Some(JwtKeys {
                hs256: Some(DecodingKey::from_secret(b"s3cret")),
                rs256: None,
                es256: None,
                issuer: issuer.map(str::to_string),
                audience: audience.map(str::to_string),
                leeway: Duration::from_secs(5),
            }),
            statics: vec![(
                "static-1".into(),
                Identity {
                    subject: "dash".into(),
                    channels: vec!["metrics".into()],
                    expires: None,
                },
            )],
            admin_keys: vec!["adm".into()],
            cookie: Some("pg".into()),
        }
    }

    #[test]
    fn verifies_hs256_and_static() {
        let a = auth(Some("app"), Some("browsers"));
        let t = mint_hs256(
            "s3cret",
            "alice",
            &["orders.*".into()],
            Duration::from_secs(60),
            Some("app"),
            Some("browsers"),
        )
        .unwrap();
        let id = a.verify(&t).unwrap();
        assert_eq!(id.subject, "alice");
        assert_eq!(id.channels, vec!["orders.*".to_string()]);
        assert_eq!(a.verify("static-1").unwrap().subject, "dash");
        assert_eq!(a.verify("nope"), Err(AuthError::Malformed));
    }

    #[test]
    fn refuses_bad_tokens() {
        let a = auth(Some("app"), Some("browsers"));
        let mint = |secret, ttl, iss, aud| {
            mint_hs256(secret, "a", &[], Duration::from_secs(ttl), iss, aud).unwrap()
        };
        assert_eq!(
            a.verify(&mint("other", 60, Some("app"), Some("browsers"))),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            a.verify(&mint("s3cret", 60, Some("evil"), Some("browsers"))),
            Err(AuthError::WrongIssuer)
        );
        assert_eq!(
            a.verify(&mint("s3cret", 60, Some("app"), Some("servers"))),
            Err(AuthError::WrongAudience)
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "a", "exp": now - 60, "iss": "app", "aud": "browsers"}),
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert_eq!(a.verify(&expired), Err(AuthError::Expired));
        let immature = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "a", "exp": now + 600, "nbf": now + 300, "iss": "app", "aud": "browsers"}),
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert_eq!(a.verify(&immature), Err(AuthError::NotYetValid));
    }

    #[test]
    fn token_sources_and_admin() {
        let a = auth(None, None);
        let mut h = HeaderMap::new();
        let mut q = HashMap::new();
        assert_eq!(a.token(&h, &q), None);
        h.insert(header::COOKIE, "x=1; pg=fromcookie".parse().unwrap());
        assert_eq!(a.token(&h, &q).as_deref(), Some("fromcookie"));
        q.insert("token".to_string(), "fromquery".to_string());
        assert_eq!(a.token(&h, &q).as_deref(), Some("fromquery"));
        h.insert(header::AUTHORIZATION, "Bearer fromheader".parse().unwrap());
        assert_eq!(a.token(&h, &q).as_deref(), Some("fromheader"));

        let remote: SocketAddr = "10.0.0.1:5".parse().unwrap();
        assert_eq!(a.check_admin(&h, remote), Err(AdminRefusal::BadKey));
        h.insert(header::AUTHORIZATION, "Bearer adm".parse().unwrap());
        assert_eq!(a.check_admin(&h, remote), Ok(()));
        let open = Authenticator {
            admin_keys: vec![],
            ..auth(None, None)
        };
        assert_eq!(
            open.check_admin(&HeaderMap::new(), remote),
            Err(AdminRefusal::NotLoopback)
        );
        assert_eq!(
            open.check_admin(&HeaderMap::new(), "127.0.0.1:1".parse().unwrap()),
            Ok(())
        );
    }

    #[test]
    fn rs256_and_es256_public_keys_from_pem() {
        let dir = std::env::temp_dir().join(format!("pushgate-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            (&rcgen::PKCS_RSA_SHA256, Algorithm::RS256, "rs.pem"),
            (&rcgen::PKCS_ECDSA_P256_SHA256, Algorithm::ES256, "es.pem"),
        ];
        for (rc_alg, alg, file) in cases {
            let pair = rcgen::KeyPair::generate_for(rc_alg).unwrap();
            let public = dir.join(file);
            std::fs::write(&public, pair.public_key_pem()).unwrap();
            let jwt = config::Jwt {
                rs256_public_key: (alg == Algorithm::RS256).then(|| public.clone()),
                es256_public_key: (alg == Algorithm::ES256).then(|| public.clone()),
                ..config::Jwt::default()
            };
            let auth = Authenticator::new(&config::Auth {
                jwt: Some(jwt),
                ..config::Auth::default()
            })
            .unwrap();
            let private = pair.serialize_pem();
            let key = match alg {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
                _ => EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
            };
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let claims = serde_json::json!({"sub": "carol", "channels": "orders.1 orders.2", "exp": now + 60});
            let token = jsonwebtoken::encode(&Header::new(alg), &claims, &key).unwrap();
            let id = auth.verify(&token).unwrap();
            assert_eq!(id.subject, "carol");
            assert_eq!(
                id.channels,
                vec!["orders.1".to_string(), "orders.2".to_string()]
            );
            let mut forged = token.clone();
            forged.truncate(forged.len() - 4);
            forged.push_str("AAAA");
            assert!(auth.verify(&forged).is_err());
            let hs = mint_hs256("s", "carol", &[], Duration::from_secs(60), None, None).unwrap();
            assert_eq!(
                auth.verify(&hs),
                Err(AuthError::Algorithm),
                "no HS256 key configured"
            );
        }
        std::fs::write(dir.join("bad.pem"), "not a key").unwrap();
        let jwt = config::Jwt {
            rs256_public_key: Some(dir.join("bad.pem")),
            ..config::Jwt::default()
        };
        let err = Authenticator::new(&config::Auth {
            jwt: Some(jwt),
            ..config::Auth::default()
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("bad.pem"), "{err}");
    }
}
