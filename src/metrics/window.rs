//! A lock-free latency histogram that can be read back, for the dashboard's
//! live p50/p99.
//!
//! The Prometheus histogram only exposes its sum and count, so quantiles over
//! "the last second" need their own buckets. These are log-linear (four per
//! power of two of microseconds, so a quantile is within ~19% of the true
//! value), one relaxed atomic add per observation (into its thread's copy of
//! the counts, [`Sharded`], summed when read). A reader takes two
//! [`Snapshot`]s and asks for quantiles of what happened in between.

use std::time::Duration;

use super::shards::Sharded;

/// Sub-buckets per power of two.
const SUB: u32 = 4;
/// Powers of two covered: 1µs .. ~2^30µs (18 minutes); larger values land in the last bucket.
const OCTAVES: u32 = 31;
const BUCKETS: usize = (OCTAVES * SUB) as usize;

pub struct LatencyWindow {
    counts: Sharded,
}

impl Default for LatencyWindow {
    fn default() -> Self {
        LatencyWindow {
            counts: Sharded::new(BUCKETS),
        }
    }
}

/// The bucket counts at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot(Vec<u64>);

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot(vec![0; BUCKETS])
    }
}

/// Bucket index of a value in microseconds.
fn index(us: u64) -> usize {
    if us < u64::from(SUB) {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros(); // position of the top bit, >= 2
    let frac = (us >> (octave - 2)) & u64::from(SUB - 1); // the next two bits
    ((octave - 1) * SUB + frac as u32).min(BUCKETS as u32 - 1) as usize
}

/// A representative value (µs) for bucket `i`: the middle of its range.
fn value(i: usize) -> f64 {
    let i = i as u32;
    if i < SUB {
        return f64::from(i);
    }
    let octave = i / SUB + 1;
    let frac = i % SUB;
    let low = (1u64 << octave) + (u64::from(frac) << (octave - 2));
    let width = 1u64 << (octave - 2);
    low as f64 + width as f64 / 2.0
}

impl LatencyWindow {
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts.add(index(us), 1);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot((0..BUCKETS).map(|i| self.counts.get(i)).collect())
    }
}

impl Snapshot {
    /// Observations between `earlier` and `self`.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot(
            self.0
                .iter()
                .zip(&earlier.0)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        )
    }

    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The `q` quantile (0..=1) in milliseconds, or None with no observations.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(value(i) / 1000.0);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_close() {
        let mut last = 0;
        for us in [0u64, 1, 3, 4, 5, 7, 8, 100, 1000, 12_345, 1 << 29] {
            let i = index(us);
            assert!(i >= last, "index not monotonic at {us}");
            last = i;
            if us >= 4 {
                let v = value(i);
                let err = (v - us as f64).abs() / us as f64;
                assert!(err <= 0.2, "{us}µs reported as {v}");
            }
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_a_window() {
        let w = LatencyWindow::default();
        for _ in 0..90 {
            w.observe(Duration::from_micros(1000));
        }
        let before = w.snapshot();
        for _ in 0..99 {
            w.observe(Duration::from_millis(2));
        }
        w.observe(Duration::from_millis(80));
        let d = w.snapshot().since(&before);
        assert_eq!(d.count(), 100);
        let p50 = d.quantile_ms(0.5).unwrap();
        let p99 = d.quantile_ms(0.99).unwrap();
        let max = d.quantile_ms(1.0).unwrap();
        assert!((1.6..2.4).contains(&p50), "p50 {p50}");
        assert!((1.6..2.4).contains(&p99), "p99 {p99}");
        assert!((64.0..96.0).contains(&max), "max {max}");
        assert_eq!(Snapshot::default().quantile_ms(0.5), None);
    }
}
