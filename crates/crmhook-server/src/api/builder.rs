//! What the console's subscription builder reads: a subscription tried out on the last events
//! of the log (`POST /v1/subscriptions/preview`), and the values those events hold
//! (`GET /v1/events/facets`) for its pickers. Both only read, so an operator key may ask.
//!
//! Both read at most a fixed number of events (1,000 and 10,000), on tokio's blocking pool,
//! never on an HTTP worker, and keep only what they answer: a preview the few members of each
//! event it matched (never a payload), the facets one count per distinct value (values longer
//! than a subscription may list are not counted, so the counts stay bounded too).

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use crmhook_core::event::MAIA_TYPES;
use crmhook_core::subscription::{Compiled, MAX_STRING_BYTES};
use crmhook_core::time::{now_ms, rfc3339};
use crmhook_core::{Event, Subscription};
use crmhook_store::{Log, LogHandle, StoreError};

use crate::api::auth::Operator;
use crate::api::request::{last_param, read_object};
use crate::api::state::State;
use crate::api::views::{Facets, Preview, PreviewEvent, TypeCount, ValueCount};
use crate::error::ApiError;

/// Default and largest `last` of a preview.
pub const PREVIEW_LAST: (usize, usize) = (100, 1_000);
/// Default and largest `last` of the facets.
pub const FACETS_LAST: (usize, usize) = (1_000, 10_000);
/// The most values each list of the facets holds.
pub const FACET_VALUES: usize = 100;
/// A preview shows an event's `record_id` only up to this many bytes.
const RECORD_ID_BYTES: usize = 1_024;

/// Calls `each` on the last `n` events of the log (those from seq `head - n + 1` on that
/// retention has kept), oldest first; answers how many it read. Blocking.
fn scan_last(store: &dyn Log, n: usize, mut each: impl FnMut(&Event)) -> Result<u64, StoreError> {
    let head = store.head();
    if head == 0 || n == 0 {
        return Ok(0);
    }
    let from = head.saturating_sub(n as u64 - 1).max(1);
    let mut scanned = 0;
    for event in store.event_refs_from(from) {
        let event = event?;
        if event.seq > head {
            break;
        }
        scanned += 1;
        each(&event);
    }
    Ok(scanned)
}

/// Runs a blocking read of the log on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    store: LogHandle,
    read: impl FnOnce(&dyn Log) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(move || read(&*store)).await {
        Ok(result) => Ok(result?),
        Err(e) => Err(ApiError::Internal(format!("reading the log failed: {e}"))),
    }
}

/// `POST /v1/subscriptions/preview?last=N`: which of the last N events (default 100, at most
/// 1,000) a subscription with this body would match, by the matcher delivery uses. The body is
/// a creation's, checked by the same rules, but `target_id` may be left out.
pub(crate) async fn preview_subscription(
    _: Operator,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    payload: web::Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let last = last_param(&query, PREVIEW_LAST.0, PREVIEW_LAST.1)?;
    let body = read_object(&req, payload).await?;
    let (named, draft) = Subscription::draft(&body, now_ms())?;
    if let Some(target) = named {
        if state.store.target(&target)?.is_none() {
            return Err(ApiError::unprocessable("target_id", format!("no target {target} exists")));
        }
    }
    let matcher = Compiled::new(vec![draft]);
    let (scanned, mut events) = blocking(state.store.clone(), move |store| {
        let mut events = Vec::new();
        let scanned = scan_last(store, last, |e| {
            if matcher.matches(e) {
                events.push(PreviewEvent {
                    id: e.id.clone(),
                    seq: e.seq,
                    event_type: e.event_type.clone(),
                    record_id: e.record_id.clone().filter(|r| r.len() <= RECORD_ID_BYTES),
                    received_at: rfc3339(e.received_at_ms),
                });
            }
        })?;
        Ok((scanned, events))
    })
    .await?;
    events.reverse();
    Ok(HttpResponse::Ok().json(Preview { scanned, matched: events.len() as u64, events }))
}

/// Counts of distinct values, each value at most [`MAX_STRING_BYTES`] long (longer ones could
/// not be listed in a subscription, and are not counted).
#[derive(Default)]
struct Counts(HashMap<String, u64>);

impl Counts {
    fn add(&mut self, value: Option<&str>) {
        let Some(v) = value.filter(|v| !v.is_empty() && v.len() <= MAX_STRING_BYTES) else { return };
        match self.0.get_mut(v) {
            Some(n) => *n += 1,
            None => {
                self.0.insert(v.to_owned(), 1);
            }
        }
    }

    /// The [`FACET_VALUES`] most frequent, most frequent first (then by value).
    fn top(self) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self.0.into_iter().collect();
        all.sort_unstable_by(|(a, m), (b, n)| n.cmp(m).then_with(|| a.cmp(b)));
        all.truncate(FACET_VALUES);
        all
    }
}

/// `GET /v1/events/facets?last=N`: the event types, kanban ids and field names of the last N
/// events (default 1,000, at most 10,000), each list the 100 most frequent with their counts,
/// and MAIA's known event types.
pub(crate) async fn event_facets(
    _: Operator,
    query: web::Query<HashMap<String, String>>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let last = last_param(&query, FACETS_LAST.0, FACETS_LAST.1)?;
    let (scanned, types, kanbans, fields) = blocking(state.store.clone(), move |store| {
        let (mut types, mut kanbans, mut fields) = (Counts::default(), Counts::default(), Counts::default());
        let scanned = scan_last(store, last, |e| {
            // Read, not counted: no subscription matches a test event.
            if e.test {
                return;
            }
            types.add(Some(&e.event_type));
            kanbans.add(e.kanban_id.as_deref());
            fields.add(e.field_name.as_deref());
        })?;
        Ok((scanned, types.top(), kanbans.top(), fields.top()))
    })
    .await?;
    let values =
        |list: Vec<(String, u64)>| list.into_iter().map(|(value, count)| ValueCount { value, count }).collect();
    Ok(HttpResponse::Ok().json(Facets {
        scanned,
        types: types.into_iter().map(|(event_type, count)| TypeCount { event_type, count }).collect(),
        kanban_ids: values(kanbans),
        field_names: values(fields),
        known_types: &MAIA_TYPES,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_keep_the_most_frequent_first_and_skip_what_no_subscription_could_list() {
        let mut c = Counts::default();
        for v in ["b", "a", "b", "c", "a", "b"] {
            c.add(Some(v));
        }
        c.add(None);
        c.add(Some(""));
        c.add(Some(&"x".repeat(MAX_STRING_BYTES + 1)));
        assert_eq!(c.top(), vec![("b".to_owned(), 3), ("a".to_owned(), 2), ("c".to_owned(), 1)]);
        let mut many = Counts::default();
        for i in 0..(FACET_VALUES + 50) {
            many.add(Some(&format!("v{i:04}")));
        }
        many.add(Some("v0149"));
        let top = many.top();
        assert_eq!(top.len(), FACET_VALUES);
        assert_eq!(top[0], ("v0149".to_owned(), 2));
        assert_eq!(top[1].0, "v0000");
    }
}
