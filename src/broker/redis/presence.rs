//! Presence shared by every instance: one sorted set per channel in Redis,
//! subject → expiry time. Each instance keeps its local members' entries
//! alive; an entry nobody refreshes expires after the grace period, so the
//! members of a crashed instance disappear on their own, and exactly one
//! instance (the one whose sweep removed the entry) announces the leave.

use std::time::Duration;

use super::{RedisBroker, unavailable};
use futures_util::future::BoxFuture;

use crate::broker::{BrokerError, SharedPresence};

impl RedisBroker {
    fn presence_key(&self, channel: &str) -> String {
        format!("{}:p:{channel}", self.keys.prefix)
    }

    fn presence_index(&self) -> String {
        format!("{}:pidx", self.keys.prefix)
    }

    /// Mark `subject` present in `channel` for `ttl`; true when it is new to
    /// the channel across all instances (a join to announce).
    pub async fn presence_join(
        &self,
        channel: &str,
        subject: &str,
        ttl: Duration,
    ) -> Result<bool, BrokerError> {
        let mut conn = self.connection()?;
        let mut inv = self.presence_join_script.prepare_invoke();
        inv.key(self.presence_key(channel))
            .key(self.presence_index())
            .arg(subject)
            .arg(ttl.as_millis() as u64)
            .arg(channel);
        let fresh: i64 = self.call(inv.invoke_async(&mut conn)).await?;
        Ok(fresh == 1)
    }

    /// Refresh the local `members` for another `ttl` and sweep expired
    /// entries everywhere; returns the (channel, subject) pairs that left.
    pub async fn presence_refresh(
        &self,
        members: &[(String, String)],
        ttl: Duration,
    ) -> Result<Vec<(String, String)>, BrokerError> {
        let mut conn = self.connection()?;
        let mut inv = self.presence_refresh_script.prepare_invoke();
        inv.key(self.presence_index())
            .arg(format!("{}:p:", self.keys.prefix))
            .arg(ttl.as_millis() as u64);
        for (channel, subject) in members {
            inv.arg(channel).arg(subject);
        }
        let gone: Vec<String> = self.call(inv.invoke_async(&mut conn)).await?;
        let mut out = Vec::with_capacity(gone.len() / 2);
        let mut it = gone.into_iter();
        while let (Some(c), Some(s)) = (it.next(), it.next()) {
            out.push((c, s));
        }
        Ok(out)
    }

    /// Current members of `channel` on every instance, sorted.
    pub async fn presence_list(&self, channel: &str) -> Result<Vec<String>, BrokerError> {
        let mut conn = self.connection()?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(unavailable)?
            .as_millis() as u64;
        let mut members: Vec<String> = self
            .call(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.presence_key(channel))
                    .arg(now_ms)
                    .arg("+inf")
                    .query_async(&mut conn),
            )
            .await?;
        members.sort();
        Ok(members)
    }
}

impl SharedPresence for RedisBroker {
    fn join<'a>(
        &'a self,
        channel: &'a str,
        subject: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, BrokerError>> {
        Box::pin(self.presence_join(channel, subject, ttl))
    }

    fn refresh<'a>(
        &'a self,
        members: &'a [(String, String)],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, BrokerError>> {
        Box::pin(self.presence_refresh(members, ttl))
    }

    fn list<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>> {
        Box::pin(self.presence_list(channel))
    }
}
