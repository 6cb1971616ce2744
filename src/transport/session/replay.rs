//! A resume's replay, read from history a page at a time as the transport
//! sends it.
//!
//! The rule: a connection holds at most one page of history per channel it
//! is replaying, never the whole of what it missed, and pulls the next page
//! only when the transport asks for more (which it does only after writing
//! what it had). Pages of several channels are merged by id, so the client
//! sees one publication order. A channel's replay stops at the position where
//! live delivery took over (`head`): what comes after reaches the inbox.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::broker::{Broker, BrokerError, Replay};
use crate::hub::Message;

use super::Delivery;

/// The channels still replaying, each with its current page.
#[derive(Default)]
pub(super) struct Replays {
    sources: Vec<Source>,
}

struct Source {
    channel: Arc<str>,
    ttl: Duration,
    /// Id of the last message fetched: the next page starts after it.
    after: u64,
    /// Where live delivery took over.
    head: u64,
    page: VecDeque<Arc<Message>>,
    /// Nothing more to fetch once `page` is sent.
    exhausted: bool,
}

/// A channel whose history stopped reaching back while it was replayed.
pub(super) struct Gap {
    pub channel: Arc<str>,
    pub head: u64,
}

impl Replays {
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Replay `channel` from its first page (fetched after `after` with
    /// `limit`) up to `head`.
    pub fn add(
        &mut self,
        channel: &Arc<str>,
        ttl: Duration,
        after: u64,
        head: u64,
        first: Vec<Arc<Message>>,
        limit: usize,
    ) {
        let mut source = Source {
            channel: channel.clone(),
            ttl,
            after,
            head,
            page: VecDeque::new(),
            exhausted: false,
        };
        source.take(first, limit);
        if !source.is_done() {
            self.sources.push(source);
        }
    }

    pub fn remove(&mut self, channel: &str) {
        self.sources.retain(|s| &*s.channel != channel);
    }

    pub fn clear(&mut self) {
        self.sources = Vec::new();
    }

    /// Append up to `max` replayed messages to `out`, oldest first across
    /// channels, fetching pages of `limit` as channels run dry. Channels whose
    /// history no longer reaches back are dropped and returned.
    pub async fn next(
        &mut self,
        broker: &dyn Broker,
        max: usize,
        limit: usize,
        out: &mut Vec<Delivery>,
    ) -> Result<Vec<Gap>, BrokerError> {
        let mut gaps = Vec::new();
        for _ in 0..max {
            let mut i = 0;
            while i < self.sources.len() {
                let s = &mut self.sources[i];
                if s.page.is_empty() && !s.exhausted {
                    match broker.replay(&s.channel, s.after, s.ttl, limit).await? {
                        Replay::Messages(msgs) => s.take(msgs, limit),
                        Replay::Gap => {
                            let s = self.sources.swap_remove(i);
                            gaps.push(Gap {
                                channel: s.channel,
                                head: s.head,
                            });
                            continue;
                        }
                    }
                }
                if self.sources[i].is_done() {
                    self.sources.swap_remove(i);
                } else {
                    i += 1;
                }
            }
            let oldest = self
                .sources
                .iter_mut()
                .filter_map(|s| s.page.front().map(|m| m.seq).zip(Some(s)))
                .min_by_key(|(seq, _)| *seq);
            match oldest.and_then(|(_, s)| s.page.pop_front()) {
                Some(m) => out.push(Delivery::Message(m)),
                None => break,
            }
        }
        self.sources.retain(|s| !s.is_done());
        Ok(gaps)
    }
}

impl Source {
    /// Queue a page: only what precedes `head`, and a short page is the last.
    fn take(&mut self, msgs: Vec<Arc<Message>>, limit: usize) {
        if msgs.len() < limit {
            self.exhausted = true;
        }
        for m in msgs {
            if m.seq > self.head {
                self.exhausted = true;
                break;
            }
            if m.seq > self.after {
                self.after = m.seq;
                self.page.push_back(m);
            }
        }
    }

    fn is_done(&self) -> bool {
        self.exhausted && self.page.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{HistoryPolicy, MemoryBroker, Publish};
    use crate::hub::Hub;

    async fn publish(b: &MemoryBroker, channel: &str) -> u64 {
        let p = Publish {
            channel: channel.into(),
            event: "message".into(),
            data: serde_json::value::RawValue::from_string("1".into()).unwrap(),
            key: None,
            history: HistoryPolicy {
                size: 100,
                ttl: Duration::from_secs(60),
            },
            origin: None,
            binary: false,
        };
        b.publish(p).await.unwrap().seq
    }

    fn seqs(out: &[Delivery]) -> Vec<u64> {
        out.iter()
            .filter_map(|o| match o {
                Delivery::Message(m) => Some(m.seq),
                Delivery::Reset { .. } => None,
            })
            .collect()
    }

    /// Two channels interleaved in history come out merged by id, a few at
    /// a time, in pages of two, and stop at the head.
    #[tokio::test]
    async fn pages_of_channels_merge_in_id_order_up_to_the_head() {
        let b = MemoryBroker::new(Hub::new());
        let mut all = Vec::new();
        for i in 0..10 {
            all.push(publish(&b, if i % 3 == 0 { "a" } else { "b" }).await);
        }
        let head = all[7];
        publish(&b, "a").await;
        let mut r = Replays::default();
        for c in ["a", "b"] {
            let c: Arc<str> = c.into();
            let Replay::Messages(first) =
                b.replay(&c, 0, Duration::from_secs(60), 2).await.unwrap()
            else {
                panic!("no gap expected")
            };
            r.add(&c, Duration::from_secs(60), 0, head, first, 2);
        }
        let mut out = Vec::new();
        while !r.is_empty() {
            let before = out.len();
            assert!(r.next(&*b, 3, 2, &mut out).await.unwrap().is_empty());
            assert!(out.len() - before <= 3);
        }
        assert_eq!(seqs(&out), all[..8].to_vec());
    }
}
