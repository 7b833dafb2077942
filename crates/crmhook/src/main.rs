//! The `crmhook` binary: `serve` runs the dispatcher; `verify` checks a delivery's signature
//! for receivers. Operator commands talk to a running server over HTTP.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;

mod cli;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use crmhook_core::sign;
use crmhook_server::{Config, Flags, Server};

/// glibc's malloc serialises threads that free memory another thread allocated (sled frees its
/// pages on whichever thread retires them, the log writer allocates them): under load the
/// writer, sled's I/O threads and the arbiters waited on one arena lock. See
/// docs/PERFORMANCE.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "crmhook", version, about = "A self-hosted CRM webhook dispatcher")]
struct Cli {
    #[command(flatten)]
    conn: cli::Conn,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CRMHOOK_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the dispatcher: HTTP API, event log, delivery.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free port).
        #[arg(long)]
        bind: Option<String>,
        /// Where the event log lives (default ./data/db).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Configuration file (default: crmhook.toml in the working directory, if present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check a delivery's signature, as a receiver would.
    Verify {
        /// The target's secret (`whsec_…`).
        #[arg(long)]
        secret: String,
        /// A file holding the exact body that was received.
        #[arg(long)]
        body: PathBuf,
        /// The `X-Maia-Timestamp` (or `webhook-timestamp`) header.
        #[arg(long)]
        timestamp: String,
        /// The `X-Maia-Signature` (`sha256=…`) or `webhook-signature` (`v1,…`) header.
        #[arg(long)]
        signature: String,
        /// The `webhook-id` header; needed for `v1,` signatures.
        #[arg(long)]
        id: Option<String>,
    },
    /// A receiver for trying crmhook out: prints each delivery it gets and whether its
    /// signatures verify, and answers it.
    Receive {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        bind: String,
        /// The target's secret, to check signatures.
        #[arg(long)]
        secret: Option<String>,
        /// The HTTP status to answer with.
        #[arg(long, default_value_t = 200)]
        status: u16,
    },
    /// Read the event log: list, show, follow, redeliver.
    #[command(subcommand)]
    Events(cli::Events),
    /// Targets: list, show, create, delete, rotate-secret, enable, disable.
    #[command(subcommand)]
    Targets(cli::Targets),
    /// Subscriptions: list, show, create, delete.
    #[command(subcommand)]
    Subscriptions(cli::Subscriptions),
    /// A target's deliveries.
    #[command(subcommand)]
    Deliveries(cli::Deliveries),
    /// Queue a target's dead (or delivered) deliveries again.
    Replay {
        /// The target.
        #[arg(long)]
        target: String,
        /// dead or delivered.
        #[arg(long, default_value = "dead")]
        status: String,
        /// Only events received since this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
    },
    /// Offline access to a stopped server's data dir.
    #[command(subcommand)]
    Log(cli::Log),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Serve { bind, data_dir, config } => serve(Flags { bind, data_dir, config_file: config }),
        Command::Verify { secret, body, timestamp, signature, id } => {
            verify(&secret, &body, &timestamp, &signature, id.as_deref())
        }
        Command::Receive { bind, secret, status } => receive(&bind, secret, status),
        Command::Events(cmd) => cli::events(&cli.conn, cmd),
        Command::Targets(cmd) => cli::targets(&cli.conn, cmd),
        Command::Subscriptions(cmd) => cli::subscriptions(&cli.conn, cmd),
        Command::Deliveries(cmd) => cli::deliveries(&cli.conn, cmd),
        Command::Replay { target, status, since } => cli::replay(&cli.conn, &target, &status, since),
        Command::Log(cli::Log::Export { data_dir }) => cli::export(&data_dir),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CRMHOOK_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,actix_server=warn"));
    let ansi = std::env::var_os("NO_COLOR").is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(flags: Flags) -> anyhow::Result<ExitCode> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = Config::load(&flags, &env)?;
    let listener = TcpListener::bind(config.bind).with_context(|| format!("cannot listen on {}", config.bind))?;
    actix_rt::System::new().block_on(async move {
        let server = Server::start(listener, config).await?;
        let mut out = std::io::stdout().lock();
        for (name, token) in server.generated_tokens() {
            writeln!(out, "generated {name}: {token}  (kept in the data dir; shown only this once)")?;
        }
        writeln!(out, "crmhook {} listening on {}", env!("CARGO_PKG_VERSION"), server.local_addr())?;
        out.flush()?;
        drop(out);
        server.run_until(shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = match actix_rt::signal::unix::signal(actix_rt::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = actix_rt::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = actix_rt::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn verify(
    secret: &str,
    body: &PathBuf,
    timestamp: &str,
    signature: &str,
    id: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let body = std::fs::read(body).with_context(|| format!("cannot read {}", body.display()))?;
    if signature.contains("v1,") && id.is_none() && !signature.contains("sha256=") {
        anyhow::bail!("a v1 (Standard Webhooks) signature also needs --id, the webhook-id header");
    }
    if let (Ok(ts), Ok(now)) =
        (timestamp.trim().parse::<i64>(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH))
    {
        let age = now.as_secs() as i64 - ts;
        if age.abs() > 300 {
            eprintln!(
                "note: the timestamp is {age} s from now; receivers should refuse deliveries more than 5 minutes old"
            );
        }
    }
    if sign::verify(secret, id, timestamp.trim(), &body, signature) {
        println!("valid: the signature matches this secret, timestamp and body");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("invalid: the signature does not match this secret, timestamp and body");
        Ok(ExitCode::from(1))
    }
}

fn receive(bind: &str, secret: Option<String>, status: u16) -> anyhow::Result<ExitCode> {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let status = actix_web::http::StatusCode::from_u16(status).context("--status is not an HTTP status")?;
    let secret = web::Data::new(secret);
    let handler = move |req: HttpRequest, body: web::Bytes, secret: web::Data<Option<String>>| async move {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let mut out = format!(
            "{} {}  attempt {}  webhook-id {}\n",
            req.method(),
            req.uri(),
            header("x-crmhook-attempt"),
            header("webhook-id")
        );
        match secret.as_ref() {
            Some(secret) => {
                let ts = header("x-maia-timestamp");
                let maia = sign::verify(secret, None, &ts, &body, &header("x-maia-signature"));
                let id = header("webhook-id");
                let standard =
                    sign::verify(secret, Some(&id), &header("webhook-timestamp"), &body, &header("webhook-signature"));
                let word = |ok: bool| if ok { "valid" } else { "INVALID" };
                out.push_str(&format!("  X-Maia-Signature: {}  webhook-signature: {}\n", word(maia), word(standard)));
            }
            None => out.push_str("  (give --secret to check the signatures)\n"),
        }
        out.push_str(&format!("  {}\n", String::from_utf8_lossy(&body)));
        println!("{out}");
        HttpResponse::build(status).finish()
    };
    actix_rt::System::new().block_on(async move {
        let server = HttpServer::new(move || App::new().app_data(secret.clone()).default_service(web::to(handler)))
            .workers(1)
            .bind(bind)
            .with_context(|| format!("cannot listen on {bind}"))?;
        println!("receiving on http://{bind}/ (answering {status})");
        server.run().await?;
        Ok(ExitCode::SUCCESS)
    })
}
