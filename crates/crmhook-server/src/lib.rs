//! crmhook's server, the edge: the HTTP API (actix-web) with its authentication and its one
//! mapping of errors to problem+json, the sources' ingest URLs, the SSE stream, the console and
//! the `/metrics` exposition. Dispatch (the router, the target actors, delivery, the address
//! guard) is `crmhook-dispatch`; [`Server::start`] opens the store, makes the handles the two
//! share (the counters, the attempt feed, the guard), starts dispatch and then the HTTP server.
//!
//! The entry point takes its listener and its shutdown signal as arguments, so tests start the
//! real server on port 0 and stop it when they like:
//!
//! ```no_run
//! # async fn run() -> Result<(), crmhook_server::ServerError> {
//! let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! let config = crmhook_server::Config::default();
//! let server = crmhook_server::Server::start(listener, config).await?;
//! println!("listening on {}", server.local_addr());
//! server.run_until(std::future::pending::<()>()).await
//! # }
//! ```
//!
//! Everything here must run inside an actix `System`.

pub mod api;
pub mod at_rest;
pub mod backend;
pub mod config;
pub mod error;
pub mod keys;
mod per_key;
pub mod prometheus;
mod retention;
pub mod sources;
pub mod standin;
pub mod stream;
pub mod tls;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::middleware::{DefaultHeaders, ErrorHandlers};
use actix_web::{web, App, HttpServer};
use crmhook_dispatch::feed::Feed;
use crmhook_dispatch::guard::Guard;
use crmhook_dispatch::metrics::Metrics;
use crmhook_dispatch::router::{RouterConfig, RouterHandle};
use crmhook_dispatch::Ownership;
use crmhook_store::{LogHandle, StoreError};

pub use backend::{Backend, Embedded};
pub use config::Config;
pub use standin::Standin;

