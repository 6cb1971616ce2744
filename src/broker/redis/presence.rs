//! Presence shared by every instance: one sorted set per channel in Redis,
//! subject → expiry time. Each instance keeps its local members' entries
//! alive; an entry nobody refreshes expires after the grace period, so the
//! members of a crashed instance disappear on their own, and exactly one
//! instance (the one whose sweep removed the entry) announces the leave.

use std::time::Duration;

use super::{RedisBroker, unavailable};
use futures_util::future::BoxFuture;

use crate::broker::{BrokerError, Refreshed, SharedPresence};

impl RedisBroker {
    fn presence_key(&self, channel: &str) -> String {
        format!("{}:p:{channel}", self.keys.prefix)
    }

    fn presence_index(&self) -> String {
        format!("{}:pidx", self.keys.prefix)
    }

    /// What members of `channel` show (subject → JSON text): beside the
    /// member set, under a name no channel can have (`#` is not allowed in
    /// channel names), so the sweep finds it from the set's key.
    fn presence_info_key(&self, channel: &str) -> String {
        format!("{}#i", self.presence_key(channel))
    }

    /// Mark `subject` present in `channel` for `ttl`, showing `info`; true
    /// when it is new to the channel across all instances (a join to
    /// announce).
    pub async fn presence_join(
        &self,
        channel: &str,
        subject: &str,
        info: Option<&str>,
        ttl: Duration,
    ) -> Result<bool, BrokerError> {
        let mut conn = self.connection()?;
        let mut inv = self.presence_join_script.prepare_invoke();
        inv.key(self.presence_key(channel))
            .key(self.presence_index())
            .key(self.presence_info_key(channel))
            .arg(subject)
            .arg(ttl.as_millis() as u64)
            .arg(channel)
            .arg(info.unwrap_or_default());
        let fresh: i64 = self.call(inv.invoke_async(&mut conn)).await?;
        Ok(fresh == 1)
    }

    /// Refresh the local `members` for another `ttl` (never re-adding one
    /// whose entry is gone) and sweep expired entries everywhere.
    pub async fn presence_refresh(
        &self,
        members: &[(String, String)],
        ttl: Duration,
    ) -> Result<Refreshed, BrokerError> {
        let mut conn = self.connection()?;
        let mut inv = self.presence_refresh_script.prepare_invoke();
        inv.key(self.presence_index())
            .arg(format!("{}:p:", self.keys.prefix))
            .arg(ttl.as_millis() as u64);
        for (channel, subject) in members {
            inv.arg(channel).arg(subject);
        }
        let (gone, missing): (Vec<String>, Vec<String>) =
            self.call(inv.invoke_async(&mut conn)).await?;
        Ok(Refreshed {
            gone: pairs(gone),
            missing: pairs(missing),
        })
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

    /// Current members of `channel` on every instance with what each
    /// shows, sorted.
    pub async fn presence_members(
        &self,
        channel: &str,
    ) -> Result<Vec<crate::broker::presence::MemberInfo>, BrokerError> {
        let ids = self.presence_list(channel).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.connection()?;
        let infos: Vec<Option<String>> = self
            .call(
                redis::cmd("HMGET")
                    .arg(self.presence_info_key(channel))
                    .arg(&ids)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(ids
            .into_iter()
            .zip(infos.into_iter().chain(std::iter::repeat(None)))
            .map(|(id, info)| (id, info.filter(|i| !i.is_empty())))
            .collect())
    }
}

/// `[channel, subject, channel, subject, …]` as pairs.
fn pairs(flat: Vec<String>) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(c), Some(s)) = (it.next(), it.next()) {
        out.push((c, s));
    }
    out
}

impl SharedPresence for RedisBroker {
    fn join<'a>(
        &'a self,
        channel: &'a str,
        subject: &'a str,
        info: Option<&'a str>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, BrokerError>> {
        Box::pin(self.presence_join(channel, subject, info, ttl))
    }

    fn refresh<'a>(
        &'a self,
        members: &'a [(String, String)],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Refreshed, BrokerError>> {
        Box::pin(self.presence_refresh(members, ttl))
    }

    fn list<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>> {
        Box::pin(self.presence_list(channel))
    }

    fn members<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Vec<crate::broker::presence::MemberInfo>, BrokerError>> {
        Box::pin(self.presence_members(channel))
    }
}
