//! The `crmhook` binary: `serve` runs the dispatcher; `verify` checks a delivery's signature
//! for receivers. Operator commands talk to a running server over HTTP.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// `println!` for the commands, without its panic when the output cannot be written: a
/// reader gone (`crmhook events list | head`) ends the command quietly, as it ends `cat`. What
/// it prints goes through `cli::visible_lines`: no control character but line feeds and tabs
/// reaches the terminal, whatever a CRM or a receiver put in the text.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say_line(format_args!($($arg)*))
    };
}

/// Writes one line of a command's output (see `say!`); a failed write ends the process.
fn say_line(line: std::fmt::Arguments<'_>) {
    let line = line.to_string();
    let line = cli::visible_lines(&line);
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.write_all(b"\n")) {
        std::process::exit(match e.kind() {
            std::io::ErrorKind::BrokenPipe => 141,
            _ => {
                eprintln!("error: cannot write the output: {e}");
                2
            }
        });
    }
}

mod cli;
mod cli_cluster;
mod cli_conn;
mod cli_edit;
mod cli_events;
mod cli_keys;
mod cli_sources;
mod cli_subscriptions;
mod cli_text;
mod cluster;
mod config;
mod dir_lock;
mod logging;
mod serve;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use crmhook_core::sign;

use crate::config::Flags;

/// The client's options (`--url`, `--token`, `--json`, `--ca-file`) are global, so that they go
/// before or after an operator's command; given on the command line to a command that talks to
/// no server they would be taken and ignored (`serve --token X` set no token): answers that
/// command and the option, to refuse them.
fn misplaced_client_flag(matches: &ArgMatches) -> Option<(&'static str, &'static str)> {
    let (name, sub) = matches.subcommand()?;
    let (command, sub) = match name {
        "serve" => ("serve", sub),
        "verify" => ("verify", sub),
        "receive" => ("receive", sub),
        "cluster" => ("cluster", sub.subcommand().map_or(sub, |(_, m)| m)),
        "log" => ("log export", sub.subcommand().map_or(sub, |(_, m)| m)),
        _ => return None,
    };
    let flag = ["url", "token", "json", "ca_file"]
        .into_iter()
        .find(|id| sub.value_source(id) == Some(ValueSource::CommandLine))?;
    Some((command, flag))
}

