//! Helpers of the store's tests: events to append, a runtime, a stored target, attempts, and
//! the check that every index filter answers what a scan of the log answers.

use crmhook_core::event::parse_ingest;
use crmhook_core::{Event, NewEvent, TargetId};

use crate::keys;
use crate::queries::EventFilter;
use crate::records::{Attempt, AttemptResult, Final};
use crate::{codec, Store};

pub(crate) fn events(n: usize) -> Vec<NewEvent> {
    let body: Vec<String> =
        (0..n).map(|i| format!(r#"{{"eventType":"crm_field_update","recordId":"r{i}","kanbanId":"k"}}"#)).collect();
    parse_ingest(format!("[{}]", body.join(",")).as_bytes()).expect("valid")
}

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}

pub(crate) const TYPES: [&str; 3] = ["crm_field_update", "crm_record_created", "crm_record_deleted"];

/// `n` events of the three `TYPES` in round robin, record ids `r<i % 10>` and kanbans
/// `k<i % 2>`.
pub(crate) fn mixed(from: usize, n: usize) -> Vec<NewEvent> {
    let body: Vec<String> = (from..from + n)
        .map(|i| format!(r#"{{"eventType":"{}","recordId":"r{}","kanbanId":"k{}"}}"#, TYPES[i % 3], i % 10, i % 2))
        .collect();
    parse_ingest(format!("[{}]", body.join(",")).as_bytes()).expect("valid")
}

/// Every filter, from every starting point, answers what a scan of the log answers.
pub(crate) fn assert_filters_match_a_scan(store: &Store) {
    let all: Vec<Event> = store.events_from(1).map(|e| e.expect("event")).collect();
    let filters = [
        EventFilter { event_type: Some(TYPES[1].into()), ..Default::default() },
        EventFilter { kanban_id: Some("k0".into()), ..Default::default() },
        EventFilter { record_id: Some("r3".into()), ..Default::default() },
        EventFilter { record_id: Some("r8".into()), kanban_id: Some("k0".into()), ..Default::default() },
        EventFilter { record_id: Some("r99".into()), ..Default::default() },
        EventFilter { event_type: Some(TYPES[2].into()), kanban_id: Some("k1".into()), ..Default::default() },
        EventFilter { event_type: Some("nope".into()), ..Default::default() },
        // Case is ignored, as subscriptions ignore it.
        EventFilter { event_type: Some(TYPES[1].to_uppercase()), ..Default::default() },
    ];
    for f in &filters {
        assert_filter_matches_a_scan(store, &all, f);
    }
    // Receive times: a bound inside the log (the events of one group share theirs).
    if let (Some(early), Some(late)) = (all.get(all.len() / 4), all.get(all.len() * 3 / 4)) {
        let (since, until) = (Some(early.received_at_ms), Some(late.received_at_ms));
        for f in [
            EventFilter { since_ms: since, ..Default::default() },
            EventFilter { until_ms: until, ..Default::default() },
            EventFilter { since_ms: since, until_ms: until, kanban_id: Some("k1".into()), ..Default::default() },
        ] {
            assert_filter_matches_a_scan(store, &all, &f);
        }
    }
}

/// `filter`, from every starting point, answers what a scan of `all` (the log) answers.
pub(crate) fn assert_filter_matches_a_scan(store: &Store, all: &[Event], f: &EventFilter) {
    for after in [0, 1, 5, 20, 41, 47, 60, 68] {
        for limit in [1, 3, 100] {
            let got: Vec<u64> = store.events_page(f, after, limit).expect("page").iter().map(|e| e.seq).collect();
            let want: Vec<u64> =
                all.iter().filter(|e| e.seq > after && f.admits(e)).map(|e| e.seq).take(limit).collect();
            assert_eq!(got, want, "{f:?} after {after} limit {limit}");
        }
    }
    // Newest first, from the head or from before any seq.
    for before in
        [None, Some(0), Some(1), Some(2), Some(6), Some(21), Some(42), Some(48), Some(61), Some(69), Some(500)]
    {
        for limit in [1, 3, 100] {
            let got: Vec<u64> =
                store.events_page_newest(f, before, limit).expect("page").iter().map(|e| e.seq).collect();
            let want: Vec<u64> = all
                .iter()
                .rev()
                .filter(|e| before.is_none_or(|b| e.seq < b) && f.admits(e))
                .map(|e| e.seq)
                .take(limit)
                .collect();
            assert_eq!(got, want, "{f:?} newest before {before:?} limit {limit}");
        }
    }
}

/// `n` Maximizer events, entities `Opportunity` and `Company` and ops `Insert`, `Update` and
/// `Delete` in turn (six types).
pub(crate) fn maximizer(from: usize, n: usize) -> Vec<NewEvent> {
    let body: Vec<String> = (from..from + n)
        .map(|i| {
            let entity = ["Opportunity", "Company"][i % 2];
            let op = ["Insert", "Update", "Delete"][i % 3];
            format!(
                r#"{{"Id":"id-{i}","Timestamp":"2024-09-20T00:01:29Z","WorkspaceId":"w","Entity":"{entity}","Data":{{"Op":"{op}","Original":null,"New":{{"Key":"k{i}"}},"Version":"1.0"}}}}"#
            )
        })
        .collect();
    parse_ingest(format!("[{}]", body.join(",")).as_bytes()).expect("valid")
}

pub(crate) fn target() -> crmhook_core::Target {
    crmhook_core::Target::create(
        serde_json::json!({"name": "t", "url": "https://a.example"}).as_object().expect("object"),
        false,
        "whsec_x".into(),
        0,
    )
    .expect("target")
}

/// A new target, stored.
pub(crate) async fn stored_target(store: &Store) -> crmhook_core::Target {
    let t = target();
    store.create_target(&t, 0).await.expect("target");
    t
}

/// A finished delivery as builds before the `L` blocks wrote it: an `F` key of its own.
pub(crate) fn put_older_final(store: &Store, target: &TargetId, seq: u64, attempt: &Attempt) {
    // `F` values were only ever written as version 1.
    let value = codec::encode(&crate::records::AttemptV1 {
        n: attempt.n,
        at_ms: attempt.at_ms,
        duration_ms: attempt.duration_ms,
        outcome: attempt.outcome.clone(),
        result: attempt.result,
        round: attempt.round,
    })
    .expect("encode");
    store.inner.tree.insert(keys::final_key(target, Final::Delivered, seq), value).expect("insert");
}

pub(crate) fn attempt(n: u32, result: AttemptResult) -> Attempt {
    Attempt {
        n,
        at_ms: u64::from(n),
        duration_ms: 2,
        outcome: crmhook_core::retry::Outcome::Status(200),
        result,
        round: 1,
        response: None,
    }
}
