//! One delivery attempt over HTTP: the body a target gets, the signature headers, and the POST
//! itself with awc.
//!
//! Each delivery arbiter has one awc client ([`Client`], created on that arbiter's thread by
//! its [`Lane`] and cloned into the target actors started there), with redirects off (a 3xx is
//! a failed attempt), a connect timeout, the address guard as its DNS resolver, and the
//! target's `timeout_ms` around the whole exchange. (It holds a second awc client, alike but for
//! its TCP step, for `https://` to IPv6 literals, which awc's own TLS step cannot name: see
//! `tls.rs`.)
//!
//! What the receiver said is kept with the attempt ([`AttemptReport::response`]): its status,
//! the headers an operator needs (`Content-Type`, `Retry-After`, `Location`) and the first
//! bytes of its body, at most the target's `response_body_bytes` (itself at most 4,096), read
//! within what is left of the attempt's timeout. Past what is kept the body is only read (and
//! dropped) so the connection can be reused, up to [`RESPONSE_READ_LIMIT`] in all, and not at
//! all when it declares a length past that: a receiver streaming gigabytes costs one read
//! buffer and the rest of the timeout, never more. When there was no answer, the outcome says
//! in words what happened instead ([`no_answer`]).

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_rt::net::ActixStream;
use actix_service::Service;
use actix_tls::connect::rustls_0_23::reexports::ClientConfig;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection};
use awc::error::{ConnectError as AwcConnectError, SendRequestError};
use awc::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use awc::http::Uri;
use crmhook_core::retry::Outcome;
use crmhook_core::sign::Signer;
use crmhook_core::target::Format;
use crmhook_core::time::now_ms;
use crmhook_core::{Event, EventKind, Target};
use crmhook_store::{Response, RESPONSE_HEADERS, RESPONSE_HEADER_BYTES};
use futures_util::{Stream, StreamExt};

use crate::guard::{Guard, GuardResolver, Refused};
use crate::tls;

/// How long connecting may take at most (the target's timeout still bounds the whole attempt).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of a response body read, kept or not: past what is kept, a body is read (and
/// dropped) only so the connection can be reused.
pub const RESPONSE_READ_LIMIT: usize = 64 * 1024;

/// One arbiter's delivery client: awc's client (not `Send`: it is built on the thread that
/// uses it, and cheap to clone), the one for `https://` to IPv6 literals (`tls.rs`), and
/// the guard both check addresses with.
#[derive(Clone)]
pub struct Client {
    http: awc::Client,
    ipv6_tls: awc::Client,
    guard: Guard,
}

/// The guarded TCP step: the address guard is the resolver.
fn guarded_tcp(guard: Guard) -> actix_tls::connect::ConnectorService {
    actix_tls::connect::Connector::new(actix_tls::connect::Resolver::custom(GuardResolver(guard))).service()
}

/// An awc client with crmhook's settings over the TCP step `tcp`, its own TLS step trusting `tls`.
fn awc_client<S, Io>(tcp: S, tls: Arc<ClientConfig>) -> awc::Client
where
    S: Service<ConnectInfo<Uri>, Response = Connection<Uri, Io>, Error = ConnectError> + Clone + 'static,
    Io: ActixStream + fmt::Debug + 'static,
{
    awc::Client::builder()
        .disable_redirects()
        .add_default_header((header::USER_AGENT, concat!("crmhook/", env!("CARGO_PKG_VERSION"))))
        .connector(awc::Connector::new().connector(tcp).rustls_0_23(tls).timeout(CONNECT_TIMEOUT).limit(1024))
        .timeout(Duration::from_secs(600))
        .finish()
}

/// The client for `https://` to IPv6 literals, verifying certificates against `config`'s roots
/// (its TCP step makes every connection TLS: awc's own TLS step is never used).
fn ipv6_tls_client(guard: Guard, config: Arc<ClientConfig>) -> awc::Client {
    awc_client(tls::LiteralTls::new(guarded_tcp(guard), config.clone()), config)
}

impl Client {
    /// Builds a client on the current thread, trusting what `tls` trusts.
    pub fn new(guard: Guard, tls: &tls::DeliveryTls) -> Client {
        Client {
            http: awc_client(guarded_tcp(guard), tls.awc.clone()),
            ipv6_tls: ipv6_tls_client(guard, tls.literal.clone()),
            guard,
        }
    }

    /// The guard this client's connections are checked with.
    pub fn guard(&self) -> Guard {
        self.guard
    }
}

