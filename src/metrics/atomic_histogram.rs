//! A Prometheus histogram that records with relaxed atomic adds.
//!
//! prometheus-client's `Histogram` locks a mutex on every observation. The
//! delivery histogram is observed once per delivered message, from every
//! runtime thread at once (250,000 times a second in the fan-out benchmark),
//! so it counts into atomic buckets instead and is summed only when
//! `/metrics` is scraped. Buckets are non-cumulative here, as the encoder
//! expects; the exposition is the usual cumulative `le` series. The counts
//! are kept per thread group ([`Sharded`]): one shared copy made the serving
//! loops take its cache lines from each other on every delivery.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::shards::Sharded;

#[derive(Clone, Debug)]
pub struct AtomicHistogram(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Upper bounds, in seconds for the exposition.
    bounds: Box<[f64]>,
    /// The same bounds in nanoseconds, to place an observation.
    bounds_ns: Box<[u64]>,
    /// One count per bound, then the `+Inf` bucket, then the sum of the
    /// observations in microseconds (room for ~580,000 years of summed
    /// latency: history replays observe ages of minutes, where nanoseconds
    /// would wrap).
    counts: Sharded,
}

impl AtomicHistogram {
    /// Buckets `start`, `start * factor`, … (`length` of them), in seconds.
    pub fn exponential(start: f64, factor: f64, length: u16) -> AtomicHistogram {
        let bounds: Vec<f64> = (0..length)
            .map(|i| start * factor.powi(i32::from(i)))
            .collect();
        AtomicHistogram::with_bounds(&bounds)
    }

    /// Buckets with these upper bounds, in seconds, ascending.
    pub fn with_bounds(bounds: &[f64]) -> AtomicHistogram {
        let bounds: Box<[f64]> = bounds.into();
        let bounds_ns = bounds.iter().map(|b| (b * 1e9).round() as u64).collect();
        let counts = Sharded::new(bounds.len() + 2);
        AtomicHistogram(Arc::new(Inner {
            bounds,
            bounds_ns,
            counts,
        }))
    }

    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // The first bucket whose bound is not below the value (`le`).
        let i = self.0.bounds_ns.partition_point(|&b| b < ns);
        self.0.counts.add(i, 1);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.0.counts.add(self.sum_at(), us);
    }

    /// Where the sum is kept, after the buckets.
    fn sum_at(&self) -> usize {
        self.0.counts.len() - 1
    }

    /// Each bucket's count (not cumulative), `+Inf` last.
    fn counts(&self) -> Vec<u64> {
        (0..self.sum_at()).map(|i| self.0.counts.get(i)).collect()
    }

    fn sum_seconds(&self) -> f64 {
        self.0.counts.get(self.sum_at()) as f64 / 1e6
    }
}

impl AtomicHistogram {
    /// `(upper bound in seconds, cumulative count)` per bucket, `+Inf`
    /// last, then the sum in seconds: what a text exposition writes.
    pub fn cumulative(&self) -> (Vec<(f64, u64)>, f64) {
        let mut total = 0;
        let buckets = self
            .0
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts())
            .map(|(bound, c)| {
                total += c;
                (bound, total)
            })
            .collect();
        (buckets, self.sum_seconds())
    }
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.counts();
        let buckets: Vec<(f64, u64)> = self
            .0
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(counts.iter().copied())
            .collect();
        let sum = self.sum_seconds();
        encoder.encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn buckets_are_cumulative_and_bounds_inclusive() {
        let h = AtomicHistogram::exponential(0.001, 2.0, 3); // 1, 2, 4 ms
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1)); // on a bound: counts in it
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(1));
        let mut r = Registry::default();
        r.register("lat_seconds", "test", h);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        for line in [
            "lat_seconds_bucket{le=\"0.001\"} 2",
            "lat_seconds_bucket{le=\"0.002\"} 2",
            "lat_seconds_bucket{le=\"0.004\"} 3",
            "lat_seconds_bucket{le=\"+Inf\"} 4",
            "lat_seconds_count 4",
            "lat_seconds_sum 1.0045",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
