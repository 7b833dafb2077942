//! Places a key may hold a few of at once, each given back when it is dropped: the ingest
//! requests in progress of an ingest token or a source (`ingest_concurrency`,
//! `api::request::ingest_slot`) and the open streams of an API key (`max_streams_per_key`,
//! `stream`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// How many places each key holds; a key that holds none has no entry, so the map holds only
/// the keys in use.
#[derive(Debug, Default)]
pub(crate) struct PerKey {
    held: Mutex<HashMap<String, usize>>,
}

/// One place of a key, given back when dropped.
#[derive(Debug)]
pub(crate) struct Place {
    of: Arc<PerKey>,
    key: String,
}

impl PerKey {
    /// Takes one of the `limit` places of `key`; when it holds them all, answers how many it
    /// holds.
    pub(crate) fn take(self: &Arc<Self>, key: String, limit: usize) -> Result<Place, usize> {
        let mut held = self.held();
        let n = held.get(&key).copied().unwrap_or(0);
        if n >= limit {
            return Err(n);
        }
        held.insert(key.clone(), n + 1);
        Ok(Place { of: self.clone(), key })
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut held = self.of.held();
        if let Some(n) = held.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_its_places_and_gets_each_back_when_it_is_dropped() {
        let places = Arc::new(PerKey::default());
        let a1 = places.take("a".into(), 2).unwrap();
        let a2 = places.take("a".into(), 2).unwrap();
        assert_eq!(places.take("a".into(), 2).unwrap_err(), 2);
        // Another key is not held back by the first.
        let b = places.take("b".into(), 2).unwrap();
        drop(a1);
        let a3 = places.take("a".into(), 2).unwrap();
        assert_eq!(places.take("a".into(), 2).unwrap_err(), 2);
        // A key that holds nothing any more (a revoked one, say) leaves nothing behind.
        drop((a2, a3, b));
        assert!(places.held().is_empty());
        assert_eq!(places.take("c".into(), 0).unwrap_err(), 0);
        assert!(places.held().is_empty());
    }
}
