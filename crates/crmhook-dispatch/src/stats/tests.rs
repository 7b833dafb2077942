use std::sync::Arc;

use crmhook_store::{LogHandle, Store};

use super::*;

/// The start of a minute (and of a quarter hour, and of an hour): 2023-11-14T22:00:00Z.
const T0: u64 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000;
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

fn totals(ring: &Ring, now_ms: u64) -> Vec<u64> {
    ring.read(now_ms).into_iter().map(|(_, c)| c.iter().sum()).collect()
}

#[test]
fn the_last_hour_is_sixty_minutes_oldest_first_ending_with_the_current_one() {
    for now in [T0, T0 + 1, T0 + MINUTE_MS - 1] {
        let s = starts(now, MINUTE_MS, MINUTES);
        assert_eq!(s.len(), 60);
        assert_eq!(*s.last().expect("last"), T0, "now {now}");
        assert_eq!(s[0], T0 - 59 * MINUTE_MS);
        assert!(s.windows(2).all(|w| w[1] - w[0] == MINUTE_MS));
    }
    assert_eq!(*starts(T0 + MINUTE_MS, MINUTE_MS, MINUTES).last().expect("last"), T0 + MINUTE_MS);
}

#[test]
fn the_last_day_is_ninety_six_quarter_hours_on_quarter_boundaries() {
    let now = T0 + 7 * MINUTE_MS + 12_345; // 22:07:12.345
    let s = starts(now, QUARTER_MS, QUARTERS);
    assert_eq!(s.len(), 96);
    assert!(s.iter().all(|at| at % QUARTER_MS == 0));
    assert_eq!(*s.last().expect("last"), T0);
    assert_eq!(s[0], T0 - 95 * QUARTER_MS);
    assert_eq!(*starts(T0 + QUARTER_MS, QUARTER_MS, QUARTERS).last().expect("last"), T0 + QUARTER_MS);
}

#[test]
fn near_the_epoch_there_are_fewer_periods_and_nothing_panics() {
    assert_eq!(starts(0, MINUTE_MS, MINUTES), vec![0]);
    assert_eq!(starts(2 * MINUTE_MS + 5, MINUTE_MS, MINUTES), vec![0, MINUTE_MS, 2 * MINUTE_MS]);
    let ring = Ring::new(MINUTE_MS, MINUTES, 1);
    ring.add(0, 0, 1);
    assert_eq!(totals(&ring, 0), vec![1]);
    ring.add(u64::MAX, 0, 1);
    assert_eq!(ring.read(u64::MAX).len(), 60);
}

#[test]
fn counts_go_to_the_minute_that_holds_them() {
    let ring = Ring::new(MINUTE_MS, MINUTES, 2);
    ring.add(T0 - 1, 0, 1); // the minute before
    ring.add(T0, 0, 2);
    ring.add(T0 + MINUTE_MS - 1, 1, 3);
    ring.add(T0 + MINUTE_MS, 0, 4); // the next
    let read = ring.read(T0 + MINUTE_MS);
    let tail: Vec<_> = read[57..].to_vec();
    assert_eq!(tail, vec![(T0 - MINUTE_MS, vec![1, 0]), (T0, vec![2, 3]), (T0 + MINUTE_MS, vec![4, 0])]);
    // Out-of-range slots are ignored.
    ring.add(T0, 2, 9);
    assert_eq!(ring.read(T0)[59], (T0, vec![2, 3]));
}

#[test]
fn a_bucket_is_zeroed_when_the_hour_comes_round_to_it_again() {
    let ring = Ring::new(MINUTE_MS, MINUTES, 1);
    ring.add(T0, 0, 5);
    assert_eq!(totals(&ring, T0 + HOUR_MS - 1)[0], 5, "still the oldest minute of the hour");
    // An hour later the minute has left the window: it reads as nothing, never as this minute.
    assert_eq!(totals(&ring, T0 + HOUR_MS).iter().sum::<u64>(), 0);
    ring.add(T0 + HOUR_MS, 0, 1); // the same bucket, reused
    assert_eq!(totals(&ring, T0 + HOUR_MS)[59], 1);
    assert_eq!(totals(&ring, T0 + HOUR_MS).iter().sum::<u64>(), 1);
}

