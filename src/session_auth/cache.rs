//! Answers kept per credential, and one question in flight per key.
//!
//! The cache is bounded (`CAPACITY` entries, least recently used out first)
//! and keyed by a SHA-256 digest, so it holds no cookie. A burst of
//! connections with the same cookie finds either a fresh answer or the one
//! check already asking (single flight): the application sees one request,
//! not one per connection.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

/// What a key is: a digest of everything that makes two questions the same.
pub(crate) type Key = [u8; 32];

/// Most answers kept at once (each a few hundred bytes).
const CAPACITY: usize = 50_000;

struct Entry<V> {
    value: V,
    /// When it was asked: its age is judged by the `cache` in force when
    /// it is read, so a reload that shortens `cache` shortens it too.
    at: Instant,
    /// Matches the latest of this key's marks in `order`.
    stamp: u64,
}

/// A least-recently-used map: `order` lists (key, stamp) as used, and only a
/// mark whose stamp is still the entry's counts, so a hit is O(1) (push a
/// new mark) and the stale marks are dropped as the queue is read or, when
/// it grows past a bound, all at once.
struct Lru<V> {
    map: HashMap<Key, Entry<V>>,
    order: VecDeque<(Key, u64)>,
    next: u64,
    capacity: usize,
}

impl<V: Clone> Lru<V> {
    fn new(capacity: usize) -> Self {
        Lru {
            map: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
            capacity,
        }
    }

    fn mark(&mut self, key: Key) -> u64 {
        self.next += 1;
        self.order.push_back((key, self.next));
        if self.order.len() > 4 * self.capacity.max(16) {
            let map = &self.map;
            self.order
                .retain(|(k, s)| map.get(k).is_some_and(|e| e.stamp == *s));
        }
        self.next
    }

    fn get(&mut self, key: &Key, now: Instant, max_age: Duration) -> Option<V> {
        let entry = self.map.get(key)?;
        if now.saturating_duration_since(entry.at) >= max_age {
            self.map.remove(key);
            return None;
        }
        let value = entry.value.clone();
        let stamp = self.mark(*key);
        if let Some(e) = self.map.get_mut(key) {
            e.stamp = stamp;
        }
        Some(value)
    }

