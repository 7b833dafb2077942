//! The stand-in: what answers on the server's listener while the event log cannot be written.
//!
//! After the disk refused a write of the log (a full disk, a failing device), sled 0.34 answers
//! every later operation with that error, so the server stops ([`crate::Ended::LogBroken`]) and
//! the store is opened again once it can be written (`crmhook serve` does it, every few
//! seconds; sled then recovers its log to the last complete write). Meanwhile this minimal
//! HTTP server answers on the same listener, so that no CRM meets a closed port: `503`
//! problem+json with `Retry-After` to every request (the contract's answer for a full disk),
//! `/healthz` alive, `/readyz` not ready. It reads no body, checks no token and touches no
//! state: it only says to come back.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use crate::error::STORAGE_FAILED;

/// The running stand-in; [`Standin::stop`] ends it.
pub struct Standin {
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Standin {
    /// Starts answering on `listener` (with `tls`, when the server serves TLS).
    pub(crate) fn start(listener: TcpListener, tls: Option<rustls::ServerConfig>) -> std::io::Result<Standin> {
        let http = HttpServer::new(|| {
            App::new()
                .wrap(crate::api::exposure::SECURITY_HEADERS.iter().fold(DefaultHeaders::new(), |h, kv| h.add(*kv)))
                .default_service(web::to(answer))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1);
        crate::listening(&listener)?;
        let http = match tls {
            Some(tls) => http.listen_rustls_0_23(listener, tls)?,
            None => http.listen(listener)?,
        }
        .run();
        let handle = http.handle();
        Ok(Standin { handle, task: actix_rt::spawn(http) })
    }

    /// Starts answering on `listener` as the server `config` describes would (over TLS when it
    /// names a certificate): for a server that cannot start yet ([`crate::ServerError::no_room`]).
    pub fn start_for(listener: TcpListener, config: &crate::Config) -> Result<Standin, crate::ServerError> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?.0),
            _ => None,
        };
        Ok(Standin::start(listener, tls)?)
    }

    /// Hands the listener over to the server started beside it, then ends the connections open
    /// (their answers are all immediate).
    pub async fn stop(self) {
        hand_over(&self.handle).await;
        self.handle.stop(true).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// How long a server that stopped accepting keeps its workers taking the connections it had
/// accepted already, before its graceful stop.
const HAND_OVER: Duration = Duration::from_millis(200);

/// Before one of the two servers on a listener stops: it stops accepting (the other takes every
/// new connection), and its workers take the connections it accepted a moment before. A
/// graceful stop right away would drop those unanswered (actix's workers stop taking
/// connections handed to them once told to stop), and their clients would see a reset.
pub(crate) async fn hand_over(handle: &actix_web::dev::ServerHandle) {
    handle.pause().await;
    tokio::time::sleep(HAND_OVER).await;
}

/// `/readyz`'s detail meanwhile.
const REOPENING: &str = "the event log cannot be written now (a full disk or a failing device: see the server's log); \
                         it is opened again once it can be";

async fn answer(req: HttpRequest) -> HttpResponse {
    let (title, detail) = match req.path() {
        "/healthz" => return HttpResponse::Ok().json(serde_json::json!({"status": "ok"})),
        "/readyz" => ("Not ready", REOPENING),
        _ => ("Try again shortly", STORAGE_FAILED),
    };
    crate::error::unavailable(title, detail)
}
