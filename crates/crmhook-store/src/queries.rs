//! Operators' reads of the log: a page of the events that pass a filter, walking the most
//! selective index the filter names (see `index`), or the log from a receive time.

use crmhook_core::{Event, SourceId};

use crate::keys::{self, Tag};
use crate::{Result, Store};

/// The filters of an event listing.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
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
        self.event_type.as_ref().is_none_or(|t| &e.event_type == t)
            && self.record_id.as_ref().is_none_or(|r| e.record_id.as_ref() == Some(r))
            && self.kanban_id.as_ref().is_none_or(|k| e.kanban_id.as_ref() == Some(k))
            && self.source_id.as_ref().is_none_or(|s| e.source_id.as_ref() == Some(s))
            && self.since_ms.is_none_or(|s| e.received_at_ms >= s)
            && self.until_ms.is_none_or(|u| e.received_at_ms < u)
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
            (Tag::TypeIndex, filter.event_type.as_deref()),
        ]
        .into_iter()
        .find_map(|(tag, v)| v.map(|v| keys::text_prefix(tag, v)))
        {
            Some(self.term_seqs(prefix, from)?)
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
