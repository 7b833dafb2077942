//! The receiver the rows deliver to: answers at once (204, or 200 with a body of a given size,
//! as many real receivers do) and notes when each event first arrived.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::HttpResponse;

/// A receiver that answers at once and notes when each (path, recordId) first arrived.
pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    pub(crate) arrivals: Arc<Mutex<HashMap<(String, String), Instant>>>,
    pub(crate) count: Arc<AtomicU64>,
    /// First arrivals of a (path, recordId): what the rows wait for, without scanning (and
    /// locking) `arrivals`, which would stall the receiver itself.
    pub(crate) firsts: Arc<AtomicU64>,
}

impl Receiver {
    /// Answers 204 with no body.
    pub(crate) fn start() -> anyhow::Result<Receiver> {
        Receiver::answering(0)
    }

    /// Answers 204 with no body when `body_bytes` is 0, else 200 with a JSON body of that many
    /// bytes: what a receiver built on a web framework tends to answer (`{"ok":true,…}`), which
    /// crmhook keeps with the attempt (up to a target's `response_body_bytes`).
    pub(crate) fn answering(body_bytes: usize) -> anyhow::Result<Receiver> {
        let answer = actix_web::web::Bytes::from(answer_body(body_bytes));
        let arrivals: Arc<Mutex<HashMap<(String, String), Instant>>> = Arc::default();
        let count = Arc::new(AtomicU64::new(0));
        let firsts = Arc::new(AtomicU64::new(0));
        let (a, c, f) = (arrivals.clone(), count.clone(), firsts.clone());
        let addr = serve(move |path, body, at| {
            c.fetch_add(1, Ordering::Relaxed);
            if let Some(tag) = record_id(body) {
                if let std::collections::hash_map::Entry::Vacant(slot) =
                    a.lock().expect("lock").entry((path.to_owned(), tag))
                {
                    slot.insert(at);
                    f.fetch_add(1, Ordering::Relaxed);
                }
            }
            if answer.is_empty() {
                HttpResponse::NoContent().finish()
            } else {
                HttpResponse::Ok().content_type("application/json").body(answer.clone())
            }
        })?;
        Ok(Receiver { addr, arrivals, count, firsts })
    }
}

/// Serves HTTP on 127.0.0.1 (a free port) from a thread of its own with one actix worker, each
/// request answered by `answer(path, body, arrived at)`; answers the address. The receivers of
/// every bench are this with their own bookkeeping.
pub(crate) fn serve<F>(answer: F) -> anyhow::Result<SocketAddr>
where
    F: Fn(&str, &[u8], Instant) -> HttpResponse + Clone + Send + 'static,
{
    use actix_web::{web, App, HttpRequest, HttpServer};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        let _ = actix_rt::System::new().block_on(async move {
            HttpServer::new(move || {
                let answer = answer.clone();
                App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                    let response = answer(req.path(), &body, Instant::now());
                    async move { response }
                }))
            })
            .workers(1)
            .listen(listener)?
            .run()
            .await
        });
    });
    Ok(addr)
}

/// A JSON body of `bytes` bytes (`{"ok":true}`, with a `note` member padding it out when there
/// is room, else trailing spaces; never shorter than `{"ok":true}`), or nothing for 0.
fn answer_body(bytes: usize) -> Vec<u8> {
    let ok = br#"{"ok":true}"#;
    let frame = br#"{"ok":true,"note":""}"#.len();
    if bytes == 0 {
        Vec::new()
    } else if bytes < frame {
        ok.iter().copied().chain(std::iter::repeat(b' ')).take(bytes.max(ok.len())).collect()
    } else {
        format!(r#"{{"ok":true,"note":"{}"}}"#, "x".repeat(bytes - frame)).into_bytes()
    }
}

/// The `recordId` of a delivered event's body (the tag the load gave it).
pub(crate) fn record_id(body: &[u8]) -> Option<String> {
    let start = body.windows(12).position(|w| w == b"\"recordId\":\"")?;
    let rest = &body[start + 12..];
    let end = rest.iter().position(|b| *b == b'"')?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}
