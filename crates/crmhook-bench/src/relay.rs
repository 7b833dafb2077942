//! The bare relay: the floor of the whole system's CPU per event. An actix-web server with
//! crmhook's worker count that parses each POSTed JSON body, answers 202, and sends the body
//! with awc (one client per worker, as crmhook has one per arbiter) to each of its `--to` URLs
//! from the same worker. Nothing is stored, signed, matched or handed to another thread: what
//! it costs per event is two HTTP exchanges (one in, one out per target) and nothing else.
//! `crmhook-bench system` runs it in its own process beside crmhook's rows at fixed rates, so
//! that crmhook's CPU per event can be read against it (`cpu÷relay`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// Runs the relay on `bind` until killed, printing `listening on <addr>` once it listens.
pub fn serve(bind: &str, to: Vec<String>) -> anyhow::Result<()> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = std::net::TcpListener::bind(bind)?;
    println!("listening on {}", listener.local_addr()?);
    let workers = std::thread::available_parallelism().map(usize::from).unwrap_or(2);
    let to = std::sync::Arc::new(to);
    actix_rt::System::new().block_on(async move {
        HttpServer::new(move || {
            let client = awc::Client::builder().disable_redirects().timeout(Duration::from_secs(10)).finish();
            let to = to.clone();
            App::new().default_service(web::post().to(move |body: web::Bytes| {
                let (client, to) = (client.clone(), to.clone());
                async move {
                    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
                        return HttpResponse::BadRequest().finish();
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
    pub(crate) fn start(to: &[String]) -> anyhow::Result<Relay> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["relay", "--bind", "127.0.0.1:0"]);
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
