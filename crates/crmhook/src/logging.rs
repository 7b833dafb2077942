//! The server's log on stderr: its filter (`CRMHOOK_LOG`, else `RUST_LOG`, else `info`), its
//! format (text or JSON lines), and a bound on what a client can make it write.
//!
//! actix-http logs every connection that ends in an error at ERROR, with the error in words:
//! `stream error: request parse error: invalid Header provided` for a request it cannot parse
//! (answered with a problem+json 400, docs/API.md), and the same for a connection reset or a request
//! that did not arrive in time. Anyone who can reach the port can send such requests as fast as
//! the network goes, so that line could fill the log, or the disk under it. At most one of them
//! passes a minute ([`ClientErrors`]); nothing else actix or crmhook logs is held back.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The module of actix-http that logs the errors of connections.
const DISPATCHER: &str = "actix_http::h1::dispatcher";

/// How the message of a connection's error begins.
const STREAM_ERROR: &str = "stream error:";

/// The default filter: actix-server's start and stop lines are said by crmhook itself.
const DEFAULT_FILTER: &str = "info,actix_server=warn";

/// Installs the process's subscriber, writing to stderr.
pub(crate) fn init(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CRMHOOK_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let ansi = std::env::var_os("NO_COLOR").is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let throttle = ClientErrors::every(Duration::from_secs(60));
    if json {
        builder.json().finish().with(throttle).init();
    } else {
        builder.finish().with(throttle).init();
    }
}

/// Lets one of actix-http's connection errors through per `every`, and holds back the others
/// (see the module's docs).
pub(crate) struct ClientErrors {
    every: Duration,
    start: Instant,
    /// When the last one passed, in ms since `start` plus one (0: none yet).
    last: AtomicU64,
}

impl ClientErrors {
    pub(crate) fn every(every: Duration) -> ClientErrors {
        ClientErrors { every, start: Instant::now(), last: AtomicU64::new(0) }
    }

    /// Whether one passes now: the first, then one per `every`.
    fn passes(&self) -> bool {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        let window = u64::try_from(self.every.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < window {
            return false;
        }
        // Of two threads that find the window over, one passes.
        self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

impl<S: Subscriber> Layer<S> for ClientErrors {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() != Level::ERROR || meta.target() != DISPATCHER {
            return true;
        }
        let mut message = Message::default();
        event.record(&mut message);
        !message.0.starts_with(STREAM_ERROR) || self.passes()
    }
}

/// An event's message, in words.
#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Keeps the messages of the events that reach it.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Kept {
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let mut message = Message::default();
            event.record(&mut message);
            self.0.lock().unwrap().push(format!("{} {}", event.metadata().target(), message.0));
        }
    }

    fn logged(every: Duration, emit: impl FnOnce()) -> Vec<String> {
        let kept = Kept::default();
        let subscriber = tracing_subscriber::registry().with(kept.clone()).with(ClientErrors::every(every));
        tracing::subscriber::with_default(subscriber, emit);
        let kept = kept.0.lock().unwrap().clone();
        kept
    }

    fn a_client_error(n: usize) {
        tracing::error!(target: "actix_http::h1::dispatcher", "stream error: request parse error: invalid Header provided ({n})");
    }

    #[test]
    fn one_client_error_passes_a_window_and_nothing_else_is_held_back() {
        let kept = logged(Duration::from_secs(60), || {
            for n in 0..100 {
                a_client_error(n);
            }
            tracing::error!(target: "actix_http::h1::dispatcher", "Response payload stream error: broken");
            tracing::warn!(target: "actix_http::h1::dispatcher", "stream error: at another level");
            tracing::error!(target: "crmhook_server", "stream error: crmhook's own");
        });
        assert_eq!(
            kept,
            [
                "actix_http::h1::dispatcher stream error: request parse error: invalid Header provided (0)",
                "actix_http::h1::dispatcher Response payload stream error: broken",
                "actix_http::h1::dispatcher stream error: at another level",
                "crmhook_server stream error: crmhook's own",
            ]
        );
    }

    #[test]
    fn with_no_window_every_client_error_passes() {
        let kept = logged(Duration::ZERO, || (0..10).for_each(a_client_error));
        assert_eq!(kept.len(), 10, "{kept:?}");
    }
}