#[test]
fn quarter_hours_roll_past_a_day() {
    let ring = Ring::new(QUARTER_MS, QUARTERS, 1);
    ring.add(T0, 0, 7);
    ring.add(T0 + 14 * MINUTE_MS, 0, 1); // the same quarter
    ring.add(T0 + QUARTER_MS, 0, 2);
    let day = totals(&ring, T0 + QUARTER_MS);
    assert_eq!((day[94], day[95]), (8, 2));
    assert_eq!(totals(&ring, T0 + DAY_MS - 1)[0], 8);
    ring.add(T0 + DAY_MS, 0, 1);
    let next = totals(&ring, T0 + DAY_MS);
    assert_eq!((next[0], next[95], next.iter().sum::<u64>()), (2, 1, 3), "T0 has left the day");
}

#[test]
fn a_clock_going_back_never_panics_nor_shows_the_future() {
    let ring = Ring::new(MINUTE_MS, MINUTES, 1);
    ring.add(T0 + 2 * HOUR_MS, 0, 1);
    // Two hours back: the same bucket holds a later minute; the count goes there.
    ring.add(T0, 0, 1);
    assert_eq!(totals(&ring, T0).iter().sum::<u64>(), 0, "the later minute is not shown before its time");
    assert_eq!(totals(&ring, T0 + 2 * HOUR_MS)[59], 2);
    // A minute back, within the hour: its own bucket.
    ring.add(T0 + 2 * HOUR_MS - MINUTE_MS, 0, 1);
    assert_eq!(totals(&ring, T0 + 2 * HOUR_MS)[58..], [1, 2]);
    let series = TargetSeries::default();
    series.attempt(T0 + DAY_MS, &AttemptResult::Delivered, Some(200), None);
    series.attempt(T0, &AttemptResult::Dead, None, Some("timed out"));
    assert_eq!(series.minutes(T0).len(), 60);
    assert_eq!(series.quarters(0).len(), 1);
}

#[test]
fn a_target_counts_succeeded_failed_and_dead_and_keeps_its_last_failure() {
    let series = TargetSeries::default();
    let now = T0 + 30_000;
    assert_eq!(series.last_success_ms(), None);
    series.attempt(now, &AttemptResult::Delivered, Some(200), None);
    assert_eq!((series.last_success_ms(), series.last_failure()), (Some(now), None));
    series.attempt(now, &AttemptResult::Retrying { next_at_ms: now + 5 }, Some(500), Some("answered HTTP 500"));
    series.attempt(now, &AttemptResult::TargetDisabled, Some(410), Some("answered HTTP 410"));
    series.attempt(now + 1, &AttemptResult::Dead, None, Some(&"x".repeat(1000)));
    series.attempt(now + 2, &AttemptResult::Delivered, Some(204), None);
    let last = series.minutes(now)[59];
    assert_eq!(last, AttemptCounts { at_ms: T0, succeeded: 2, failed: 2, dead: 1 });
    assert_eq!(series.quarters(now)[95], AttemptCounts { at_ms: T0, succeeded: 2, failed: 2, dead: 1 });
    let failure = series.last_failure().expect("a failure");
    assert_eq!((failure.at_ms, failure.status_code), (now + 1, None));
    assert_eq!(failure.error.map(|e| e.len()), Some(MAX_ERROR_CHARS));
    assert_eq!(series.last_success_ms(), Some(now + 2));
}

#[test]
fn ingest_shows_the_twenty_most_frequent_types_and_sums_the_rest_under_other() {
    let series = IngestSeries::default();
    for t in 1..=25u64 {
        let slot = series.slot(&format!("Entity{t}.Update"));
        for _ in 0..t {
            series.add(T0, slot);
        }
    }
    let bucket = series.minutes(T0).pop().expect("the current minute");
    assert_eq!(bucket.total, (1..=25).sum::<u64>());
    assert_eq!(bucket.types.len(), 21);
    assert_eq!(bucket.types[0], ("Entity25.Update".to_owned(), 25));
    assert_eq!(bucket.types[19], ("Entity6.Update".to_owned(), 6));
    assert_eq!(bucket.types[20], (OTHER.to_owned(), 1 + 2 + 3 + 4 + 5));
    assert_eq!(bucket.types.iter().map(|(_, n)| n).sum::<u64>(), bucket.total);
    // Past TYPE_SLOTS types, new ones share `other`'s counter.
    for t in 26..=TYPE_SLOTS + 10 {
        series.slot(&format!("Entity{t}.Update"));
    }
    assert_eq!(series.slot("Brand.New"), TYPE_SLOTS);
    assert_eq!(series.slot("Entity3.Update"), 2, "a type keeps its slot");
    assert_eq!(series.slot(OTHER), TYPE_SLOTS);
    series.add(T0, series.slot("Brand.New"));
    let bucket = series.quarters(T0).pop().expect("the current quarter");
    assert_eq!(bucket.types.last(), Some(&(OTHER.to_owned(), 16)));
}

