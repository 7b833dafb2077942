//! The bare relay: the floor of the whole system's CPU per event. An actix-web server with
//! crmhook's worker count that parses each POSTed JSON body, answers 202, and sends the body
//! with awc (one client per worker, as crmhook has one per arbiter) to each of its `--to` URLs
//! from the same worker. Nothing is stored, signed, matched or handed to another thread: what
//! it costs per event is two HTTP exchanges (one in, one out per target) and nothing else.
//! `crmhook-bench system` runs it in its own process beside crmhook's rows at fixed rates, so
//! that crmhook's CPU per event can be read against it (`cpu÷relay`).
//!
//! With `--durable DIR` it is the floor of a relay that acknowledges only what is durable, as
//! crmhook does: each body is appended to a sled database in `DIR` by a writer thread of its
//! own, with the same group commit as crmhook's log writer
//! ([`crmhook_store::baseline::RawLog`]), and the 202 waits for that flush. Its cost over the
//! bare relay is one hand-off to the writer and back, one sled insert and one flush per group
//! (`cpu÷durable`).
//!
//! Its threads run under the scheduling policy crmhook's do (`sched_batch`: `SCHED_BATCH` on
//! Linux unless `CRMHOOK_SCHED_BATCH` turns it off, as the environment the bench gives both),
//! so that the floors and crmhook are compared like with like.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

#[cfg(target_os = "linux")]
fn sched_batch() {
    if scheduler::set_self_policy(scheduler::Policy::Batch, 0).is_err() {
        eprintln!("relay: could not run under SCHED_BATCH");
    }
}

#[cfg(not(target_os = "linux"))]
fn sched_batch() {}

/// Runs the relay on `bind` until killed, printing `listening on <addr>` once it listens.
pub fn serve(bind: &str, to: Vec<String>, durable: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Before any thread starts (the durable log's writer, the workers): they inherit it.
    let off = std::env::var("CRMHOOK_SCHED_BATCH")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "0" | "no" | "off"));
    if !off {
        sched_batch();
    }
    let listener = std::net::TcpListener::bind(bind)?;
    println!("listening on {}", listener.local_addr()?);
    let workers = std::thread::available_parallelism().map(usize::from).unwrap_or(2);
    let to = std::sync::Arc::new(to);
    let log = match durable {
        Some(dir) => Some(std::sync::Arc::new(crmhook_store::baseline::RawLog::open(&dir)?)),
        None => None,
    };
    actix_rt::System::new().block_on(async move {
        HttpServer::new(move || {
            let client = awc::Client::builder().disable_redirects().timeout(Duration::from_secs(10)).finish();
            let (to, log) = (to.clone(), log.clone());
            App::new().default_service(web::post().to(move |body: web::Bytes| {
                let (client, to, log) = (client.clone(), to.clone(), log.clone());
                async move {
                    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
                        return HttpResponse::BadRequest().finish();
                    }
                    if let Some(log) = log {
                        if !log.append(body.to_vec()).await {
                            return HttpResponse::ServiceUnavailable().finish();
                        }
                    }
                    for url in to.iter() {
                        let send = client.post(url.as_str()).content_type("application/json").send_body(body.clone());
                        actix_rt::spawn(async move {
                            if let Ok(mut response) = send.await {
                                let _ = response.body().await;
                            }
                        });
                    }
                    HttpResponse::Accepted().finish()
                }
            }))
        })
        .workers(workers)
        .listen(listener)?
        .run()
        .await
    })?;
    Ok(())
}

/// The relay in its own process (this binary's `relay` command), killed when dropped.
pub(crate) struct Relay {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Relay {
    /// Starts the relay sending to `to`; a durable one appends to a database in `durable`.
    pub(crate) fn start(to: &[String], durable: Option<&std::path::Path>) -> anyhow::Result<Relay> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["relay", "--bind", "127.0.0.1:0"]);
        if let Some(dir) = durable {
            command.arg("--durable").arg(dir);
        }
        for url in to {
            command.args(["--to", url]);
        }
        let mut child = command.stdout(Stdio::piped()).spawn()?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let line = lines.next().context("the relay exited before listening")??;
        let addr = line.trim_start_matches("listening on ").trim().parse()?;
        std::thread::spawn(move || for _ in lines {});
        Ok(Relay { child, addr })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
