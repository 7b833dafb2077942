//! Operators' reads of the log: a page of the events that pass a filter, walking the most
//! selective index the filter names (see `index`), or the log from a receive time.

use crmhook_core::subscription::type_matches;
use crmhook_core::{Event, SourceId};

use crate::keys::{self, Tag};
use crate::{Result, Store};

/// The filters of an event listing.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// A type, or a pattern of types as subscriptions take them: case ignored,
    /// `Opportunity.*` for every op of an entity.
    pub event_type: Option<String>,
    pub record_id: Option<String>,
    pub kanban_id: Option<String>,
    /// Posted by this source.
    pub source_id: Option<SourceId>,
    /// Received at or after (ms).
    pub since_ms: Option<u64>,
    /// Received before (ms).
    pub until_ms: Option<u64>,
}

impl EventFilter {
    pub(crate) fn admits(&self, e: &Event) -> bool {
        self.event_type.as_ref().is_none_or(|t| type_matches(t, &e.event_type))
            && self.record_id.as_ref().is_none_or(|r| e.record_id.as_ref() == Some(r))
            && self.kanban_id.as_ref().is_none_or(|k| e.kanban_id.as_ref() == Some(k))
            && self.source_id.as_ref().is_none_or(|s| e.source_id.as_ref() == Some(s))
            && self.since_ms.is_none_or(|s| e.received_at_ms >= s)
            && self.until_ms.is_none_or(|u| e.received_at_ms < u)
    }
}

/// Walks of postings (batches of increasing seqs) merged into one walk in seq order.
struct Merged<'a> {
    walks: Vec<std::iter::Peekable<Seqs<'a>>>,
}

/// One walk's seqs, one by one.
type Seqs<'a> = std::iter::FlatMap<Walk<'a>, Vec<Result<u64>>, fn(Result<Vec<u64>>) -> Vec<Result<u64>>>;
type Walk<'a> = Box<dyn Iterator<Item = Result<Vec<u64>>> + 'a>;

impl<'a> Merged<'a> {
    fn new(walks: Vec<Walk<'a>>) -> Merged<'a> {
        fn each(batch: Result<Vec<u64>>) -> Vec<Result<u64>> {
            match batch {
                Ok(seqs) => seqs.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            }
        }
        let each: fn(Result<Vec<u64>>) -> Vec<Result<u64>> = each;
        Merged { walks: walks.into_iter().map(|w| w.flat_map(each).peekable()).collect() }
    }
}

impl Iterator for Merged<'_> {
    type Item = Result<Vec<u64>>;

    fn next(&mut self) -> Option<Self::Item> {
        // The walk whose next seq is lowest (an error first: it is answered at once).
        let mut lowest: Option<(usize, u64)> = None;
        for (i, walk) in self.walks.iter_mut().enumerate() {
            match walk.peek() {
                None => {}
                Some(Err(_)) => return walk.next().map(|e| e.map(|s| vec![s])),
                Some(Ok(seq)) if lowest.is_none_or(|(_, low)| *seq < low) => lowest = Some((i, *seq)),
                Some(Ok(_)) => {}
            }
        }
        let (i, _) = lowest?;
        self.walks[i].next().map(|s| s.map(|s| vec![s]))
    }
}