/// What a delivery arbiter is asked to run with its client (a target actor's start).
type Start = Box<dyn FnOnce(&Client) + Send>;

/// A delivery arbiter, as the router sees it: a task on that arbiter owns the arbiter's
/// [`Client`] (created there when the lane starts) and runs each start it is handed with it, so
/// every target actor on the arbiter shares the one client.
#[derive(Clone)]
pub struct Lane {
    starts: tokio::sync::mpsc::UnboundedSender<Start>,
    index: usize,
}

impl Lane {
    /// Starts the lane's task on `arbiter`, the router's `index`-th lane; its client checks
    /// addresses with `guard` and trusts what `tls` trusts.
    pub fn start(index: usize, arbiter: &actix_rt::ArbiterHandle, guard: Guard, tls: tls::DeliveryTls) -> Lane {
        let (starts, mut started) = tokio::sync::mpsc::unbounded_channel::<Start>();
        // The client is not `Send`: it is built on the arbiter's thread, in a task of its own.
        arbiter.spawn_fn(move || {
            actix_rt::spawn(async move {
                let client = Client::new(guard, &tls);
                while let Some(start) = started.recv().await {
                    start(&client);
                }
            });
        });
        Lane { starts, index }
    }

    /// Which of the router's lanes this is (the first runs the router too).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Runs `start` on the lane's arbiter with its client (dropped if the arbiter has stopped).
    pub fn run(&self, start: impl FnOnce(&Client) + Send + 'static) {
        let _ = self.starts.send(Box::new(start));
    }
}

/// The body a target receives for an event: the event's bytes exactly as the CRM sent them
/// (nothing is parsed or rewritten: `12000.00` stays `12000.00`, `ProcessedTimestamp` stays as
/// Maximizer set it; crmhook's dispatch time is `webhook-timestamp`). A MAIA event is the object
/// that was ingested; a Maximizer event is a one-element array, `[` element `]`. A target's
/// `format` overrides the wrapping: `maia` sends the bare object, `maximizer` the array.
pub fn body_for(target: &Target, event: &Event) -> Vec<u8> {
    let format = target.format.unwrap_or(match event.kind {
        EventKind::Maia => Format::Maia,
        EventKind::Maximizer => Format::Maximizer,
    });
    match format {
        Format::Maia => event.payload.clone(),
        Format::Maximizer => {
            let mut out = Vec::with_capacity(event.payload.len() + 2);
            out.push(b'[');
            out.extend_from_slice(&event.payload);
            out.push(b']');
            out
        }
    }
}

/// What was attempted and how it went.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    /// The event attempted.
    pub event_id: crmhook_core::EventId,
    /// When the event was logged.
    pub received_at_ms: u64,
    pub at_ms: u64,
    pub duration_ms: u64,
    pub outcome: Outcome,
    /// The answer's `Retry-After`, in ms from now, when it had one.
    pub retry_after_ms: Option<u64>,
    /// What the receiver answered, when it answered.
    pub response: Option<Response>,
}

/// `Retry-After` as delay-seconds or an HTTP date.
fn retry_after(value: &str, now_ms: u64) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1000));
    }
    let date: header::HttpDate = value.parse().ok()?;
    let at = std::time::SystemTime::from(date).duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(at.saturating_sub(now_ms))
}

/// A target as its attempts need it, prepared once per configuration rather than per
/// delivery: the URL parsed, its own headers parsed, its secrets keyed for signing, and whether
/// its literal address is refused.
pub struct Endpoint {
    target: Arc<Target>,
    /// Where requests go (for `https://` to an IPv6 literal, the `http://` form the client for
    /// those takes: [`tls::over_tls_uri`]).
    uri: Uri,
    /// Whether the attempts go through the client for `https://` to IPv6 literals.
    ipv6_tls: bool,
    headers: Vec<(HeaderName, HeaderValue)>,
    signer: Signer,
    /// Why no attempt can be made (a refused address, a URL or header that does not parse).
    unusable: Option<String>,
    timeout: Duration,
    /// How many bytes of each answer's body are kept.
    keep_body: usize,
}

