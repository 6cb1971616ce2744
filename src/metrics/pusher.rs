//! Pusher metrics per app: open sockets, events sent to and received from
//! them. The open-socket gauge is also the count `max_connections` is
//! judged against: one number, so the limit and the metric cannot disagree.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabel {
    pub app: Arc<str>,
}

#[derive(Default)]
pub struct PusherMetrics {
    connections: Family<AppLabel, Gauge>,
    sent: Family<AppLabel, Counter>,
    received: Family<AppLabel, Counter>,
}

/// One open socket of an app, counted while it lives.
pub struct AppConnection(Gauge);

impl Drop for AppConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl PusherMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "pusher_connections",
            "Open Pusher sockets by app",
            self.connections.clone(),
        );
        r.register(
            "pusher_messages_sent",
            "Events written to Pusher sockets by app",
            self.sent.clone(),
        );
        r.register(
            "pusher_messages_received",
            "Frames received from Pusher sockets by app",
            self.received.clone(),
        );
    }

    /// Count a new socket of `app`, unless it already has `max` open.
    pub fn open(&self, app: &Arc<str>, max: Option<usize>) -> Option<AppConnection> {
        let gauge = self
            .connections
            .get_or_create(&AppLabel { app: app.clone() })
            .clone();
        let before = gauge.inc();
        let connection = AppConnection(gauge);
        match max {
            Some(max) if usize::try_from(before).unwrap_or(0) >= max => None,
            _ => Some(connection),
        }
    }

    /// `app`'s open connections, events sent and frames received, for the
    /// dashboard.
    pub fn reading(&self, app: &Arc<str>) -> (i64, u64, u64) {
        let label = AppLabel { app: app.clone() };
        (
            self.connections.get_or_create(&label).get(),
            self.sent.get_or_create(&label).get(),
            self.received.get_or_create(&label).get(),
        )
    }

    /// The counters of `app`, looked up once per socket.
    pub fn counters(&self, app: &Arc<str>) -> (Counter, Counter) {
        let label = AppLabel { app: app.clone() };
        (
            self.sent.get_or_create(&label).clone(),
            self.received.get_or_create(&label).clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_is_the_cap() {
        let m = PusherMetrics::default();
        let app: Arc<str> = "1".into();
        let a = m.open(&app, Some(2)).unwrap();
        let _b = m.open(&app, Some(2)).unwrap();
        assert!(m.open(&app, Some(2)).is_none(), "a third is over the cap");
        drop(a);
        assert!(m.open(&app, Some(2)).is_some(), "a place came free");
        assert!(m.open(&"2".into(), Some(2)).is_some(), "apps count apart");
    }
}