#[test]
fn series_survive_a_trip_through_their_record() {
    let now = T0 + 10 * MINUTE_MS;
    let target = TargetSeries::default();
    target.attempt(now - 3 * HOUR_MS, &AttemptResult::Delivered, Some(200), None);
    target.attempt(now - MINUTE_MS, &AttemptResult::Delivered, Some(200), None);
    target.attempt(now, &AttemptResult::Retrying { next_at_ms: now }, Some(503), Some("answered HTTP 503"));
    let again = TargetSeries::default();
    again.restore(&target.to_series(now));
    assert_eq!(again.minutes(now), target.minutes(now));
    assert_eq!(again.quarters(now), target.quarters(now));
    assert_eq!(again.last_failure(), target.last_failure());
    assert_eq!(again.last_success_ms(), Some(now - MINUTE_MS));
    assert_eq!(target.to_series(now).minutes.len(), 2, "only buckets with counts are kept");

    let ingest = IngestSeries::default();
    for (t, at) in [("crm_field_update", now), ("crm_field_update", now - 2 * HOUR_MS - MINUTE_MS), ("ai_pause", now)] {
        ingest.add(at, ingest.slot(t));
    }
    ingest.slot("seen.Never"); // a slot, but no count in the window: not kept
    let record = ingest.to_series(now);
    assert_eq!(record.names, vec!["crm_field_update".to_owned(), "ai_pause".to_owned()]);
    let again = IngestSeries::default();
    again.restore(&record);
    assert_eq!(again.minutes(now), ingest.minutes(now));
    assert_eq!(again.quarters(now), ingest.quarters(now));
}

#[actix_rt::test]
async fn save_writes_what_changed_and_forgets_deleted_targets_and_load_reads_it_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: LogHandle = Arc::new(Store::open(dir.path()).expect("open"));
    let body = serde_json::json!({"name": "t", "url": "https://example.com/"});
    let target =
        crmhook_core::Target::create(body.as_object().expect("object"), false, "whsec_x".into(), 0).expect("target");
    let gone = crmhook_core::Target { id: crmhook_core::TargetId::generate(), ..target.clone() };
    store.create_target(&target, 0).await.expect("create");
    store.create_target(&gone, 0).await.expect("create");
    let now = crmhook_core::time::now_ms();
    let metrics = Metrics::new();
    let mut saved = load(&metrics, &*store).expect("load");
    assert_eq!(save(&metrics, &*store, &mut saved, now).await.expect("save"), 0, "nothing counted");
    metrics.ingested_at("crm_field_update", now);
    for id in [&target.id, &gone.id] {
        metrics.target(id.as_str()).series().attempt(now, &AttemptResult::Dead, Some(500), None);
    }
    assert_eq!(save(&metrics, &*store, &mut saved, now).await.expect("save"), 3);
    assert_eq!(save(&metrics, &*store, &mut saved, now).await.expect("save"), 0, "nothing changed");
    store.delete_target(&gone.id).await.expect("delete");
    assert_eq!(save(&metrics, &*store, &mut saved, now).await.expect("save"), 0);
    assert!(metrics.target_if_counted(gone.id.as_str()).is_none(), "a deleted target's counters are dropped");
    let mut names: Vec<String> = store.stats().expect("stats").into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(names, vec![INGEST.to_owned(), target.id.as_str().to_owned()]);

    let fresh = Metrics::new();
    load(&fresh, &*store).expect("load");
    let kept = fresh.target_if_counted(target.id.as_str()).expect("restored");
    assert_eq!(kept.series().minutes(now)[59].dead, 1);
    assert_eq!(kept.series().last_failure().and_then(|f| f.status_code), Some(500));
    assert_eq!(fresh.ingest_series().minutes(now)[59].types, vec![("crm_field_update".to_owned(), 1)]);
    store.close().await;
}
