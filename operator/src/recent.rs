//! What a reconcile looked at a moment ago and may take as still true for a
//! while: a bucket's listing, the events about a pending claim. A reconcile
//! runs on every event of every child (a rollout makes dozens), and these
//! answers change far less often than that, so they are shared between the
//! reconciles of a short span instead of asked for each time.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Values by key (a uid), each good for `ttl` after it was put. Entries of
/// objects that went away leave with the next `put` after they expire, so
/// the map holds no more than what was looked at within one `ttl`.
pub struct Recent<V> {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> Recent<V> {
    /// An empty map whose values stand for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Recent {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value put under `key` less than `ttl` ago.
    pub fn get(&self, key: &str) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        let (at, value) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    /// Keeps `value` under `key` from now on.
    pub fn put(&self, key: String, value: V) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            entries.insert(key, (Instant::now(), value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_stands_for_its_time_and_then_goes() {
        let recent = Recent::new(Duration::from_millis(50));
        recent.put("a".into(), 1);
        assert_eq!(recent.get("a"), Some(1));
        assert_eq!(recent.get("b"), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(recent.get("a"), None);
        recent.put("b".into(), 2);
        let left = recent.entries.lock().map(|e| e.len()).unwrap_or_default();
        assert_eq!(left, 1, "the expired entry left with the next put");
    }
}