impl Endpoint {
    pub fn new(target: Arc<Target>, guard: Guard) -> Endpoint {
        let mut unusable = guard.check_literal(&target.url).err().map(|e| format!("refused: {e}"));
        let uri = target.url.parse::<Uri>().unwrap_or_else(|e| {
            unusable.get_or_insert_with(|| format!("the target URL does not parse: {e}"));
            Uri::default()
        });
        let ipv6_tls = tls::is_https_to_ipv6_literal(&uri);
        let uri = match ipv6_tls.then(|| tls::over_tls_uri(&uri)) {
            None => uri,
            Some(Some(over_tls)) => over_tls,
            Some(None) => {
                unusable.get_or_insert_with(|| "the target URL does not parse".into());
                Uri::default()
            }
        };
        let mut headers = Vec::with_capacity(target.headers.len());
        for (name, value) in &target.headers {
            // A target stored before hop-by-hop headers were refused keeps them on disk; they
            // are never sent.
            if crmhook_core::target::forbidden_header(name) {
                continue;
            }
            match (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str())) {
                (Ok(name), Ok(value)) => headers.push((name, value)),
                _ => {
                    unusable.get_or_insert_with(|| format!("the target's header {name} is not a valid header"));
                }
            }
        }
        Endpoint {
            signer: target.signer(),
            timeout: Duration::from_millis(target.timeout_ms),
            keep_body: target.response_body_bytes.min(crmhook_core::target::MAX_RESPONSE_BODY_BYTES) as usize,
            target,
            uri,
            ipv6_tls,
            headers,
            unusable,
        }
    }
}

// Our headers' names, parsed once (HTTP/1 sends names in lower case either way).
const X_MAIA_TIMESTAMP: HeaderName = HeaderName::from_static("x-maia-timestamp");
const X_MAIA_SIGNATURE: HeaderName = HeaderName::from_static("x-maia-signature");
const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
const X_CRMHOOK_ATTEMPT: HeaderName = HeaderName::from_static("x-crmhook-attempt");

/// A header value we built (ids, digits, base64, hex): always valid; empty if it were not.
fn value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Delivers `event` to `endpoint` as attempt number `attempt`, with `client`.
pub async fn attempt(client: &Client, endpoint: &Endpoint, event: &Event, attempt: u32) -> AttemptReport {
    let at_ms = now_ms();
    let started = Instant::now();
    let report = |outcome, retry_after_ms, response| AttemptReport {
        event_id: event.id.clone(),
        received_at_ms: event.received_at_ms,
        at_ms,
        duration_ms: started.elapsed().as_millis() as u64,
        outcome,
        retry_after_ms,
        response,
    };
    if let Some(refused) = &endpoint.unusable {
        return report(Outcome::Error(refused.clone()), None, None);
    }
    let body = body_for(&endpoint.target, event);
    let timestamp = (at_ms / 1000).to_string();
    let signatures = endpoint.signer.sign(at_ms, event.id.as_str(), &timestamp, &body);
    let timestamp = value(timestamp);

    // awc's own timeout bounds connecting, sending and the response's head; the body below.
    let http = if endpoint.ipv6_tls { &client.ipv6_tls } else { &client.http };
    let mut request = http.post(endpoint.uri.clone()).timeout(endpoint.timeout);
    // The target's own headers first: ours are inserted after them and cannot be replaced
    // (validation also refuses reserved names).
    for header in &endpoint.headers {
        request = request.insert_header(header.clone());
    }
    let request = request
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .insert_header((X_MAIA_TIMESTAMP, timestamp.clone()))
        .insert_header((X_MAIA_SIGNATURE, value(signatures.maia)))
        .insert_header((WEBHOOK_ID, value(event.id.as_str().to_owned())))
        .insert_header((WEBHOOK_TIMESTAMP, timestamp))
        .insert_header((WEBHOOK_SIGNATURE, value(signatures.standard)))
        .insert_header((X_CRMHOOK_ATTEMPT, HeaderValue::from(attempt)));

    match request.send_body(body).await {
        Err(e) => report(no_answer(&e), None, None),
        Ok(mut response) => {
            let status = response.status().as_u16();
            let retry_after_ms = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, now_ms()));
            let headers = kept_headers(response.headers());
            let declared = response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            // Within what is left of the attempt's timeout, never more.
            let deadline = started + endpoint.timeout;
            let (body, body_truncated) = read_body(&mut response, endpoint.keep_body, declared, deadline).await;
            let response = Response { status, headers, body, body_truncated };
            report(Outcome::Status(status), retry_after_ms, Some(response))
        }
    }
}

/// The response headers kept with an attempt ([`RESPONSE_HEADERS`]), names in lower case,
/// values as text (bytes that are not visible ASCII replaced) cut to [`RESPONSE_HEADER_BYTES`].
fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    RESPONSE_HEADERS
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?;
            let bytes = &value.as_bytes()[..value.len().min(RESPONSE_HEADER_BYTES)];
            Some(((*name).to_owned(), String::from_utf8_lossy(bytes).into_owned()))
        })
        .collect()
}

