//! The sample events a target test sends (`POST /v1/targets/{id}/test`): one of each MAIA event
//! type and Maximizer's `Opportunity.Update`, with the shapes the two CRMs document
//! (`data/samples/`, built into the binary: the server reads no file for them).
//!
//! A sample is a [`NewEvent`] read by the ingest parser from the sample's bytes, so it is
//! exactly what a CRM would have posted, marked [`NewEvent::test`] and without an idempotency
//! key: every test is a new event. A Maximizer sample gets a fresh `Id` (receivers of
//! Maximizer's webhooks deduplicate on it).

use rand::Rng;

use crate::event::{parse_ingest, NewEvent};
use crate::target::Format;

/// The MAIA samples, by event type; the first is a MAIA target's default.
const MAIA: [(&str, &str); 4] = [
    ("crm_field_update", include_str!("../../../data/samples/maia/crm_field_update.json")),
    ("crm_record_created", include_str!("../../../data/samples/maia/crm_record_created.json")),
    ("crm_record_deleted", include_str!("../../../data/samples/maia/crm_record_deleted.json")),
    ("ai_pause", include_str!("../../../data/samples/maia/ai_pause.json")),
];

/// The Maximizer samples (an envelope of one event), by event type; the first is a Maximizer
/// target's default.
const MAXIMIZER: [(&str, &str); 1] =
    [("Opportunity.Update", include_str!("../../../data/samples/maximizer/opportunity_stage_change.json"))];

/// The `Id` of the Maximizer sample as written, replaced by a fresh one in each test.
const MAXIMIZER_SAMPLE_ID: &str = "d81f9d6e-8afc-4fa4-9052-2af207494e5d";

/// Every type a test may send, MAIA's first.
pub fn types() -> impl Iterator<Item = &'static str> {
    MAIA.iter().chain(&MAXIMIZER).map(|(t, _)| *t)
}

/// The type a test sends when none is asked for: a Maximizer target's is `Opportunity.Update`,
/// any other's (`maia`, or the CRM's own shape) `crm_field_update`.
pub fn default_type(format: Option<Format>) -> &'static str {
    match format {
        Some(Format::Maximizer) => MAXIMIZER[0].0,
        Some(Format::Maia) | None => MAIA[0].0,
    }
}

/// A test event of `event_type` (any case), or `None` when there is no sample of it.
pub fn sample(event_type: &str) -> Option<NewEvent> {
    if let Some((_, text)) = MAIA.iter().find(|(t, _)| t.eq_ignore_ascii_case(event_type)) {
        return test_event(text);
    }
    let (_, text) = MAXIMIZER.iter().find(|(t, _)| t.eq_ignore_ascii_case(event_type))?;
    test_event(&text.replace(MAXIMIZER_SAMPLE_ID, &fresh_uuid()))
}

fn test_event(text: &str) -> Option<NewEvent> {
    let mut event = parse_ingest(text.as_bytes()).ok()?.into_iter().next()?;
    event.external_id = None;
    event.test = true;
    Some(event)
}

/// A random UUID (version 4), as Maximizer writes its ids.
fn fresh_uuid() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    #[test]
    fn every_sample_is_an_event_of_its_type_marked_test_without_a_key() {
        for t in types() {
            let event = sample(t).unwrap_or_else(|| panic!("no sample {t}"));
            assert_eq!(event.event_type, t);
            assert!(event.test && event.external_id.is_none() && event.source_id.is_none(), "{t}");
        }
        assert_eq!(types().count(), 5);
        assert_eq!(sample("CRM_FIELD_UPDATE").map(|e| e.event_type).as_deref(), Some("crm_field_update"));
        assert!(sample("crm_nothing").is_none() && sample("").is_none());
    }

    #[test]
    fn a_maximizer_sample_is_the_documented_element_with_a_fresh_id() {
        let (a, b) = (sample("Opportunity.Update").expect("sample"), sample("Opportunity.Update").expect("sample"));
        assert_eq!(a.kind, EventKind::Maximizer);
        let id = |e: &NewEvent| serde_json::from_slice::<serde_json::Value>(&e.payload).expect("json")["Id"].clone();
        assert_ne!(id(&a), id(&b));
        let text = String::from_utf8(a.payload.clone()).expect("utf-8");
        assert!(text.contains("12000.00") && !text.contains(MAXIMIZER_SAMPLE_ID), "{text}");
        assert_eq!(id(&a).as_str().map(str::len), Some(36));
    }

    #[test]
    fn the_default_follows_the_targets_format() {
        assert_eq!(default_type(None), "crm_field_update");
        assert_eq!(default_type(Some(Format::Maia)), "crm_field_update");
        assert_eq!(default_type(Some(Format::Maximizer)), "Opportunity.Update");
    }
}
