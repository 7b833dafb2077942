//! `GET /v1/stream`: Server-Sent Events of new log records.
//!
//! - `event: event` — each new event of the log, with `id:` its seq, so a client that
//!   reconnects with `Last-Event-ID: <seq>` (or `?after=<seq>`) resumes exactly after it; the
//!   backlog since then is read from the log.
//! - `event: attempt` — each delivery attempt once it is recorded (dispatch's attempt
//!   [`Feed`]; live only, no `id:`: the attempts of an event are in `GET /v1/events/{id}`).
//! - a `: keep-alive` comment every 15 s.
//!
//! What streams cost is bounded whatever their number and their clients' speed:
//!
//! - One task, the **hub** ([`Streams::start`], on the arbiter that starts the server, not on
//!   an HTTP worker), renders each new event and each attempt once into an SSE frame (`Bytes`)
//!   and broadcasts it; every live stream sends that same frame. While no stream is open the
//!   hub sleeps until one opens: it costs nothing per event. The hub keeps at most
//!   [`FRAMES`] frames for streams that are behind, shared by all of them.
//! - A stream that is behind (resumed with `after`, or too slow to keep up with the hub) reads
//!   the log itself, at most [`CATCH_UP_BYTES`] (plus one event) per chunk; the next chunk is
//!   read only once the client has taken the last one. Each chunk is read and rendered on a
//!   blocking thread (tokio's blocking pool, `read_chunk`): the HTTP worker only awaits it
//!   and writes its bytes, so many streams catching up do not hold up the requests that
//!   worker serves.
//! - At most `max_streams` streams are open at once, and at most `max_streams_per_key` of them
//!   (by default a quarter of `max_streams`, at least 1) with one API key, so that one key
//!   cannot hold every place and lock the other keys out; past either `GET /v1/stream` answers
//!   503 ([`Refused`]). A stream's places are given back when its body is dropped: when its
//!   client goes, when its key is revoked or rotated, when the server stops.
//!
//! A stream is its key's for as long as the key stays active: before each frame it sends (an
//! event, an attempt, a keep-alive) it asks whether the key that opened it is still an active
//! admin or operator key, and ends when it is not (revoked, or rotated: the old secret stops at
//! once). So nothing is sent after a revocation or rotation is answered, and an idle stream of
//! a revoked key ends at its next keep-alive (before 2026-12-07 a stream outlived its key).
//!
//! A stream never ends on its own otherwise, so the server ends them all when it stops ([`Streams`]):
//! each body finishes (its last chunk), the graceful stop of the HTTP server closes the idle
//! connection, and does not wait for them. (Until 2026-12-07 stream responses said
//! `Connection: close`, which some clients read as "no connection of your own": Python's
//! `http.client` drops the socket from the connection object.)

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use crmhook_dispatch::feed::{AttemptRecorded, Feed};
use crmhook_store::LogHandle;
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};

use crate::per_key::{PerKey, Place};

/// Bytes of events a stream that is behind reads from the log per chunk (a chunk holds at
/// least one event, so it may be up to one event larger).
pub const CATCH_UP_BYTES: usize = 256 * 1024;

/// Frames the hub keeps for streams that have not sent them yet; a stream further behind reads
/// the events from the log (and is told it skipped attempts).
pub const FRAMES: usize = 32;

/// Events the hub renders before it lets the other tasks of its thread run.
const HUB_BATCH: usize = 64;

/// Default of `max_streams`.
pub const MAX_STREAMS: usize = 100;

/// `max_streams_per_key` when it is not set: a quarter of `max_streams`, at least 1.
pub fn default_per_key(max_streams: usize) -> usize {
    (max_streams / 4).max(1)
}

/// Why a stream was not opened (both answer 503 with `Retry-After`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_streams` are open: this many.
    Full { open: usize },
    /// The key holds `max_streams_per_key` streams already: this many.
    KeyFull { held: usize },
}

/// A record as the streams send it, rendered once by the hub.
#[derive(Clone)]
enum Frame {
    Event { seq: u64, bytes: Bytes },
    Attempt(Bytes),
}

