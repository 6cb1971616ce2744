//! The live realtime sessions, by id and subject, so the admin API can
//! disconnect one session or every session of a subject (`POST /disconnect`)
//! wherever it is. Each session's entry goes when its registration drops.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::hub::inbox::Inbox;

#[derive(Default)]
pub struct Connections {
    inner: Mutex<HashMap<u64, Entry>>,
}

struct Entry {
    subject: Option<String>,
    transport: &'static str,
    /// Kicked to disconnect the session (`Inbox::kick`).
    inbox: Inbox,
}

/// A session's place in the registry; removed on drop.
pub struct Registration {
    registry: Arc<Connections>,
    pub id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let entry = self.registry.inner.lock().remove(&self.id);
        // Often the inbox's last holder: its queue is freed outside the
        // lock every session's opening and ending takes.
        drop(entry);
    }
}

impl Connections {
    /// List a session; `POST /disconnect` kicks its `inbox`.
    pub fn register(
        self: &Arc<Self>,
        id: u64,
        subject: Option<&str>,
        transport: &'static str,
        inbox: &Inbox,
    ) -> Registration {
        {
            let mut m = self.inner.lock();
            m.insert(
                id,
                Entry {
                    subject: subject.map(str::to_string),
                    transport,
                    inbox: inbox.clone(),
                },
            );
        }
        Registration {
            registry: self.clone(),
            id,
        }
    }

    /// The session `id` is now `subject`'s (a WebSocket that identified
    /// after it opened: an `auth` op, or the application's login asked
    /// late), so that disconnecting the subject reaches it.
    pub fn set_subject(&self, id: u64, subject: Option<&str>) {
        {
            let mut m = self.inner.lock();
            if let Some(e) = m.get_mut(&id) {
                e.subject = subject.map(str::to_string);
            }
        }
    }

    /// Disconnect every session of `subject`; returns how many.
    pub fn disconnect_subject(&self, subject: &str) -> usize {
        let m = self.inner.lock();
        let mut n = 0;
        for e in m.values().filter(|e| e.subject.as_deref() == Some(subject)) {
            e.inbox.kick();
            n += 1;
        }
        n
    }

    /// Disconnect the session with this id.
    pub fn disconnect_id(&self, id: u64) -> bool {
        let m = self.inner.lock();
        m.get(&id).map(|e| e.inbox.kick()).is_some()
    }

    /// Number of sessions per transport.
    pub fn count_by_transport(&self) -> HashMap<&'static str, usize> {
        let mut out = HashMap::new();
        {
            let m = self.inner.lock();
            for e in m.values() {
                *out.entry(e.transport).or_default() += 1;
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_kick_and_forget() {
        let c = Arc::new(Connections::default());
        let inboxes: Vec<Inbox> = (0..3).map(|_| Inbox::new(4)).collect();
        let a = c.register(1, Some("alice"), "ws", &inboxes[0]);
        let _b = c.register(2, Some("alice"), "sse", &inboxes[1]);
        let _x = c.register(3, None, "ws", &inboxes[2]);
        assert_eq!(c.disconnect_subject("alice"), 2);
        assert!(inboxes[0].is_kicked() && inboxes[1].is_kicked());
        assert!(!inboxes[2].is_kicked());
        assert!(c.disconnect_id(3));
        assert!(inboxes[2].is_kicked());
        assert!(!c.disconnect_id(4));
        drop(a);
        assert_eq!(c.len(), 2);
    }
}
