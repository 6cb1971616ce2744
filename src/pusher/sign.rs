//! Pusher's three signatures, all HMAC-SHA256 with the app's secret, hex:
//!
//! - a channel authorization (`key:hex(HMAC(secret, "socket_id:channel"))`,
//!   with `:channel_data` for presence) that the application's auth endpoint
//!   signs and a socket's `pusher:subscribe` carries;
//! - a signed HTTP API request (`METHOD\npath\nquery` over the sorted,
//!   lower-cased query without `auth_signature`, `body_md5` binding the body);
//! - a webhook body, sent as `X-Pusher-Signature`.
//!
//! Every check compares in constant time and signs exactly the bytes received
//! (a presence `channel_data` is never re-serialised).

use aws_lc_rs::hmac;
use md5::{Digest, Md5};

/// How far an HTTP API request's `auth_timestamp` may be from now.
pub const TIMESTAMP_WINDOW_SECS: u64 = 600;

/// One app's secret, ready to sign and check.
#[derive(Clone)]
pub struct Signer {
    key: String,
    hmac: hmac::Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Why a signed HTTP API request was refused; every one is a 401, with
/// Pusher's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("Missing parameter: {0}")]
    Missing(&'static str),
    #[error("Unknown auth_key")]
    UnknownKey,
    #[error("Unsupported auth_version: {0}")]
    Version(String),
    #[error(
        "Timestamp expired: Given timestamp ({given}) not within {window}s of server time ({now})"
    )]
    Stale {
        given: String,
        now: u64,
        window: u64,
    },
    #[error("Invalid body_md5")]
    BodyMd5,
    #[error("Invalid signature: you should have sent HmacSHA256Hex({to_sign:?}, your_secret_key)")]
    Signature { to_sign: String },
}

impl Signer {
    pub fn new(key: &str, secret: &str) -> Signer {
        Signer {
            key: key.to_owned(),
            hmac: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
        }
    }

    /// The app key this signer belongs to.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn hex(&self, text: &[u8]) -> String {
        hex::encode(hmac::sign(&self.hmac, text).as_ref())
    }

    fn verify_hex(&self, text: &[u8], signature: &str) -> bool {
        match hex::decode(signature) {
            Ok(tag) => hmac::verify(&self.hmac, text, &tag).is_ok(),
            Err(_) => false,
        }
    }

    /// `key:signature` for a channel subscription, as the application's auth
    /// endpoint answers it (tests and tools sign with it).
    pub fn channel_auth(
        &self,
        socket_id: &str,
        channel: &str,
        channel_data: Option<&str>,
    ) -> String {
        format!(
            "{}:{}",
            self.key,
            self.hex(channel_string(socket_id, channel, channel_data).as_bytes())
        )
    }

    /// Whether `auth` (`key:hex`) authorizes `socket_id` on `channel`, over
    /// the exact `channel_data` text the client sent.
    pub fn channel_auth_valid(
        &self,
        socket_id: &str,
        channel: &str,
        channel_data: Option<&str>,
        auth: &str,
    ) -> bool {
        let Some((key, signature)) = auth.split_once(':') else {
            return false;
        };
        key == self.key
            && self.verify_hex(
                channel_string(socket_id, channel, channel_data).as_bytes(),
                signature,
            )
    }

    /// Whether `auth` is `key:HMAC(secret, "socket_id::user::user_data")`
    /// over the exact `user_data` text received (`pusher:signin`).
    pub fn user_auth_valid(&self, socket_id: &str, user_data: &str, auth: &str) -> bool {
        let Some((key, signature)) = auth.split_once(':') else {
            return false;
        };
        key == self.key
            && self.verify_hex(
                format!("{socket_id}::user::{user_data}").as_bytes(),
                signature,
            )
    }

    /// `X-Pusher-Signature` of a webhook body.
    pub fn webhook_signature(&self, body: &[u8]) -> String {
        self.hex(body)
    }

    /// Checks a signed HTTP API request's method, path and query, before a
    /// byte of its body is read: only a request signed with the secret may
    /// make the gateway buffer a body. `query` is the decoded query string
    /// (keys as sent); `now` is Unix seconds. The signature covers
    /// `body_md5`, so the answer is the digest the body must then match.
    pub fn verify_query(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        now: u64,
    ) -> Result<BodyDigest, RequestError> {
        let get = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let key = get("auth_key").ok_or(RequestError::Missing("auth_key"))?;
        let timestamp = get("auth_timestamp").ok_or(RequestError::Missing("auth_timestamp"))?;
        let version = get("auth_version").ok_or(RequestError::Missing("auth_version"))?;
        let signature = get("auth_signature").ok_or(RequestError::Missing("auth_signature"))?;
        if key != self.key {
            return Err(RequestError::UnknownKey);
        }
        if version != "1.0" {
            return Err(RequestError::Version(version.to_owned()));
        }
        let fresh = timestamp
            .parse::<u64>()
            .is_ok_and(|t| t.abs_diff(now) <= TIMESTAMP_WINDOW_SECS);
        if !fresh {
            return Err(RequestError::Stale {
                given: timestamp.to_owned(),
                now,
                window: TIMESTAMP_WINDOW_SECS,
            });
        }
        let to_sign = string_to_sign(method, path, query);
        if !self.verify_hex(to_sign.as_bytes(), signature) {
            return Err(RequestError::Signature { to_sign });
        }
        Ok(BodyDigest(get("body_md5").map(str::to_ascii_lowercase)))
    }

    /// Checks a whole signed HTTP API request: [`Self::verify_query`], then
    /// the body against its digest.
    pub fn verify_request(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: &[u8],
        now: u64,
    ) -> Result<(), RequestError> {
        self.verify_query(method, path, query, now)?.check(body)
    }

    /// The query a client library sends: what [`verify_request`] accepts
    /// (tests sign with it). Returns the pairs including `auth_signature`.
    pub fn sign_request(
        &self,
        method: &str,
        path: &str,
        mut query: Vec<(String, String)>,
        body: &[u8],
        now: u64,
    ) -> Vec<(String, String)> {
        query.push(("auth_key".into(), self.key.clone()));
        query.push(("auth_timestamp".into(), now.to_string()));
        query.push(("auth_version".into(), "1.0".into()));
        if !body.is_empty() {
            query.push(("body_md5".into(), hex::encode(Md5::digest(body))));
        }
        let signature = self.hex(string_to_sign(method, path, &query).as_bytes());
        query.push(("auth_signature".into(), signature));
        query
    }
}

