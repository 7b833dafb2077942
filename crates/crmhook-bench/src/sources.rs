//! The sources' rows of `crmhook-bench ingest`: is a CRM posting to its source's ingest URL
//! (`/in/{id}`: the MAIA signature or the Maximizer key checked, the body read element by
//! element) as fast as an API client posting to `/v1/events`?
//!
//! Every request of these rows carries a body of its own (MAIA events carry no id, so a
//! repeated body would be a duplicate and cost less), made and signed by the load thread; the
//! bare handler, `/v1/events` (MAIA events, then Maximizer batches), a MAIA source and a
//! Maximizer source take turns under the same load, so the rows compare with each other but not
//! with the table above (whose bodies are made once). An event from a source, like a Maximizer
//! event through `/v1/events`, is written with its idempotency key (one more sled key per event:
//! the `Id`, or for MAIA its source and body hash); a MAIA event through `/v1/events` has none.
//! Each variant numbers its bodies apart from the others' (until 2026-12-04 the Maximizer source
//! posted the very `Id`s the `/v1/events` Maximizer row had just posted, and so measured
//! duplicates: an acknowledgement read back, nothing written).

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

use crate::{drive, median_load, read_response, summarize, Crmhook, LoadResult, ROUNDS};

const ADMIN: &str = "adm_bench_0123456789abcdef";
pub(crate) const INGEST: &str = "ing_bench_0123456789abcdef";
pub(crate) const MAIA_SECRET: &str = "bench-maia-secret";

/// One admin request; answers the JSON body.
pub(crate) fn admin(addr: SocketAddr, path: &str, body: &Value) -> anyhow::Result<Value> {
    let body = body.to_string();
    let mut stream = BufReader::new(TcpStream::connect(addr)?);
    write!(
        stream.get_mut(),
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let (status, answer) = read_response(&mut stream)?;
    anyhow::ensure!(status == 201, "POST {path}: {status} {}", String::from_utf8_lossy(&answer));
    Ok(serde_json::from_slice(&answer)?)
}

/// A MAIA field update of record `n` (the same shape as the table's bodies).
fn maia_event(n: u64) -> String {
    format!(
        r#"{{"eventType":"crm_field_update","recordId":"record_1704067200000_{n:09}","kanbanId":"kanban_1704067200000_{}","kanbanName":"Sales Pipeline","externalUserId":"user-123","fieldName":"Email","fieldType":"email","previousValue":"old@example.com","newValue":"new@example.com","updatedBy":"user_abc123","updatedAt":"2024-01-15T10:30:00.000Z","sessionId":"session_xyz789"}}"#,
        n % 8
    )
}

/// A one-element Maximizer batch whose `Id` is made from `n` and looks like Maximizer's (a GUID:
/// random, so the ids do not arrive in key order).
pub(crate) fn maximizer_batch(n: u64) -> String {
    let (a, b) = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15), n.wrapping_mul(0xC2B2_AE3D_27D4_EB4F).rotate_left(17));
    let id = format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    );
    format!(
        r#"[{{"Id":"{id}","Timestamp":"2024-09-20T00:01:29.5149836Z","WorkspaceId":"108F314C-6787-4EE6-BE49-C0E0C651F039","Entity":"Opportunity","Data":{{"Op":"Update","Original":{{"Key":"T3Bwb3J0dW5pdHkJ{n}","Revenue":12000.00}},"New":{{"SalesStageSetupName":"Presentation"}},"Version":"1.1"}}}}]"#
    )
}

/// How one request is made: its number → the bytes of the whole request.
type Make = Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>;