/// How an event is shown on the stream (the API's view of it).
pub type Render = fn(&crmhook_core::Event) -> Value;

/// The streams' handle: the hub's broadcast, the count of open streams and the shutdown signal.
/// The server keeps one and the stream handler gets one from the app's data; [`Streams::close`]
/// ends every stream (and any opened later).
#[derive(Clone)]
pub struct Streams {
    inner: Arc<Inner>,
}

struct Inner {
    store: LogHandle,
    render: Render,
    frames: broadcast::Sender<Frame>,
    /// The last seq whose frame the hub has broadcast (or passed over, with no stream open).
    published: AtomicU64,
    closing: watch::Sender<bool>,
    open: AtomicUsize,
    max: usize,
    /// The streams each key holds, at most `per_key`.
    by_key: Arc<PerKey>,
    per_key: usize,
    /// Told when a stream opens: the hub, idle while none is open, starts following again.
    opened: tokio::sync::Notify,
}

/// One open stream's place among the `max_streams`, and among its key's; both given back when
/// the stream's body is dropped.
struct Slot {
    inner: Arc<Inner>,
    _key: Place,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.inner.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Streams {
    /// Starts the hub (on the current arbiter) that renders what the log and the attempt feed
    /// tell, for at most `max_streams` streams, and `per_key` of them (at most `max_streams`;
    /// `None`: [`default_per_key`]) for one key.
    pub fn start(store: LogHandle, feed: Feed, render: Render, max_streams: usize, per_key: Option<usize>) -> Streams {
        let head = store.head();
        let max = max_streams.max(1);
        let inner = Arc::new(Inner {
            store,
            render,
            // The first receiver is dropped at once: only streams hold receivers.
            frames: broadcast::channel(FRAMES).0,
            published: AtomicU64::new(head),
            closing: watch::channel(false).0,
            open: AtomicUsize::new(0),
            max,
            by_key: Arc::default(),
            per_key: per_key.unwrap_or_else(|| default_per_key(max)).clamp(1, max),
            opened: tokio::sync::Notify::new(),
        });
        actix_rt::spawn(hub(inner.clone(), feed.subscribe(), inner.closing.subscribe()));
        Streams { inner }
    }

    /// How many streams are open.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Acquire)
    }

    /// The SSE body of a new stream of the API key `key` (its id), from the seq after `after`
    /// (the head when `None`), for as long as `allowed` answers true (it is asked before each
    /// frame) and the server runs ([`Streams::close`]). Refused when `key` holds
    /// `max_streams_per_key` streams already, or when `max_streams` are open.
    pub fn sse(
        &self,
        key: String,
        after: Option<u64>,
        allowed: impl Fn() -> bool + 'static,
    ) -> Result<impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> + 'static, Refused> {
        let inner = &self.inner;
        let key = inner.by_key.take(key, inner.per_key).map_err(|held| Refused::KeyFull { held })?;
        // The key's place is given back if this fails (`key` is dropped).
        inner
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < inner.max).then_some(n + 1))
            .map_err(|open| Refused::Full { open })?;
        let slot = Slot { inner: inner.clone(), _key: key };
        // Subscribed before the start is read: every event past what the hub has published
        // comes as a frame; the ones before are read from the log.
        let frames = inner.frames.subscribe();
        inner.opened.notify_one();
        let next_seq = after.unwrap_or_else(|| inner.store.head()).saturating_add(1);
        let state = State {
            inner: inner.clone(),
            next_seq,
            frames,
            closing: inner.closing.subscribe(),
            allowed: Box::new(allowed),
            _slot: slot,
        };
        let hello = futures_util::stream::once(async { Ok(Bytes::from_static(b": crmhook stream\nretry: 2000\n\n")) });
        Ok(futures_util::StreamExt::chain(
            hello,
            futures_util::stream::unfold(state, |mut s| async move {
                let chunk = next_chunk(&mut s).await?;
                // Asked once the frame is there: the key may have gone while it was awaited.
                (s.allowed)().then_some((Ok(chunk), s))
            }),
        ))
    }

    /// Ends every open stream, and every one opened from now on; answers whether they had all
    /// ended (their bodies dropped) within `wait`. A stream whose client does not read (its
    /// socket buffer full) is not polled, so it may outlast `wait`.
    pub async fn close(&self, wait: Duration) -> bool {
        self.inner.closing.send_replace(true);
        tokio::time::timeout(wait, self.inner.closing.closed()).await.is_ok()
    }
}