use crate::api::AppState;
use crate::retention::Compactor;

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    // Not `source`: thiserror would make it the error's source too, and a report of the chain
    // (`{:#}`) would say the reason twice.
    #[error("cannot open the data dir {dir}: {reason}")]
    Open { dir: String, reason: StoreError },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("HTTP server: {0}")]
    Http(#[from] std::io::Error),
    /// The data dir's permissions, or the key that seals its secrets (`at_rest`).
    #[error("{0}")]
    AtRest(String),
    /// The data dir or its key file could not be written for want of room (`at_rest`).
    #[error("{0}")]
    NoRoom(String),
    /// The API keys could not be loaded, or a configured token was retired (`keys`).
    #[error(transparent)]
    Keys(#[from] keys::KeysError),
}

impl ServerError {
    /// The data dir could not be opened for want of room (a full disk or quota, a file-size
    /// limit): freeing space is all it takes to start, so `crmhook serve` waits for it behind a
    /// [`Standin`] rather than exit.
    pub fn no_room(&self) -> bool {
        matches!(
            self,
            ServerError::NoRoom(_)
                | ServerError::Open { reason: StoreError::NoSpace(_), .. }
                | ServerError::Store(StoreError::NoSpace(_))
                | ServerError::Keys(keys::KeysError::Store(StoreError::NoSpace(_)))
        )
    }
}

/// Why [`Server::serve_until`] ended.
pub enum Ended {
    /// The shutdown signal came; the server stopped gracefully.
    Shutdown,
    /// The disk refused a write of the log, which this process cannot write again (sled 0.34
    /// keeps the error): the server stopped gracefully, and the [`Standin`] (`None` if it
    /// could not start) answers `503` on `listener` until a new server is started there
    /// ([`Server::start_with`] again, then [`Server::probe`]) and the stand-in stopped.
    LogBroken { standin: Option<Standin>, listener: TcpListener },
}

/// What a serving server watches, and how it stops.
#[derive(Clone, Copy, PartialEq)]
enum Watch {
    /// The shutdown signal only.
    Shutdown,
    /// The signal, and a log the disk refused a write ([`Ended::LogBroken`]).
    AlsoBroken,
    /// The signal; a stand-in answers on the listener beside this server, which hands the
    /// connections over to it before it stops.
    BesideStandin,
}

/// How long a graceful stop waits for attempts in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long a graceful stop waits for the open streams to end before it stops the HTTP server
/// (which then waits for their connections, up to its own timeout).
const STREAMS_GRACE: Duration = Duration::from_secs(1);

/// Arbiters (threads) that run target actors.
const DELIVERY_ARBITERS: usize = 2;

/// TLS handshakes under way a worker holds at most: actix-server's cap on its connections.
const MAX_HANDSHAKES_PER_WORKER: usize = 25_000;

/// The file, in the data dir, where the tokens generated on the first start are written (mode
/// 0600), so that a person who missed the first start's output can find them again.
pub const TOKENS_FILE: &str = "crmhook-tokens";

/// A started server.
pub struct Server {
    addr: SocketAddr,
    generated: Vec<(&'static str, String)>,
    tokens_file: Option<std::path::PathBuf>,
    http: actix_web::dev::Server,
    store: LogHandle,
    router: RouterHandle,
    arbiters: Vec<actix::Arbiter>,
    /// `None` in cluster mode (`docs/CLUSTER.md`: retention is not applied there).
    compactor: Compactor,
    /// Writes the charts' counts now and then, and once more at the stop.
    stats: StatsSaver,
    /// Ends the open `GET /v1/stream` responses when the server stops.
    streams: stream::Streams,
    /// Reloads the listener's certificate, when it serves TLS.
    tls_reload: Option<tls::TlsReload>,
    /// Where the log came from (cluster mode: the leases are given back at the stop).
    backend: std::sync::Arc<dyn Backend>,
    /// The listener again, with its TLS configuration: for the [`Standin`].
    standin: (TcpListener, Option<rustls::ServerConfig>),
}

impl Server {
    /// Opens the store, loads the API keys, starts the actors and the HTTP server on `listener`.
    pub async fn start(listener: TcpListener, config: Config) -> Result<Server, ServerError> {
        Server::start_with(listener, config, std::sync::Arc::new(Embedded)).await
    }

    /// [`Server::start`] with the log opened by `backend` (cluster mode; see [`Backend`]).
    pub async fn start_with(
        listener: TcpListener,
        config: Config,
        backend: std::sync::Arc<dyn Backend>,
    ) -> Result<Server, ServerError> {
        // Only one crypto provider is compiled in; make it the process default for rustls.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // What the configuration names is read before anything is created: a start that fails
        // on it leaves no data dir, key file or tokens behind (the next start would take them
        // for its own and never show the tokens).
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
            _ => None,
        };
        let delivery_tls = tls::delivery_tls(config.delivery_ca_file.as_deref())?;
        if let Some(key_file) = &config.key_file {
            at_rest::check_key_place(key_file, &config.data_dir).map_err(ServerError::AtRest)?;
            at_rest::check_key_file(key_file).map_err(ServerError::AtRest)?;
        }
        let existed = at_rest::prepare_data_dir(&config.data_dir)?;
        let key_file =
            config.key_file.clone().or_else(|| at_rest::default_key_file(&config.data_dir)).ok_or_else(|| {
                ServerError::AtRest(format!(
                    "no default key file for the data dir {}: set `key_file`",
                    config.data_dir.display()
                ))
            })?;
        let (key, created) = at_rest::load_or_create_key(&key_file)?;
        let opened = backend.open(
            &config.data_dir,
            crmhook_store::Options {
                queue: config.ingest_queue,
                cache_bytes: config.cache_bytes,
                key: Some(key),
                ..crmhook_store::Options::default()
            },
        );
        let store = match opened {
            Ok(store) => store,
            Err(why @ StoreError::Key(_)) => {
                if created {
                    // The key made a moment ago seals nothing: leave no wrong key behind.
                    let _ = std::fs::remove_file(&key_file);
                }
                return Err(ServerError::AtRest(at_rest::key_refused(&config.data_dir, &key_file, created, &why)));
            }
            Err(reason) => return Err(ServerError::Open { dir: config.data_dir.display().to_string(), reason }),
        };
        if created && existed {
            tracing::info!(key_file = %key_file.display(), "created the key file that seals the data dir's secrets");
        }
        match at_rest::tighten(&config.data_dir) {
            Ok(0) => {}
            Ok(n) => tracing::info!(files = n, "took group and other permissions away in the data dir"),
            Err(e) => tracing::warn!(error = %e, "cannot tighten the data dir's permissions"),
        }
        // From here on the log is reached only through the seam (`crmhook_store::Log`).
        let store: LogHandle = std::sync::Arc::new(store);
        let mut generated = Vec::new();
        let bootstrap =
            keys::Bootstrap { admin_token: config.admin_token.clone(), ingest_token: config.ingest_token.clone() };
        let tokens_file = config.data_dir.join(TOKENS_FILE);
        // Whether this start wrote the tokens file (whole or not).
        let wrote = std::cell::Cell::new(false);
        let keep = |generated: &[(&'static str, String)]| {
            wrote.set(true);
            write_tokens_file(&tokens_file, generated)
                .map_err(|e| StoreError::io(format!("cannot write {}: {e}", tokens_file.display()), e.kind()))
        };
        let keys = match keys::Keys::open(store.clone(), bootstrap, &mut generated, keep).await {
            Ok(keys) => std::sync::Arc::new(keys),
            Err(e) => {
                if wrote.get() {
                    // Tokens whose hashes were not saved: the next start generates others.
                    let _ = std::fs::remove_file(&tokens_file);
                }
                return Err(e.into());
            }
        };
        let tokens_file = tokens_file.exists().then_some(tokens_file);
        let arbiters: Vec<actix::Arbiter> = (0..DELIVERY_ARBITERS).map(|_| actix::Arbiter::new()).collect();
        // The handles dispatch and the edge share, made once here and passed to both.
        let guard = Guard { allow_private: config.allow_private_targets };
        let metrics = Metrics::new();
        // The charts' counts kept by the last run, read back before anything is counted.
        let saved = crmhook_dispatch::stats::load(&metrics, &*store).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the charts' counts back; they start from zero");
            crmhook_dispatch::stats::Saved::default()
        });
        let feed = Feed::new();
        let router = RouterHandle::start(
            store.clone(),
            &arbiters.iter().map(|a| a.handle()).collect::<Vec<_>>(),
            RouterConfig {
                max_targets: config.max_targets,
                guard,
                tls: delivery_tls,
                metrics: metrics.clone(),
                feed: feed.clone(),
                // Cluster mode: the targets whose leases this node holds, each delivered only
                // before its lease's deadline, and the actors running here told to the leases.
                ownership: match (backend.ownership(), backend.deadlines(), backend.actors_here()) {
                    (None, ..) => Ownership::all(),
                    (Some(owned), deadlines, here) => {
                        let mut ownership = Ownership::watching(owned);
                        if let Some(deadlines) = deadlines {
                            ownership = ownership.fenced(deadlines);
                        }
                        if let Some(here) = here {
                            ownership = ownership.reporting(here);
                        }
                        ownership
                    }
                },
            },
        )?;
        let addr = listener.local_addr()?;
        let standin = (listener.try_clone()?, tls.as_ref().map(|(tls, _)| tls.clone()));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let public_url = config.public_url.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
        let stats = StatsSaver::start(metrics.clone(), store.clone(), saved);
        let state = web::Data::new(AppState {
            store: store.clone(),
            router: router.clone(),
            keys,
            guard,
            metrics,
            max_body_bytes: config.max_body_bytes,
            ingest_budget: std::sync::Arc::new(tokio::sync::Semaphore::new(
                config.ingest_buffer_bytes.max(config.max_body_bytes).min(u32::MAX as usize),
            )),
            parsing: std::sync::Arc::new(tokio::sync::Semaphore::new(config.workers.max(1))),
            exposure: api::exposure::Exposure {
                hosts: api::exposure::AllowedHosts::new(addr, config.public_url.as_deref(), &config.allowed_hosts),
                metrics_token: config.metrics_token.clone(),
            },
            proxies: config.trusted_proxies.clone(),
            public_url,
            limiter: api::limits::AuthLimiter::new(api::limits::Limits {
                burst: config.auth_failure_burst,
                refill_per_minute: config.auth_failure_refill_per_minute,
            }),
            backend: backend.clone(),
        });
        let streams = stream::Streams::start(
            store.clone(),
            feed,
            api::views::event_json,
            config.max_streams,
            config.max_streams_per_key,
        );
        let streams_data = web::Data::new(streams.clone());
        let mut intake = api::request::Intake::new(
            Duration::from_millis(config.body_timeout_ms),
            config.ingest_concurrency,
            config.max_page_bytes,
        );
        intake.max_delivery_lag_ms = config.max_delivery_lag_ms;
        let intake = web::Data::new(intake);
        let http = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(streams_data.clone())
                .app_data(intake.clone())
                .wrap(ErrorHandlers::new().default_handler(error::to_problem))
                .wrap(actix_web::middleware::from_fn(api::exposure::check_host))
                .wrap(api::exposure::SECURITY_HEADERS.iter().fold(DefaultHeaders::new(), |h, kv| h.add(*kv)))
                .configure(api::routes)
                .default_service(web::to(|| async { actix_web::HttpResponse::NotFound().finish() }))
        })
        .workers(config.workers)
        // TLS handshakes under way are capped as connections are (25,000 a worker), not at
        // actix's 256 a worker: past the cap a worker stops accepting, and a client holding a
        // few hundred connections open without a word (each kept until its handshake times out,
        // 3 s) held up every other client's handshake (docs/SECURITY.md, "Slow and greedy
        // clients").
        .max_connection_rate(MAX_HANDSHAKES_PER_WORKER)
        .disable_signals()
        .shutdown_timeout(10);
        listening(&listener)?;
        let (http, tls_reload) = match tls {
            Some((tls_config, reload)) => (http.listen_rustls_0_23(listener, tls_config)?, Some(reload)),
            None => (http.listen(listener)?, None),
        };
        let http = http.run();
        // In cluster mode each call of retention is an entry of the replicated log, applied by
        // every copy at its place (`crmhook_store`'s `replica/retention.rs`), and carries the
        // events it removes: fewer a call, to keep its entry well under NATS's message limit.
        let per_call = if backend.ownership().is_some() { 1_000 } else { 10_000 };
        let compactor = Compactor::start(
            store.clone(),
            config.retention_days,
            Duration::from_secs(config.compaction_interval_s),
            per_call,
        )?;
        Ok(Server {
            addr,
            generated,
            tokens_file,
            http,
            store,
            router,
            arbiters,
            compactor,
            stats,
            streams,
            tls_reload,
            backend,
            standin,
        })
    }

    /// Writes a record and waits for its flush: whether the log takes writes (after a start that
    /// follows [`Ended::LogBroken`], the disk may still refuse them).
    pub async fn probe(&self) -> Result<(), ServerError> {
        let now = crmhook_core::time::now_ms().to_string();
        self.store.put_meta("probed_at", &now).await.map_err(ServerError::Store)
    }

    /// Reloads the listener's certificate from its files (on SIGHUP), when it serves TLS.
    pub fn tls_reload(&self) -> Option<tls::TlsReload> {
        self.tls_reload.clone()
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Tokens generated on this start (first start of a data dir): show them once.
    pub fn generated_tokens(&self) -> &[(&'static str, String)] {
        &self.generated
    }

    /// The file holding the tokens generated on the first start, when there is one.
    pub fn tokens_file(&self) -> Option<&std::path::Path> {
        self.tokens_file.as_deref()
    }

    /// Serves until `shutdown` completes, then stops gracefully: open streams ended, no new
    /// requests, requests in progress answered, target actors stopped (undelivered events stay
    /// pending on disk), the store flushed.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        self.serve(shutdown, Watch::Shutdown).await.map(drop)
    }

    /// Stops at once, handing the listener's connections to the [`Standin`] that answers
    /// beside it (a server started again whose [`Server::probe`] failed).
    pub async fn stop_beside_standin(self) -> Result<(), ServerError> {
        self.serve(std::future::ready(()), Watch::BesideStandin).await.map(drop)
    }

    /// [`Server::run_until`], but it also stops when the disk refuses a write of the log
    /// ([`Ended::LogBroken`]): the [`Standin`] then answers on the listener, started before the
    /// server stops taking connections.
    pub async fn serve_until(self, shutdown: impl Future<Output = ()>) -> Result<Ended, ServerError> {
        self.serve(shutdown, Watch::AlsoBroken).await
    }

    async fn serve(self, shutdown: impl Future<Output = ()>, watch: Watch) -> Result<Ended, ServerError> {
        let handle = self.http.handle();
        let mut http = actix_rt::spawn(self.http);
        let mut broken = self.store.watch_broken();
        let broken = async move {
            // A writer gone (its sender dropped) is a store closed, not a broken one.
            if watch != Watch::AlsoBroken || broken.wait_for(|b| *b).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let streams = &self.streams;
        let stop_http = |hand_over: bool| async move {
            // Streams never end on their own: end them first, or the graceful stop waits for
            // their connections until its timeout (actix checks once a second).
            if !streams.close(STREAMS_GRACE).await {
                tracing::warn!(open = streams.open(), "streams still open at shutdown");
            }
            if hand_over {
                standin::hand_over(&handle).await;
            }
            handle.stop(true).await;
        };
        let (listener, tls) = self.standin;
        let result = tokio::select! {
            () = shutdown => {
                tracing::info!("shutting down");
                // The listener closes when the HTTP server lets its own go: a client that comes
                // meanwhile is refused at once, not left waiting in the backlog.
                drop(listener);
                stop_http(watch == Watch::BesideStandin).await;
                Ok(Ended::Shutdown)
            }
            () = broken => {
                tracing::error!(
                    "the disk refused a write of the event log (see the error before): stopping, to open the log \
                     again once it can be written; meanwhile every request is answered 503"
                );
                let standin = listener
                    .try_clone()
                    .and_then(|copy| Standin::start(copy, tls))
                    .inspect_err(|e| tracing::error!(error = %e, "the stand-in that answers 503 could not start"))
                    .ok();
                stop_http(standin.is_some()).await;
                Ok(Ended::LogBroken { standin, listener })
            }
            joined = &mut http => match joined {
                Ok(r) => r.map(|()| Ended::Shutdown).map_err(ServerError::Http),
                Err(e) => Err(ServerError::Http(std::io::Error::other(e.to_string()))),
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), http).await;
        self.router.shutdown(SHUTDOWN_GRACE).await;
        // After the deliveries in flight: the other nodes may take this node's targets now.
        self.backend.leave().await;
        for arbiter in self.arbiters {
            arbiter.stop();
        }
        self.compactor.stop();
        // After the target actors: their last attempts are counted.
        self.stats.stop().await;
        self.store.close().await;
        tracing::info!("stopped");
        result
    }
}

/// Writes `name=token` lines, readable and writable by this user only (created with mode 0600;
/// an existing file is replaced).
fn write_tokens_file(path: &std::path::Path, tokens: &[(&'static str, String)]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut text = String::from(
        "# Tokens crmhook generated on its first start (its store keeps only their hashes). Readable by this user\n\
         # only; crmhook never reads this file: once the tokens are kept elsewhere, it may be deleted.\n",
    );
    for (name, token) in tokens {
        text.push_str(&format!("{name}={token}\n"));
    }
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Writes the charts' counts (`crmhook_dispatch::stats`) every
/// [`crmhook_dispatch::stats::SAVE_EVERY`], and once more when stopped: a graceful restart keeps
/// them all, a crash loses the last few seconds.
struct StatsSaver {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl StatsSaver {
    fn start(
        metrics: std::sync::Arc<Metrics>,
        store: LogHandle,
        mut saved: crmhook_dispatch::stats::Saved,
    ) -> StatsSaver {
        use crmhook_dispatch::stats::{save, SAVE_EVERY};
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = actix_rt::spawn(async move {
            loop {
                let last = tokio::select! {
                    _ = &mut stopped => true,
                    () = tokio::time::sleep(SAVE_EVERY) => false,
                };
                let now = crmhook_core::time::now_ms();
                if let Err(e) = save(&metrics, &*store, &mut saved, now).await {
                    tracing::warn!(error = %e, "writing the charts' counts failed");
                }
                if last {
                    break;
                }
            }
        });
        StatsSaver { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Makes `listener` listen, if it is only bound: `crmhook serve` binds its port before the
/// server starts and listens only once it serves, so that a connection meanwhile is refused at
/// once (a cluster node's catch-up with the log took 35–40 s for 100,000 entries, and a
/// listening socket held CRMs' connections unanswered all that time, then took requests whose
/// clients had given up). A listener that listens already keeps doing so.
pub fn listening(listener: &std::net::TcpListener) -> std::io::Result<()> {
    socket2::SockRef::from(listener).listen(1024)
}
