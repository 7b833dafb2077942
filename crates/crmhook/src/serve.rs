//! `crmhook serve`: starts the server on its listener and serves until SIGTERM or SIGINT. When
//! the disk refuses a write of the event log, the server stops and a stand-in answers `503` on
//! the same listener ([`crmhook_server::Ended::LogBroken`]); the data dir is opened again every
//! [`REOPEN_EVERY`] until a write goes through, and the server takes over again: space freed
//! on a full disk is all it takes (docs/RELIABILITY.md, "Disk trouble"). A start on a disk with
//! no room for the data dir ([`ServerError::no_room`]) waits the same way, behind the stand-in.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use crmhook_server::{Backend, Ended, Server, ServerError, Standin};
use crmhook_store::StoreError;
use tokio::sync::watch;

use crate::config::Flags;

/// How often a server stopped by a log it cannot write tries to open the data dir again.
const REOPEN_EVERY: Duration = Duration::from_secs(5);

/// The exit status when only a new process can open the log again (sysexits' `EX_TEMPFAIL`):
/// a supervisor's restart (`Restart=on-failure`) does it.
const EXIT_RESTART: u8 = 75;

/// `sched_batch` (docs/PERFORMANCE.md, "Scheduling"): the calling thread, and every thread it
/// starts after, runs under Linux's SCHED_BATCH. An event is handed from thread to thread (the
/// HTTP worker, the log writer, a delivery arbiter), and each thread that hands work on then
/// sleeps; under the default policy the woken thread may preempt the one that was about to
/// sleep on the same CPU, two switches for nothing. A SCHED_BATCH thread does not preempt on
/// waking: it runs when a CPU is free, or at the next tick.
#[cfg(target_os = "linux")]
fn sched_batch() {
    if scheduler::set_self_policy(scheduler::Policy::Batch, 0).is_err() {
        tracing::warn!("could not run under SCHED_BATCH (sched_batch); the threads keep the default policy");
    }
}

#[cfg(not(target_os = "linux"))]
fn sched_batch() {}

pub(crate) fn serve(flags: Flags) -> anyhow::Result<ExitCode> {
    // Everything the server creates (the data dir, sled's files, the key and tokens files) is
    // this user's alone: 0700 directories, 0600 files (docs/SECURITY.md).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    catch_sighup_from_now();
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = crate::config::load(&flags, &env)?;
    for (var, setting) in crate::config::misspelt_variables(&env) {
        tracing::warn!("{var} is set, but it is no setting (did you mean {setting}?): it is ignored");
    }
    // Before the port and a cluster's join: a second server on this data dir exits here.
    let lock = crate::dir_lock::lock(&config.data_dir)?;
    let served = serve_locked(config);
    if served.is_err() {
        // A refused start (the port in use, a data dir refused) leaves no lock file behind, nor a
        // data dir made only to hold it.
        lock.take_back();
    }
    served
}