    fn insert(&mut self, key: Key, value: V, at: Instant) {
        let stamp = self.mark(key);
        self.map.insert(key, Entry { value, at, stamp });
        while self.map.len() > self.capacity {
            let Some((k, s)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&k).is_some_and(|e| e.stamp == s) {
                self.map.remove(&k);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Answers by key for a time, and the questions being asked right now.
pub(crate) struct Answers<V> {
    kept: Mutex<Lru<V>>,
    asking: Mutex<HashMap<Key, Arc<OnceCell<V>>>>,
}

impl<V: Clone> Default for Answers<V> {
    fn default() -> Self {
        Answers::with_capacity(CAPACITY)
    }
}

impl<V: Clone> Answers<V> {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Answers {
            kept: Mutex::new(Lru::new(capacity)),
            asking: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for `key`: a kept one younger than `keep`, else the one
    /// being asked, else `ask`'s. What `keep_it` accepts is kept (a
    /// refusal of the application is an answer; its being down is not).
    /// If the caller that asks goes away, a waiting one asks instead; when
    /// every caller went away, the question is forgotten (nothing is left
    /// behind for a key that never comes back).
    pub(crate) async fn get<F, Fut>(
        &self,
        key: Key,
        keep: Duration,
        keep_it: impl Fn(&V) -> bool,
        ask: F,
    ) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        if !keep.is_zero() {
            if let Some(v) = self.kept.lock().get(&key, Instant::now(), keep) {
                return v;
            }
        }
        let cell = self.asking.lock().entry(key).or_default().clone();
        let waiting = Waiting {
            asking: &self.asking,
            key,
            cell,
        };
        let value = waiting.cell.get_or_init(ask).await.clone();
        // Kept before it stops being the question in flight (`waiting`
        // drops after), so that no caller in between asks again.
        if !keep.is_zero() && keep_it(&value) {
            self.kept.lock().insert(key, value.clone(), Instant::now());
        }
        drop(waiting);
        value
    }

    /// Answers kept now.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.kept.lock().len()
    }
}

/// One caller's hold on a question in flight. The last one to let go —
/// answered, or cancelled while it waited — takes the question out.
struct Waiting<'a, V> {
    asking: &'a Mutex<HashMap<Key, Arc<OnceCell<V>>>>,
    key: Key,
    cell: Arc<OnceCell<V>>,
}

impl<V> Drop for Waiting<'_, V> {
    fn drop(&mut self) {
        let mut asking = self.asking.lock();
        // Every holder clones under this lock: the count is exact here.
        // Two: the map's and ours.
        if asking
            .get(&self.key)
            .is_some_and(|c| Arc::ptr_eq(c, &self.cell) && Arc::strong_count(c) == 2)
        {
            asking.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key(n: u8) -> Key {
        [n; 32]
    }

    #[test]
    fn least_recently_used_goes_first() {
        let mut lru = Lru::new(2);
        let now = Instant::now();
        let age = Duration::from_secs(60);
        lru.insert(key(1), 1, now);
        lru.insert(key(2), 2, now);
        assert_eq!(lru.get(&key(1), now, age), Some(1));
        lru.insert(key(3), 3, now);
        assert_eq!(
            lru.get(&key(2), now, age),
            None,
            "2 was used least recently"
        );
        assert_eq!(lru.get(&key(1), now, age), Some(1));
        assert_eq!(lru.get(&key(3), now, age), Some(3));
        assert_eq!(lru.len(), 2);
    }

    #[test]
    fn old_answers_are_not_given() {
        let mut lru = Lru::new(4);
        let now = Instant::now();
        lru.insert(key(1), 1, now);
        let s = Duration::from_secs(1);
        assert_eq!(lru.get(&key(1), now, s), Some(1));
        // A shorter `cache` after a reload judges it by that.
        assert_eq!(
            lru.get(
                &key(1),
                now + Duration::from_millis(600),
                Duration::from_millis(500)
            ),
            None
        );
        assert_eq!(lru.len(), 0);
    }

    #[test]
    fn many_hits_keep_the_queue_bounded() {
        let mut lru = Lru::new(16);
        let now = Instant::now();
        lru.insert(key(1), 1, now);
        for _ in 0..10_000 {
            lru.get(&key(1), now, Duration::from_secs(60));
        }
        assert!(lru.order.len() <= 64, "{}", lru.order.len());
    }

    #[tokio::test]
    async fn one_question_in_flight_per_key() {
        let answers: Arc<Answers<u32>> = Arc::new(Answers::default());
        let asked = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..300)
            .map(|_| {
                let answers = answers.clone();
                let asked = asked.clone();
                tokio::spawn(async move {
                    answers
                        .get(
                            key(7),
                            Duration::from_secs(30),
                            |_| true,
                            || async {
                                asked.fetch_add(1, Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                42
                            },
                        )
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 42);
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        // Kept: the next asks nobody.
        let v = answers
            .get(
                key(7),
                Duration::from_secs(30),
                |_| true,
                || async {
                    asked.fetch_add(1, Ordering::SeqCst);
                    0
                },
            )
            .await;
        assert_eq!((v, asked.load(Ordering::SeqCst)), (42, 1));
    }

    #[tokio::test]
    async fn a_question_everyone_gave_up_on_is_forgotten() {
        let answers: Arc<Answers<u32>> = Arc::new(Answers::default());
        for n in 0..100u8 {
            let a = answers.clone();
            let task = tokio::spawn(async move {
                a.get(
                    key(n),
                    Duration::from_secs(30),
                    |_| true,
                    || async { std::future::pending::<u32>().await },
                )
                .await
            });
            tokio::task::yield_now().await;
            task.abort();
            let _ = task.await;
        }
        assert_eq!(answers.asking.lock().len(), 0, "no question left behind");
    }

    #[tokio::test]
    async fn what_is_not_kept_is_asked_again() {
        let answers: Answers<u32> = Answers::default();
        let asked = AtomicUsize::new(0);
        for _ in 0..3 {
            answers
                .get(
                    key(1),
                    Duration::from_secs(30),
                    |v| *v != 503,
                    || async {
                        asked.fetch_add(1, Ordering::SeqCst);
                        503
                    },
                )
                .await;
        }
        assert_eq!(asked.load(Ordering::SeqCst), 3);
        assert_eq!(answers.kept(), 0);
    }
}