/// Reads an answer's body until `deadline`: keeps its first `keep` bytes; reads on past them
/// (dropping what it reads) only so the connection can be reused, up to
/// [`RESPONSE_READ_LIMIT`] in all, and not at all past `keep` when the body declares a length
/// (`declared`) beyond that limit. Answers what it kept and whether the body was longer (or
/// its end was not reached, and it may have been).
async fn read_body<S, B, E>(body: &mut S, keep: usize, declared: Option<u64>, deadline: Instant) -> (Vec<u8>, bool)
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
{
    let declared = declared.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    // Sized to what is declared; a body of no declared length grows as it comes (most answers
    // are empty or short, and each attempt's record and report hold what is kept).
    let mut kept = Vec::with_capacity(keep.min(declared.unwrap_or(0)));
    let mut seen = 0usize;
    let drain = declared.is_none_or(|n| n <= RESPONSE_READ_LIMIT);
    let deadline = tokio::time::Instant::from_std(deadline);
    let mut complete = false;
    while kept.len() < keep || (drain && seen <= RESPONSE_READ_LIMIT) {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => {
                let chunk = chunk.as_ref();
                let room = keep - kept.len();
                kept.extend_from_slice(&chunk[..room.min(chunk.len())]);
                seen = seen.saturating_add(chunk.len());
            }
            // The end, unless it came before the length the answer declared (the connection
            // closed early: awc's client ends the body there without an error).
            Ok(None) => {
                complete = declared.is_none_or(|n| seen >= n);
                break;
            }
            // The connection failed, or the time is up: what was read is what there is.
            Ok(Some(Err(_))) | Err(_) => break,
        }
    }
    let truncated = seen > kept.len() || (!complete && declared.is_none_or(|n| n > kept.len()));
    kept.shrink_to_fit();
    (kept, truncated)
}

/// The outcome of an attempt that got no answer: a timeout, or in words what happened
/// (`connection refused`, `TLS: …`, `DNS: …`, `refused: <address> is not a public address …`).
pub fn no_answer(e: &SendRequestError) -> Outcome {
    Outcome::Error(match e {
        SendRequestError::Timeout => return Outcome::Timeout,
        SendRequestError::Connect(e) => connect_failure(e),
        SendRequestError::Send(e) => format!("{} while sending the request", io_failure(e)),
        SendRequestError::Response(e) => format!("the answer is not HTTP: {e}"),
        SendRequestError::Url(e) => format!("the target URL cannot be used: {e}"),
        SendRequestError::H2(e) => format!("HTTP/2: {e}"),
        other => other.to_string(),
    })
}

/// Why a connection could not be made, in words.
fn connect_failure(e: &AwcConnectError) -> String {
    match e {
        AwcConnectError::Resolver(e) => match e.downcast_ref::<Refused>() {
            Some(refused) => format!("refused: {refused}"),
            None => format!("DNS: {e}"),
        },
        AwcConnectError::NoRecords => "DNS: the host name has no address".into(),
        AwcConnectError::Unresolved => "DNS: the host name was not resolved".into(),
        AwcConnectError::Timeout => format!("timed out after {} ms connecting", CONNECT_TIMEOUT.as_millis()),
        AwcConnectError::Io(e) => io_failure(e),
        AwcConnectError::SslIsNotSupported => "TLS: not supported by this build".into(),
        AwcConnectError::H2(e) => format!("HTTP/2: {e}"),
        // awc's word for a connection the receiver closed without answering (the request sent,
        // or on its way): the same words as the socket's end of file below.
        AwcConnectError::Disconnected => "connection closed by the receiver".into(),
        other => format!("connection failed: {other}"),
    }
}

/// An I/O failure on the connection, in words: a TLS failure (rustls's error, as awc's TLS step
/// and ours report it) or what the socket said.
fn io_failure(e: &io::Error) -> String {
    if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        return format!("TLS: {tls}");
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset by the receiver".into(),
        io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof | io::ErrorKind::NotConnected => {
            "connection closed by the receiver".into()
        }
        io::ErrorKind::TimedOut => "timed out connecting".into(),
        io::ErrorKind::HostUnreachable => "host unreachable".into(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        _ => format!("connection failed: {e}"),
    }
}

#[cfg(test)]
mod tests;
