use std::{
    cell::{Cell, OnceCell},
    fmt::{self, Write},
    rc::Rc,
    time::{Duration, Instant, SystemTime},
};

use tokio::{
    task::{spawn_local, JoinHandle},
    time::interval,
};

/// "Thu, 01 Jan 1970 00:00:00 GMT".len()
pub(crate) const DATE_VALUE_LENGTH: usize = 29;

#[derive(Clone, Copy)]
pub(crate) struct Date {
    pub(crate) bytes: [u8; DATE_VALUE_LENGTH],
    pos: usize,
}

impl Date {
    fn new() -> Date {
        let mut date = Date {
            bytes: [0; DATE_VALUE_LENGTH],
            pos: 0,
        };
        date.update();
        date
    }

    fn update(&mut self) {
        self.pos = 0;
        write!(self, "{}", httpdate::HttpDate::from(SystemTime::now())).unwrap();
    }
}

impl fmt::Write for Date {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let len = s.len();
        self.bytes[self.pos..self.pos + len].copy_from_slice(s.as_bytes());
        self.pos += len;
        Ok(())
    }
}

/// Service for update Date and Instant periodically at 500 millis interval.
///
/// crmhook: the update task is spawned on the second read of the date or the time, not when
/// the service is made; the first read takes them from the clock (vendor/README.md). awc makes
/// a client codec, and so a `ServiceConfig` with a `DateService` of its own, for every request
/// it sends, and reads the date once (the request's `Date` header): spawning the task, arming
/// its timer and aborting it again cost every delivery more than the date itself.
pub(crate) struct DateService {
    current: Rc<Cell<(Date, Instant)>>,
    /// crmhook: whether the date was read once (the second read spawns the task).
    read_once: Cell<bool>,
    handle: OnceCell<JoinHandle<()>>,
}

impl DateService {
    pub(crate) fn new() -> Self {
        DateService {
            current: Rc::new(Cell::new((Date { bytes: [0; DATE_VALUE_LENGTH], pos: 0 }, Instant::now()))),
            read_once: Cell::new(false),
            handle: OnceCell::new(),
        }
    }

    /// crmhook: the date and time for a read: kept by the task once it runs, else from the
    /// clock (and the second such read spawns the task, as `new` used to).
    fn read(&self) -> (Date, Instant) {
        if self.handle.get().is_none() {
            self.current.set((Date::new(), Instant::now()));
            if self.read_once.replace(true) {
                self.spawn_update();
            }
        }
        self.current.get()
    }

    /// crmhook: what `new` did after making the service.
    fn spawn_update(&self) {
        // shared date and timer for DateService and update async task.
        let current_clone = Rc::clone(&self.current);
        // spawn an async task sleep for 500 millis and update current date/timer in a loop.
        // handle is used to stop the task on DateService drop.
        let _ = self.handle.set(spawn_local(async move {
            #[cfg(test)]
            let _notify = crate::notify_on_drop::NotifyOnDrop::new();

            let mut interval = interval(Duration::from_millis(500));
            loop {
                let now = interval.tick().await;
                let date = Date::new();
                current_clone.set((date, now.into_std()));
            }
        }));
    }

    pub(crate) fn now(&self) -> Instant {
        self.read().1
    }

    pub(crate) fn with_date<F: FnMut(&Date)>(&self, mut f: F) {
        f(&self.read().0);
    }
}

impl fmt::Debug for DateService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DateService").finish_non_exhaustive()
    }
}

impl Drop for DateService {
    fn drop(&mut self) {
        // stop the timer update async task on drop.
        if let Some(handle) = self.handle.get() {
            handle.abort();
        }
    }
}
