//! The sources as ingest reads them: decoded and opened once, not on every request.
//!
//! A CRM's every post to `/in/{id}` needs its source (is it enabled, its kind, the MAIA secret
//! or the Maximizer key's hash). Read from sled, that is a lookup, a decoding and, with a seal
//! key, opening the sealed secret: 5% of the server's CPU on a MAIA source at saturation
//! (PERFORMANCE.md, "Issue 18, eleventh step"). [`SourceCache`] keeps the sources read, by id.
//!
//! Only the writer thread changes `Z` keys (an operator's change, a replicated entry, a
//! restore), and it calls [`SourceCache::forget`] for every group that holds one, before the
//! group is applied. A reader that looked a source up in sled puts it in the cache only if no
//! `forget` came between its lookup's start and its insert (a generation count), so a
//! source read before a change is never kept after it. Unknown ids are not kept (anyone can
//! post to any `/in/{id}`), and the cache holds at most [`MOST_SOURCES`] sources, beyond which
//! reads go to sled as before.

use std::collections::HashMap;
use std::sync::Mutex;

use crmhook_core::{Source, SourceId};

/// Most sources kept; operators create sources by hand, so this is never reached in practice.
pub(crate) const MOST_SOURCES: usize = 4096;

/// Sources by id, as last read from the store, and how many times they were forgotten.
#[derive(Default)]
pub(crate) struct SourceCache {
    inner: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    generation: u64,
    by_id: HashMap<SourceId, Source>,
}

/// What the cache answered for an id.
pub(crate) enum Lookup {
    Kept(Source),
    /// Not kept: read it from sled, then [`SourceCache::keep`] it with this generation.
    Missing(u64),
}

impl SourceCache {
    pub(crate) fn get(&self, id: &SourceId) -> Lookup {
        match self.inner.lock() {
            Ok(kept) => match kept.by_id.get(id) {
                Some(source) => Lookup::Kept(source.clone()),
                None => Lookup::Missing(kept.generation),
            },
            // A reader panicked holding the lock: read from sled, keep nothing.
            Err(_) => Lookup::Missing(u64::MAX),
        }
    }

    /// Keeps a source read from sled after [`SourceCache::get`] answered `generation`, unless
    /// the sources changed since.
    pub(crate) fn keep(&self, generation: u64, source: &Source) {
        if let Ok(mut kept) = self.inner.lock() {
            if kept.generation == generation && kept.by_id.len() < MOST_SOURCES {
                kept.by_id.insert(source.id.clone(), source.clone());
            }
        }
    }

    /// Forgets every source: the writer is about to change `Z` keys.
    pub(crate) fn forget(&self) {
        let mut kept = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        kept.generation += 1;
        kept.by_id.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crmhook_core::SourceKind;

    fn source(name: &str) -> Source {
        Source {
            id: SourceId::generate(),
            name: name.into(),
            kind: SourceKind::Maia,
            enabled: true,
            maia_secret: Some("a secret of sixteen".into()),
            key_sha256: None,
            created_at_ms: 1,
            updated_at_ms: 1,
        }
    }

    #[test]
    fn the_store_reads_a_source_as_its_last_change_left_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::test_support::rt().block_on(async {
            let store = crate::Store::open(dir.path()).expect("open");
            let mut s = source("crm");
            store.put_source(&s).await.expect("put");
            assert_eq!(store.source(&s.id).expect("read").map(|k| k.enabled), Some(true));
            assert!(matches!(store.inner.sources.get(&s.id), Lookup::Kept(_)), "read once, kept");
            s.enabled = false;
            s.maia_secret = Some("another secret of sixteen".into());
            store.put_source(&s).await.expect("change");
            let read = store.source(&s.id).expect("read").expect("found");
            assert_eq!((read.enabled, read.maia_secret), (false, s.maia_secret.clone()));
            store.delete_source(&s.id).await.expect("delete");
            assert!(store.source(&s.id).expect("read").is_none(), "a deleted source was still read");
            store.close().await;
        });
    }

    #[test]
    fn a_source_read_before_a_change_is_not_kept_after_it() {
        let cache = SourceCache::default();
        let old = source("old");
        let Lookup::Missing(generation) = cache.get(&old.id) else { panic!("an empty cache kept a source") };
        cache.forget();
        cache.keep(generation, &old);
        assert!(matches!(cache.get(&old.id), Lookup::Missing(_)), "a source read before the change was kept");
    }

    #[test]
    fn a_source_is_kept_until_forgotten() {
        let cache = SourceCache::default();
        let s = source("crm");
        let Lookup::Missing(generation) = cache.get(&s.id) else { panic!("an empty cache kept a source") };
        cache.keep(generation, &s);
        match cache.get(&s.id) {
            Lookup::Kept(k) => assert_eq!(k.name, "crm"),
            Lookup::Missing(_) => panic!("the source was not kept"),
        }
        cache.forget();
        assert!(matches!(cache.get(&s.id), Lookup::Missing(_)));
    }
}
