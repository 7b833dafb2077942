//! crmhook's domain, free of I/O: what an event, a target and a subscription are, how they are
//! validated, how an event is matched against subscriptions, how a delivery is signed, and how
//! an attempt's outcome turns into the next step of its retry schedule.
//!
//! Everything here is a pure function of its inputs (the clock and the random source are passed
//! in or confined to id and secret generation), so it is unit- and property-tested without a
//! server. The store crate persists these types; the server crate drives them.

pub mod error;
pub mod event;
pub mod id;
pub mod name;
pub mod retry;
pub mod samples;
pub mod sign;
pub mod source;
pub mod subscription;
pub mod target;
pub mod time;

pub use error::{CoreError, FieldError};
pub use event::{Event, EventKind, NewEvent};
pub use id::{EventId, RejectedId, SourceId, SubscriptionId, TargetId};
pub use source::{Source, SourceKind};
pub use subscription::Subscription;
pub use target::Target;