/// The `body_md5` a signed query carries: what the body, read after the
/// signature passed, must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "the body is bound only once its digest is checked"]
pub struct BodyDigest(Option<String>);

impl BodyDigest {
    /// A body must be bound by its digest; a digest sent with no body (the
    /// Python library sends one on every GET) must match the empty body.
    pub fn check(&self, body: &[u8]) -> Result<(), RequestError> {
        match &self.0 {
            Some(md5) if *md5 != hex::encode(Md5::digest(body)) => Err(RequestError::BodyMd5),
            None if !body.is_empty() => Err(RequestError::Missing("body_md5")),
            _ => Ok(()),
        }
    }
}

fn channel_string(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// `METHOD\npath\nk=v&k=v`: keys lower-cased and sorted, values as decoded
/// (Pusher signs them unescaped), `auth_signature` left out.
pub fn string_to_sign(method: &str, path: &str, query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, &str)> = query
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .filter(|(k, _)| k != "auth_signature")
        .collect();
    pairs.sort();
    let joined = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!("{}\n{path}\n{joined}", method.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials of Pusher's published worked examples.
    fn doc() -> Signer {
        Signer::new("278d425bdf160c739803", "7ad3773142a6692b25b8")
    }

    #[test]
    fn private_channel_matches_the_published_example() {
        let auth = doc().channel_auth("1234.1234", "private-foobar", None);
        assert_eq!(
            auth,
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        assert!(doc().channel_auth_valid("1234.1234", "private-foobar", None, &auth));
        assert!(!doc().channel_auth_valid("1234.1235", "private-foobar", None, &auth));
        assert!(!doc().channel_auth_valid("1234.1234", "private-foobaz", None, &auth));
        let other_key = auth.replacen("278d", "378d", 1);
        assert!(!doc().channel_auth_valid("1234.1234", "private-foobar", None, &other_key));
        assert!(!doc().channel_auth_valid("1234.1234", "private-foobar", None, "garbage"));
        assert!(!doc().channel_auth_valid(
            "1234.1234",
            "private-foobar",
            None,
            "278d425bdf160c739803:zz"
        ));
    }

    /// The published page's presence example prints a digest its own string
    /// does not give; this one is `openssl dgst -sha256 -hmac` of that
    /// string, which the private and user examples (matching) vouch for.
    #[test]
    fn presence_channel_matches_the_published_example_over_the_exact_text() {
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        let auth = doc().channel_auth("1234.1234", "presence-foobar", Some(data));
        assert_eq!(
            auth,
            "278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
        );
        assert!(doc().channel_auth_valid("1234.1234", "presence-foobar", Some(data), &auth));
        let respaced = r#"{"user_id": 10,"user_info":{"name":"Mr. Channels"}}"#;
        assert!(!doc().channel_auth_valid("1234.1234", "presence-foobar", Some(respaced), &auth));
        assert!(!doc().channel_auth_valid("1234.1234", "presence-foobar", None, &auth));
    }

    fn doc_query() -> Vec<(String, String)> {
        [
            ("auth_key", "278d425bdf160c739803"),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
            (
                "auth_signature",
                "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c",
            ),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    const DOC_BODY: &[u8] =
        br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;

    #[test]
    fn a_request_matching_the_published_example_is_accepted() {
        assert_eq!(
            doc().verify_request(
                "POST",
                "/apps/3/events",
                &doc_query(),
                DOC_BODY,
                1353088179 + 599
            ),
            Ok(())
        );
        let signed = doc().sign_request("POST", "/apps/3/events", Vec::new(), DOC_BODY, 1353088179);
        assert_eq!(signed, doc_query());
    }

    #[test]
    fn each_refusal() {
        let now = 1353088179;
        let verify = |q: &[(String, String)], body: &[u8], now: u64| {
            doc().verify_request("POST", "/apps/3/events", q, body, now)
        };
        assert!(matches!(
            verify(&doc_query(), DOC_BODY, now + 601),
            Err(RequestError::Stale { .. })
        ));
        assert!(matches!(
            verify(&doc_query(), DOC_BODY, now - 601),
            Err(RequestError::Stale { .. })
        ));
        assert_eq!(verify(&doc_query(), b"{}", now), Err(RequestError::BodyMd5));
        let mut q = doc_query();
        q.retain(|(k, _)| k != "body_md5");
        assert!(
            matches!(
                verify(&q, DOC_BODY, now),
                Err(RequestError::Signature { .. })
            ),
            "body_md5 is part of what is signed"
        );
        let unbound = doc().sign_request("POST", "/apps/3/events", Vec::new(), b"", now);
        assert_eq!(
            verify(&unbound, DOC_BODY, now),
            Err(RequestError::Missing("body_md5"))
        );
        let mut q = doc_query();
        q[4].1.replace_range(0..1, "e");
        assert!(matches!(
            verify(&q, DOC_BODY, now),
            Err(RequestError::Signature { .. })
        ));
        let mut q = doc_query();
        q.push(("channel".into(), "extra".into()));
        assert!(
            matches!(
                verify(&q, DOC_BODY, now),
                Err(RequestError::Signature { .. })
            ),
            "an unsigned parameter is refused"
        );
        let mut q = doc_query();
        q[0].1 = "other".into();
        assert_eq!(verify(&q, DOC_BODY, now), Err(RequestError::UnknownKey));
        let mut q = doc_query();
        q.remove(1);
        assert_eq!(
            verify(&q, DOC_BODY, now),
            Err(RequestError::Missing("auth_timestamp"))
        );
    }

    #[test]
    fn the_query_is_checked_without_the_body_and_names_the_digest_to_match() {
        let now = 1353088179;
        let digest = doc()
            .verify_query("POST", "/apps/3/events", &doc_query(), now)
            .expect("the published example's query is valid");
        assert_eq!(digest.check(DOC_BODY), Ok(()));
        assert_eq!(digest.check(b"{}"), Err(RequestError::BodyMd5));
        let mut q = doc_query();
        q[4].1.replace_range(0..1, "e");
        assert!(matches!(
            doc().verify_query("POST", "/apps/3/events", &q, now),
            Err(RequestError::Signature { .. })
        ));
        let mut q = doc_query();
        q.truncate(4);
        q[3].1 = q[3].1.to_ascii_uppercase();
        let signature = doc().hex(string_to_sign("POST", "/apps/3/events", &q).as_bytes());
        q.push(("auth_signature".into(), signature));
        assert_eq!(
            doc().verify_request("POST", "/apps/3/events", &q, DOC_BODY, now),
            Ok(()),
            "an upper-case digest is the same digest"
        );
    }

    #[test]
    fn a_get_with_the_empty_bodys_digest_is_accepted() {
        let mut q = vec![("filter_by_prefix".to_owned(), "presence-".to_owned())];
        q.push(("body_md5".into(), hex::encode(Md5::digest(b""))));
        let signed = doc().sign_request("GET", "/apps/3/channels", q, b"", 100);
        assert_eq!(
            doc().verify_request("GET", "/apps/3/channels", &signed, b"", 100),
            Ok(())
        );
    }

    #[test]
    fn the_string_to_sign_sorts_lowercased_keys_and_keeps_values_unescaped() {
        let q = vec![
            (
                "Info".to_owned(),
                "user_count,subscription_count".to_owned(),
            ),
            ("auth_key".to_owned(), "k".to_owned()),
            ("auth_signature".to_owned(), "x".to_owned()),
        ];
        assert_eq!(
            string_to_sign("get", "/apps/1/channels", &q),
            "GET\n/apps/1/channels\nauth_key=k&info=user_count,subscription_count"
        );
    }

    #[test]
    fn a_webhook_signature_is_the_bodys_hmac() {
        let s = doc().webhook_signature(b"{}");
        assert_eq!(s.len(), 64);
        assert_ne!(s, doc().webhook_signature(b"{} "));
    }
}
