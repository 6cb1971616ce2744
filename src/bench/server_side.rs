//! pushgate's own account of a run's delivery latency, read from its
//! `/metrics` on the publish (admin) listener before and after the run:
//! `pushgate_delivery_latency_seconds` counts from a publish accepted to the
//! session taking the message to write it. Set beside the generator's
//! figures it shows how much of the latency is the server's, which matters
//! when the generator shares the server's cores.
//!
//! Only for `--target pushgate`; a server whose admin listener wants a key,
//! or any other failure to scrape, leaves the figures out.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const SERIES: &str = "pushgate_delivery_latency_seconds_bucket{le=\"";

/// Cumulative bucket counts: (upper bound in seconds, count at or below).
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets(Vec<(f64, u64)>);

/// Upper bounds of the server-side quantiles, in ms (the buckets are at
/// most 1.5x apart); `None` above the last finite bucket.
#[derive(Debug, serde::Serialize)]
pub struct ServerLatency {
    pub p50_at_most: Option<f64>,
    pub p95_at_most: Option<f64>,
    pub p99_at_most: Option<f64>,
    pub deliveries: u64,
}

/// The delivery histogram as the server reports it now.
pub async fn scrape(publish: &url::Url) -> Option<Buckets> {
    let uri: http::Uri = publish.join("/metrics").ok()?.as_str().parse().ok()?;
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    // One deadline for the answer and its body: a stalled server must not
    // hold up the bench.
    let fetch = async {
        let resp = client.get(uri).await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.into_body().collect().await.ok().map(|b| b.to_bytes())
    };
    let body = tokio::time::timeout(std::time::Duration::from_secs(5), fetch)
        .await
        .ok()??;
    parse(std::str::from_utf8(&body).ok()?)
}

fn parse(text: &str) -> Option<Buckets> {
    let buckets: Vec<(f64, u64)> = text
        .lines()
        .filter_map(|line| line.strip_prefix(SERIES))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    (!buckets.is_empty()).then_some(Buckets(buckets))
}

impl Buckets {
    /// What was counted between `before` and `self`; `None` when the two
    /// are not the same histogram, or it went back (the server restarted).
    pub fn since(&self, before: &Buckets) -> Option<Buckets> {
        let same_buckets =
            self.0.len() == before.0.len() && self.0.iter().zip(&before.0).all(|(a, b)| a.0 == b.0);
        let grew = self.0.iter().zip(&before.0).all(|(a, b)| a.1 >= b.1);
        (same_buckets && grew).then(|| {
            Buckets(
                self.0
                    .iter()
                    .zip(&before.0)
                    .map(|(&(le, now), &(_, then))| (le, now - then))
                    .collect(),
            )
        })
    }

    pub fn latency(&self) -> Option<ServerLatency> {
        let total = self.0.last()?.1;
        if total == 0 {
            return None;
        }
        let at_most = |q: f64| {
            let rank = (q * total as f64).ceil() as u64;
            let le = self.0.iter().find(|&&(_, c)| c >= rank)?.0;
            le.is_finite().then_some(le * 1000.0)
        };
        Some(ServerLatency {
            p50_at_most: at_most(0.50),
            p95_at_most: at_most(0.95),
            p99_at_most: at_most(0.99),
            deliveries: total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_bounds_of_a_run() {
        let before = parse(
            "# TYPE pushgate_delivery_latency_seconds histogram\n\
             pushgate_delivery_latency_seconds_bucket{le=\"0.001\"} 5\n\
             pushgate_delivery_latency_seconds_bucket{le=\"0.002\"} 5\n\
             pushgate_delivery_latency_seconds_bucket{le=\"+Inf\"} 5\n",
        )
        .unwrap();
        let after = parse(
            "pushgate_delivery_latency_seconds_bucket{le=\"0.001\"} 55\n\
             pushgate_delivery_latency_seconds_bucket{le=\"0.002\"} 103\n\
             pushgate_delivery_latency_seconds_bucket{le=\"+Inf\"} 105\n\
             pushgate_proxy_latency_seconds_bucket{le=\"0.001\"} 7\n",
        )
        .unwrap();
        let l = after.since(&before).unwrap().latency().unwrap();
        assert_eq!(l.deliveries, 100);
        assert_eq!(l.p50_at_most, Some(1.0));
        assert_eq!(l.p95_at_most, Some(2.0));
        assert_eq!(l.p99_at_most, None, "above the last finite bucket");
        assert!(parse("nothing here").is_none());
        assert!(before.since(&after).is_none(), "a restart between scrapes");
        let other = parse("pushgate_delivery_latency_seconds_bucket{le=\"+Inf\"} 9\n").unwrap();
        assert!(other.since(&before).is_none(), "other buckets");
    }
}
