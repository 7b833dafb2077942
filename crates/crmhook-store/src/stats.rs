//! The console's charts' counts ([`Series`]), kept under `M stats:<name>`: read all at start-up,
//! written now and then by the edge as lazy writes (a crash may lose the last few seconds of
//! counts, never anything else).

use crate::batch::Writes;
use crate::keys::{self, Key};
use crate::records::Series;
use crate::writer::When;
use crate::{codec, Result, Store};

/// The prefix of the meta names the series are kept under.
pub const STATS_PREFIX: &str = "stats:";

impl Store {
    /// Every series kept, by name (without `STATS_PREFIX`).
    pub fn stats(&self) -> Result<Vec<(String, Series)>> {
        let mut out = Vec::new();
        for kv in self.inner.tree.scan_prefix(keys::meta(STATS_PREFIX)) {
            let (k, v) = kv?;
            let Some(Key::Meta(name)) = Key::parse(&k) else { continue };
            let Some(name) = name.strip_prefix(STATS_PREFIX) else { continue };
            out.push((name.to_owned(), codec::decode(&v)?));
        }
        Ok(out)
    }

    /// Writes the series `put` and removes those named in `remove`, as one lazy write: it is
    /// applied when this answers, and on disk with the next flush (within sled's
    /// `flush_every_ms`).
    pub async fn put_stats(&self, put: Vec<(String, Series)>, remove: Vec<String>) -> Result<()> {
        let mut batch = Writes::default();
        for (name, series) in &put {
            batch.insert(keys::meta(&format!("{STATS_PREFIX}{name}")), codec::encode(series)?);
        }
        for name in remove {
            batch.remove(keys::meta(&format!("{STATS_PREFIX}{name}")));
        }
        self.write_here(batch, When::Held).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{LastFailure, SeriesBucket};
    use crate::test_support::rt;

    #[test]
    fn series_round_trip_and_are_removed_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).expect("open");
            let series = Series {
                names: vec!["succeeded".into(), "failed".into(), "dead".into()],
                minutes: vec![SeriesBucket { at_ms: 60_000, counts: vec![(0, 3), (2, 1)] }],
                quarters: vec![SeriesBucket { at_ms: 0, counts: vec![(0, 3), (2, 1)] }],
                last_success_ms: Some(60_500),
                last_failure: Some(LastFailure { at_ms: 61_000, status_code: Some(500), error: None }),
            };
            let other = Series { names: vec!["crm_field_update".into()], ..Series::default() };
            store.put_meta("stats", "not a series").await.expect("meta");
            store
                .put_stats(vec![("tgt_a".into(), series.clone()), ("ingest".into(), other.clone())], vec![])
                .await
                .expect("put");
            assert_eq!(store.stats().expect("read"), vec![("ingest".into(), other), ("tgt_a".into(), series.clone())]);
            store.put_stats(vec![], vec!["ingest".into()]).await.expect("remove");
            store.close().await;
            drop(store);
            let store = Store::open(dir.path()).expect("open again");
            assert_eq!(store.stats().expect("read"), vec![("tgt_a".into(), series)]);
            assert_eq!(store.meta("stats").expect("meta").as_deref(), Some("not a series"));
            store.close().await;
        });
    }
}