/// [`serve`] once the data dir's lock is held.
fn serve_locked(config: crmhook_server::Config) -> anyhow::Result<ExitCode> {
    // Before any thread starts: they all inherit it.
    if config.sched_batch {
        sched_batch();
    }
    // Cluster mode joins before the actix system starts (the NATS client has a runtime of its
    // own; joining blocks until the servers answer).
    let cluster = crate::cluster::ClusterBackend::connect(&config)?;
    // A node's store is a copy of the replicated log: a broken one is not opened again in the
    // same process (the node leaves at its stop; a restart joins again).
    let reopens = cluster.is_none();
    let backend: Arc<dyn Backend> = match cluster {
        Some(cluster) => Arc::new(cluster),
        None => Arc::new(crmhook_server::Embedded),
    };
    // Bound only once the node has joined, and listening only once the server starts
    // (`Server::start_with` makes it listen): a join can take seconds (a JetStream leader being
    // elected) and a node's catch-up with the log tens of seconds, and a listening socket would
    // hold a CRM's connections unanswered in its backlog meanwhile, where refused ones send the
    // CRM to the next node at once. A server already listening on the port stops this one here;
    // two starting at once on one port (`SO_REUSEADDR`, as `TcpListener::bind` sets, lets both
    // bind) leave the second to fail when it starts listening.
    let listener = bound(config.bind).with_context(|| format!("cannot listen on {}", config.bind))?;
    actix_rt::System::new().block_on(async move {
        // The signals are listened for before the line that says the server is up: a SIGTERM or
        // SIGHUP sent as soon as it is read must not meet the default action (the process killed
        // by the signal, not a graceful stop).
        let shutdown = shutdown_signal();
        // Before the certificate is read: a SIGHUP from here on reloads it once the server serves.
        let hup = actix_rt::signal::unix::signal(actix_rt::signal::unix::SignalKind::hangup());
        // Before the store's first write: a write past a file-size limit then fails with EFBIG,
        // which the server meets as it meets a full disk.
        catch_file_size_signal();
        // The server holds the listener; it gives it back when its log breaks (`Ended::LogBroken`).
        // A copy is kept only until the start is known: a server that serves must be the only
        // holder, or its graceful stop would leave the socket open (new clients held unanswered).
        let spare = listener.try_clone().context("cannot copy the listener")?;
        let addr = spare.local_addr()?;
        let mut now = match Server::start_with(listener, config.clone(), backend.clone()).await {
            Ok(server) => {
                drop(spare);
                Now::Serving(Box::new(server))
            }
            Err(why) if reopens && why.no_room() => {
                // A full disk at the start is what it is when it fills later: the stand-in answers
                // 503 until the log can be opened and written (docs/RELIABILITY.md).
                tracing::error!(
                    error = %why,
                    "no room on the disk for the event log: every request is answered 503 until there is; \
                     trying every {} s",
                    REOPEN_EVERY.as_secs()
                );
                let standin = Standin::start_for(spare.try_clone()?, &config)?;
                Now::Waiting(Some(standin), spare)
            }
            Err(why) => return Err(why.into()),
        };
        // SIGHUP reloads the certificate of the server that serves (not the stand-in's).
        let reload = Arc::new(Mutex::new(match &now {
            Now::Serving(server) => server.tls_reload(),
            Now::Waiting(..) => None,
        }));
        // Listened for with TLS or without: SIGHUP's default action ends the process, and the
        // unit's `ExecReload` sends it.
        reload_on_sighup(hup, reload.clone());
        if let Now::Serving(server) = &now {
            show_tokens(server)?;
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "crmhook {} listening on {addr}", env!("CARGO_PKG_VERSION"))?;
        out.flush()?;
        drop(out);
        loop {
            let (standin, listener) = match now {
                Now::Waiting(standin, listener) => (standin, listener),
                Now::Serving(server) => match server.serve_until(stopped(&shutdown)).await? {
                    Ended::Shutdown => return Ok(ExitCode::SUCCESS),
                    Ended::LogBroken { standin, listener } => (standin, listener),
                },
            };
            let reopened = if reopens {
                reopen(listener, &config, &backend, &shutdown).await
            } else {
                tracing::error!(
                    "a cluster node's log cannot be opened again in the same process: exiting, to be restarted"
                );
                Reopened::Never
            };
            if let Some(standin) = standin {
                standin.stop().await;
            }
            match reopened {
                Reopened::Open(again) => {
                    tracing::info!("the event log takes writes again: serving");
                    // A data dir that a full disk kept from being created has its tokens now.
                    if !again.generated_tokens().is_empty() {
                        show_tokens(&again)?;
                    }
                    *reload.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = again.tls_reload();
                    now = Now::Serving(again);
                }
                Reopened::Shutdown => return Ok(ExitCode::SUCCESS),
                Reopened::Never => return Ok(ExitCode::from(EXIT_RESTART)),
            }
        }
    })
}

/// What answers on the listener.
enum Now {
    Serving(Box<Server>),
    /// The stand-in (`None` if it could not start), while the log cannot be written.
    Waiting(Option<Standin>, TcpListener),
}

