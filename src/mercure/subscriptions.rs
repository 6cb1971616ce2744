//! Active subscriptions (`mercure.subscriptions: true`): who follows which
//! selector on this instance, the documents that describe them (JSON-LD,
//! `@context: https://mercure.rocks/`) and the topics of their events,
//! `{hub}/subscriptions/{topic}/{subscriber}` with each part
//! percent-encoded once as a whole.
//!
//! The registry is live state: it outlasts a reload. Each subscriber is a
//! [`Registration`] guard that takes it off the list when dropped, so a
//! stream cannot end without leaving.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Value, json};

/// One subscription: a selector as the subscriber wrote it.
#[derive(Clone, Debug)]
pub(crate) struct Active {
    pub(crate) topic: String,
    pub(crate) subscriber: Arc<str>,
    pub(crate) payload: Option<Value>,
}

/// This instance's active subscriptions, by subscriber.
#[derive(Default)]
pub struct Registry {
    inner: Arc<Mutex<BTreeMap<Arc<str>, Vec<Active>>>>,
}

/// A subscriber on the list until dropped.
pub(crate) struct Registration {
    registry: Arc<Mutex<BTreeMap<Arc<str>, Vec<Active>>>>,
    subscriber: Arc<str>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.subscriber);
    }
}

impl Registry {
    /// List `subs` (all of one subscriber) until the guard is dropped.
    pub(crate) fn register(&self, subscriber: Arc<str>, subs: Vec<Active>) -> Registration {
        self.inner.lock().insert(subscriber.clone(), subs);
        Registration {
            registry: self.inner.clone(),
            subscriber,
        }
    }

    /// The active subscriptions, of `topic` and `subscriber` when given.
    pub(crate) fn list(&self, topic: Option<&str>, subscriber: Option<&str>) -> Vec<Active> {
        let all = self.inner.lock();
        all.iter()
            .filter(|(s, _)| subscriber.is_none_or(|want| &***s == want))
            .flat_map(|(_, subs)| subs.iter())
            .filter(|a| topic.is_none_or(|t| a.topic == t))
            .cloned()
            .collect()
    }
}

/// A fresh subscriber id: a random UUID (version 4) URN.
pub(crate) fn new_subscriber_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// `text` percent-encoded as one URI path segment (only unreserved
/// characters stay as they are).
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A path segment percent-decoded; `None` when it is not UTF-8.
pub(crate) fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The topic (and id) of one subscription's events and document.
pub(crate) fn topic_of(hub_path: &str, a: &Active) -> String {
    format!(
        "{hub_path}/subscriptions/{}/{}",
        encode(&a.topic),
        encode(&a.subscriber)
    )
}

/// The JSON-LD document of one subscription.
pub(crate) fn document(hub_path: &str, a: &Active, active: bool) -> Value {
    let mut doc = json!({
        "@context": "https://mercure.rocks/",
        "id": topic_of(hub_path, a),
        "type": "Subscription",
        "topic": a.topic,
        "subscriber": &*a.subscriber,
        "active": active,
    });
    if let (Some(payload), Some(obj)) = (&a.payload, doc.as_object_mut()) {
        obj.insert("payload".into(), payload.clone());
    }
    doc
}

/// The JSON-LD document of a collection at `id`.
pub(crate) fn collection(hub_path: &str, id: &str, subs: &[Active], last_event_id: &str) -> Value {
    json!({
        "@context": "https://mercure.rocks/",
        "id": id,
        "type": "Subscriptions",
        "lastEventID": last_event_id,
        "subscriptions": subs.iter().map(|a| document(hub_path, a, true)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_once() {
        let t = "https://example.com/{selector}?a=%20";
        let e = encode(t);
        assert_eq!(e, "https%3A%2F%2Fexample.com%2F%7Bselector%7D%3Fa%3D%2520");
        assert_eq!(decode(&e).as_deref(), Some(t));
        assert_eq!(decode("%zz%4").as_deref(), Some("%zz%4"));
    }

    #[test]
    fn the_registry_forgets_on_drop() {
        let r = Registry::default();
        let id: Arc<str> = new_subscriber_id().into();
        assert!(id.starts_with("urn:uuid:") && id.len() == 45);
        let active = |t: &str| Active {
            topic: t.into(),
            subscriber: id.clone(),
            payload: None,
        };
        let guard = r.register(id.clone(), vec![active("a"), active("b")]);
        assert_eq!(r.list(None, None).len(), 2);
        assert_eq!(r.list(Some("b"), Some(&id)).len(), 1);
        assert_eq!(r.list(Some("c"), None).len(), 0);
        let doc = document("/.well-known/mercure", &active("a"), true);
        assert_eq!(doc["type"], "Subscription");
        assert_eq!(
            doc["id"],
            format!("/.well-known/mercure/subscriptions/a/{}", encode(&id))
        );
        drop(guard);
        assert!(r.list(None, None).is_empty());
    }
}