impl Store {
    /// Events after `after` that pass `filter`, in log order, at most `limit`. Walks the most
    /// selective index the filter names (record id, kanban, type), else the log from the first
    /// event at or after `since`; never the whole log for a filtered read.
    pub fn events_page(&self, filter: &EventFilter, after: u64, limit: usize) -> Result<Vec<Event>> {
        let from = after.saturating_add(1);
        let postings: Option<Box<dyn Iterator<Item = Result<Vec<u64>>>>> = if let Some(r) = &filter.record_id {
            Some(self.record_seqs(r, from)?)
        } else if let Some(prefix) = [
            (Tag::KanbanIndex, filter.kanban_id.as_deref()),
            (Tag::SourceIndex, filter.source_id.as_ref().map(SourceId::as_str)),
        ]
        .into_iter()
        .find_map(|(tag, v)| v.map(|v| keys::text_prefix(tag, v)))
        {
            Some(self.term_seqs(prefix, from)?)
        } else if let Some(pattern) = &filter.event_type {
            // Every type the pattern admits, their postings merged in seq order.
            let mut walks = Vec::new();
            for prefix in self.terms_where(Tag::TypeIndex, |t| type_matches(pattern, t))? {
                walks.push(self.term_seqs(prefix, from)?);
            }
            Some(if walks.len() == 1 { walks.remove(0) } else { Box::new(Merged::new(walks)) })
        } else {
            None
        };
        let mut out = Vec::new();
        if let Some(postings) = postings {
            'postings: for seqs in postings {
                for seq in seqs?.into_iter().filter(|s| *s >= from) {
                    let Some(e) = self.event(seq)? else { continue };
                    if filter.until_ms.is_some_and(|u| e.received_at_ms >= u) {
                        break 'postings;
                    }
                    if filter.admits(&e) {
                        out.push(e);
                        if out.len() >= limit {
                            break 'postings;
                        }
                    }
                }
            }
            return Ok(out);
        }
        // Time only (or nothing): seqs and receive times grow together, so start at the first
        // event received at `since` and stop at `until`.
        let mut start = from;
        if let Some(since) = filter.since_ms {
            start = start.max(self.first_received_at(since)?);
        }
        for e in self.events_from(start) {
            let e = e?;
            if filter.until_ms.is_some_and(|u| e.received_at_ms >= u) {
                break;
            }
            if filter.admits(&e) {
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The seq of the first event received at or after `since_ms` (one past the head if none):
    /// a binary search over seqs, since the writer gives seqs and receive times in step.
    pub(crate) fn first_received_at(&self, since_ms: u64) -> Result<u64> {
        // The first event stored at or after a seq (compaction leaves gaps).
        let at_or_after = |seq: u64| -> Result<Option<Event>> { self.events_from(seq).next().transpose() };
        let (mut lo, mut hi) = (1u64, self.head().saturating_add(1));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match at_or_after(mid)? {
                Some(e) if e.received_at_ms >= since_ms => hi = mid,
                Some(e) => lo = e.seq + 1,
                None => hi = mid,
            }
        }
        Ok(lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use crate::Options;

    #[test]
    fn a_type_pattern_lists_every_type_it_admits_in_log_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A small window: some postings are written out, the last ones stay in memory.
        let options = Options { record_window: 9, ..Default::default() };
        rt().block_on(async {
            let store = Store::open_with(dir.path(), options).expect("open");
            for (from, n) in [(0, 1), (1, 40), (41, 7)] {
                store.append(maximizer(from, n), None).await.expect("append");
            }
            for i in 48..70 {
                store.append(maximizer(i, 1), None).await.expect("append");
            }
            let all: Vec<Event> = store.events_from(1).map(|e| e.expect("event")).collect();
            let of = |pattern: &str| EventFilter { event_type: Some(pattern.into()), ..Default::default() };
            for pattern in
                ["Opportunity.*", "company.*", "OPPORTUNITY.update", "Company.Delete", "Contact.*", "Opportunity"]
            {
                assert_filter_matches_a_scan(&store, &all, &of(pattern));
            }
            // The pattern spans three types, each with its own postings: all of them, in order.
            let page = store.events_page(&of("opportunity.*"), 0, 1000).expect("page");
            assert_eq!(page.len(), 35, "every other one of 70");
            assert!(page.windows(2).all(|w| w[0].seq < w[1].seq));
            let types: std::collections::BTreeSet<_> = page.iter().map(|e| e.event_type.as_str()).collect();
            assert_eq!(
                types.into_iter().collect::<Vec<_>>(),
                ["Opportunity.Delete", "Opportunity.Insert", "Opportunity.Update"]
            );
            let kanban = EventFilter { kanban_id: Some("none".into()), ..of("Opportunity.*") };
            assert!(store.events_page(&kanban, 0, 10).expect("page").is_empty());
        });
    }
}
