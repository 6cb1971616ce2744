//! The publish and replay scripts (`publish.lua`, `replay.lua`): each runs
//! atomically inside Redis, so ids, history and the pub/sub fan-out of a
//! channel never disagree, whichever instance publishes or replays.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::stored::decode_member;
use super::{RedisBroker, unavailable};
use crate::broker::{BrokerError, Publish};
use crate::hub::Message;

pub(super) enum Published {
    Member(String),
    StaleEpoch,
}

pub(super) enum ReplayAnswer {
    Messages(Vec<Arc<Message>>),
    Gap,
}

impl RedisBroker {
    pub(super) async fn publish_once(
        &self,
        p: &Publish,
        body: &str,
    ) -> Result<Published, BrokerError> {
        let mut conn = self.connection()?;
        let channel = &*p.channel;
        let idem = match &p.key {
            Some(k) => self.keys.idempotency(channel, k),
            None => self.keys.idempotency(channel, ""),
        };
        let ttl_ms = p.history.ttl.as_millis().min(u64::MAX as u128) as u64;
        let mut inv = self.publish_script.prepare_invoke();
        inv.key(self.keys.epoch())
            .key(self.keys.seq())
            .key(self.keys.history(channel))
            .key(self.keys.last())
            .key(self.keys.floor())
            .key(idem)
            .arg(self.epoch_hex())
            .arg(channel)
            .arg(body)
            .arg(p.history.size)
            .arg(ttl_ms)
            .arg(self.keys.topic(channel))
            .arg(if p.key.is_some() { "1" } else { "0" });
        let (code, payload): (i64, String) = self.call(inv.invoke_async(&mut conn)).await?;
        Ok(match code {
            -1 => Published::StaleEpoch,
            _ => Published::Member(payload),
        })
    }

    pub(super) async fn replay_once(
        &self,
        channel: &str,
        after: u64,
        ttl: Duration,
        limit: usize,
    ) -> Result<Option<ReplayAnswer>, BrokerError> {
        let mut conn = self.connection()?;
        let mut inv = self.replay_script.prepare_invoke();
        inv.key(self.keys.epoch())
            .key(self.keys.seq())
            .key(self.keys.history(channel))
            .key(self.keys.last())
            .key(self.keys.floor())
            .arg(self.epoch_hex())
            .arg(channel)
            .arg(after)
            .arg(ttl.as_millis().min(u64::MAX as u128) as u64)
            // A negative count is "no limit" to ZRANGEBYSCORE.
            .arg(i64::try_from(limit).unwrap_or(-1));
        let answer: Vec<redis::Value> = self.call(inv.invoke_async(&mut conn)).await?;
        let code = match answer.first() {
            Some(redis::Value::Int(c)) => *c,
            _ => return Err(unavailable("unexpected replay answer")),
        };
        match code {
            -1 => Ok(None),
            0 => Ok(Some(ReplayAnswer::Gap)),
            _ => {
                let epoch = self.epoch.load(Ordering::Acquire);
                let mut msgs = Vec::with_capacity(answer.len() - 1);
                for v in &answer[1..] {
                    let redis::Value::BulkString(bytes) = v else {
                        return Err(unavailable("unexpected history entry"));
                    };
                    let text = std::str::from_utf8(bytes).map_err(unavailable)?;
                    msgs.push(Arc::new(decode_member(channel.into(), epoch, text)?));
                }
                Ok(Some(ReplayAnswer::Messages(msgs)))
            }
        }
    }
}
