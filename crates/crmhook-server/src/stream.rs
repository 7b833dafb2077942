//! `GET /v1/stream`: Server-Sent Events of new log records.
//!
//! - `event: event` — each new event of the log, with `id:` its seq, so a client that
//!   reconnects with `Last-Event-ID: <seq>` (or `?after=<seq>`) resumes exactly after it; the
//!   backlog since then is read from the log.
//! - `event: attempt` — each delivery attempt once it is recorded (dispatch's attempt
//!   [`Feed`]; live only, no `id:`: the attempts of an event are in `GET /v1/events/{id}`).
//! - a `: keep-alive` comment every 15 s.
//!
//! A stream never ends on its own, so the server ends them all when it stops ([`Streams`]):
//! each body finishes, its connection closes (stream responses are `Connection: close`), and
//! the graceful stop of the HTTP server does not wait for them.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use crmhook_dispatch::feed::{AttemptRecorded, Feed};
use crmhook_store::LogHandle;
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// Events read from the log per chunk when catching up.
const CATCH_UP: usize = 200;

/// The streams' handle: the attempt feed they follow and their shutdown signal. The server keeps
/// one and the stream handler gets one from the app's data. Every open stream holds a receiver
/// of each; [`Streams::close`] ends them all (and any opened later).
#[derive(Clone)]
pub struct Streams {
    feed: Feed,
    closing: Arc<tokio::sync::watch::Sender<bool>>,
}

/// What one open stream listens to: the attempts, and whether the server is stopping.
pub struct Listener {
    attempts: broadcast::Receiver<AttemptRecorded>,
    closing: tokio::sync::watch::Receiver<bool>,
}

impl Streams {
    pub fn new(feed: Feed) -> Streams {
        // The first receiver is dropped at once: only streams hold receivers.
        Streams { feed, closing: Arc::new(tokio::sync::watch::channel(false).0) }
    }

    /// What a new stream listens to (the attempts from now on) and watches to know when to end.
    pub fn subscribe(&self) -> Listener {
        Listener { attempts: self.feed.subscribe(), closing: self.closing.subscribe() }
    }

    /// How many streams are open.
    pub fn open(&self) -> usize {
        self.closing.receiver_count()
    }

    /// Ends every open stream, and every one opened from now on; answers whether they had all
    /// ended (their bodies dropped) within `wait`. A stream whose client does not read (its
    /// socket buffer full) is not polled, so it may outlast `wait`.
    pub async fn close(&self, wait: Duration) -> bool {
        self.closing.send_replace(true);
        tokio::time::timeout(wait, self.closing.closed()).await.is_ok()
    }
}

struct State {
    store: LogHandle,
    next_seq: u64,
    head: tokio::sync::watch::Receiver<u64>,
    attempts: broadcast::Receiver<AttemptRecorded>,
    render: fn(&crmhook_core::Event) -> Value,
    /// True once the server stops ([`Streams::subscribe`]).
    closing: tokio::sync::watch::Receiver<bool>,
}

/// The SSE body, starting after seq `after` (`None`: only what comes next); it ends when the
/// server stops ([`Streams::close`], or the streams' handle is gone).
pub fn sse(
    store: LogHandle,
    after: Option<u64>,
    render: fn(&crmhook_core::Event) -> Value,
    listener: Listener,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
    let next_seq = after.unwrap_or_else(|| store.head()).saturating_add(1);
    let Listener { attempts, closing } = listener;
    let state = State { head: store.watch_head(), store, next_seq, attempts, render, closing };
    let hello = futures_util::stream::once(async { Ok(Bytes::from_static(b": crmhook stream\nretry: 2000\n\n")) });
    futures_util::StreamExt::chain(
        hello,
        futures_util::stream::unfold(state, |mut s| async move {
            let chunk = next_chunk(&mut s).await?;
            Some((Ok(Bytes::from(chunk)), s))
        }),
    )
}

/// The next piece of the stream; `None` once the server stops.
async fn next_chunk(s: &mut State) -> Option<String> {
    loop {
        if *s.closing.borrow() {
            return None;
        }
        if s.next_seq <= s.store.head() {
            let mut out = String::new();
            for event in s.store.events_from(s.next_seq).take(CATCH_UP) {
                match event {
                    Ok(e) => {
                        s.next_seq = e.seq + 1;
                        out.push_str(&format!("id: {}\nevent: event\ndata: {}\n\n", e.seq, (s.render)(&e)));
                    }
                    Err(_) => break,
                }
            }
            if s.next_seq <= s.store.head() && out.is_empty() {
                // Compacted away: skip to what is there.
                s.next_seq = s.store.head() + 1;
            }
            if !out.is_empty() {
                return Some(out);
            }
        }
        tokio::select! {
            // Resolves at once if already closing; an error means the server is gone.
            _ = s.closing.wait_for(|closing| *closing) => return None,
            changed = s.head.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            attempt = s.attempts.recv() => match attempt {
                Ok(a) => return Some(format!("event: attempt\ndata: {}\n\n", attempt_view(&a))),
                Err(broadcast::error::RecvError::Lagged(n)) => return Some(format!(": skipped {n} attempts\n\n")),
                Err(broadcast::error::RecvError::Closed) => tokio::time::sleep(Duration::from_secs(1)).await,
            },
            () = tokio::time::sleep(Duration::from_secs(15)) => return Some(": keep-alive\n\n".to_owned()),
        }
    }
}

/// The JSON of an attempt on the stream.
fn attempt_view(a: &AttemptRecorded) -> Value {
    json!({
        "event_id": a.event_id, "seq": a.seq, "target_id": a.target_id, "n": a.n, "status_code": a.status_code,
        "result": a.outcome(), "duration_ms": a.duration_ms, "at": crmhook_core::time::rfc3339(a.at_ms),
    })
}