pub(crate) fn request(addr: SocketAddr, path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Keep-alive POSTs, each made by `make` with a number no other request of the run has: the
/// variant's, the round's and the connection's bits, then a count.
fn load_made(
    addr: SocketAddr,
    make: &Make,
    connections: usize,
    duration: Duration,
    (variant, round): (u64, u64),
) -> anyhow::Result<LoadResult> {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let threads: Vec<_> = (0..connections as u64)
        .map(|c| {
            let make = make.clone();
            let mut n = (variant << 48) | (round << 40) | (c << 28);
            std::thread::spawn(move || {
                drive(addr, deadline, |stream| {
                    n += 1;
                    stream.write_all(&make(n))
                })
            })
        })
        .collect();
    summarize(threads, started)
}

/// Bare, `/v1/events`, a MAIA source and a Maximizer source, taking turns at `connections`.
pub(crate) fn rows(
    crmhook: &Crmhook,
    bare: SocketAddr,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Value> {
    let addr = crmhook.addr;
    let maia = admin(addr, "/v1/sources", &json!({"name": "bench MAIA", "kind": "maia", "maia_secret": MAIA_SECRET}))?;
    let mx = admin(addr, "/v1/sources", &json!({"name": "bench Maximizer", "kind": "maximizer"}))?;
    let maia_path = format!("/in/{}", maia["id"].as_str().context("source id")?);
    let mx_path =
        format!("/in/{}?key={}", mx["id"].as_str().context("source id")?, mx["key"].as_str().context("source key")?);
    let variants: Vec<(&str, SocketAddr, Make)> = vec![
        ("bare", bare, Arc::new(move |n| request(bare, "/v1/events", "", maia_event(n).as_bytes()))),
        (
            "/v1/events",
            addr,
            Arc::new(move |n| {
                request(addr, "/v1/events", &format!("Authorization: Bearer {INGEST}\r\n"), maia_event(n).as_bytes())
            }),
        ),
        (
            "MAIA source",
            addr,
            Arc::new(move |n| {
                let body = maia_event(n);
                let signature = crmhook_core::sign::maia_signature(MAIA_SECRET, body.as_bytes());
                request(addr, &maia_path, &format!("X-Maia-Signature: {signature}\r\n"), body.as_bytes())
            }),
        ),
        // The same Maximizer batches through the API: each event's `Id` is kept for
        // deduplication either way, so this pair isolates what the source adds.
        (
            "/v1/events, Maximizer",
            addr,
            Arc::new(move |n| {
                request(
                    addr,
                    "/v1/events",
                    &format!("Authorization: Bearer {INGEST}\r\n"),
                    maximizer_batch(n).as_bytes(),
                )
            }),
        ),
        ("Maximizer source", addr, Arc::new(move |n| request(addr, &mx_path, "", maximizer_batch(n).as_bytes()))),
    ];
    let mut results: Vec<Vec<LoadResult>> = vec![Vec::new(); variants.len()];
    for round in 0..ROUNDS as u64 {
        for (i, (_, to, make)) in variants.iter().enumerate() {
            results[i].push(load_made(*to, make, connections, duration, (i as u64, round + 1))?);
        }
    }
    let medians: Vec<LoadResult> = results.iter().map(|r| median_load(r)).collect();
    println!(
        "one event per request, each body new, {connections} connections, median of {ROUNDS} rounds (taking turns):"
    );
    let mut out = Vec::new();
    for ((name, _, _), (m, runs)) in variants.iter().zip(medians.iter().zip(&results)) {
        let of_bare = m.rps / medians[0].rps;
        let of_v1 = m.rps / medians[1].rps;
        println!(
            "  {name:>16}: {:>8.0} req/s  p50 {:.2} ms  p99 {:.2} ms  {:>4.0}% of bare  {:>4.0}% of /v1/events  (rounds {}){}",
            m.rps,
            m.p50_ms,
            m.p99_ms,
            of_bare * 100.0,
            of_v1 * 100.0,
            runs.iter().map(|r| format!("{:.0}", r.rps)).collect::<Vec<_>>().join(" / "),
            if m.errors > 0 { format!("  ({} errors)", m.errors) } else { String::new() }
        );
        out.push(json!({
            "variant": name, "rps": m.rps, "p50_ms": m.p50_ms, "p99_ms": m.p99_ms, "errors": m.errors,
            "of_bare": of_bare, "of_v1_events": of_v1, "runs": runs.iter().map(|r| r.rps).collect::<Vec<_>>(),
        }));
    }
    Ok(json!({"sources": out, "connections": connections}))
}
