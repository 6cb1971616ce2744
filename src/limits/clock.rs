//! Time for the rate limiters: one monotonic time line per [`super::Limits`],
//! read by every limiter built over its stores, whatever reload built it.
//!
//! governor keeps a limiter's times (the GCRA's theoretical arrival times,
//! stored per key) as nanoseconds since the clock reading it took when the
//! limiter was built. A limiter built at a reload takes over the stores of
//! the one before, so both must mean the same thing by a stored time: a
//! [`LimiterClock`] therefore reads zero, the time line's origin, until its
//! limiter is built and [`LimiterClock::start`] is called, and the time since
//! the origin after that. Every limiter so measures from the same origin.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use governor::clock::Clock;
use governor::nanos::Nanos;

/// The longest a bucket may take to fill from empty, in nanoseconds: 100
/// years. A slower quota (a huge period or burst in a config file) has its
/// token weight lowered to fit (`keyed`), and a converted debt is capped at
/// it (`store`), so that governor's sums of times can never overflow,
/// however long the gateway runs.
pub(super) const MAX_FILL: u64 = 100 * 365 * 86_400 * 1_000_000_000;

/// Where "now" comes from: the monotonic clock since an origin, or a clock
/// a test moves by hand.
#[derive(Clone, Debug)]
pub(super) enum Time {
    Real(Instant),
    #[cfg(test)]
    Manual(governor::clock::FakeRelativeClock),
}

impl Time {
    /// The monotonic clock, with its origin now.
    pub(super) fn real() -> Time {
        Time::Real(Instant::now())
    }

    /// Nanoseconds since the origin.
    pub(super) fn now(&self) -> u64 {
        match self {
            // 584 years of uptime before this saturates.
            Time::Real(origin) => u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
            #[cfg(test)]
            Time::Manual(clock) => clock.now().as_u64(),
        }
    }
}

/// The clock one limiter is built with (see the module doc).
#[derive(Debug)]
pub(super) struct LimiterClock {
    time: Time,
    started: AtomicBool,
}

impl LimiterClock {
    /// A clock that reads the origin until [`LimiterClock::start`].
    pub(super) fn at_origin(time: Time) -> LimiterClock {
        LimiterClock {
            time,
            started: AtomicBool::new(false),
        }
    }

    /// Follow the time line from now on; called once the limiter holding
    /// this clock has taken its start reading, before it is published.
    pub(super) fn start(&self) {
        self.started.store(true, Ordering::Release);
    }
}

impl Clock for LimiterClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        // Relaxed is enough: the limiter reaches other threads through an
        // ArcSwap store, which orders this flag's store before it.
        if self.started.load(Ordering::Relaxed) {
            Nanos::from(self.time.now())
        } else {
            Nanos::from(0)
        }
    }
}
