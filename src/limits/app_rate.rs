//! Pusher apps' own HTTP API quotas (`pusher.apps[].api_rate`): one bucket
//! per app, under the quota its app names.
//!
//! The quota is policy (read from the app's settings on each request); the
//! bucket is live state, kept here across reloads: a reload that changes
//! an app's quota puts the new one in force over what the app has spent,
//! as `keyed.rs` does for the gateway-wide limits. An app without a quota
//! of its own is charged on the shared `limits.publish` quota instead.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::clock::Time;
use super::keyed::{KeyedLimit, Refusal};
use crate::config::RateLimit;

pub(super) struct AppRates {
    time: Time,
    /// By app id; as many as apps were ever configured.
    apps: Mutex<HashMap<Arc<str>, AppRate>>,
}

struct AppRate {
    quota: RateLimit,
    limit: Arc<KeyedLimit<()>>,
}

impl AppRates {
    pub(super) fn new(time: Time) -> AppRates {
        AppRates {
            time,
            apps: Mutex::new(HashMap::new()),
        }
    }

    /// Charge `n` to `app` under `quota`.
    pub(super) fn check(&self, app: &Arc<str>, quota: &RateLimit, n: u32) -> Result<(), Refusal> {
        let limit = {
            let mut apps = self.apps.lock();
            let rate = apps.entry(app.clone()).or_insert_with(|| AppRate {
                quota: *quota,
                limit: Arc::new(KeyedLimit::new(quota, self.time.clone())),
            });
            if rate.quota != *quota {
                rate.limit.set_quota(quota);
                rate.quota = *quota;
            }
            rate.limit.clone()
        };
        limit.check(&(), n)
    }
}
