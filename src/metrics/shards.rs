//! Counters kept in several copies, one per group of threads, and summed
//! when they are read.
//!
//! The delivery metrics are added to once per delivered message by every
//! serving loop (one per core). One shared copy made the loops take the
//! same cache lines from each other on every delivery; here each thread
//! adds to its own copy (threads are given copies in turn, so the loops,
//! started together, get different ones), and a scrape sums the copies.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Copies kept: more than the loops of most machines, few enough that a
/// scrape sums little.
const COPIES: usize = 8;
/// A copy's counters start a cache line (and a spare, for adjacent-line
/// prefetch) past the end of the previous copy's.
const GAP_WORDS: usize = 16;

/// `len` counters, in [`COPIES`] copies.
#[derive(Debug)]
pub(crate) struct Sharded {
    words: Box<[AtomicU64]>,
    len: usize,
    stride: usize,
}

/// Which copy this thread adds to.
fn copy() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static COPY: usize = NEXT.fetch_add(1, Ordering::Relaxed) % COPIES;
    }
    COPY.with(|c| *c)
}

impl Sharded {
    pub(crate) fn new(len: usize) -> Sharded {
        let stride = len + GAP_WORDS;
        Sharded {
            words: (0..stride * COPIES).map(|_| AtomicU64::new(0)).collect(),
            len,
            stride,
        }
    }

    /// Add `n` to counter `i` (of this thread's copy).
    pub(crate) fn add(&self, i: usize, n: u64) {
        if i < self.len {
            self.words[copy() * self.stride + i].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counter `i`, every copy summed.
    pub(crate) fn get(&self, i: usize) -> u64 {
        if i >= self.len {
            return 0;
        }
        (0..COPIES)
            .map(|c| self.words[c * self.stride + i].load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_from_many_threads_sum_and_land_in_their_own_copies() {
        let s = std::sync::Arc::new(Sharded::new(3));
        let threads: Vec<_> = (0..COPIES)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        s.add(1, 1);
                    }
                    s.add(2, 5);
                    s.add(3, 7); // out of range: ignored
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!((s.get(0), s.get(1), s.get(2), s.get(3)), (0, 8000, 40, 0));
        // Threads take copies in turn: eight threads did not all add to one
        // copy (other tests' threads take turns too, so not every copy is
        // certain to be used).
        let per_copy: Vec<u64> = (0..COPIES)
            .map(|c| s.words[c * s.stride + 1].load(Ordering::Relaxed))
            .collect();
        assert!(
            per_copy.iter().filter(|&&n| n > 0).count() > 1,
            "a copy per thread: {per_copy:?}"
        );
    }
}
