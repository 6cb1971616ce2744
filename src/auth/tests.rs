//! Token verification and admin checks against hand-built keys: good and bad
//! signatures, issuers, audiences, times, headers and subjects.

use super::*;
use jsonwebtoken::DecodingKey;

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
    let guard = tempfile::Builder::new()
        .prefix("pushgate-auth-")
        .tempdir()
        .unwrap();
    let dir = guard.path();
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
        let claims =
            serde_json::json!({"sub": "carol", "channels": "orders.1 orders.2", "exp": now + 60});
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

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn signed(claims: serde_json::Value, header: Header) -> String {
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(b"s3cret")).unwrap()
}

#[test]
fn absurd_times_are_refused_not_overflowed() {
    let a = auth(None, None);
    let now = now_secs();
    let hs = || Header::new(Algorithm::HS256);
    let cases = [
        (
            serde_json::json!({"sub": "a", "exp": u64::MAX}),
            AuthError::BadTime,
        ),
        (
            serde_json::json!({"sub": "a", "exp": jwt::LATEST_TIME + 1}),
            AuthError::BadTime,
        ),
        (
            serde_json::json!({"sub": "a", "exp": 1.0e30}),
            AuthError::Malformed,
        ),
        (
            serde_json::json!({"sub": "a", "exp": now + 60, "iat": u64::MAX}),
            AuthError::BadTime,
        ),
        (
            serde_json::json!({"sub": "a", "exp": now + 60, "iat": now + 600}),
            AuthError::NotYetValid,
        ),
        (
            serde_json::json!({"sub": "a", "exp": now + 60, "nbf": u64::MAX}),
            AuthError::NotYetValid,
        ),
        (
            serde_json::json!({"sub": "a", "exp": -5}),
            AuthError::Malformed,
        ),
    ];
    for (claims, want) in cases {
        assert_eq!(
            a.verify(&signed(claims.clone(), hs())),
            Err(want),
            "{claims}"
        );
    }
    // The latest plausible second still verifies, with a checked expiry.
    let far = signed(
        serde_json::json!({"sub": "a", "exp": jwt::LATEST_TIME}),
        hs(),
    );
    let id = a.verify(&far).unwrap();
    assert_eq!(
        id.expires,
        Some(UNIX_EPOCH + Duration::from_secs(jwt::LATEST_TIME) + Duration::from_secs(5))
    );
    // A fractional NumericDate is a time like any other.
    let frac = signed(
        serde_json::json!({"sub": "a", "exp": now as f64 + 60.5}),
        hs(),
    );
    assert_eq!(a.verify(&frac).unwrap().subject, "a");
}

#[test]
fn crit_headers_and_empty_subjects_are_refused() {
    let a = auth(None, None);
    let now = now_secs();
    let mut crit = Header::new(Algorithm::HS256);
    crit.crit = Some(vec!["b64".into()]);
    let claims = serde_json::json!({"sub": "a", "exp": now + 60});
    assert_eq!(a.verify(&signed(claims, crit)), Err(AuthError::Critical));
    for sub in ["", "   "] {
        let t = signed(
            serde_json::json!({"sub": sub, "exp": now + 60}),
            Header::new(Algorithm::HS256),
        );
        assert_eq!(a.verify(&t), Err(AuthError::NoSubject), "sub {sub:?}");
    }
}
