//! What a target's window starts from, and the one rule for what an earlier run may have left
//! owed: the store's facts about a target at start-up ([`Recovered`]) and about one delivery
//! ([`OnDisk`]), and [`owed`], which the window and the API both apply.

use crmhook_store::Pending;

/// What the store holds of a target when its actor starts.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// The cursor (`Store::cursor`); `None` for a target that never had one.
    pub cursor: Option<u64>,
    /// How far the last run had matched (`Store::scanned`).
    pub scanned: Option<u64>,
    /// The pending entries on disk, in seq order (`Store::pending(id, WINDOW)`).
    pub pending: Vec<(u64, Pending)>,
    /// Whether the target is disabled (`Store::disabled(id)?.is_some()`).
    pub disabled: bool,
    /// The log's head (`Store::head`): where a target without a cursor starts.
    pub head: u64,
}

/// What an earlier run may have recorded of a delivery: the facts [`Window::owes`](super::Window::owes) needs for a
/// delivery it may have taken before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDisk {
    /// No pending entry and no attempt.
    Nothing,
    /// A pending entry or an attempt (it is pending, or finished).
    Recorded,
    /// Either could not be read.
    Unreadable,
}

impl OnDisk {
    /// From the two reads: `Store::is_pending_on_disk` and whether `Store::last_attempt` found
    /// one.
    pub fn of<E, F>(pending_on_disk: Result<bool, E>, attempted: Result<bool, F>) -> OnDisk {
        match (pending_on_disk, attempted) {
            (Ok(false), Ok(false)) => OnDisk::Nothing,
            (Ok(_), Ok(_)) => OnDisk::Recorded,
            _ => OnDisk::Unreadable,
        }
    }

    /// Whether a delivery with these records is owed: nothing recorded, or unreadable (deliver
    /// again rather than maybe never).
    pub fn owed(self) -> bool {
        self != OnDisk::Recorded
    }
}

/// What a target owes of one event, from what the log holds: the one rule that the window
/// applies to the deliveries an earlier run may have recorded ([`Window::owes`](super::Window::owes)) and that the
/// API applies to every target when it shows an event's deliveries. A delivery is owed when
/// the event is past the target's cursor (at or below it, every delivery owed has a record),
/// nothing is recorded of it (or the records cannot be read: deliver again rather than maybe
/// never), and the event matches the target's subscriptions (asked last, as it costs most).
pub fn owed(past_cursor: bool, on_disk: OnDisk, matches: impl FnOnce() -> bool) -> bool {
    past_cursor && on_disk.owed() && matches()
}