/// glibc's malloc serialises threads that free memory another thread allocated (sled frees its
/// pages on whichever thread retires them, the log writer allocates them): under load the
/// writer, sled's I/O threads and the arbiters waited on one arena lock. See
/// docs/PERFORMANCE.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "crmhook", version, about = "A self-hosted CRM webhook dispatcher")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CRMHOOK_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(flatten)]
    conn: cli::Conn,
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
        /// Cluster mode: the NATS JetStream servers, comma-separated (nats://10.0.0.1:4222,…);
        /// the log is their stream, this node's data dir a copy of it (docs/CLUSTER.md).
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Check a delivery's signature, as a receiver would: `X-Maia-Signature` (MAIA's scheme:
    /// HMAC-SHA256 of the body only) or `webhook-signature` (Standard Webhooks, `v1,…`).
    Verify {
        /// The target's secret (`whsec_…`).
        #[arg(long)]
        secret: String,
        /// A file holding the exact body that was received.
        #[arg(long)]
        body: PathBuf,
        /// The `webhook-timestamp` header, needed for a `webhook-signature`. The
        /// `X-Maia-Timestamp` may be given with an `X-Maia-Signature`, but MAIA does not sign it.
        #[arg(long)]
        timestamp: Option<String>,
        /// The `X-Maia-Signature` (64 hex digits) or `webhook-signature` (`v1,…`) header.
        #[arg(long)]
        signature: String,
        /// The `webhook-id` header; needed for a `webhook-signature`.
        #[arg(long)]
        id: Option<String>,
    },
    /// A receiver for trying crmhook out: prints each delivery it gets, its signature headers
    /// and whether they verify, saves the body for `crmhook verify`, and answers it.
    Receive {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:9000")]
        bind: String,
        /// The target's secret, to check signatures.
        #[arg(long)]
        secret: Option<String>,
        /// The HTTP status to answer with.
        #[arg(long, default_value_t = 200)]
        status: u16,
        /// Where the last body received is saved (overwritten by each request).
        #[arg(long, default_value = "./crmhook-last-body.json")]
        save: PathBuf,
    },
    /// Read the event log: list, show, tail, redeliver.
    #[command(subcommand)]
    Events(cli_events::Events),
    /// Targets: list, show, create, update, delete, rotate-secret, enable, disable, stats, test.
    #[command(subcommand)]
    Targets(cli::Targets),
    /// Subscriptions: list, show, create, update, preview, delete.
    #[command(subcommand)]
    Subscriptions(cli_subscriptions::Subscriptions),
    /// A target's deliveries.
    #[command(subcommand)]
    Deliveries(cli::Deliveries),
    /// Queue a target's dead (or delivered) deliveries again, or send its retries waiting now.
    Replay {
        /// The target.
        #[arg(long)]
        target: String,
        /// dead, delivered, or pending: the deliveries waiting for a retry are attempted now
        /// (for a receiver that is back before its next retries are due).
        #[arg(long, default_value = "dead")]
        status: String,
        /// Only events received since this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only events received before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
    },
    /// Sources, where the CRMs post: list, show, create, update, enable, disable, delete,
    /// rotate-key.
    #[command(subcommand)]
    Sources(cli_sources::Sources),
    /// What sources posted that was not an event: list, show, retry.
    #[command(subcommand)]
    Rejected(cli_sources::Rejected),
    /// The audit trail: admin changes (who, from where, what), oldest first (or `--newest`).
    Audit {
        /// Start after this cursor (the `more: --after …` of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// At most this many (1 to 1000; the server's default is 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Newest first (then `--after` pages to older entries).
        #[arg(long)]
        newest: bool,
    },
    /// API keys and their roles (admin, operator, ingest): list, show, create, rotate, revoke.
    #[command(subcommand)]
    Keys(cli_keys::Keys),
    /// Offline access to a stopped server's data dir.
    #[command(subcommand)]
    Log(cli::Log),
    /// Cluster mode, offline: import a stopped single node's data dir into a new cluster.
    #[command(subcommand)]
    Cluster(cli_cluster::Cluster),
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some((command, flag)) = misplaced_client_flag(&matches) {
        let hint = match flag {
            "token" if command == "serve" => {
                " (the server's admin token is the `admin_token` key: CRMHOOK_ADMIN_TOKEN or crmhook.toml)"
            }
            _ => "",
        };
        eprintln!(
            "error: `crmhook {command}` does not take --{}: it is an option of the commands that talk to a \
             server (events, targets, subscriptions, …){hint}",
            flag.replace('_', "-")
        );
        return ExitCode::from(2);
    }
    logging::init(matches!(cli.log_format, LogFormat::Json));
    let result = match cli.command {
        Command::Serve { bind, data_dir, config, cluster } => {
            serve::serve(Flags { bind, data_dir, config_file: config, cluster })
        }
        Command::Verify { secret, body, timestamp, signature, id } => {
            verify(&secret, &body, timestamp.as_deref(), &signature, id.as_deref())
        }
        Command::Receive { bind, secret, status, save } => receive(&bind, secret, status, save),
        Command::Events(cmd) => cli_events::events(&cli.conn, cmd),
        Command::Targets(cmd) => cli::targets(&cli.conn, cmd),
        Command::Subscriptions(cmd) => cli_subscriptions::subscriptions(&cli.conn, cmd),
        Command::Deliveries(cmd) => cli::deliveries(&cli.conn, cmd),
        Command::Sources(cmd) => cli_sources::sources(&cli.conn, cmd),
        Command::Rejected(cmd) => cli_sources::rejected(&cli.conn, cmd),
        Command::Replay { target, status, since, until } => cli::replay(&cli.conn, &target, &status, since, until),
        Command::Audit { after, limit, newest } => cli_sources::audit(&cli.conn, after, limit, newest),
        Command::Keys(cmd) => cli_keys::keys(&cli.conn, cmd),
        Command::Log(cli::Log::Export { data_dir }) => cli::export(&data_dir),
        Command::Cluster(cmd) => cli_cluster::cluster(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // The server's problem text may quote what a client sent.
            eprintln!("error: {}", cli::visible_lines(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

/// Whether a signature header is Standard Webhooks' (`v1,…` entries) rather than MAIA's, as
/// `sign::verify` decides it.
fn is_standard(signature: &str) -> bool {
    signature.split(' ').map(str::trim).find(|e| !e.is_empty()).is_some_and(|e| e.starts_with("v1,"))
}

fn verify(
    secret: &str,
    body: &PathBuf,
    timestamp: Option<&str>,
    signature: &str,
    id: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let body = std::fs::read(body).with_context(|| format!("cannot read {}", body.display()))?;
    let signature = signature.trim();
    if !is_standard(signature) {
        // MAIA's scheme: the body alone is signed.
        if signature.starts_with("sha256=") {
            eprintln!("note: MAIA sends X-Maia-Signature as the bare hex digits, without a `sha256=` prefix");
        }
        if timestamp.is_some() {
            eprintln!("note: MAIA's scheme signs the body only: the timestamp is not part of X-Maia-Signature");
        }
        return Ok(if sign::verify(secret, None, "", &body, signature) {
            say!("valid: X-Maia-Signature (MAIA: HMAC-SHA256 of the body) matches this secret and body");
            ExitCode::SUCCESS
        } else {
            say!("invalid: X-Maia-Signature (MAIA: HMAC-SHA256 of the body) does not match this secret and body");
            ExitCode::from(1)
        });
    }
    let Some(id) = id else {
        anyhow::bail!("a webhook-signature (Standard Webhooks, `v1,…`) also needs --id, the webhook-id header");
    };
    let Some(timestamp) = timestamp.map(str::trim) else {
        anyhow::bail!(
            "a webhook-signature (Standard Webhooks, `v1,…`) also needs --timestamp, the webhook-timestamp header"
        );
    };
    if sign::standard_key(secret).is_none() {
        eprintln!("note: the secret is not `whsec_<base64>`: Standard Webhooks' scheme cannot use it");
    }
    // The header is whole seconds since 1970: anything else is a mistake in the command, not a
    // signature that does not match.
    let Ok(ts) = timestamp.parse::<i64>() else {
        anyhow::bail!(
            "--timestamp {timestamp:?} is not a webhook-timestamp: whole seconds since 1970, like 1700000000"
        );
    };
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        if let Some(note) = timestamp_note(ts, now.as_secs() as i64) {
            eprintln!("note: {note}");
        }
    }
    if sign::verify(secret, Some(id), timestamp, &body, signature) {
        say!(
            "valid: webhook-signature (Standard Webhooks: <webhook-id>.<timestamp>.<body>) matches this secret, id, timestamp and body"
        );
        Ok(ExitCode::SUCCESS)
    } else {
        say!(
            "invalid: webhook-signature (Standard Webhooks: <webhook-id>.<timestamp>.<body>) does not match this secret, id, timestamp and body"
        );
        Ok(ExitCode::from(1))
    }
}

/// What to say of a webhook-timestamp `ts` more than 5 minutes from `now` (both in seconds).
fn timestamp_note(ts: i64, now: i64) -> Option<String> {
    let age = now.saturating_sub(ts);
    if age > 300 {
        Some(format!("the timestamp is {age} s ago; receivers should refuse deliveries more than 5 minutes old"))
    } else if age < -300 {
        Some(format!(
            "the timestamp is {} s in the future; receivers should refuse timestamps more than 5 minutes ahead of their clock",
            age.unsigned_abs()
        ))
    } else {
        None
    }
}

/// `value` as one shell word (single-quoted unless it is plainly safe).
pub(crate) fn shell_word(value: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./:=,+@%".contains(c);
    if !value.is_empty() && value.chars().all(safe) {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}

/// What `crmhook receive` was told.
struct Receiving {
    secret: Option<String>,
    save: PathBuf,
}

/// What `crmhook receive` prints about one request: what the sender put in its line and headers
/// with every control character escaped (`cli::visible`), its body with all but line feeds and
/// tabs escaped.
fn describe(req: &actix_web::HttpRequest, body: &[u8], receiving: &Receiving) -> String {
    use std::fmt::Write as _;
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let shown =
        |v: &Option<String>| v.as_deref().map_or_else(|| "(absent)".to_owned(), |v| cli::visible(v).into_owned());
    let (maia_ts, maia_sig) = (header("x-maia-timestamp"), header("x-maia-signature"));
    let (std_id, std_ts, std_sig) = (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}  attempt {}  webhook-id {}",
        cli::visible(req.method().as_str()),
        cli::visible(&req.uri().to_string()),
        cli::visible(&header("x-crmhook-attempt").unwrap_or_else(|| "-".to_owned())),
        cli::visible(std_id.as_deref().unwrap_or("-"))
    );
    let verdict = |sig: &Option<String>, ok: &dyn Fn(&str, &str) -> bool| match (sig, &receiving.secret) {
        (None, _) => String::new(),
        (Some(_), None) => "  (give --secret to check it)".to_owned(),
        (Some(sig), Some(secret)) => if ok(secret, sig) { "  valid" } else { "  INVALID" }.to_owned(),
    };
    let maia_ok = |secret: &str, sig: &str| sign::verify(secret, None, maia_ts.as_deref().unwrap_or(""), body, sig);
    let std_ok =
        |secret: &str, sig: &str| sign::verify(secret, std_id.as_deref(), std_ts.as_deref().unwrap_or(""), body, sig);
    let _ = writeln!(out, "  X-Maia-Timestamp: {}", shown(&maia_ts));
    let _ = writeln!(out, "  X-Maia-Signature: {}{}", shown(&maia_sig), verdict(&maia_sig, &maia_ok));
    let _ = writeln!(out, "  webhook-timestamp: {}", shown(&std_ts));
    let _ = writeln!(out, "  webhook-signature: {}{}", shown(&std_sig), verdict(&std_sig, &std_ok));
    let saved = match std::fs::write(&receiving.save, body) {
        Ok(()) => {
            let path = std::fs::canonicalize(&receiving.save).unwrap_or_else(|_| receiving.save.clone());
            let _ = writeln!(out, "  body ({} bytes) saved to {}", body.len(), path.display());
            Some(path)
        }
        Err(e) => {
            let _ = writeln!(out, "  body ({} bytes) not saved: {}: {e}", body.len(), receiving.save.display());
            None
        }
    };
    let _ = writeln!(out, "  {}", cli::visible_lines(&String::from_utf8_lossy(body)));
    if let Some(path) = saved {
        let secret = shell_word(receiving.secret.as_deref().unwrap_or("whsec_…"));
        let file = shell_word(&path.to_string_lossy());
        let mut lines = Vec::new();
        if let Some(sig) = &maia_sig {
            let mut line = format!("crmhook verify --secret {secret} --body {file}");
            if let Some(ts) = &maia_ts {
                line.push_str(&format!(" --timestamp {}", shell_word(ts)));
            }
            line.push_str(&format!(" --signature {}", shell_word(sig)));
            lines.push(line);
        }
        if let (Some(sig), Some(ts), Some(id)) = (&std_sig, &std_ts, &std_id) {
            lines.push(format!(
                "crmhook verify --secret {secret} --body {file} --timestamp {} --signature {} --id {}",
                shell_word(ts),
                shell_word(sig),
                shell_word(id)
            ));
        }
        if !lines.is_empty() {
            let _ = writeln!(out, "  check it by hand:");
            for line in lines {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    out
}

fn receive(bind: &str, secret: Option<String>, status: u16, save: PathBuf) -> anyhow::Result<ExitCode> {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let status = actix_web::http::StatusCode::from_u16(status).context("--status is not an HTTP status")?;
    let receiving = web::Data::new(Receiving { secret, save });
    let handler = move |req: HttpRequest, body: web::Bytes, receiving: web::Data<Receiving>| async move {
        let out = describe(&req, &body, &receiving);
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", cli::visible_lines(&out));
        let _ = stdout.flush();
        HttpResponse::build(status).finish()
    };
    actix_rt::System::new().block_on(async move {
        let server = HttpServer::new(move || App::new().app_data(receiving.clone()).default_service(web::to(handler)))
            .workers(1)
            .bind(bind)
            .with_context(|| format!("cannot listen on {bind}"))?;
        for addr in server.addrs() {
            say!("receiving on http://{addr}/ (answering {status})");
        }
        server.run().await?;
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timestamp_note_says_ago_or_in_the_future() {
        let now = 1_700_000_000;
        assert!(timestamp_note(now - 3600, now).is_some_and(|n| n.starts_with("the timestamp is 3600 s ago")));
        assert!(timestamp_note(now + 3600, now).is_some_and(|n| n.starts_with("the timestamp is 3600 s in the future")));
        assert_eq!(timestamp_note(now - 300, now), None);
        assert_eq!(timestamp_note(now + 300, now), None);
    }

    /// A command's help that lists its subcommands (`Targets: list, show, …`) lists them all,
    /// by their names (`events` said `follow` for `tail` until 2026-12-07).
    #[test]
    fn each_command_lists_its_own_subcommands() {
        let cli = Cli::command();
        let mut checked = 0;
        for command in cli.get_subcommands().filter(|c| c.has_subcommands()) {
            let about = command.get_about().map(ToString::to_string).unwrap_or_default();
            let Some((_, list)) = about.rsplit_once(": ") else { continue };
            let mut listed: Vec<&str> = list.trim_end_matches('.').split(',').map(str::trim).collect();
            if listed.iter().any(|name| name.contains(' ')) {
                continue; // words, not a list of names (`cluster`'s)
            }
            let mut own: Vec<&str> =
                command.get_subcommands().map(clap::Command::get_name).filter(|n| *n != "help").collect();
            listed.sort_unstable();
            own.sort_unstable();
            assert_eq!(listed, own, "`crmhook {}`'s help: {about}", command.get_name());
            checked += 1;
        }
        assert!(checked >= 6, "only {checked} commands list their subcommands");
    }
}
