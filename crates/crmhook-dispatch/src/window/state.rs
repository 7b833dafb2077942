//! Writing the target's state: the marks (the cursor and how far the window has matched) and
//! the finished deliveries' records, one lazy write at a time.

use super::{StateWrite, Window, Writing};

impl Window {
    /// The marks to write: the cursor (below the first fresh delivery, and never past
    /// `scanned`) and how far the window has matched ([`Window::scanned_mark`]).
    ///
    /// A fresh delivery is one the window matched, at or below `scanned`. The cursor is kept at
    /// most `scanned` all the same: past it are deliveries this run has not matched yet (after a
    /// restart, while it matches the log again from the cursor), which a restart finds only by
    /// matching from the cursor. Until 2026-12-05 a failed write made retries fresh too, which
    /// after a restart may lie beyond `scanned`, and the cursor passed such deliveries.
    pub fn marks(&self) -> (u64, u64) {
        let low = self.fresh.first().map_or(self.scanned, |first| first.saturating_sub(1).min(self.scanned));
        (low, self.scanned_mark())
    }

    /// How far matching may have recorded deliveries, as written down (`W`): `scanned`, or
    /// after a restart the earlier run's mark while matching again below it. `W` never moves
    /// back, so a crash after a restart still checks every delivery the earlier runs may have
    /// recorded rather than make it again.
    pub fn scanned_mark(&self) -> u64 {
        self.scanned.max(self.checked_until)
    }

    /// Starts a write of the target's state if none is in progress and there is something to
    /// write (finished deliveries' records, or marks that moved); what changes meanwhile goes in
    /// the next. The shell writes its unwritten batch with the marks (`Store::
    /// write_deliveries_held`), then calls [`Window::write_done`].
    pub fn start_write(&mut self) -> Option<StateWrite> {
        if self.writing.is_some() {
            return None;
        }
        let marks = self.marks();
        if self.recording.is_empty() && marks == self.saved {
            return None;
        }
        let seqs: Vec<u64> = self.recording.iter().copied().collect();
        self.writing = Some(Writing { marks, seqs: seqs.clone() });
        Some(StateWrite { marks: (marks != self.saved).then_some(marks), finished: seqs })
    }

    /// The write of the state is over. If it failed, its deliveries are not recorded: its first
    /// attempts are fresh again, so the cursor stays below them and a restart attempts them
    /// again (at least once); its retries keep their pending entries on disk, which a restart
    /// (or a reload) takes again, as retries: made fresh, a retry taken again would be recorded
    /// finished with its pending entry left on disk, and delivered once more at every restart.
    /// Answers the deliveries now on disk, which the shell removes from the store's
    /// `Unrecorded`; then the shell writes the state again and pumps.
    pub fn write_done(&mut self, ok: bool) -> Vec<u64> {
        let Some(Writing { marks, seqs }) = self.writing.take() else { return Vec::new() };
        for seq in &seqs {
            self.recording.remove(seq);
            if self.recording_first.remove(seq) && !ok {
                self.fresh.insert(*seq);
            }
        }
        if ok {
            self.saved = marks;
            seqs
        } else {
            Vec::new()
        }
    }
}
