//! A data dir written by the binary of 2026-12-02 (`tests/fixtures/datadir-2026-12-02`, made by
//! `tests/fixtures/make-datadir.sh`) is read by today's store: events (record version 2, with a
//! source), targets, subscriptions, sources, the quarantine, finished deliveries in blocks and
//! attempts. A change to the records on disk that breaks what older builds wrote fails here.

use std::path::{Path, PathBuf};

use crmhook_core::{EventKind, SourceKind};
use crmhook_store::{AttemptResult, DeliveryStatus, Store};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A copy of the fixture (sled writes to a data dir it opens).
fn copy_of_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let from = fixtures().join("datadir-2026-12-02");
    for entry in std::fs::read_dir(&from).expect("fixture") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
        }
    }
    dir
}

fn sample(path: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(fixtures().join("../../../../data/samples").join(path)).expect("sample");
    text.trim_end().as_bytes().to_vec()
}

#[test]
fn the_data_dir_of_2026_12_02_reads_back_whole() {
    let dir = copy_of_fixture();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let store = Store::open(dir.path()).expect("the fixture opens");
        assert_eq!(store.head(), 5);

        // The four MAIA samples through /v1/events, in file order, then the Maximizer sample
        // through a source, each with its exact bytes.
        let events: Vec<_> = store.events_from(1).map(|e| e.expect("event")).collect();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            ["ai_pause", "crm_field_update", "crm_record_created", "crm_record_deleted", "Opportunity.Update"]
        );
        for (event, name) in
            events.iter().zip(["ai_pause", "crm_field_update", "crm_record_created", "crm_record_deleted"])
        {
            assert_eq!(event.payload, sample(&format!("maia/{name}.json")), "{name}");
            assert_eq!((event.kind, event.source_id.as_ref()), (EventKind::Maia, None));
        }
        let mx = &events[4];
        let element = sample("maximizer/opportunity_stage_change.json");
        let inner = &element[element.iter().position(|b| *b == b'{').expect("{")
            ..=element.iter().rposition(|b| *b == b'}').expect("}")];
        assert_eq!(mx.payload, inner, "the element's exact bytes");
        assert_eq!(mx.external_id.as_deref(), Some("d81f9d6e-8afc-4fa4-9052-2af207494e5d"));
        assert_eq!(store.event_by_id(&mx.id).expect("read").map(|e| e.seq), Some(5));

        // Configuration.
        let sources = store.sources().expect("sources");
        assert_eq!(sources.len(), 1);
        assert_eq!((sources[0].kind, sources[0].name.as_str()), (SourceKind::Maximizer, "mx"));
        assert!(sources[0].key_sha256.as_ref().is_some_and(|h| h.len() == 32));
        assert_eq!(mx.source_id.as_ref(), Some(&sources[0].id));
        let mut targets = store.targets().expect("targets");
        targets.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["dead", "delivered"]);
        let (dead, delivered) = (&targets[0], &targets[1]);
        assert_eq!(dead.retry_schedule_ms, [10]);
        let subs = store.subscriptions().expect("subscriptions");
        assert_eq!(subs.len(), 2);
        assert!(subs.iter().any(|s| s.target_id == dead.id && s.event_types == ["opportunity.*"]));

        // The quarantine.
        let rejected = store.rejected_page(None, None, 10).expect("rejected");
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].bytes, br#"{"Id":"bad-1","Entity":"Opportunity"}"#);
        assert_eq!((rejected[0].index, rejected[0].source_id.clone()), (Some(0), sources[0].id.clone()));
        // Written before the quarantine's indexes: indexed at open, by source and by bytes.
        assert_eq!(store.rejected_page(Some(&sources[0].id), None, 10).expect("rejected"), rejected);
        let again = crmhook_store::Rejected { id: crmhook_core::RejectedId::generate(), ..rejected[0].clone() };
        let held = store.quarantine(std::slice::from_ref(&again)).await.expect("quarantine");
        assert_eq!(held, [rejected[0].id.clone()]);

        // Deliveries: all five delivered to one target, the Maximizer event dead at the other
        // after its two attempts.
        let done = store.target_deliveries(&delivered.id, None, 0, 100).expect("deliveries");
        assert_eq!(done, (1..=5).map(|s| (s, DeliveryStatus::Delivered)).collect::<Vec<_>>());
        assert_eq!(store.delivery_counts(&delivered.id).expect("counts"), (0, 0));
        assert_eq!(store.target_deliveries(&dead.id, None, 0, 100).expect("deliveries"), [(5, DeliveryStatus::Dead)]);
        assert_eq!(store.delivery_counts(&dead.id).expect("counts"), (0, 1));
        let attempts = store.attempts_to(&dead.id, 5).expect("attempts");
        let results: Vec<AttemptResult> = attempts.iter().map(|a| a.result).collect();
        assert!(matches!(results.as_slice(), [AttemptResult::Retrying { .. }, AttemptResult::Dead]), "{results:?}");
        assert!(store.last_delivered_at(&delivered.id).expect("read").is_some());
        store.close().await;
    });
}
