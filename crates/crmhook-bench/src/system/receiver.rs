//! The receiver the rows deliver to: answers 204 at once and notes when each event first arrived.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A receiver that answers 204 at once and notes when each (path, recordId) first arrived.
pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    pub(crate) arrivals: Arc<Mutex<HashMap<(String, String), Instant>>>,
    pub(crate) count: Arc<AtomicU64>,
    /// First arrivals of a (path, recordId): what the rows wait for, without scanning (and
    /// locking) `arrivals`, which would stall the receiver itself.
    pub(crate) firsts: Arc<AtomicU64>,
}

impl Receiver {
    pub(crate) fn start() -> anyhow::Result<Receiver> {
        use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let arrivals: Arc<Mutex<HashMap<(String, String), Instant>>> = Arc::default();
        let count = Arc::new(AtomicU64::new(0));
        let firsts = Arc::new(AtomicU64::new(0));
        let (a, c, f) = (arrivals.clone(), count.clone(), firsts.clone());
        std::thread::spawn(move || {
            let _ = actix_rt::System::new().block_on(async move {
                HttpServer::new(move || {
                    let (a, c, f) = (a.clone(), c.clone(), f.clone());
                    App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                        let (a, c, f) = (a.clone(), c.clone(), f.clone());
                        async move {
                            let at = Instant::now();
                            c.fetch_add(1, Ordering::Relaxed);
                            if let Some(tag) = record_id(&body) {
                                if let std::collections::hash_map::Entry::Vacant(slot) =
                                    a.lock().expect("lock").entry((req.path().to_owned(), tag))
                                {
                                    slot.insert(at);
                                    f.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            HttpResponse::NoContent().finish()
                        }
                    }))
                })
                .workers(1)
                .listen(listener)?
                .run()
                .await
            });
        });
        Ok(Receiver { addr, arrivals, count, firsts })
    }
}

/// The `recordId` of a delivered event's body (the tag the load gave it).
pub(crate) fn record_id(body: &[u8]) -> Option<String> {
    let start = body.windows(12).position(|w| w == b"\"recordId\":\"")?;
    let rest = &body[start + 12..];
    let end = rest.iter().position(|b| *b == b'"')?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}
