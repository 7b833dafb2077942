//! The load of `crmhook-bench system`: how crmhook's rows post their events (`--via`: the API
//! or a MAIA source's URL, signed) and the connections that offer them at a rate or at
//! saturation, each event's acknowledgement timed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::Mode;
use crate::soak::{Conn, Server, INGEST};

/// How crmhook's rows post their events (`--via`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Via {
    /// `POST /v1/events` with the ingest token (answered 202).
    Api,
    /// `POST /in/{id}` of a MAIA source, signed (answered 200).
    MaiaSource,
    /// `POST /v1/events` with the ingest token and an `Idempotency-Key` of its own on each
    /// request, as an API client that retries safely posts (answered 202).
    ApiKey,
}

/// The MAIA secret of the sources `--via maia-source` makes.
const MAIA_SECRET: &str = "bench-system-maia-secret";

/// Where and how one row posts: the path, the header lines, the MAIA secret that signs each body
/// (if any), and the status that acknowledges it.
#[derive(Clone)]
pub(super) struct Post {
    path: String,
    headers: String,
    maia_secret: Option<&'static str>,
    /// Each request gets `Idempotency-Key: <its event's tag>`.
    idempotency_key: bool,
    ok: u16,
}

impl Post {
    pub(super) fn api() -> Post {
        Post {
            path: "/v1/events".into(),
            headers: format!("Authorization: Bearer {INGEST}\r\n"),
            maia_secret: None,
            idempotency_key: false,
            ok: 202,
        }
    }

    /// As [`Post::api`], each request with an `Idempotency-Key`.
    pub(super) fn api_key() -> Post {
        Post { idempotency_key: true, ..Post::api() }
    }

    /// A new MAIA source on `server`, named after the row's `run`.
    pub(super) fn maia_source(server: &Server, run: &str) -> anyhow::Result<Post> {
        let source =
            server.admin("POST", "/v1/sources", &json!({"name": run, "kind": "maia", "maia_secret": MAIA_SECRET}))?;
        let id = source["id"].as_str().context("the source's id")?;
        Ok(Post {
            path: format!("/in/{id}"),
            headers: String::new(),
            maia_secret: Some(MAIA_SECRET),
            idempotency_key: false,
            ok: 200,
        })
    }
}

fn event(tag: &str) -> String {
    format!(
        r#"{{"eventType":"crm_field_update","recordId":"{tag}","kanbanId":"kanban_1","fieldName":"Email","newValue":"x@example.com"}}"#
    )
}

/// One event's acknowledgement: its tag, when the POST was about to be written, and when the
/// answer came.
pub(super) struct Sent {
    pub(super) tag: String,
    pub(super) at: Instant,
    pub(super) acked: Instant,
}

/// Posts events for `duration` in `mode`, connection `c` to `addrs[c % addrs.len()]`; answers
/// what was sent and acknowledged.
pub(super) fn offer(
    addrs: &[SocketAddr],
    post: &Post,
    prefix: &str,
    mode: Mode,
    duration: Duration,
) -> anyhow::Result<(Vec<Sent>, usize)> {
    let (connections, rate) = match mode {
        Mode::Rate(r) => ((r as usize / 250).clamp(1, 16), Some(r)),
        Mode::Saturation => (64, None),
    };
    let t0 = Instant::now() + Duration::from_millis(20);
    let deadline = t0 + duration;
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let prefix = prefix.to_owned();
            let post = post.clone();
            let addr = addrs[c % addrs.len()];
            std::thread::spawn(move || -> anyhow::Result<(Vec<Sent>, usize)> {
                let mut conn = Conn::new(addr);
                let mut out = Vec::new();
                let mut tried = 0;
                let mut i = c;
                loop {
                    if let Some(rate) = rate {
                        let due = t0 + Duration::from_nanos((i as u64).saturating_mul(1_000_000_000) / rate);
                        if due >= deadline {
                            break;
                        }
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    } else if Instant::now() >= deadline {
                        break;
                    } else if i == c {
                        if let Some(wait) = t0.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let tag = format!("{prefix}{i}");
                    let body = event(&tag);
                    let at = Instant::now();
                    tried += 1;
                    // A refusal may close the connection (the server does not read a body it
                    // refused): open a new one and count the event as not acknowledged.
                    let mut headers = match post.maia_secret {
                        Some(secret) => format!(
                            "{}X-Maia-Signature: {}\r\n",
                            post.headers,
                            crmhook_core::sign::maia_signature(secret, body.as_bytes())
                        ),
                        None => post.headers.clone(),
                    };
                    if post.idempotency_key {
                        headers.push_str(&format!("Idempotency-Key: {tag}\r\n"));
                    }
                    let status = match conn.request_with("POST", &post.path, &headers, body.as_bytes()) {
                        Ok((status, _)) => status,
                        Err(_) => {
                            conn = Conn::new(addr);
                            0
                        }
                    };
                    if status == post.ok {
                        out.push(Sent { tag, at, acked: Instant::now() });
                    } else if status == 503 {
                        // Backpressure (`max_delivery_lag_ms`): wait as `Retry-After: 1` asks.
                        std::thread::sleep(
                            Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now())),
                        );
                    }
                    i += connections;
                }
                Ok((out, tried))
            })
        })
        .collect();
    crate::join_load(threads)
}
