//! Answers read from the database a moment ago, kept for a short while so that busy callers
//! do not each ask again: API keys (every API request) and channels (every send). A change made
//! in this process empties the cache at once; one made by another process sharing the database
//! is seen once the entry is older than its freshness.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Values by key, each trusted for `fresh_for` after it was read.
pub struct Fresh<V> {
    entries: Mutex<HashMap<String, (V, Instant)>>,
    /// Counts the times the cache was emptied: a value read before a change committed is not
    /// kept after it (it would be answered until it went stale).
    generation: AtomicU64,
    fresh_for: Duration,
    /// Entries kept at most: bounds memory whatever keys callers send.
    max: usize,
}

impl<V: Clone> Fresh<V> {
    pub fn new(fresh_for: Duration, max: usize) -> Self {
        Fresh {
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            fresh_for,
            max,
        }
    }

    /// The value kept for `key`, if it is fresh.
    pub fn fresh(&self, key: &str) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.fresh_for)
            .map(|(value, _)| value.clone())
    }

    /// Taken before reading the value that is then handed to [`Fresh::keep`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Keeps `value`, read from the database while the cache was at `generation`; dropped when
    /// the cache was emptied since.
    pub fn keep(&self, key: String, value: V, generation: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation() != generation {
            return;
        }
        if entries.len() >= self.max {
            entries.retain(|_, (_, at)| at.elapsed() < self.fresh_for);
            if entries.len() >= self.max {
                entries.clear();
            }
        }
        entries.insert(key, (value, Instant::now()));
    }

    /// Forgets everything: the next caller asks the database.
    pub fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_kept_until_stale_or_cleared_and_never_from_before_a_clear() {
        let cache = Fresh::new(Duration::from_millis(50), 2);
        let generation = cache.generation();
        cache.keep("a".into(), 1, generation);
        assert_eq!(cache.fresh("a"), Some(1));
        assert_eq!(cache.fresh("b"), None);
        // A value read before a clear is not kept after it.
        let before = cache.generation();
        cache.clear();
        assert_eq!(cache.fresh("a"), None);
        cache.keep("a".into(), 2, before);
        assert_eq!(cache.fresh("a"), None);
        // Bounded: a full cache of fresh entries starts again.
        let now = cache.generation();
        for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
            cache.keep(k.into(), v, now);
        }
        assert_eq!(cache.fresh("c"), Some(3));
        assert_eq!(cache.fresh("a"), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.fresh("c"), None, "stale");
    }
}
