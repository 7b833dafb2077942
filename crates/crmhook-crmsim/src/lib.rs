//! A CRM simulator for crmhook's end-to-end tests and for trying a source by hand.
//!
//! This crate owns the *CRM side* of an ingest: it posts events to a crmhook source exactly as
//! each of the two real CRMs crmhook speaks does, with their headers, signatures, timeouts and
//! retry rules, and reports what the CRM saw and concluded ([`Report`]):
//!
//! - [`maia`]: one JSON object (with `eventType`) per POST, `Content-Type: application/json`
//!   and `X-Maia-Signature` ([`maia_signature`]); any 2xx is success; 3 tries, 10 s each.
//! - [`maximizer`]: a JSON array of envelopes per POST to a URL carrying `?key=`; only exactly
//!   200 within 2 s is success; 3 tries, then the batch is discarded.
//!
//! Bodies are always sent byte for byte as given, redirects are never followed, and each
//! try's response body (its first 64 KiB) is kept. The `crmhook-crmsim` binary wraps this API.

use std::fmt;
use std::io::Read;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub mod maia;
pub mod maximizer;
#[cfg(test)]
mod tests;

/// How much of each response body a [`Try`] keeps.
pub const BODY_LIMIT: u64 = 64 * 1024;

/// One HTTP attempt, as the CRM saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Try {
    /// The response status, if a response (status line) arrived in time.
    pub status: Option<u16>,
    /// Why the try failed at the transport level (timeout, connection refused, body read…).
    pub error: Option<String>,
    /// The response body as text (lossy UTF-8, first [`BODY_LIMIT`] bytes); empty if none.
    pub body: String,
    /// From sending the request to the end of reading the response (or the error).
    pub elapsed: Duration,
}

/// Everything one POST (with its retries) amounted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Every try, in order; never empty.
    pub tries: Vec<Try>,
    /// What the CRM concluded: a try succeeded by that CRM's rules.
    pub delivered: bool,
    /// The CRM gave up after its last try: the events are lost (always `!delivered`).
    pub discarded: bool,
}

impl Report {
    /// The last try's response body parsed as JSON, if it is JSON.
    pub fn last_body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.tries.last()?.body).ok()
    }

    /// The last try's status, if it got a response.
    pub fn last_status(&self) -> Option<u16> {
        self.tries.last()?.status
    }
}

/// One line: each try's status or error and time, then the conclusion, e.g.
/// `try 1: 202 in 3 ms, try 2: error (timed out) after 2001 ms, …; failed, tried 3 times, discarded`.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.tries.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            let ms = t.elapsed.as_millis();
            match (t.status, &t.error) {
                (Some(s), None) => write!(f, "try {}: {s} in {ms} ms", i + 1)?,
                (Some(s), Some(e)) => write!(f, "try {}: {s} then error ({e}) after {ms} ms", i + 1)?,
                (None, e) => {
                    write!(f, "try {}: error ({}) after {ms} ms", i + 1, e.as_deref().unwrap_or("no response"))?
                }
            }
        }
        if self.delivered {
            f.write_str("; delivered")
        } else {
            write!(f, "; failed, tried {} times, discarded", self.tries.len())
        }
    }
}

/// How a CRM retries. Start from [`Options::maia`] or [`Options::maximizer`] and override
/// fields, e.g. `Options { tries: 1, ..Options::maximizer() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Tries in all (first try included); 0 is treated as 1.
    pub tries: u32,
    /// Total time allowed per try: connect, send, status line and body.
    pub timeout: Duration,
    /// Pause between tries (0 keeps tests fast).
    pub pause: Duration,
}

impl Options {
    /// MAIA's behaviour: 3 tries, 10 s per try, no pause.
    pub fn maia() -> Self {
        Options { tries: 3, timeout: Duration::from_secs(10), pause: Duration::ZERO }
    }

    /// Maximizer's behaviour: 3 tries, 2 s per try, no pause.
    pub fn maximizer() -> Self {
        Options { tries: 3, timeout: Duration::from_secs(2), pause: Duration::ZERO }
    }
}

/// MAIA's `X-Maia-Signature`: lowercase hex (64 chars) of HMAC-SHA256 over the raw body
/// bytes, keyed with the UTF-8 bytes of the webhook secret string.
pub fn maia_signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// POSTs `body` to `url` with `headers` up to `opts.tries` times until `success(status)`.
pub(crate) fn post_with_retries(
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    opts: &Options,
    success: fn(u16) -> bool,
) -> Report {
    let agent = ureq::AgentBuilder::new().timeout(opts.timeout).redirects(0).build();
    let mut tries = Vec::new();
    for n in 0..opts.tries.max(1) {
        if n > 0 && !opts.pause.is_zero() {
            std::thread::sleep(opts.pause);
        }
        let t = one_try(&agent, url, headers, body);
        let ok = t.error.is_none() && t.status.is_some_and(success);
        tries.push(t);
        if ok {
            return Report { tries, delivered: true, discarded: false };
        }
    }
    Report { tries, delivered: false, discarded: true }
}

fn one_try(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Try {
    let start = Instant::now();
    let mut req = agent.post(url);
    for (name, value) in headers {
        req = req.set(name, value);
    }
    let resp = match req.send_bytes(body) {
        Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
        Err(ureq::Error::Transport(e)) => {
            return Try {
                status: None,
                error: Some(transport_error(&e)),
                body: String::new(),
                elapsed: start.elapsed(),
            }
        }
    };
    let status = Some(resp.status());
    let mut buf = Vec::new();
    let error = resp.into_reader().take(BODY_LIMIT).read_to_end(&mut buf).err().map(|e| e.to_string());
    Try { status, error, body: String::from_utf8_lossy(&buf).into_owned(), elapsed: start.elapsed() }
}

/// A transport error's text without its URL (a Maximizer URL carries the key).
fn transport_error(e: &ureq::Transport) -> String {
    let kind = e.kind().to_string();
    let mut text = kind.clone();
    if let Some(m) = e.message().filter(|m| *m != kind) {
        text = format!("{text}: {m}");
    }
    if let Some(source) = std::error::Error::source(e) {
        let source = source.to_string();
        let source = source.strip_prefix(&format!("{kind}: ")).unwrap_or(&source).to_owned();
        text = format!("{text}: {source}");
    }
    text
}