/// The frame of one event.
fn event_frame(render: Render, e: &crmhook_core::Event) -> String {
    format!("id: {}\nevent: event\ndata: {}\n\n", e.seq, render(e))
}

/// The hub: renders each new event and attempt once and broadcasts it, while a stream is open.
async fn hub(
    inner: Arc<Inner>,
    mut attempts: broadcast::Receiver<AttemptRecorded>,
    mut closing: watch::Receiver<bool>,
) {
    let mut head = inner.store.watch_head();
    let mut attempts_open = true;
    loop {
        if inner.frames.receiver_count() == 0 {
            // No stream: nothing to render, so the hub does not wake for each event and each
            // attempt (it shares its thread with the router). A stream opened later reads what
            // came meanwhile from the log (`published` is past it), and attempts made
            // meanwhile are not streamed.
            inner.published.store(inner.store.head(), Ordering::Release);
            tokio::select! {
                _ = closing.wait_for(|closing| *closing) => return,
                () = inner.opened.notified() => {}
            }
            attempts = attempts.resubscribe();
            continue;
        }
        let target = inner.store.head();
        let mut next = inner.published.load(Ordering::Acquire).saturating_add(1);
        while next <= target {
            if inner.frames.receiver_count() == 0 {
                // No stream to send to: a stream opened later reads these from the log.
                inner.published.store(target, Ordering::Release);
                break;
            }
            let batch: Vec<_> = inner
                .store
                .event_refs_from(next)
                .map_while(Result::ok)
                .take_while(|e| e.seq <= target)
                .take(HUB_BATCH)
                .collect();
            if batch.is_empty() {
                // Compacted away (or unreadable): a stream that wants them reads the log.
                inner.published.store(target, Ordering::Release);
                break;
            }
            for e in &batch {
                let bytes = Bytes::from(event_frame(inner.render, e));
                // Sent before `published` moves: a stream that sees `published` past its next
                // seq reads the log, and skips the frame if it comes.
                let _ = inner.frames.send(Frame::Event { seq: e.seq, bytes });
                inner.published.store(e.seq, Ordering::Release);
                next = e.seq + 1;
            }
            tokio::task::yield_now().await;
        }
        tokio::select! {
            // Resolves at once if already closing; an error means the server is gone.
            _ = closing.wait_for(|closing| *closing) => return,
            changed = head.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            attempt = attempts.recv(), if attempts_open => match attempt {
                Ok(a) if inner.frames.receiver_count() > 0 => {
                    let bytes = Bytes::from(format!("event: attempt\ndata: {}\n\n", attempt_view(&a)));
                    let _ = inner.frames.send(Frame::Attempt(bytes));
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => attempts_open = false,
            },
        }
    }
}

struct State {
    inner: Arc<Inner>,
    next_seq: u64,
    frames: broadcast::Receiver<Frame>,
    /// True once the server stops.
    closing: watch::Receiver<bool>,
    /// Whether the key that opened the stream is still an active key that reads the log.
    allowed: Box<dyn Fn() -> bool>,
    _slot: Slot,
}

impl State {
    /// What of a frame this stream sends: an attempt; the event it is at (an earlier one it
    /// has sent from the log; for a later one, the gap is read from the log first).
    fn take(&mut self, frame: Frame) -> Option<Bytes> {
        match frame {
            Frame::Attempt(bytes) => Some(bytes),
            Frame::Event { seq, bytes } if seq == self.next_seq => {
                self.next_seq = seq + 1;
                Some(bytes)
            }
            Frame::Event { .. } => None,
        }
    }

    /// The next events from the log, at most [`CATCH_UP_BYTES`] (and at least one event), read
    /// and rendered on a blocking thread. One chunk at a time: the stream asks for the next
    /// only once this one is sent.
    async fn catch_up(&mut self) -> Option<Bytes> {
        let (store, render, from) = (self.inner.store.clone(), self.inner.render, self.next_seq);
        match tokio::task::spawn_blocking(move || read_chunk(&store, render, from)).await {
            Ok((next_seq, chunk)) => {
                self.next_seq = next_seq;
                chunk
            }
            // The blocking pool is shutting down (the server is stopping), or the read
            // panicked: nothing is sent, and the stream goes on waiting (or ends) as it would.
            Err(e) => {
                tracing::warn!(error = %e, "reading a stream's catch-up chunk failed");
                None
            }
        }
    }
}

/// Reads and renders the events from seq `from` up to the log's head, at most
/// [`CATCH_UP_BYTES`] (and at least one event); answers the seq to go on from and the chunk
/// (`None` when there was nothing to read). Blocking: called on tokio's blocking pool, never
/// on an HTTP worker.
fn read_chunk(store: &LogHandle, render: Render, from: u64) -> (u64, Option<Bytes>) {
    let head = store.head();
    let mut next_seq = from;
    let mut out = String::new();
    for event in store.event_refs_from(from) {
        match event {
            Ok(e) if e.seq <= head => {
                next_seq = e.seq + 1;
                out.push_str(&event_frame(render, &e));
                if out.len() >= CATCH_UP_BYTES {
                    break;
                }
            }
            _ => break,
        }
    }
    if out.is_empty() {
        // Compacted away: skip to what is there.
        return (next_seq.max(head.saturating_add(1)), None);
    }
    (next_seq, Some(Bytes::from(out)))
}

/// The next piece of the stream; `None` once the server stops.
async fn next_chunk(s: &mut State) -> Option<Bytes> {
    loop {
        if *s.closing.borrow() {
            return None;
        }
        // Frames already broadcast first, then what the hub has passed (from the log).
        match s.frames.try_recv() {
            Ok(frame) => {
                if let Some(bytes) = s.take(frame) {
                    return Some(bytes);
                }
                continue;
            }
            Err(broadcast::error::TryRecvError::Lagged(n)) => return Some(skipped(n)),
            Err(_) => {}
        }
        if s.next_seq <= s.inner.published.load(Ordering::Acquire) {
            if let Some(bytes) = s.catch_up().await {
                return Some(bytes);
            }
        }
        let frame = tokio::select! {
            // Resolves at once if already closing; an error means the server is gone.
            _ = s.closing.wait_for(|closing| *closing) => return None,
            frame = s.frames.recv() => frame,
            () = tokio::time::sleep(Duration::from_secs(15)) => return Some(Bytes::from_static(b": keep-alive\n\n")),
        };
        match frame {
            Ok(frame) => {
                if let Some(bytes) = s.take(frame) {
                    return Some(bytes);
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => return Some(skipped(n)),
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

/// A stream fell more than [`FRAMES`] behind the hub: its events are read from the log, but the
/// attempts among what it missed are not sent.
fn skipped(n: u64) -> Bytes {
    Bytes::from(format!(": fell behind by {n} records; events are read from the log, attempts among them skipped\n\n"))
}

/// The JSON of an attempt on the stream: `error` (absent after a 2xx) and `response` as in the
/// API's attempts (`crate::api::views`), and `test` on a test delivery's.
fn attempt_view(a: &AttemptRecorded) -> Value {
    use crate::api::views::{attempt_error, AttemptOutcome, ResponseView};
    let (result, next_attempt_at) = AttemptOutcome::of(&a.result);
    let mut v = json!({
        "event_id": a.event_id, "seq": a.seq, "target_id": a.target_id, "n": a.n, "status_code": a.status_code,
        "result": result, "duration_ms": a.duration_ms, "at": crmhook_core::time::rfc3339(a.at_ms),
    });
    if let Some(at) = next_attempt_at {
        v["next_attempt_at"] = json!(at);
    }
    if let Some(error) = attempt_error(&a.outcome, a.duration_ms, a.response.as_ref()) {
        v["error"] = json!(error);
    }
    v["response"] = serde_json::to_value(a.response.as_ref().map(ResponseView::from)).unwrap_or(Value::Null);
    if a.test {
        v["test"] = json!(true);
    }
    v
}