/// Shows the tokens a server generated (the first start of its data dir), and where they are
/// kept.
fn show_tokens(server: &Server) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    // Printed once, as the contract says, wherever the output goes but the journal: systemd's
    // journal keeps what a service prints for everyone who may read it (issue 14), where the
    // tokens file is readable by the service's user only.
    let to_journal = is_the_journal(&out);
    let generated = server.generated_tokens();
    for (name, token) in generated {
        if to_journal {
            writeln!(out, "generated {name} (not shown: the output goes to the journal)")?;
        } else {
            writeln!(out, "generated {name}: {token}  (kept in the data dir; shown only this once)")?;
        }
    }
    if let Some(file) = server.tokens_file() {
        // On a later start the file may name tokens rotated since (it is never read back).
        let later =
            if generated.is_empty() { "; as the first start made them: a key rotated since is not in it" } else { "" };
        writeln!(out, "the generated tokens are in {} (readable by this user only{later})", file.display())?;
    }
    out.flush()?;
    Ok(())
}

/// Whether `out` is systemd's journal: the stream `JOURNAL_STREAM` names (`<device>:<inode>`,
/// set by systemd for a service whose output it connects to the journal).
fn is_the_journal(out: &impl std::os::fd::AsFd) -> bool {
    let Some(named) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Ok(stat) = rustix::fs::fstat(out) else { return false };
    named.to_str() == Some(format!("{}:{}", stat.st_dev, stat.st_ino).as_str())
}

/// What came of opening the data dir again.
enum Reopened {
    Open(Box<Server>),
    /// SIGTERM or SIGINT came meanwhile.
    Shutdown,
    /// Only a new process can open it: a cluster node's, or a data dir the stopped store still
    /// holds.
    Never,
}

/// Opens the data dir again every [`REOPEN_EVERY`] (the stand-in answers meanwhile) until a
/// server starts there and its log takes a write; the listener then is the server's alone.
async fn reopen(
    listener: TcpListener,
    config: &crmhook_server::Config,
    backend: &Arc<dyn Backend>,
    shutdown: &watch::Receiver<bool>,
) -> Reopened {
    let broken_at = Instant::now();
    let mut tries = 0u32;
    loop {
        tokio::select! {
            () = stopped(shutdown) => return Reopened::Shutdown,
            () = tokio::time::sleep(REOPEN_EVERY) => {}
        }
        tries += 1;
        let why = match listener.try_clone() {
            Err(e) => ServerError::Http(e),
            Ok(listener) => match Server::start_with(listener, config.clone(), backend.clone()).await {
                Err(e) => e,
                Ok(server) => match server.probe().await {
                    Ok(()) => return Reopened::Open(Box::new(server)),
                    Err(e) => {
                        if let Err(stop) = server.stop_beside_standin().await {
                            tracing::warn!(error = %stop, "stopping the server opened again");
                        }
                        e
                    }
                },
            },
        };
        // How long the data dir may stay locked by the stopped server's store (its log writer
        // stuck in a flush that never ends) before the process gives up and exits with
        // [`EXIT_RESTART`].
        let locked_for_at_most = Duration::from_secs(config.locked_restart_after_s);
        let locked = matches!(&why, ServerError::Open { reason: StoreError::InUse, .. });
        if locked && broken_at.elapsed() >= locked_for_at_most {
            tracing::error!(
                "the data dir has been in use for {} s (by the stopped store, whose log writer does not end, or \
                 by another process): exiting, so that a restart opens it (exit status {EXIT_RESTART}; \
                 locked_restart_after_s)",
                locked_for_at_most.as_secs()
            );
            return Reopened::Never;
        }
        // The first few, then one a minute: a full disk can last.
        if tries <= 3 || tries.is_multiple_of(12) {
            tracing::warn!(error = %why, tries, "the event log cannot be written yet; trying again every {} s", REOPEN_EVERY.as_secs());
        }
    }
}

/// From now on a SIGHUP does not end the process (its default action): a reload asked for while
/// the server starts (`systemctl reload` right after a start: reading the configuration,
/// joining a cluster, opening a large log) is met by the files the start reads, and one asked
/// once it serves by [`reload_on_sighup`]. Until 2026-12-07 the signal was caught only once the
/// server served, and one sent before killed it. The handler tokio installs is the process's
/// and stays once its runtime is gone (signals nobody listens for are dropped).
fn catch_sighup_from_now() {
    use actix_rt::signal::unix::{signal, SignalKind};
    let caught = tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(|e| e.to_string()).and_then(
        |runtime| runtime.block_on(async { signal(SignalKind::hangup()).map(drop).map_err(|e| e.to_string()) }),
    );
    if let Err(e) = caught {
        tracing::warn!(error = %e, "cannot catch SIGHUP yet: one sent while the server starts ends it");
    }
}

