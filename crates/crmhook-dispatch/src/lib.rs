//! crmhook's dispatch: what happens to an event once the edge has validated it. It owns
//!
//! - the router actor ([`router`]): the write path of the event log (through the store's
//!   group commit), the registry of target actors, and the admin changes that must agree with
//!   them (made here, or on another node of a cluster and read back from the store);
//! - which targets this node delivers ([`ownership`]): every one on a single node; in cluster
//!   mode the set the lease keeper publishes, each target on exactly one node at a time;
//! - one actor per target ([`target`]): its delivery window, its attempts in flight (at most 16,
//!   1 when `ordered`), its retry timer, and the records of its attempts;
//! - HTTP delivery ([`delivery`]): the body and signature headers of an attempt, sent with awc,
//!   one client per delivery arbiter (redirects off, explicit timeouts), owned by that arbiter's
//!   [`delivery::Lane`]; `https://` to IPv6 literals through a TCP step that makes the TLS
//!   connection itself, naming the address (`tls`: awc's own TLS step names it with brackets);
//! - the address guard ([`guard`]): non-public targets refused at creation and at every
//!   connection (the client's DNS resolver);
//! - a target's window ([`window`]): the pure state machine of what a target owes, has in
//!   flight, has due and has finished, with the cursor and marks; the target actor is its shell;
//! - the counters ([`metrics`]) and the attempt feed ([`feed`]): what the edge shows of
//!   dispatch, published once each attempt's record is written; the console's charts
//!   ([`stats`]): each target's attempts and the events logged by type, by minute over the
//!   last hour and by quarter hour over the last day, kept across restarts.
//!
//! Nothing here is process-wide: the [`metrics::Metrics`], [`feed::Feed`], [`guard::Guard`] and
//! [`ownership::Ownership`] handles are made by whoever starts dispatch (`crmhook-server`'s
//! `Server::start`) and passed in ([`router::RouterConfig`]); it shares them with the edge.
//!
//! **Architecture invariant:** dispatch never sees actix-web (its HTTP is awc's client, with
//! awc's `http` types); it never touches sled or bincode directly — only through
//! crmhook-store. Everything here runs inside an actix `System`.

pub mod delivery;
pub mod feed;
pub mod guard;
pub mod metrics;
pub mod ownership;
pub mod router;
pub mod stats;
pub mod target;
mod tls;
pub mod window;

pub use ownership::{Deadlines, Fence, Owned, Ownership};
pub use tls::DeliveryTls;
