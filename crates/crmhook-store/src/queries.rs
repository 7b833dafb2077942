//! Operators' reads of the log: a page of the events that pass a filter, walking the most
//! selective index the filter names (see `index`), or the log from a receive time.

use crmhook_core::subscription::type_matches;
use crmhook_core::{Event, SourceId};

use crate::index::Walk;
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

/// Walks of postings merged into one walk in the walks' order: increasing seqs, or decreasing
/// ones for a walk newest first.
struct Merged<'a> {
    walks: Vec<std::iter::Peekable<Seqs<'a>>>,
    newest_first: bool,
}

/// One walk's seqs, one by one.
type Seqs<'a> = std::iter::FlatMap<Walk<'a>, Vec<Result<u64>>, fn(Result<Vec<u64>>) -> Vec<Result<u64>>>;

impl<'a> Merged<'a> {
    fn new(walks: Vec<Walk<'a>>, newest_first: bool) -> Merged<'a> {
        fn each(batch: Result<Vec<u64>>) -> Vec<Result<u64>> {
            match batch {
                Ok(seqs) => seqs.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            }
        }
        let each: fn(Result<Vec<u64>>) -> Vec<Result<u64>> = each;
        Merged { walks: walks.into_iter().map(|w| w.flat_map(each).peekable()).collect(), newest_first }
    }
}

impl Iterator for Merged<'_> {
    type Item = Result<Vec<u64>>;

    fn next(&mut self) -> Option<Self::Item> {
        // The walk whose next seq comes first (an error first of all: it is answered at once).
        let mut first: Option<(usize, u64)> = None;
        for (i, walk) in self.walks.iter_mut().enumerate() {
            match walk.peek() {
                None => {}
                Some(Err(_)) => return walk.next().map(|e| e.map(|s| vec![s])),
                Some(Ok(seq)) => {
                    let before = |other: u64| if self.newest_first { *seq > other } else { *seq < other };
                    if first.is_none_or(|(_, f)| before(f)) {
                        first = Some((i, *seq));
                    }
                }
            }
        }
        let (i, _) = first?;
        self.walks[i].next().map(|s| s.map(|s| vec![s]))
    }
}

/// Which way a page of the log goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Seqs after `after`, oldest first.
    Oldest { after: u64 },
    /// Seqs up to `upto`, newest first.
    Newest { upto: u64 },
}

impl Direction {
    fn holds(self, seq: u64) -> bool {
        match self {
            Direction::Oldest { after } => seq > after,
            Direction::Newest { upto } => seq <= upto,
        }
    }

    /// Whether an event the walk reached is past the filter's time bound in the walk's
    /// direction (seqs and receive times grow together, so every later one is too).
    fn past_time(self, filter: &EventFilter, e: &Event) -> bool {
        match self {
            Direction::Oldest { .. } => filter.until_ms.is_some_and(|u| e.received_at_ms >= u),
            Direction::Newest { .. } => filter.since_ms.is_some_and(|s| e.received_at_ms < s),
        }
    }
}

impl Store {
    /// Events after `after` that pass `filter`, in log order, at most `limit`. Walks the most
    /// selective index the filter names (record id, kanban, type), else the log from the first
    /// event at or after `since`; never the whole log for a filtered read.
    pub fn events_page(&self, filter: &EventFilter, after: u64, limit: usize) -> Result<Vec<Event>> {
        self.page(filter, Direction::Oldest { after }, limit)
    }

    /// Events before `before` (every acknowledged one without it) that pass `filter`, newest
    /// first, at most `limit`: [`Store::events_page`] backwards, through the same indexes, from
    /// the last event received before `until`.
    pub fn events_page_newest(&self, filter: &EventFilter, before: Option<u64>, limit: usize) -> Result<Vec<Event>> {
        let mut upto = self.head();
        if let Some(before) = before {
            upto = upto.min(before.saturating_sub(1));
        }
        if let Some(until) = filter.until_ms {
            upto = upto.min(self.first_received_at(until)?.saturating_sub(1));
        }
        if upto == 0 {
            return Ok(Vec::new());
        }
        self.page(filter, Direction::Newest { upto }, limit)
    }

    fn page(&self, filter: &EventFilter, direction: Direction, limit: usize) -> Result<Vec<Event>> {
        let newest_first = matches!(direction, Direction::Newest { .. });
        let walk = |prefix: Vec<u8>| match direction {
            Direction::Oldest { after } => self.term_seqs(prefix, after.saturating_add(1)),
            Direction::Newest { upto } => self.term_seqs_back(prefix, upto),
        };
        let postings: Option<Walk<'_>> = if let Some(r) = &filter.record_id {
            Some(match direction {
                Direction::Oldest { after } => self.record_seqs(r, after.saturating_add(1))?,
                Direction::Newest { upto } => self.record_seqs_back(r, upto)?,
            })
        } else if let Some(prefix) = [
            (Tag::KanbanIndex, filter.kanban_id.as_deref()),
            (Tag::SourceIndex, filter.source_id.as_ref().map(SourceId::as_str)),
        ]
        .into_iter()
        .find_map(|(tag, v)| v.map(|v| keys::text_prefix(tag, v)))
        {
            Some(walk(prefix)?)
        } else if let Some(pattern) = &filter.event_type {
            // Every type the pattern admits, their postings merged in the walk's order.
            let mut walks = Vec::new();
            for prefix in self.terms_where(Tag::TypeIndex, |t| type_matches(pattern, t))? {
                walks.push(walk(prefix)?);
            }
            Some(if walks.len() == 1 { walks.remove(0) } else { Box::new(Merged::new(walks, newest_first)) })
        } else {
            None
        };
        let mut out = Vec::new();
        if let Some(postings) = postings {
            'postings: for seqs in postings {
                for seq in seqs?.into_iter().filter(|s| direction.holds(*s)) {
                    let Some(e) = self.event(seq)? else { continue };
                    if direction.past_time(filter, &e) {
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
        // event received at `since` (oldest first; newest first, `upto` is already before
        // `until`) and stop at the other bound.
        let events: Box<dyn Iterator<Item = Result<Event>>> = match direction {
            Direction::Oldest { after } => {
                let mut start = after.saturating_add(1);
                if let Some(since) = filter.since_ms {
                    start = start.max(self.first_received_at(since)?);
                }
                Box::new(self.events_from(start))
            }
            Direction::Newest { upto } => Box::new(self.events_back(upto)),
        };
        for e in events {
            let e = e?;
            if direction.past_time(filter, &e) {
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