/// Reloads the listener's certificate and key from their files on every SIGHUP `hup` hears
/// (one that came before this call is met at once), into whichever server serves now.
fn reload_on_sighup(
    hup: std::io::Result<actix_rt::signal::unix::Signal>,
    reload: Arc<Mutex<Option<crmhook_server::tls::TlsReload>>>,
) {
    let mut hup = match hup {
        Ok(hup) => hup,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP: the certificate is not reloaded");
            return;
        }
    };
    actix_rt::spawn(async move {
        while hup.recv().await.is_some() {
            let current = reload.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            let Some(current) = current else {
                tracing::info!("SIGHUP: nothing to reload (no TLS on the listener, or the server waits for its log)");
                continue;
            };
            match current.reload() {
                Ok(validity) => {
                    let until = validity.map(|v| crmhook_core::time::rfc3339(v.not_after_ms));
                    tracing::info!(
                        valid_until = until.as_deref().unwrap_or("unknown"),
                        "SIGHUP: TLS certificate reloaded"
                    );
                    if let Some(trouble) = validity.and_then(|v| v.trouble(crmhook_core::time::now_ms())) {
                        tracing::warn!("SIGHUP: {trouble}");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: the TLS certificate was not reloaded; the old one is served")
                }
            }
        }
    });
}

/// SIGXFSZ, sent for a write past the file-size limit (`ulimit -f`, systemd's `LimitFSIZE`),
/// ends the process by default, before anything is logged or answered. Caught instead, the
/// write fails with EFBIG, and the server does what it does on a full disk (answers 503, the
/// stand-in, resumes once a write goes through: docs/RELIABILITY.md, "Disk trouble").
/// A socket bound to `addr` but not listening yet (a connection to it is refused), with the
/// options `TcpListener::bind` sets.
fn bound(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn catch_file_size_signal() {
    use actix_rt::signal::unix::{signal, SignalKind};
    match signal(SignalKind::from_raw(rustix::process::Signal::XFSZ.as_raw())) {
        Ok(mut xfsz) => {
            actix_rt::spawn(async move {
                let mut seen = false;
                while xfsz.recv().await.is_some() {
                    if !std::mem::replace(&mut seen, true) {
                        tracing::warn!("SIGXFSZ: a write went past the file-size limit (ulimit -f, LimitFSIZE)");
                    }
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot catch SIGXFSZ: a file-size limit would end the process"),
    }
}

/// Becomes `true` on SIGINT or SIGTERM, both listened for from this call on (not from the first
/// poll).
fn shutdown_signal() -> watch::Receiver<bool> {
    use actix_rt::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    let (tx, rx) = watch::channel(false);
    actix_rt::spawn(async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            (term, int) => {
                if let Some(e) = term.as_ref().err().or(int.as_ref().err()) {
                    tracing::error!(error = %e, "cannot listen for SIGTERM or SIGINT");
                }
                let _ = actix_rt::signal::ctrl_c().await;
            }
        }
        let _ = tx.send(true);
    });
    rx
}

/// Resolves once the shutdown signal came.
async fn stopped(shutdown: &watch::Receiver<bool>) {
    let mut shutdown = shutdown.clone();
    if shutdown.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port bound refuses connections until the server starts and makes it listen: a client
    /// is sent elsewhere rather than held unanswered while a cluster node catches up with the
    /// log. Once it listens, no other server binds it.
    #[test]
    fn a_port_bound_refuses_connections_until_the_server_listens() {
        let listener = bound("127.0.0.1:0".parse().expect("addr")).expect("bound");
        let addr = listener.local_addr().expect("addr");
        let refused = std::net::TcpStream::connect(addr).expect_err("not listening yet");
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        crmhook_server::listening(&listener).expect("listen");
        std::net::TcpStream::connect(addr).expect("listening");
        assert!(bound(addr).is_err(), "the port is taken");
    }
}
