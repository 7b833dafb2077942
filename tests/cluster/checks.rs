//! The cluster test's checks: the log read back, deliveries, duplicates, order, the retry.

use super::*;

/// Every event in `node`'s log, through `GET /v1/events?limit=1000` pages.
pub(crate) fn log_events(node: &Node) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let r = node.server.admin("GET", &format!("/v1/events?limit=1000&after={after}"), None);
        assert_eq!(r.status, 200, "GET /v1/events on {}: {}", node.name, r.text);
        let page = r.json();
        out.extend(page["events"].as_array().cloned().unwrap_or_default());
        match page["next_after"].as_u64() {
            Some(next) => after = next,
            None => return out,
        }
    }
}

/// The tag of a logged event (its recordId, or sessionId).
pub(crate) fn logged_tag(e: &Value) -> String {
    let p = &e["payload"];
    p["recordId"].as_str().or(p["sessionId"].as_str()).unwrap_or_default().to_owned()
}

/// Waits (on the receiver's arrivals) until `path` answered each of `tags` with a 2xx; answers
/// the tags still missing at `timeout` (none: all delivered).
pub(crate) fn wait_all_delivered(rcv: &Receiver, path: &str, tags: &HashSet<String>, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut missing = tags.clone();
    let mut seen = 0;
    loop {
        // `holds_for` returns false at the arrival that delivers the last one missing; true
        // after a second without it, to look at the clock.
        let period = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
        let still = rcv.holds_for(period, |got| {
            for r in &got[seen..] {
                if r.path == path && (200..300).contains(&r.status) {
                    missing.remove(&r.tag);
                }
            }
            seen = got.len();
            !missing.is_empty()
        });
        if !still || Instant::now() >= deadline {
            let mut left: Vec<String> = missing.into_iter().collect();
            left.sort();
            return left;
        }
    }
}

/// Deliveries answered 2xx per tag on `path`; answers (distinct events, arrivals, duplicates).
pub(crate) fn duplicates(rcv: &Receiver, path: &str) -> (usize, usize, usize) {
    let counts = rcv.tag_counts(path);
    let arrivals: usize = counts.values().sum();
    (counts.len(), arrivals, arrivals - counts.len())
}

/// What the ordered target's receiver saw.
#[derive(Debug, Default)]
pub(crate) struct Order {
    pub(crate) arrivals: usize,
    /// Arrivals of an event not seen before, each after every earlier arrival's seq.
    pub(crate) in_order: usize,
    /// Arrivals of an event already delivered (at-least-once after a failover).
    pub(crate) repeats: usize,
    /// Arrivals of an event not seen before, after one with a higher seq: order broken.
    pub(crate) breaks: Vec<String>,
    /// Arrivals whose `webhook-id` is not in the log.
    pub(crate) unknown: Vec<String>,
}

/// The ordered target's rule, as its receiver can check it. Let `s_1, s_2, …` be the seqs of
/// the events the receiver got, in arrival order (an event's seq is its position in the log,
/// found from its `webhook-id`, the event's id, through the log's listing). Each `s_i` must be
/// either
/// - greater than every `s_j` before it (`j < i`): the next event in log order, or
/// - equal to some `s_j` before it: a repeat of an event already delivered, which at-least-once
///   allows (the node that takes the target after a crash starts from the log's cursor, so the
///   event in flight at the crash, or a few before it, can come again).
///
/// An event arriving for the first time after an event with a higher seq is an order break.
/// With "0 lost" this means the receiver's first arrivals of the events are in log order.
pub(crate) fn order_check(got: &[Received], seq_of: &HashMap<String, u64>) -> Order {
    let mut order = Order::default();
    let mut seen = HashSet::new();
    let mut high = 0;
    for r in got.iter().filter(|r| r.path == ORDERED) {
        order.arrivals += 1;
        let id = r.header("webhook-id");
        let Some(&seq) = seq_of.get(id) else {
            order.unknown.push(format!("{id} ({})", r.tag));
            continue;
        };
        if seen.contains(&seq) {
            order.repeats += 1;
        } else if seq > high {
            order.in_order += 1;
        } else {
            order.breaks.push(format!("seq {seq} ({}) first arrived after seq {high}", r.tag));
        }
        seen.insert(seq);
        high = high.max(seq);
    }
    order
}

/// `2026-12-03T07:51:17.591Z` as Unix milliseconds.
pub(crate) fn rfc3339_ms(s: &str) -> u64 {
    let num = |range: std::ops::Range<usize>| -> i64 {
        s.get(range).and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("not RFC 3339: {s}"))
    };
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let (hh, mm, ss) = (num(11..13), num(14..16), num(17..19));
    let ms = if s.as_bytes().get(19) == Some(&b'.') { num(20..23) } else { 0 };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    (((days * 24 + hh) * 60 + mm) * 60 + ss) as u64 * 1000 + ms as u64
}

/// The marked event's delivery to the retry target in `view` (`GET /v1/events/{id}`).
pub(crate) fn retry_delivery<'a>(view: &'a Value, target: &str) -> Option<&'a Value> {
    view["deliveries"].as_array()?.iter().find(|d| d["target_id"].as_str() == Some(target))
}
